/*
 * engine.h — the identity correlation table of ITU-T Y.4462, in memory.
 *
 * Owns: every mapping row (device ID, service URI, UTI, expires_at, LSN),
 * each device's owner principal and PII preferences blob, the interned
 * service URIs, and each device's bounded history ring. Two indexes:
 *   device index   device ID -> device record (owner, prefs, rows)
 *   binding index  XXH3(URI || UTI) -> device, always verified against the
 *                  full URI and UTI, so a 64-bit collision never answers a
 *                  wrong device.
 *
 * Knows nothing of sockets, files or the wire: plain C types in, 0 or a
 * negative errno out (-EINVAL bad argument, -ENOENT absent, -EEXIST binding
 * held by another device or CAS mismatch, -ENOMEM memory limit reached, in
 * which case nothing changed).
 *
 * Threads:
 *  - Readers (engine_inquire_*, engine_iterate, engine_iterate_devices,
 *    engine_stats, engine_history_get) run on any number of threads at
 *    once, never take a lock and never block, also while the table grows
 *    (engine_device_history, inside engine_iterate_devices, holds one
 *    device's ring lock while it copies the ring). A thread must call
 *    engine_thread_online() once before its first read and
 *    engine_thread_offline() before it exits (a thread that forgets is
 *    registered on its first call and unregistered when it exits). A
 *    thread that reads in a loop can enter loop mode (below): cheaper
 *    reads, for a quiescent point per iteration. Row callbacks run inside
 *    the read-side critical section: they must not block nor call a
 *    writer, and the pointers they get are valid only during the callback.
 *    engine_collect_expired is a reader too.
 *  - Writers (engine_map, engine_demap*, engine_set_prefs, and for loading
 *    a snapshot engine_device_restore, engine_reserve, engine_map_run,
 *    engine_map_prefetch) must be serialized by the caller: one writer
 *    lane (persist/'s store holds it). Every change carries the LSN the
 *    caller assigned; LSNs only grow.
 *  - engine_history_add may be called from any thread.
 * Memory of replaced records is reclaimed with liburcu (see docs/engine.md).
 */
#ifndef ICS_ENGINE_H
#define ICS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
/* engine_stats() shares its name with its struct, which C++ -Wshadow flags. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
extern "C" {
#endif

#define ENGINE_ID_MAX  128u  /* device ID, UTI, device serial: 1..128 bytes */
#define ENGINE_URI_MAX 1024u /* service URI: 1..1024 bytes, no NUL */
#define ENGINE_NAME_MAX 128u /* principal name: 1..128 bytes */

typedef struct engine engine_t;

/* Allocation seam: tests and fuzzers replace it to fail the Nth allocation.
 * NULL members mean the process allocator (jemalloc in the daemon). */
struct engine_alloc {
    void *(*alloc)(void *ctx, size_t size);
    void (*free)(void *ctx, void *ptr, size_t size);
    void *ctx;
};

struct engine_config {
    size_t initial_devices;    /* capacity hint; the table grows online */
    size_t mem_limit;          /* bytes the engine may hold; 0 = no limit */
    uint32_t history_len;      /* entries kept per device; 0 = no history */
    struct engine_alloc alloc; /* zeroed = default allocator */
    uint64_t hash_seed;        /* 0 = drawn per engine (defends against hash
                                  flooding); fix it for reproducible runs */
};

/* One row as a reader sees it. Pointers valid only during the callback. */
struct engine_row {
    const uint8_t *device;  uint16_t device_len;
    const uint8_t *owner;   uint16_t owner_len;  /* 0: no owner */
    const uint8_t *uri;     uint16_t uri_len;
    const uint8_t *uti;     uint16_t uti_len;
    const uint8_t *prefs;   uint32_t prefs_len;  /* the device's PREFS blob, 0: none */
    uint32_t expires_at;    /* unix seconds, 0 = never */
    uint64_t lsn;           /* LSN of the change that created this row */
};

/* Return 0 to go on, nonzero to stop the visit (that value is returned). */
typedef int (*engine_row_fn)(void *arg, const struct engine_row *row);

struct engine_stats {
    uint64_t rows, devices, uris; /* devices: records, incl. history-only */
    uint64_t bytes;            /* bytes held, as counted against mem_limit */
    uint64_t device_slots, binding_slots; /* capacity of the two indexes */
    uint64_t resizes;          /* completed online resizes */
    uint64_t last_lsn;         /* highest LSN applied */
};

int  engine_create(engine_t **out, const struct engine_config *cfg);
void engine_destroy(engine_t *e); /* no reader may be inside any more */

