/*
 * store.c — the store: writer lane, group commit, recovery, snapshots,
 * expiry sweep (contract in store.h, formats in wal.h and snap.h).
 *
 * Threads and locks:
 *   lane     (mutex) the engine's one writer lane: LSN assignment, engine
 *            change, record append to the open batch, listener, all in one
 *            critical section so the engine and the log see one order.
 *   commit   thread: swaps the batch out under lane, writes it through the
 *            log (log.h), fdatasyncs, then calls the done callbacks.
 *   sweep    thread: engine_collect_expired as a reader, then each expiry
 *            through the lane like any change.
 *   snapshot thread: fuzzy snapshot through engine_iterate (a reader).
 *   dmu      (mutex) guards durable_lsn waits of the snapshot thread.
 * Counters read by store_stats from any thread are atomics (relaxed: they
 * are statistics, nothing is ordered by them).
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "log.h"
#include "seal.h"
#include "snap.h"
#include "wal.h"
#include "wal_log.h"

#define SWEEP_BATCH 256

struct waiter {
    uint64_t lsn;
    store_done_fn done;
    void *arg;
};

struct wvec { struct waiter *v; size_t n, cap; };
struct bytes { uint8_t *p; size_t n, cap; };

struct store {
    engine_t *e;
    struct store_config cfg;
    char *dir;
    const struct store_io *io;
    int lock_fd;
    struct seal seal;
    void *log;
    const struct store_log_ops *lops;
    struct { const struct store_aux_ops *ops; void *ctx; } aux[256];
    store_change_fn listener;
    void *listener_arg;
    store_prefs_filter_fn prefs_filter; /* lane; NULL: every device allows */
    int crash_k;
    unsigned crash_seed;

    pthread_mutex_t lane;
    pthread_cond_t work_cv;        /* lane: a batch or waiter appeared, or stop */
    uint64_t last_lsn;             /* lane (atomic for stats) */
    struct bytes batch;            /* lane: records of the open batch */
    uint64_t batch_first;
    struct wvec waiters;           /* lane: done callbacks of the open batch */
    struct bytes removed;          /* lane: rows a demap removed (scratch) */
    const struct wal_change *cur;  /* lane: the demap being applied, and */
    uint64_t cur_lsn;              /* its LSN and the index of its next */
    uint32_t cur_part;             /* history entry (on_removed) */
    int stopping;                  /* lane */
    int started, recovered;

    pthread_mutex_t dmu;
    pthread_cond_t durable_cv;
    uint64_t durable_lsn;          /* atomic; written under dmu */
    uint64_t written_lsn;          /* atomic: last LSN the commit thread wrote */
    int read_only;                 /* atomic */

    pthread_t commit_th, sweep_th, snap_th, sync_th;
    pthread_mutex_t smu;           /* snapshot requests */
    pthread_cond_t snap_cv;
    int snap_req, snap_stop, snap_running, sync_stop;
    pthread_cond_t sync_cv;        /* smu: the relaxed syncer sleeps on it */
    struct wvec snap_waiters;      /* smu */
    pthread_cond_t sweep_cv;       /* smu: sweep sleeps on it */

    /* stats (atomics) */
    uint64_t wal_records, syncs, sync_us, batch_max, snapshots, snapshot_lsn,
        snapshot_bytes, expired, recovery_us, recovered_records, log_at_snapshot,
        history_dropped;
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)

/* --- small helpers --------------------------------------------------------- */

static uint64_t real_clock(void *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_us(store_t *s) { return s->cfg.clock_us(s->cfg.clock_ctx); }

/* The writer lane. A caller in the engine's loop mode (the server's event
 * loops: engine.h) holds a read section open, and the lane's holder may
 * wait for a grace period (the engine's retire path when memory runs out):
 * so a caller about to block here closes its section first, and reopens
 * it once it holds the lane. Callers hold no engine pointer across a store
 * call (they pass request bytes), so closing it is safe. Uncontended, this
 * is one trylock. */
static void lane_lock(store_t *s)
{
    if (pthread_mutex_trylock(&s->lane) == 0)
        return;
    bool loop = engine_thread_loop_end(s->e);
    pthread_mutex_lock(&s->lane);
    if (loop)
        engine_thread_loop_begin(s->e);
}

static void default_log(void *ctx, enum store_log_level lvl, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (lvl <= STORE_LOG_WARN)
        fprintf(stderr, "store %s: %s\n", names[lvl], msg);
}

static void slog(store_t *s, enum store_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void slog(store_t *s, enum store_log_level lvl, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.log_ctx, lvl, msg);
}

/* White-box crash points for tests/crash: ICS_CRASH_POINTS=k aborts with
 * probability 1/k at each marked point. Read once at store_open; the one
 * process-wide copy is fine because only the crash writer sets it. */
static int crash_k_global;
static const char *crash_at_global;   /* ICS_CRASH_AT: only points naming it */
static uint64_t crash_rng;            /* xorshift state; races only blur a test dice */
static void crash_point(const char *where)
{
    int k = __atomic_load_n(&crash_k_global, __ATOMIC_RELAXED);
    if (k <= 0 || (crash_at_global && !strstr(where, crash_at_global)))
        return;
    /* relaxed: a dice roll; threads may share a draw, which is harmless. */
    uint64_t x = __atomic_load_n(&crash_rng, __ATOMIC_RELAXED);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    __atomic_store_n(&crash_rng, x, __ATOMIC_RELAXED);
    if (x % (uint64_t)k == 0) {
        fprintf(stderr, "crash point: %s\n", where);
        abort();
    }
}

static int bytes_reserve(struct bytes *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return 0;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->n + extra)
        c *= 2;
    uint8_t *p = realloc(b->p, c);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = c;
    return 0;
}

static int wvec_push(struct wvec *w, uint64_t lsn, store_done_fn done, void *arg)
{
    if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 64;
        struct waiter *v = realloc(w->v, c * sizeof(*v));
        if (!v)
            return -ENOMEM;
        w->v = v;
        w->cap = c;
    }
    w->v[w->n++] = (struct waiter){lsn, done, arg};
    return 0;
}

/* --- applying a change (live and replay share this) ----------------------- */

static void history(store_t *s, const struct engine_row *row, uint8_t ev,
                    const struct wal_bytes *actor, uint64_t micros, uint64_t lsn,
                    uint32_t part);

