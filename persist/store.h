/*
 * store.h — durable changes: the engine behind a write-ahead log.
 *
 * Owns: the data directory (WAL segments, snapshots, lock file), the one
 * writer lane of the engine, the LSN counter, group commit, snapshots,
 * recovery and the expiry/retention sweep. Depends on engine/ only.
 *
 * Every change goes through here: inside the writer lane it is checked and
 * applied to the engine under the next LSN, and its log record is appended
 * in the same order; a commit thread writes whole batches and fdatasyncs
 * them, then calls each change's done callback. In the default durability
 * mode (STORE_SYNC) done(0, lsn) means the change is on stable storage.
 * STORE_RELAXED calls done before the sync, at most relaxed_window_ms
 * before it, and says so in its name. Readers use the engine directly.
 *
 * Faults: a failed write or fsync is never retried as if it had worked
 * (fsyncgate). The changes of that batch get done(-EIO), and the store
 * turns read-only: every later change returns -EROFS at once until restart.
 * Inquiries keep working.
 *
 * Threads: every function may be called from any thread. done and change
 * callbacks run on store threads (commit / writer lane): they must not block
 * and must not call back into the store.
 *
 * Records other modules need durable (principals, signing keys) go through
 * the aux interface: the store logs, snapshots and replays opaque payloads
 * of a kind the module registered.
 * The on-disk format is described in persist/wal.h and persist/snap.h.
 */
#ifndef ICS_STORE_H
#define ICS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct store store_t;

enum store_durability { STORE_SYNC = 0, STORE_RELAXED = 1 };

enum store_log_level { STORE_LOG_ERROR, STORE_LOG_WARN, STORE_LOG_INFO, STORE_LOG_DEBUG };

struct store_config {
    const char *dir;                /* data directory, created if missing */
    enum store_durability durability;
    uint32_t relaxed_window_ms;     /* STORE_RELAXED bound; default 10 */
    const char *key_file;           /* 32-byte AES-256-GCM key; NULL = plain */
    uint64_t segment_bytes;         /* WAL segment size; default 64 MiB */
    uint64_t snapshot_log_bytes;    /* snapshot when the log passes it; 0 = default 256 MiB */
    int truncate_corrupt;           /* operator flag: truncate at a bad record */
    uint32_t sweep_interval_ms;     /* expiry sweep period; default 1000 */
    uint32_t max_row_age;           /* retention bound in seconds; 0 = none */
    /* Seams: NULL means the real thing. */
    uint64_t (*clock_us)(void *ctx);   /* unix microseconds */
    void *clock_ctx;
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
    const struct store_io *io;      /* file I/O seam for fault injection (persist/io.h) */
};

/* done: status 0 and the change's LSN once durable; a negative errno if it
 * could not be made durable (then it is not acknowledged). */
typedef void (*store_done_fn)(void *arg, int status, uint64_t lsn);

/* Change notification, in LSN order, from inside the writer lane: for
 * events (DEMAPPED) and history. row describes the row added or removed,
 * with its device's owner and prefs as they were (who may see it). */
enum store_change_type { STORE_C_MAP = 1, STORE_C_DEMAP = 2, STORE_C_EXPIRE = 3,
                         STORE_C_PREFS = 4 };
struct store_change {
    enum store_change_type type;
    const struct engine_row *row;
    const uint8_t *actor; uint16_t actor_len; /* principal, 0 for the sweep */
    uint64_t lsn;
    int replay;                    /* 1 while recovering from disk */
};
typedef void (*store_change_fn)(void *arg, const struct store_change *c);

/* Aux records: a module's own durable state (principals, signing keys). */
struct store_aux_ops {
    /* Applies one record; called inside the writer lane, live and on replay
     * (so replay must be idempotent: records after a fuzzy snapshot). */
    int (*apply)(void *ctx, const void *p, size_t n, uint64_t lsn);
    /* Writes the module's whole state as records through emit (snapshot). */
    int (*dump)(void *ctx, int (*emit)(void *ectx, const void *p, size_t n),
                void *ectx);
};