void engine_thread_online(engine_t *e);  /* before a thread's first read */
void engine_thread_offline(engine_t *e); /* before it exits */

/* Loop mode, for a thread that reads in a loop (an event loop, a benchmark):
 * between engine_thread_loop_begin() and engine_thread_loop_end() the thread
 * holds one read-side section open across calls, so reads do no RCU work at
 * all (QSBR's bargain). In exchange it must call engine_thread_quiescent()
 * often (each loop iteration: until it does, no replaced record anywhere is
 * freed), at a point where it holds no pointer from a row callback, and
 * engine_thread_loop_end() before it blocks or sleeps: a writer waiting for
 * a grace period, while it holds a lock this thread blocks on, would wait
 * for it forever. None of the three may be called from a row callback.
 * Writers may run in loop mode (a grace period they wait for closes their
 * own section for the wait); engine_destroy ends its caller's loop mode.
 * Outside loop mode each call is a read section of its own. */
void engine_thread_loop_begin(engine_t *e);
void engine_thread_quiescent(engine_t *e);
bool engine_thread_loop_end(engine_t *e); /* true: was in loop mode */

/* --- readers ----------------------------------------------------------- */

/* Case 1: calls fn for each row of the device (in LSN order). Returns the
 * number of rows visited, -ENOENT if the device has no rows, or fn's
 * nonzero value. *lsn (may be NULL) gets the LSN the answer reflects. */
int engine_inquire_device(engine_t *e, const void *dev, size_t dev_len,
                          engine_row_fn fn, void *arg, uint64_t *lsn);

/* The same; flags: ENGINE_INQ_RECORD says fn will call
 * engine_history_add_row, so the engine starts loading the device's
 * history ring while it visits the rows (a hint: no change in results). */
#define ENGINE_INQ_RECORD 1u
int engine_inquire_device_ex(engine_t *e, const void *dev, size_t dev_len,
                             engine_row_fn fn, void *arg, uint64_t *lsn,
                             unsigned flags);

/* Case 2: calls fn once with the row bound to (URI, UTI). Returns 1,
 * -ENOENT, or fn's nonzero value. */
int engine_inquire_binding(engine_t *e, const void *uri, size_t uri_len,
                           const void *uti, size_t uti_len,
                           engine_row_fn fn, void *arg, uint64_t *lsn);

/* Batched case 1 for pipelined connections: n lookups with the memory
 * loads overlapped (prefetch). results[i] is what engine_inquire_device
 * would have returned for key i; fn sees rows with key order kept. */
struct engine_key { const void *p; size_t len; };
void engine_inquire_device_batch(engine_t *e, const struct engine_key *keys,
                                 size_t n, engine_row_fn fn, void *arg,
                                 int *results);
/* The same; flags: ENGINE_INQ_RECORD says fn will call
 * engine_history_add_row for the rows, so the batch prefetches each
 * device's history ring too (head, then the cell the add will rewrite),
 * overlapping those misses across the batch. A hint: same results. */
void engine_inquire_device_batch_ex(engine_t *e, const struct engine_key *keys,
                                    size_t n, engine_row_fn fn, void *arg,
                                    int *results, unsigned flags);

/* Device metadata without rows: owner and prefs (fn sees a row with no URI
 * or UTI). Returns 0 or fn's nonzero value; -ENOENT if unknown. */
int engine_device_info(engine_t *e, const void *dev, size_t dev_len,
                       engine_row_fn fn, void *arg);

/* Visits every row: for snapshots and EXPORT. *cursor starts at 0 and is
 * 0 again when done; at most max rows per call. Every row present for the
 * whole of an iteration is visited exactly once, even across a resize;
 * rows changed meanwhile may be visited in their old or new state. Returns
 * the rows visited in this call (or fn's nonzero value; the cursor then
 * resumes at the stopped device). A device's rows are never split across
 * calls, so a call visits more than max rows only when a single device has
 * more than max rows. Visiting order is by XXH3 of the device ID. */
int engine_iterate(engine_t *e, uint64_t *cursor, size_t max,
                   engine_row_fn fn, void *arg);

/* Visits up to max rows whose expires_at is in (0, now]: the store then
 * removes each with its own LSN (an expiry is logged like a demap). */
int engine_collect_expired(engine_t *e, uint32_t now, size_t max,
                           engine_row_fn fn, void *arg);

void engine_stats(engine_t *e, struct engine_stats *st);

/* --- writers (one at a time) --------------------------------------------- */