/* Records each removed row's history entry at once, and copies the row into
 * s->removed so the listener runs after the engine call returns (not inside
 * its callback). The entry goes in here because the engine calls this
 * before it publishes the record without the row: a snapshot that sees the
 * row gone then also sees its entry (recovery replays that demap as a
 * no-op and could not add the entry any more). */
static int on_removed(void *arg, const struct engine_row *r)
{
    store_t *s = arg;
    const struct wal_change *ch = s->cur;
    history(s, r, ch->type == WAL_EXPIRE ? ENGINE_H_EXPIRY : ENGINE_H_DEMAP, &ch->actor,
            ch->micros, s->cur_lsn, s->cur_part++);
    /* The prefs go along: the listener decides from them who may see the
     * row's DEMAPPED event (a tpsp the device's preferences refuse may not). */
    size_t need = sizeof(struct engine_row) + r->device_len + r->owner_len + r->uri_len +
                  r->uti_len + r->prefs_len + 8;
    if (bytes_reserve(&s->removed, need) < 0)
        return 0; /* the listener misses this row, the change does not */
    struct engine_row c = *r;
    uint8_t *p = s->removed.p + s->removed.n + sizeof(c);
    memcpy(p, r->device, r->device_len); c.device = p; p += r->device_len;
    if (r->owner_len) memcpy(p, r->owner, r->owner_len);
    c.owner = p; p += r->owner_len;
    memcpy(p, r->uri, r->uri_len); c.uri = p; p += r->uri_len;
    memcpy(p, r->uti, r->uti_len); c.uti = p; p += r->uti_len;
    if (r->prefs_len) memcpy(p, r->prefs, r->prefs_len);
    c.prefs = r->prefs_len ? p : NULL; p += r->prefs_len;
    memcpy(s->removed.p + s->removed.n, &c, sizeof(c));
    s->removed.n += (size_t)(p - (s->removed.p + s->removed.n));
    s->removed.n = (s->removed.n + 7) & ~(size_t)7;
    return 0;
}

static void notify(store_t *s, enum store_change_type t, const struct engine_row *row,
                   const struct wal_bytes *actor, uint64_t lsn, int replay)
{
    if (!s->listener)
        return;
    struct store_change c = {t, row, actor->p, (uint16_t)actor->n, lsn, replay};
    s->listener(s->listener_arg, &c);
}

/* A logged change's entry: its key (lsn, part) makes the ring ignore it
 * when it already holds it (replay over a fuzzy snapshot). */
static void history(store_t *s, const struct engine_row *row, uint8_t ev,
                    const struct wal_bytes *actor, uint64_t micros, uint64_t lsn,
                    uint32_t part)
{
    struct engine_hist h = {
        .micros = micros, .event = ev, .principal = actor->p,
        .principal_len = (uint16_t)actor->n, .uri = row->uri, .uri_len = row->uri_len,
        .uti = row->uti, .uti_len = row->uti_len, .lsn = lsn, .part = part,
    };
    if (engine_history_add(s->e, row->device, row->device_len, &h) != -ENOMEM)
        return;
    /* The change is applied and logged; only its history entry is lost:
     * the memory limit refused the ring room for it. Counted (STAT wal
     * history_dropped) and said at the 1st, 2nd, 4th, 8th ... drop, so a
     * server at its limit reports it without flooding its log. */
    uint64_t n = ADD(s->history_dropped, 1) + 1;
    if ((n & (n - 1)) == 0)
        slog(s, STORE_LOG_WARN,
             "history entry of LSN %llu not kept: the engine's memory limit refused its ring "
             "room (%llu entries dropped so far)",
             (unsigned long long)lsn, (unsigned long long)n);
}

/* WAL_DEMAP_SERVICE_PREFS: the engine asks per device; the filter decides
 * from the device's preferences, the record's URI and its time, so the
 * replay of the record decides the same. */
struct prefs_pick {
    store_prefs_filter_fn fn;
    const void *uri;
    size_t ulen;
    uint64_t micros;
};
static bool prefs_pick(void *ctx, const uint8_t *prefs, uint32_t len)
{
    const struct prefs_pick *pk = ctx;
    return pk->fn(prefs, len, pk->uri, pk->ulen, pk->micros);
}

/* Applies c at lsn. cas only live (ignored on replay). Returns the engine's
 * result; *row_lsn for a map that found the same row. */
static int apply(store_t *s, const struct wal_change *c, uint64_t lsn, uint64_t cas,
                 int replay, uint64_t *row_lsn)
{
    int r;
    s->removed.n = 0;
    s->cur = c;
    s->cur_lsn = lsn;
    s->cur_part = 0;
    switch (c->type) {
    case WAL_MAP: {
        struct engine_map_req rq = {
            .dev = c->dev.p, .dev_len = c->dev.n, .uri = c->uri.p, .uri_len = c->uri.n,
            .uti = c->uti.p, .uti_len = c->uti.n, .owner = c->owner.p,
            .owner_len = c->owner.n, .expires_at = c->expires_at, .cas = cas,
        };
        r = engine_map(s->e, &rq, lsn, row_lsn);
        if (r == 0 || (replay && r == 1)) {
            struct engine_row row = {
                .device = c->dev.p, .device_len = (uint16_t)c->dev.n,
                .owner = c->owner.p, .owner_len = (uint16_t)c->owner.n,
                .uri = c->uri.p, .uri_len = (uint16_t)c->uri.n,
                .uti = c->uti.p, .uti_len = (uint16_t)c->uti.n,
                .expires_at = c->expires_at, .lsn = lsn,
            };
            history(s, &row, ENGINE_H_MAP, &c->actor, c->micros, lsn, 0);
            notify(s, STORE_C_MAP, &row, &c->actor, lsn, replay);
        }
        return r;
    }
    case WAL_DEMAP:
    case WAL_EXPIRE:
        r = engine_demap(s->e, c->dev.p, c->dev.n, c->uri.p, c->uri.n, c->uti.p, c->uti.n,
                         cas, lsn, on_removed, s);
        if (r == 0)
            r = 1; /* store.h counts rows removed: a demap removes one */
        break;
    case WAL_DEMAP_DEVICE:
        r = engine_demap_device(s->e, c->dev.p, c->dev.n, lsn, on_removed, s);
        break;
    case WAL_DEMAP_BINDING:
        r = engine_demap_binding(s->e, c->uri.p, c->uri.n, c->uti.p, c->uti.n, lsn,
                                 on_removed, s);
        break;
    case WAL_DEMAP_SERVICE:
        r = engine_demap_service(s->e, c->uri.p, c->uri.n, lsn, on_removed, s);
        break;
    case WAL_DEMAP_SERVICE_PREFS: {
        struct prefs_pick pk = {s->prefs_filter, c->uri.p, c->uri.n, c->micros};
        r = engine_demap_service_if(s->e, c->uri.p, c->uri.n, lsn,
                                    pk.fn ? prefs_pick : NULL, &pk, on_removed, s);
        break;
    }
    case WAL_PREFS: {
        r = engine_set_prefs(s->e, c->dev.p, c->dev.n, c->data.p, c->data.n, lsn);
        if (r >= 0) {
            struct engine_row row = {
                .device = c->dev.p, .device_len = (uint16_t)c->dev.n,
                .prefs = c->data.p, .prefs_len = (uint32_t)c->data.n, .lsn = lsn,
            };
            notify(s, STORE_C_PREFS, &row, &c->actor, lsn, replay);
        }
        return r;
    }
    case WAL_AUX: {
        if (!s->aux[c->aux_kind].ops)
            return -ENOENT;
        return s->aux[c->aux_kind].ops->apply(s->aux[c->aux_kind].ctx, c->data.p,
                                              c->data.n, lsn);
    }
    default:
        return -EINVAL;
    }
    /* The demaps: events per removed row (history went in on_removed). */
    int expire = c->type == WAL_EXPIRE;
    for (size_t off = 0; off < s->removed.n;) {
        struct engine_row row;
        memcpy(&row, s->removed.p + off, sizeof(row));
        notify(s, expire ? STORE_C_EXPIRE : STORE_C_DEMAP, &row, &c->actor, lsn, replay);
        off += sizeof(row) + row.device_len + row.owner_len + row.uri_len + row.uti_len +
               row.prefs_len;
        off = (off + 7) & ~(size_t)7;
    }
    return r;
}