/* Lifecycle: open -> register aux kinds / set listener -> recover -> start
 * ... close. err gets a human message (file, offset, LSN) on failure. */
int  store_open(store_t **out, engine_t *e, const struct store_config *cfg,
                char *err, size_t errlen);
int  store_register_aux(store_t *s, uint8_t kind, const struct store_aux_ops *ops,
                        void *ctx);
void store_set_listener(store_t *s, store_change_fn fn, void *arg);
int  store_recover(store_t *s, char *err, size_t errlen);
int  store_start(store_t *s);     /* commit thread and sweep */
void store_close(store_t *s);     /* flush, sync, stop threads; NULL ok */

/* Changes. Each returns >= 0 when accepted (then done is called exactly once,
 * later, from a store thread) or a negative errno (done is never called):
 *   store_map:            0 created, 1 the same row existed (done still waits
 *                         until that row is durable)
 *   store_demap_*:        rows removed (demap: 1)
 * -EEXIST, -ENOENT, -EINVAL, -ENOMEM as the engine says; -EROFS read-only. */
int store_map(store_t *s, const struct engine_map_req *rq,
              const void *actor, size_t actor_len, store_done_fn done, void *arg);
int store_demap(store_t *s, const void *dev, size_t dev_len,
                const void *uri, size_t uri_len, const void *uti, size_t uti_len,
                uint64_t cas, const void *actor, size_t actor_len,
                store_done_fn done, void *arg);
int store_demap_device(store_t *s, const void *dev, size_t dev_len,
                       const void *actor, size_t actor_len,
                       store_done_fn done, void *arg);
int store_demap_binding(store_t *s, const void *uri, size_t uri_len,
                        const void *uti, size_t uti_len,
                        const void *actor, size_t actor_len,
                        store_done_fn done, void *arg);
int store_demap_service(store_t *s, const void *uri, size_t uri_len,
                        const void *actor, size_t actor_len,
                        store_done_fn done, void *arg);
/* A tpsp's DEMAP_SERVICE: only the rows of devices whose preferences the
 * filter (store_set_prefs_filter) says allow the URI now; the decision is
 * logged as the time it was made at, so replay makes it again, alike.
 * -ENOENT when no device allowed it (nothing changes, nothing is logged). */
int store_demap_service_prefs(store_t *s, const void *uri, size_t uri_len,
                              const void *actor, size_t actor_len,
                              store_done_fn done, void *arg);
/* The filter store_demap_service_prefs applies: whether a device with
 * preferences blob prefs (len 0: none) allows a tpsp request for uri at
 * unix micros now_us. A pure function of its arguments (replay calls it
 * again). Set it before store_recover; without one every device allows. */
typedef bool (*store_prefs_filter_fn)(const void *prefs, size_t len, const void *uri,
                                      size_t ulen, uint64_t now_us);
void store_set_prefs_filter(store_t *s, store_prefs_filter_fn fn);
int store_set_prefs(store_t *s, const void *dev, size_t dev_len,
                    const void *prefs, size_t len,
                    const void *actor, size_t actor_len,
                    store_done_fn done, void *arg);
int store_aux(store_t *s, uint8_t kind, const void *p, size_t n,
              store_done_fn done, void *arg);

/* Starts a background snapshot (readers and writers go on); done gets the
 * LSN it covers once it is durable. */
int store_snapshot(store_t *s, store_done_fn done, void *arg);

struct store_stats {
    uint64_t last_lsn, durable_lsn;
    uint64_t wal_bytes, wal_segments, wal_records;
    uint64_t syncs, sync_us_total, batch_max;   /* records per sync: wal_records / syncs */
    uint64_t snapshots, snapshot_lsn, snapshot_bytes;
    uint64_t expired;
    uint64_t recovery_us, recovered_records;
    int read_only, encrypted, relaxed;
    uint64_t history_dropped;  /* logged changes whose history entry the memory limit refused */
};
void store_stats(store_t *s, struct store_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* ICS_STORE_H */