struct engine_map_req {
    const void *dev;   size_t dev_len;
    const void *uri;   size_t uri_len;
    const void *uti;   size_t uti_len;
    const void *owner; size_t owner_len; /* 0: keep the device's owner */
    uint32_t expires_at;                 /* 0 = never */
    uint64_t cas;                        /* 0, or the row's LSN must equal it */
};

/* Maps a row at LSN lsn. Returns 0 if created, 1 if the same row already
 * existed (then nothing changes and *row_lsn is the existing row's LSN),
 * -EEXIST if the binding belongs to another device or CAS mismatched,
 * -EINVAL, -ENOMEM. *row_lsn (may be NULL) gets the row's LSN. */
int engine_map(engine_t *e, const struct engine_map_req *rq, uint64_t lsn,
               uint64_t *row_lsn);

/* Bulk loads (a snapshot loader; writer lane only). engine_reserve grows
 * the indexes at once for about devices/rows more keys, instead of the
 * online doubling a load of that size would go through, and keeps that
 * size as a floor the indexes never shrink below (as initial_devices): 0
 * or -ENOMEM (nothing changed). engine_map_prefetch starts loading the index slots
 * engine_map(rq) will probe, so a caller that knows its next maps overlaps
 * their cache misses; a hint, no effect on results. */
int  engine_reserve(engine_t *e, size_t devices, size_t rows);
void engine_map_prefetch(engine_t *e, const struct engine_map_req *rq);
/* n rows of one new device (rq[i].dev all equal) at lsn[i]: the same
 * results (res[i]) and final state as n engine_map calls in order, but when
 * the device is new, its URIs known and no binding taken, its record is
 * built once instead of once per row; otherwise it makes those calls. */
void engine_map_run(engine_t *e, const struct engine_map_req *rq,
                    const uint64_t *lsn, size_t n, int *res);

/* Removes one row: 0, or -ENOENT if absent, -EEXIST on CAS mismatch.
 * on_removed (may be NULL; its return value is ignored) sees each removed
 * row just before it goes. Removal never fails on mem_limit; -ENOMEM only
 * if the allocator itself fails (then nothing changed). */
int engine_demap(engine_t *e, const void *dev, size_t dev_len,
                 const void *uri, size_t uri_len, const void *uti,
                 size_t uti_len, uint64_t cas, uint64_t lsn,
                 engine_row_fn on_removed, void *arg);
/* Each returns the number of rows removed (>= 1) or -ENOENT. */
int engine_demap_device(engine_t *e, const void *dev, size_t dev_len,
                        uint64_t lsn, engine_row_fn on_removed, void *arg);
int engine_demap_binding(engine_t *e, const void *uri, size_t uri_len,
                         const void *uti, size_t uti_len, uint64_t lsn,
                         engine_row_fn on_removed, void *arg);
int engine_demap_service(engine_t *e, const void *uri, size_t uri_len,
                         uint64_t lsn, engine_row_fn on_removed, void *arg);
/* The same, for the devices pick accepts only (it sees each device's
 * preferences blob, len 0: none; it must decide from them alone, as a log
 * replay decides again): a device it refuses keeps its rows of the URI.
 * -ENOENT when no row was removed. pick NULL: every device. */
typedef bool (*engine_dev_pick_fn)(void *ctx, const uint8_t *prefs, uint32_t prefs_len);
int engine_demap_service_if(engine_t *e, const void *uri, size_t uri_len,
                            uint64_t lsn, engine_dev_pick_fn pick, void *pctx,
                            engine_row_fn on_removed, void *arg);

/* Sets (len > 0) or clears (len == 0) a device's preferences blob, opaque
 * to the engine. -ENOENT if the device has no rows. */
int engine_set_prefs(engine_t *e, const void *dev, size_t dev_len,
                     const void *prefs, size_t len, uint64_t lsn);

/* --- history (X.1363 transparency), bounded ring per device ------------- */

enum engine_hist_event { ENGINE_H_MAP = 1, ENGINE_H_DEMAP = 2,
                         ENGINE_H_INQUIRY = 3, ENGINE_H_EXPIRY = 4 };