/* --- the writer lane -------------------------------------------------------- */

/* Appends c's record (plaintext; the log seals and checksums it). */
static int batch_add(store_t *s, const struct wal_change *c, uint64_t lsn)
{
    size_t n = wal_change_size(c);
    int r = bytes_reserve(&s->batch, WAL_REC_HDR + n);
    if (r < 0)
        return r;
    uint8_t *h = s->batch.p + s->batch.n;
    memset(h, 0, WAL_REC_HDR);
    wal_put32(h, (uint32_t)n);
    wal_put64(h + 8, lsn);
    h[16] = c->type;
    wal_change_encode(h + WAL_REC_HDR, c);
    if (s->batch.n == 0)
        s->batch_first = lsn;
    s->batch.n += WAL_REC_HDR + n;
    return 0;
}

/* One change through the lane. Returns the engine's result (>= 0) or a
 * negative errno; on >= 0 done will be called once from the commit thread. */
static int change(store_t *s, struct wal_change *c, uint64_t cas, store_done_fn done,
                  void *arg)
{
    if (!s->started && !s->recovered)
        return -EINVAL;
    if (__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE))
        return -EROFS;
    c->micros = now_us(s);
    lane_lock(s);
    if (__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE) || s->stopping) {
        pthread_mutex_unlock(&s->lane);
        return -EROFS;
    }
    /* Reserve room first so that once the engine has changed, logging the
     * change cannot fail for want of memory. */
    int r = bytes_reserve(&s->batch, WAL_REC_HDR + wal_change_size(c));
    if (r == 0 && s->waiters.n == s->waiters.cap)
        r = wvec_push(&s->waiters, 0, NULL, NULL) == 0 ? (s->waiters.n--, 0) : -ENOMEM;
    if (r < 0) {
        pthread_mutex_unlock(&s->lane);
        return r;
    }
    uint64_t lsn = s->last_lsn + 1, row_lsn = 0;
    r = apply(s, c, lsn, cas, 0, &row_lsn);
    if (r >= 0) {
        if (c->type == WAL_MAP && r == 1) {
            /* Same row again: nothing logged, but done still waits until
             * that row's own LSN is durable. */
            wvec_push(&s->waiters, row_lsn, done, arg);
        } else {
            batch_add(s, c, lsn);
            __atomic_store_n(&s->last_lsn, lsn, __ATOMIC_RELAXED);
            wvec_push(&s->waiters, lsn, done, arg);
        }
        pthread_cond_signal(&s->work_cv);
    }
    pthread_mutex_unlock(&s->lane);
    return r;
}

static void nodone(void *arg, int status, uint64_t lsn) {}

int store_map(store_t *s, const struct engine_map_req *rq, const void *actor,
              size_t actor_len, store_done_fn done, void *arg)
{
    if (!rq || actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = WAL_MAP};
    c.dev = (struct wal_bytes){rq->dev, rq->dev_len};
    c.uri = (struct wal_bytes){rq->uri, rq->uri_len};
    c.uti = (struct wal_bytes){rq->uti, rq->uti_len};
    c.owner = (struct wal_bytes){rq->owner, rq->owner_len};
    c.actor = (struct wal_bytes){actor, actor_len};
    c.expires_at = rq->expires_at;
    if (s->cfg.max_row_age) {
        /* Retention as an expiry bound fixed at map time: the row's own
         * creation time needs no extra field, and the logged expires_at is
         * what replay restores. */
        uint64_t cap = now_us(s) / 1000000u + s->cfg.max_row_age;
        if (cap > UINT32_MAX)
            cap = UINT32_MAX;
        if (c.expires_at == 0 || c.expires_at > cap)
            c.expires_at = (uint32_t)cap;
    }
    if (rq->dev_len > UINT16_MAX || rq->uri_len > UINT16_MAX || rq->uti_len > UINT16_MAX ||
        rq->owner_len > UINT16_MAX)
        return -EINVAL;
    return change(s, &c, rq->cas, done ? done : nodone, arg);
}

int store_demap(store_t *s, const void *dev, size_t dev_len, const void *uri,
                size_t uri_len, const void *uti, size_t uti_len, uint64_t cas,
                const void *actor, size_t actor_len, store_done_fn done, void *arg)
{
    if (dev_len > UINT16_MAX || uri_len > UINT16_MAX || uti_len > UINT16_MAX ||
        actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = WAL_DEMAP};
    c.dev = (struct wal_bytes){dev, dev_len};
    c.uri = (struct wal_bytes){uri, uri_len};
    c.uti = (struct wal_bytes){uti, uti_len};
    c.actor = (struct wal_bytes){actor, actor_len};
    return change(s, &c, cas, done ? done : nodone, arg);
}

int store_demap_device(store_t *s, const void *dev, size_t dev_len, const void *actor,
                       size_t actor_len, store_done_fn done, void *arg)
{
    if (dev_len > UINT16_MAX || actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = WAL_DEMAP_DEVICE};
    c.dev = (struct wal_bytes){dev, dev_len};
    c.actor = (struct wal_bytes){actor, actor_len};
    return change(s, &c, 0, done ? done : nodone, arg);
}

int store_demap_binding(store_t *s, const void *uri, size_t uri_len, const void *uti,
                        size_t uti_len, const void *actor, size_t actor_len,
                        store_done_fn done, void *arg)
{
    if (uri_len > UINT16_MAX || uti_len > UINT16_MAX || actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = WAL_DEMAP_BINDING};
    c.uri = (struct wal_bytes){uri, uri_len};
    c.uti = (struct wal_bytes){uti, uti_len};
    c.actor = (struct wal_bytes){actor, actor_len};
    return change(s, &c, 0, done ? done : nodone, arg);
}

static int demap_service(store_t *s, uint8_t type, const void *uri, size_t uri_len,
                         const void *actor, size_t actor_len, store_done_fn done, void *arg)
{
    if (uri_len > UINT16_MAX || actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = type};
    c.uri = (struct wal_bytes){uri, uri_len};
    c.actor = (struct wal_bytes){actor, actor_len};
    return change(s, &c, 0, done ? done : nodone, arg);
}

int store_demap_service(store_t *s, const void *uri, size_t uri_len, const void *actor,
                        size_t actor_len, store_done_fn done, void *arg)
{
    return demap_service(s, WAL_DEMAP_SERVICE, uri, uri_len, actor, actor_len, done, arg);
}

int store_demap_service_prefs(store_t *s, const void *uri, size_t uri_len, const void *actor,
                              size_t actor_len, store_done_fn done, void *arg)
{
    return demap_service(s, WAL_DEMAP_SERVICE_PREFS, uri, uri_len, actor, actor_len, done, arg);
}

void store_set_prefs_filter(store_t *s, store_prefs_filter_fn fn)
{
    lane_lock(s);
    s->prefs_filter = fn;
    pthread_mutex_unlock(&s->lane);
}

int store_set_prefs(store_t *s, const void *dev, size_t dev_len, const void *prefs,
                    size_t len, const void *actor, size_t actor_len, store_done_fn done,
                    void *arg)
{
    if (dev_len > UINT16_MAX || len > WAL_REC_MAX / 2 || actor_len > ENGINE_NAME_MAX)
        return -EINVAL;
    struct wal_change c = {.type = WAL_PREFS};
    c.dev = (struct wal_bytes){dev, dev_len};
    c.data = (struct wal_bytes){prefs, len};
    c.actor = (struct wal_bytes){actor, actor_len};
    return change(s, &c, 0, done ? done : nodone, arg);
}

int store_aux(store_t *s, uint8_t kind, const void *p, size_t n, store_done_fn done,
              void *arg)
{
    if (n > WAL_REC_MAX / 2 || !s->aux[kind].ops)
        return -EINVAL;
    struct wal_change c = {.type = WAL_AUX, .aux_kind = kind};
    c.data = (struct wal_bytes){p, n};
    return change(s, &c, 0, done ? done : nodone, arg);
}

/* --- commit thread ------------------------------------------------------- */

static void set_durable(store_t *s, uint64_t lsn)
{
    pthread_mutex_lock(&s->dmu);
    if (lsn > s->durable_lsn)
        __atomic_store_n(&s->durable_lsn, lsn, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&s->durable_cv);
    pthread_mutex_unlock(&s->dmu);
}

static void go_read_only(store_t *s, const char *what, int err)
{
    if (!__atomic_exchange_n(&s->read_only, 1, __ATOMIC_ACQ_REL))
        slog(s, STORE_LOG_ERROR, "%s failed (%s): the store is read-only until restart; "
             "changes of the failed batch were not acknowledged", what, strerror(-err));
    pthread_mutex_lock(&s->dmu);
    pthread_cond_broadcast(&s->durable_cv);
    pthread_mutex_unlock(&s->dmu);
}

static void maybe_request_snapshot(store_t *s)
{
    uint64_t bytes, segs;
    s->lops->usage(s->log, &bytes, &segs);
    if (bytes > LOAD(s->log_at_snapshot) + s->cfg.snapshot_log_bytes) {
        pthread_mutex_lock(&s->smu);
        if (!s->snap_req && !s->snap_running) {
            s->snap_req = 1;
            pthread_cond_signal(&s->snap_cv);
        }
        pthread_mutex_unlock(&s->smu);
    }
}

static void count_batch(store_t *s, const struct bytes *out)
{
    size_t cnt = 0;
    for (size_t off = 0; off < out->n; cnt++)
        off += WAL_REC_HDR + wal_get32(out->p + off);
    ADD(s->wal_records, cnt);
    if (cnt > LOAD(s->batch_max))
        STORE(s->batch_max, cnt);
}

static int sync_log(store_t *s, uint64_t upto)
{
    uint64_t t0 = mono_us();
    int r = s->lops->sync(s->log);
    ADD(s->sync_us, mono_us() - t0);
    ADD(s->syncs, 1);
    if (r < 0)
        go_read_only(s, "WAL fdatasync", r);
    else
        set_durable(s, upto);
    return r;
}

/* The commit thread. STORE_SYNC: write the batch, fdatasync, then done.
 * STORE_RELAXED: write the batch, then done; the syncer thread fdatasyncs
 * every relaxed_window_ms, so a slow sync never holds up the writes. */