struct engine_hist {
    uint64_t micros;       /* unix microseconds */
    uint8_t event;         /* enum engine_hist_event */
    const uint8_t *principal; uint16_t principal_len;
    const uint8_t *uri;       uint16_t uri_len;
    const uint8_t *uti;       uint16_t uti_len;
    /* Logged entries (the store's map/demap/expiry): the change's LSN and
     * the entry's index within that change (a demap removing several rows
     * adds one entry per row). 0: not logged (inquiries; readers see 0).
     * Each ring keeps the key (lsn, part) of the newest logged entry it was
     * given; adding a logged entry whose key is not above it does nothing,
     * so replaying the log over a snapshot never duplicates an entry.
     * Logged entries of one device must come in key order (the single
     * writer lane gives that). */
    uint64_t lsn;
    uint32_t part;
};
typedef int (*engine_hist_fn)(void *arg, const struct engine_hist *h);
/* Any thread. Keeps the newest history_len entries (returns 0 and keeps
 * nothing when history_len is 0); -ENOENT if the device is unknown;
 * -ENOMEM if the memory limit refuses the room the entry needs (a ring's
 * cells come in segments of 2, 2, 4, 8 ... up to history_len as entries
 * come; an entry over 64 bytes may need an overflow buffer): the ring then
 * keeps what it had. With history_len > 0 a device record outlives its last row
 * (it keeps its history, owner and prefs), so a user can still see who had
 * its data after a demap. */
int engine_history_add(engine_t *e, const void *dev, size_t dev_len,
                       const struct engine_hist *h);
/* The same, for the device of a row an engine_row_fn is visiting: call it
 * only from inside that callback (the read-side critical section of
 * engine_inquire_*), with the row it was given. It skips the second device
 * lookup, so a server can record an inquiry as it answers it. */
int engine_history_add_row(engine_t *e, const struct engine_row *row,
                           const struct engine_hist *h);
/* Newest first, at most max entries; returns the number visited. The
 * callback's pointers are valid only during the call (entries are copied
 * out of rings that adders rewrite in place). */
int engine_history_get(engine_t *e, const void *dev, size_t dev_len,
                       size_t max, engine_hist_fn fn, void *arg);

/* --- whole device records: snapshots ----------------------------------- */

/* One device record as engine_iterate_devices shows it. Pointers valid only
 * during the callback. */
struct engine_device {
    const uint8_t *device;  uint16_t device_len;
    const uint8_t *owner;   uint16_t owner_len;  /* 0: no owner */
    const uint8_t *prefs;   uint32_t prefs_len;  /* 0: none */
    uint32_t rows;          /* 0: a record kept for its history */
    const void *rec;        /* engine-private: for engine_device_history */
};
typedef int (*engine_device_fn)(void *arg, const struct engine_device *d);

/* engine_iterate over device records, including those without rows (kept
 * with history_len > 0): for each record, dev_fn (may be NULL) sees its
 * owner and prefs, then row_fn (may be NULL) each of its rows, all from one
 * version of the record. Cursor, max and order as engine_iterate (a record
 * without rows counts as one row); a nonzero return of either callback
 * stops the visit and the cursor resumes at that device. A reader. */
int engine_iterate_devices(engine_t *e, uint64_t *cursor, size_t max,
                           engine_device_fn dev_fn, engine_row_fn row_fn,
                           void *arg);

/* Only from inside a dev_fn: visits the history entries of that device,
 * oldest first (entries' lsn/part are 0: the ring keeps one key, not one
 * per entry), and stores in *lsn and *part (may be NULL) the key of the
 * newest logged entry the ring was given, consistent with the entries:
 * the ring's adders wait while this runs, so fn must only copy (no
 * allocation, no blocking). Returns the entries visited or fn's nonzero
 * value; 0 when history_len is 0. */
int engine_device_history(engine_t *e, const struct engine_device *d,
                          engine_hist_fn fn, void *arg, uint64_t *lsn,
                          uint32_t *part);

/* A writer (one at a time, like engine_map): restores a device record's
 * metadata and history from a snapshot. Creates the record without rows
 * if it is unknown; with meta set, gives it owner and prefs (else keeps
 * what it has); appends hist[0..nhist) (oldest first, lsn/part ignored)
 * to its ring; raises the ring's logged key to (hist_lsn, hist_part).
 * With history_len 0 the engine keeps neither history nor records without
 * rows: returns 0 and changes nothing. 0, -EINVAL, -ENOMEM (nothing
 * changed, unless entries were appended before it). */
struct engine_device_load {
    const void *dev;   size_t dev_len;
    const void *owner; size_t owner_len;
    const void *prefs; size_t prefs_len;
    int meta;                          /* 1: set owner and prefs */
    const struct engine_hist *hist;    /* oldest first */
    size_t nhist;
    uint64_t hist_lsn;                 /* the ring's newest logged key */
    uint32_t hist_part;
};
int engine_device_restore(engine_t *e, const struct engine_device_load *d);

#ifdef __cplusplus
}
#pragma GCC diagnostic pop
#endif
#endif /* ICS_ENGINE_H */