static void *commit_main(void *arg)
{
    store_t *s = arg;
    struct bytes out = {0};
    struct wvec acks = {0};
    int relaxed = s->cfg.durability == STORE_RELAXED;
    size_t prev = 0;   /* changes the previous batch acknowledged */
    lane_lock(s);
    for (;;) {
        while (!s->batch.n && !s->waiters.n && !s->stopping)
            pthread_cond_wait(&s->work_cv, &s->lane);
        if (s->stopping && !s->batch.n && !s->waiters.n)
            break;
        /* Commit delay: right after a batch's acknowledgements most of its
         * writers are still on their way back with their next change. If
         * the open batch holds under half as many, wait for them up to half
         * a sync time (at most 1 ms): one fsync then serves them all instead
         * of two. A lone writer (prev <= 1) never waits. */
        if (!relaxed && prev > 1 && s->waiters.n < prev / 2 && !s->stopping) {
            uint64_t syncs = LOAD(s->syncs), avg = syncs ? LOAD(s->sync_us) / syncs : 0;
            uint64_t wait_us = avg / 2 < 1000 ? avg / 2 : 1000;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + wait_us * 1000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            while (wait_us && s->waiters.n < prev * 3 / 4 && !s->stopping &&
                   pthread_cond_timedwait(&s->work_cv, &s->lane, &ts) == 0) {
            }
        }
        /* Swap the open batch out: writers go on filling a fresh one while
         * this one is written and synced. */
        struct bytes b = s->batch;
        s->batch = out;
        s->batch.n = 0;
        out = b;
        struct wvec w = s->waiters;
        s->waiters = acks;
        s->waiters.n = 0;
        acks = w;
        uint64_t first = s->batch_first, last = LOAD(s->last_lsn);
        prev = acks.n;
        pthread_mutex_unlock(&s->lane);

        int r = __atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE) ? -EIO : 0;
        if (r == 0 && out.n) {
            r = s->lops->append(s->log, out.p, out.n, first);
            if (r < 0) {
                go_read_only(s, "WAL write", r);
            } else {
                count_batch(s, &out);
                /* release: the syncer that acquires it syncs after these
                 * bytes reached the file. */
                __atomic_store_n(&s->written_lsn, last, __ATOMIC_RELEASE);
            }
        }
        if (r == 0 && !relaxed && out.n)
            r = sync_log(s, last);
        /* Same-row waiters alone (no records): their rows are in a batch
         * this thread already wrote and, in STORE_SYNC, synced. */
        int status = r < 0 ? -EIO : 0;
        for (size_t i = 0; i < acks.n; i++)
            acks.v[i].done(acks.v[i].arg, status, acks.v[i].lsn);
        acks.n = 0;
        if (out.n && status == 0)
            maybe_request_snapshot(s);
        out.n = 0;
        lane_lock(s);
    }
    pthread_mutex_unlock(&s->lane);
    free(out.p);
    free(acks.v);
    return NULL;
}

/* STORE_RELAXED only: makes what the commit thread wrote durable at most
 * relaxed_window_ms later; a last sync when the store closes. */
static void *syncer_main(void *arg)
{
    store_t *s = arg;
    pthread_mutex_lock(&s->smu);
    for (;;) {
        int stop = s->sync_stop;
        if (!stop) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->cfg.relaxed_window_ms * 1000000u;
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&s->sync_cv, &s->smu, &ts);
            stop = s->sync_stop;
        }
        pthread_mutex_unlock(&s->smu);
        /* acquire: pairs with the commit thread's release of written_lsn. */
        uint64_t w = __atomic_load_n(&s->written_lsn, __ATOMIC_ACQUIRE);
        if (w > __atomic_load_n(&s->durable_lsn, __ATOMIC_ACQUIRE) &&
            !__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE))
            sync_log(s, w);
        pthread_mutex_lock(&s->smu);
        if (stop)
            break;
    }
    pthread_mutex_unlock(&s->smu);
    return NULL;
}

/* --- snapshots ---------------------------------------------------------------- */

struct snap_ctx { struct snap_writer *w; engine_t *e; };
static int snap_row_cb(void *arg, const struct engine_row *row)
{
    struct snap_ctx *c = arg;
    return snap_writer_row(c->w, row) < 0 ? -EIO : 0;
}
/* A device record: its history (and, without rows, its owner and prefs). */
static int snap_dev_cb(void *arg, const struct engine_device *d)
{
    struct snap_ctx *c = arg;
    return snap_writer_device(c->w, c->e, d) < 0 ? -EIO : 0;
}

struct aux_emit { struct snap_writer *w; uint8_t kind; int err; };
static int aux_emit(void *ectx, const void *p, size_t n)
{
    struct aux_emit *a = ectx;
    int r = snap_writer_aux(a->w, a->kind, p, n);
    if (r < 0)
        a->err = r;
    return r;
}

static void snap_path(const store_t *s, uint64_t start, const char *ext, char *out,
                      size_t n)
{
    snprintf(out, n, "%s/snap-%016llx.%s", s->dir, (unsigned long long)start, ext);
}

/* Removes every snapshot but the one starting at keep (and any *.tmp when
 * keep_tmp is 0). */
static void remove_old_snapshots(store_t *s, uint64_t keep)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return;
    struct dirent *de;
    char path[4096];
    int removed = 0;
    while ((de = readdir(d))) {
        uint64_t start;
        int is_snap = wal_parse_name(de->d_name, "snap-", "snap", &start) == 0;
        if (!is_snap && wal_parse_name(de->d_name, "snap-", "tmp", &start) < 0)
            continue;
        if (is_snap && start == keep)
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
        if (s->io->unlink(s->io->ctx, path) == 0)
            removed = 1;
    }
    closedir(d);
    if (removed)
        store_io_sync_dir(s->io, s->dir);
}

static int take_snapshot(store_t *s, uint64_t *covers)
{
    char tmp[4096], final[4096];
    lane_lock(s);
    uint64_t start = s->last_lsn;
    pthread_mutex_unlock(&s->lane);
    snap_path(s, start, "tmp", tmp, sizeof(tmp));
    snap_path(s, start, "snap", final, sizeof(final));
    struct snap_writer *w = NULL;
    int r = snap_writer_open(&w, s->io, tmp, start, now_us(s), &s->seal);
    if (r < 0)
        goto fail;
    uint64_t cursor = 0;
    struct snap_ctx sc = {w, s->e};
    do {
        r = engine_iterate_devices(s->e, &cursor, 1024, snap_dev_cb, snap_row_cb, &sc);
        if (r < 0 || (r = snap_writer_drain(w)) < 0)
            goto fail;
        if (r == 0 && cursor == 0)
            break;
        crash_point("mid-snapshot");
    } while (cursor != 0);
    /* Aux dumps under the lane: small, and consistent with their applies. */
    lane_lock(s);
    for (int k = 0; k < 256 && r >= 0; k++) {
        if (!s->aux[k].ops)
            continue;
        struct aux_emit a = {w, (uint8_t)k, 0};
        r = s->aux[k].ops->dump(s->aux[k].ctx, aux_emit, &a);
        if (a.err)
            r = a.err;
    }
    uint64_t end = s->last_lsn;
    pthread_mutex_unlock(&s->lane);
    if (r < 0)
        goto fail;
    /* Publish only what the WAL already holds durably. */
    pthread_mutex_lock(&s->dmu);
    while (__atomic_load_n(&s->durable_lsn, __ATOMIC_ACQUIRE) < end &&
           !__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE))
        pthread_cond_wait(&s->durable_cv, &s->dmu);
    pthread_mutex_unlock(&s->dmu);
    if (__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE)) {
        r = -EROFS;
        goto fail;
    }
    if ((r = snap_writer_finish(w, end)) < 0)
        goto fail;
    uint64_t bytes = snap_writer_bytes(w);
    snap_writer_close(w);
    w = NULL;
    crash_point("before snapshot rename");
    if ((r = store_io_replace(s->io, s->dir, tmp, final, crash_point)) < 0)
        goto fail;
    remove_old_snapshots(s, start);
    uint64_t lbytes, lsegs;
    r = s->lops->release(s->log, start);
    if (r < 0)
        slog(s, STORE_LOG_WARN, "snapshot %s written, but old segments not removed: %s",
             final, strerror(-r));
    s->lops->usage(s->log, &lbytes, &lsegs);
    STORE(s->log_at_snapshot, lbytes);
    STORE(s->snapshot_lsn, end);
    STORE(s->snapshot_bytes, bytes);
    ADD(s->snapshots, 1);
    slog(s, STORE_LOG_INFO, "snapshot %s: LSN %llu..%llu, %llu bytes", final,
         (unsigned long long)start, (unsigned long long)end, (unsigned long long)bytes);
    *covers = end;
    return 0;
fail:
    snap_writer_close(w);
    s->io->unlink(s->io->ctx, tmp);
    slog(s, STORE_LOG_ERROR, "snapshot at LSN %llu failed: %s", (unsigned long long)start,
         strerror(-r));
    return r;
}

static void *snap_main(void *arg)
{
    store_t *s = arg;
    engine_thread_online(s->e);
    pthread_mutex_lock(&s->smu);
    for (;;) {
        while (!s->snap_req && !s->snap_stop)
            pthread_cond_wait(&s->snap_cv, &s->smu);
        if (s->snap_stop)
            break;
        /* A request arriving while this one runs gets a snapshot of its
         * own afterwards: it may need changes this one started before. */
        struct wvec w = s->snap_waiters;
        memset(&s->snap_waiters, 0, sizeof(s->snap_waiters));
        s->snap_req = 0;
        s->snap_running = 1;
        pthread_mutex_unlock(&s->smu);
        uint64_t covers = 0;
        int r = take_snapshot(s, &covers);
        pthread_mutex_lock(&s->smu);
        s->snap_running = 0;
        pthread_mutex_unlock(&s->smu);
        for (size_t i = 0; i < w.n; i++)
            w.v[i].done(w.v[i].arg, r, covers);
        free(w.v);
        pthread_mutex_lock(&s->smu);
    }
    struct wvec w = s->snap_waiters;
    memset(&s->snap_waiters, 0, sizeof(s->snap_waiters));
    pthread_mutex_unlock(&s->smu);
    for (size_t i = 0; i < w.n; i++)
        w.v[i].done(w.v[i].arg, -ECANCELED, 0);
    free(w.v);
    engine_thread_offline(s->e);
    return NULL;
}

int store_snapshot(store_t *s, store_done_fn done, void *arg)
{
    if (!s->started)
        return -EINVAL;
    if (__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE))
        return -EROFS;
    pthread_mutex_lock(&s->smu);
    int r = wvec_push(&s->snap_waiters, 0, done ? done : nodone, arg);
    if (r == 0) {
        s->snap_req = 1;
        pthread_cond_signal(&s->snap_cv);
    }
    pthread_mutex_unlock(&s->smu);
    return r;
}

/* --- expiry sweep ------------------------------------------------------------ */

struct expired { uint8_t dev[ENGINE_ID_MAX], uri[ENGINE_URI_MAX], uti[ENGINE_ID_MAX];
                 uint16_t dl, ul, tl; uint64_t lsn; };

struct sweep_ctx { struct expired *v; size_t n; };

static int collect_cb(void *arg, const struct engine_row *r)
{
    struct sweep_ctx *c = arg;
    if (c->n >= SWEEP_BATCH || r->device_len > ENGINE_ID_MAX || r->uri_len > ENGINE_URI_MAX ||
        r->uti_len > ENGINE_ID_MAX)
        return 0;
    struct expired *x = &c->v[c->n++];
    memcpy(x->dev, r->device, r->device_len); x->dl = r->device_len;
    memcpy(x->uri, r->uri, r->uri_len); x->ul = r->uri_len;
    memcpy(x->uti, r->uti, r->uti_len); x->tl = r->uti_len;
    x->lsn = r->lsn;
    return 0;
}

static void sweep_once(store_t *s, struct sweep_ctx *c)
{
    for (int round = 0; round < 64; round++) {
        c->n = 0;
        uint32_t now = (uint32_t)(now_us(s) / 1000000u);
        engine_collect_expired(s->e, now, SWEEP_BATCH, collect_cb, c);
        if (!c->n)
            return;
        size_t gone = 0;
        for (size_t i = 0; i < c->n; i++) {
            struct expired *x = &c->v[i];
            struct wal_change ch = {.type = WAL_EXPIRE};
            ch.dev = (struct wal_bytes){x->dev, x->dl};
            ch.uri = (struct wal_bytes){x->uri, x->ul};
            ch.uti = (struct wal_bytes){x->uti, x->tl};
            /* cas = the row's LSN: a row re-mapped since collection stays. */
            int r = change(s, &ch, x->lsn, nodone, NULL);
            if (r > 0)
                gone++;
            if (r == -EROFS)
                return;
        }
        ADD(s->expired, gone);
        if (c->n < SWEEP_BATCH)
            return;
    }
}

static void *sweep_main(void *arg)
{
    store_t *s = arg;
    struct sweep_ctx c = {calloc(SWEEP_BATCH, sizeof(struct expired)), 0};
    engine_thread_online(s->e);
    pthread_mutex_lock(&s->smu);
    while (!s->snap_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->cfg.sweep_interval_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&s->sweep_cv, &s->smu, &ts);
        if (s->snap_stop)
            break;
        pthread_mutex_unlock(&s->smu);
        if (c.v && !__atomic_load_n(&s->read_only, __ATOMIC_ACQUIRE))
            sweep_once(s, &c);
        pthread_mutex_lock(&s->smu);
    }
    pthread_mutex_unlock(&s->smu);
    engine_thread_offline(s->e);
    free(c.v);
    return NULL;
}

/* --- lifecycle ------------------------------------------------------------------ */

int store_open(store_t **out, engine_t *e, const struct store_config *cfg, char *err,
               size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    *out = NULL;
    if (!e || !cfg || !cfg->dir) {
        snprintf(err, errlen, "store_open: engine and cfg->dir are required");
        return -EINVAL;
    }
    store_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->e = e;
    s->cfg = *cfg;
    s->lock_fd = -1;
    if (!s->cfg.relaxed_window_ms)
        s->cfg.relaxed_window_ms = 10;
    if (!s->cfg.segment_bytes)
        s->cfg.segment_bytes = 64u << 20;
    if (!s->cfg.snapshot_log_bytes)
        s->cfg.snapshot_log_bytes = 256u << 20;
    if (!s->cfg.sweep_interval_ms)
        s->cfg.sweep_interval_ms = 1000;
    if (!s->cfg.clock_us)
        s->cfg.clock_us = real_clock;
    if (!s->cfg.log)
        s->cfg.log = default_log;
    s->io = cfg->io ? cfg->io : store_io_default();
    s->dir = strdup(cfg->dir);
    pthread_mutex_init(&s->lane, NULL);
    pthread_mutex_init(&s->dmu, NULL);
    pthread_mutex_init(&s->smu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work_cv, &ca);
    pthread_cond_init(&s->durable_cv, &ca);
    pthread_cond_init(&s->snap_cv, &ca);
    pthread_cond_init(&s->sweep_cv, &ca);
    pthread_cond_init(&s->sync_cv, &ca);
    pthread_condattr_destroy(&ca);
    const char *ck = getenv("ICS_CRASH_POINTS");
    long kv = ck ? strtol(ck, NULL, 10) : 0;
    if (kv > 0 && kv < INT32_MAX) {
        crash_at_global = getenv("ICS_CRASH_AT");
        __atomic_store_n(&crash_rng, ((uint64_t)getpid() << 32 ^ mono_us()) | 1,
                         __ATOMIC_RELAXED);
        __atomic_store_n(&crash_k_global, (int)kv, __ATOMIC_RELAXED);
    }
    int r;
    if (!s->dir) {
        r = -ENOMEM;
        goto fail;
    }
    r = s->io->mkdir(s->io->ctx, s->dir, 0700);
    if (r < 0 && r != -EEXIST) {
        snprintf(err, errlen, "cannot create data directory %s: %s", s->dir, strerror(-r));
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/LOCK", s->dir);
    s->lock_fd = s->io->open(s->io->ctx, path, O_RDWR | O_CREAT, 0600);
    if (s->lock_fd < 0) {
        r = s->lock_fd;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(-r));
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        snprintf(err, errlen, "data directory %s is in use by another process (%s is locked)",
                 s->dir, path);
        goto fail;
    }
    if ((r = seal_init(&s->seal, s->io, cfg->key_file, err, errlen)) < 0)
        goto fail;
    struct wal_log_config wc = {
        .io = s->io, .dir = s->dir, .seal = &s->seal, .segment_bytes = s->cfg.segment_bytes,
        .truncate_corrupt = cfg->truncate_corrupt, .log = s->cfg.log,
        .log_ctx = s->cfg.log_ctx, .crash_point = crash_point,
        .now_us = s->cfg.clock_us, .clock_ctx = s->cfg.clock_ctx,
    };
    struct wal_log *wl;
    if ((r = wal_log_open(&wl, &wc)) < 0)
        goto fail;
    s->log = wl;
    s->lops = wal_log_ops();
    *out = s;
    return 0;
fail:
    store_close(s);
    return r;
}

int store_register_aux(store_t *s, uint8_t kind, const struct store_aux_ops *ops, void *ctx)
{
    if (!ops || !ops->apply || !ops->dump || s->started)
        return -EINVAL;
    if (s->aux[kind].ops)
        return -EEXIST;
    s->aux[kind].ops = ops;
    s->aux[kind].ctx = ctx;
    return 0;
}

void store_set_listener(store_t *s, store_change_fn fn, void *arg)
{
    lane_lock(s);
    s->listener = fn;
    s->listener_arg = arg;
    pthread_mutex_unlock(&s->lane);
}

static int replay_aux(void *arg, uint8_t kind, const void *p, size_t n)
{
    store_t *s = arg;
    if (!s->aux[kind].ops)
        return -ENOENT;
    return s->aux[kind].ops->apply(s->aux[kind].ctx, p, n, 0);
}

static int replay_rec(void *arg, uint64_t lsn, uint8_t type, const uint8_t *p, size_t n)
{
    store_t *s = arg;
    struct wal_change c;
    int r = wal_change_decode(p, n, type, &c);
    if (r < 0)
        return r;
    uint64_t row_lsn;
    r = apply(s, &c, lsn, 0, 1, &row_lsn);
    s->recovered_records++;
    /* Idempotent replay: after a fuzzy snapshot a record may already be in
     * effect (same row, already gone, binding moved later in the log). */
    if (r == -ENOENT && type == WAL_AUX && !s->aux[c.aux_kind].ops)
        return -ENOENT;
    if (r == -ENOENT || r == -EEXIST)
        return 0;
    return r < 0 ? r : 0;
}

static int find_newest_snapshot(store_t *s, uint64_t *start)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return -errno;
    struct dirent *de;
    int found = 0;
    char path[4096];
    while ((de = readdir(d))) {
        uint64_t st;
        if (wal_parse_name(de->d_name, "snap-", "tmp", &st) == 0) {
            /* An unfinished snapshot of a crashed run. */
            snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
            s->io->unlink(s->io->ctx, path);
            continue;
        }
        if (wal_parse_name(de->d_name, "snap-", "snap", &st) == 0 && (!found || st > *start)) {
            *start = st;
            found = 1;
        }
    }
    closedir(d);
    return found;
}

int store_recover(store_t *s, char *err, size_t errlen)
{
    char dummy[8];
    if (!err) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    if (s->recovered || s->started)
        return -EINVAL;
    uint64_t t0 = mono_us(), start = 0, last = 0;
    engine_thread_online(s->e);
    int r = find_newest_snapshot(s, &start);
    if (r < 0) {
        snprintf(err, errlen, "cannot list %s: %s", s->dir, strerror(-r));
        goto out;
    }
    if (r == 1) {
        char path[4096];
        snap_path(s, start, "snap", path, sizeof(path));
        struct store_io_buf fb;
        r = store_io_load(s->io, path, &fb);
        if (r < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(-r));
            goto out;
        }
        const uint8_t *buf = fb.p;
        uint64_t size = fb.n;
        struct snap_info info;
        char why[512];
        /* Check the whole file before changing the engine. */
        r = snap_load_mem(NULL, buf, size, &s->seal, NULL, NULL, &info, why, sizeof(why));
        if (r == 0) {
            /* Size the indexes for what the image holds at once, instead of
             * doubling them online ~log2(rows) times during the load. A
             * hint: if it cannot, the load grows them as usual. */
            (void)engine_reserve(s->e, info.devices + info.dev_records, info.rows);
            r = snap_load_mem(s->e, buf, size, &s->seal, replay_aux, s, &info, why,
                              sizeof(why));
        }
        store_io_unload(s->io, &fb);
        if (r < 0) {
            if (r == -EKEYREJECTED)
                snprintf(err, errlen, "wrong key for %s", path);
            else
                snprintf(err, errlen, "snapshot %s (start LSN %llu): %s", path,
                         (unsigned long long)start, why);
            goto out;
        }
        last = info.end_lsn;
        STORE(s->snapshot_lsn, info.end_lsn);
        STORE(s->snapshot_bytes, size);
        remove_old_snapshots(s, start);
        slog(s, STORE_LOG_INFO, "loaded snapshot %s: %llu rows, LSN %llu..%llu", path,
             (unsigned long long)info.rows, (unsigned long long)start,
             (unsigned long long)info.end_lsn);
    }
    uint64_t log_last = 0;
    r = s->lops->replay(s->log, start, replay_rec, s, &log_last, err, errlen);
    if (r < 0)
        goto out;
    if (log_last > last)
        last = log_last;
    s->last_lsn = last;
    s->durable_lsn = last;
    s->written_lsn = last;
    uint64_t lb, ls;
    s->lops->usage(s->log, &lb, &ls);
    /* Only log written since the last snapshot counts toward the next. */
    STORE(s->log_at_snapshot, 0);
    if (lb > s->cfg.snapshot_log_bytes)
        STORE(s->log_at_snapshot, lb - s->cfg.snapshot_log_bytes / 2);
    STORE(s->recovery_us, mono_us() - t0);
    s->recovered = 1;
    slog(s, STORE_LOG_INFO, "recovered to LSN %llu (%llu log records replayed) in %llu us",
         (unsigned long long)last, (unsigned long long)s->recovered_records,
         (unsigned long long)(mono_us() - t0));
    r = 0;
out:
    engine_thread_offline(s->e);
    return r;
}

int store_start(store_t *s)
{
    if (!s->recovered || s->started)
        return -EINVAL;
    s->started = 1;
    if (pthread_create(&s->commit_th, NULL, commit_main, s) != 0) {
        s->started = 0;
        return -EAGAIN;
    }
    if (pthread_create(&s->snap_th, NULL, snap_main, s) != 0 ||
        pthread_create(&s->sweep_th, NULL, sweep_main, s) != 0 ||
        (s->cfg.durability == STORE_RELAXED &&
         pthread_create(&s->sync_th, NULL, syncer_main, s) != 0))
        abort(); /* cannot unwind a half-started store cleanly; never seen */
    return 0;
}

void store_close(store_t *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->smu);
        s->snap_stop = 1;
        pthread_cond_broadcast(&s->snap_cv);
        pthread_cond_broadcast(&s->sweep_cv);
        pthread_mutex_unlock(&s->smu);
        /* The snapshot thread may wait for durability: keep committing. */
        pthread_join(s->snap_th, NULL);
        pthread_join(s->sweep_th, NULL);
        lane_lock(s);
        s->stopping = 1;
        pthread_cond_signal(&s->work_cv);
        pthread_mutex_unlock(&s->lane);
        pthread_join(s->commit_th, NULL);
        if (s->cfg.durability == STORE_RELAXED) {
            pthread_mutex_lock(&s->smu);
            s->sync_stop = 1;
            pthread_cond_broadcast(&s->sync_cv);
            pthread_mutex_unlock(&s->smu);
            pthread_join(s->sync_th, NULL); /* its last sync covers everything */
        }
    } else {
        /* Never started: nothing was accepted (change() needs recovered,
         * and done callbacks need the commit thread). */
        for (size_t i = 0; i < s->waiters.n; i++)
            s->waiters.v[i].done(s->waiters.v[i].arg, -ECANCELED, s->waiters.v[i].lsn);
    }
    if (s->log)
        s->lops->close(s->log);
    seal_fini(&s->seal);
    if (s->lock_fd >= 0)
        s->io->close(s->io->ctx, s->lock_fd);
    pthread_mutex_destroy(&s->lane);
    pthread_mutex_destroy(&s->dmu);
    pthread_mutex_destroy(&s->smu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->durable_cv);
    pthread_cond_destroy(&s->snap_cv);
    pthread_cond_destroy(&s->sweep_cv);
    pthread_cond_destroy(&s->sync_cv);
    free(s->batch.p);
    free(s->waiters.v);
    free(s->removed.p);
    free(s->snap_waiters.v);
    free(s->dir);
    free(s);
}

void store_stats(store_t *s, struct store_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->last_lsn = __atomic_load_n(&s->last_lsn, __ATOMIC_RELAXED);
    st->durable_lsn = __atomic_load_n(&s->durable_lsn, __ATOMIC_RELAXED);
    s->lops->usage(s->log, &st->wal_bytes, &st->wal_segments);
    st->wal_records = LOAD(s->wal_records);
    st->syncs = LOAD(s->syncs);
    st->sync_us_total = LOAD(s->sync_us);
    st->batch_max = LOAD(s->batch_max);
    st->snapshots = LOAD(s->snapshots);
    st->snapshot_lsn = LOAD(s->snapshot_lsn);
    st->snapshot_bytes = LOAD(s->snapshot_bytes);
    st->expired = LOAD(s->expired);
    st->recovery_us = LOAD(s->recovery_us);
    st->recovered_records = LOAD(s->recovered_records);
    st->history_dropped = LOAD(s->history_dropped);
    st->read_only = __atomic_load_n(&s->read_only, __ATOMIC_RELAXED);
    st->encrypted = s->seal.on;
    st->relaxed = s->cfg.durability == STORE_RELAXED;
}
