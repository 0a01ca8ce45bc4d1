/*
 * test_engine_stress — readers on every core while one writer maps,
 * demaps and forces the table to grow and shrink, for a bounded time
 * (2 s; ICS_STRESS_SECONDS to lengthen).
 *
 * Linearizability check: the writer numbers its changes 1, 2, ... and
 * publishes the number of the last completed change in `done` (release).
 * For each tracked device it logs every version of its row set (a bitmask
 * over 32 possible rows) with the number of the change that made it. A
 * reader notes done before (c1) and after (c2) each lookup; what it saw
 * must equal a version in effect at some moment in [c1, c2 + 1] (change
 * c2 + 1 may have been published but not yet counted). Observations are
 * checked after the threads stop, against the full log. Readers also check
 * each row's bytes, LSN order, batched lookups, bindings and history adds.
 */
#include "engine.h"
#include "test.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define NDEV 64
#define NROW 32
#define OBS_MAX 300000

struct ver {
    uint64_t c;
    uint32_t mask;
};
struct vlog {
    struct ver *v;
    size_t n, cap;
};

struct obs {
    uint64_t c1, c2;
    uint32_t mask;
    uint16_t dev;
    uint8_t kind; /* 0 device, 1 binding (mask: 1 bit, or 0 = absent) */
    uint8_t row;
};

static engine_t *E;
static _Atomic uint64_t done;
static _Atomic int stop;
static struct vlog logs[NDEV];
static uint64_t reads_total, batch_total, hist_total, iters_total;

static void dev_name(char *b, int d) { snprintf(b, 16, "dev-%03d", d); }
static void uti_name(char *b, int d, int k) { snprintf(b, 24, "uti-%03d-%02d", d, k); }
static void uri_name(char *b, int k) { snprintf(b, 32, "https://svc%d.example", k % 5); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* --- reader ---------------------------------------------------------- */

struct rctx {
    int dev;
    uint32_t mask;
    uint64_t last_lsn;
    int bad;
};

static int parse_row(const struct engine_row *r, int *dev, int *k)
{
    char b[64];
    if (r->uti_len >= sizeof b || r->device_len != 7)
        return -1;
    memcpy(b, r->uti, r->uti_len);
    b[r->uti_len] = 0;
    /* "uti-<dev>-<k>", both decimal */
    char *end;
    if (strncmp(b, "uti-", 4) != 0)
        return -1;
    long d = strtol(b + 4, &end, 10);
    if (end == b + 4 || *end != '-')
        return -1;
    const char *ks = end + 1;
    long kk = strtol(ks, &end, 10);
    if (end == ks || *end || d < 0 || d > INT_MAX || kk < 0 || kk >= NROW)
        return -1;
    *dev = (int)d;
    *k = (int)kk;
    char want[32];
    dev_name(want, *dev);
    if (memcmp(r->device, want, 7) != 0)
        return -1;
    uri_name(want, *k);
    if (r->uri_len != strlen(want) || memcmp(r->uri, want, r->uri_len) != 0)
        return -1;
    return 0;
}

static int on_row(void *arg, const struct engine_row *r)
{
    struct rctx *x = arg;
    int d, k;
    if (parse_row(r, &d, &k) != 0 || d != x->dev || (x->mask & (1u << k)) ||
        r->lsn <= x->last_lsn)
        x->bad = 1;
    else
        x->mask |= 1u << k;
    x->last_lsn = r->lsn;
    return 0;
}

struct batch_ctx {
    struct rctx per[8];
    int cur;
    int n_rows;
    int bad;
};
static int on_batch_row(void *arg, const struct engine_row *r)
{
    struct batch_ctx *b = arg;
    int d, k;
    if (parse_row(r, &d, &k) != 0) {
        b->bad = 1;
        return 0;
    }
    /* Rows come in key order: find the key this row belongs to. */
    while (b->cur < 8 && b->per[b->cur].dev != d)
        b->cur++;
    if (b->cur == 8) {
        b->bad = 1;
        return 0;
    }
    on_row(&b->per[b->cur], r);
    b->n_rows++;
    return 0;
}

/* A full engine_iterate pass made while the writer runs: how often each
 * tracked row was visited, between change counts c1 and c2. */
#define ITER_MAX 16
struct iter_obs {
    uint64_t c1, c2;
    uint8_t seen[NDEV][NROW];
};

struct reader {
    pthread_t th;
    int id;
    struct obs *o;
    size_t n;
    struct iter_obs *it;
    size_t nit;
    uint64_t reads, batches, hists, iters;
    int bad;
};

static int on_iter_row(void *arg, const struct engine_row *r)
{
    struct iter_obs *x = arg;
    int d, k;
    if (r->device_len == 7 && memcmp(r->device, "dev-", 4) == 0) {
        if (parse_row(r, &d, &k) != 0 || d < 0 || d >= NDEV)
            return 1;
        if (x->seen[d][k] < 255)
            x->seen[d][k]++;
    }
    return 0;
}

static inline uint64_t snap(void)
{
    /* seq_cst fence: the engine reads before this point are ordered before
     * the load of done that bounds them. */
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&done, memory_order_acquire);
}

static void note(struct reader *R, uint64_t c1, uint64_t c2, int dev,
                 uint32_t mask, int kind, int row)
{
    if (R->n == OBS_MAX)
        R->n = OBS_MAX / 2; /* keep checking the newest half */
    R->o[R->n++] = (struct obs){c1, c2, mask, (uint16_t)dev, (uint8_t)kind,
                                (uint8_t)row};
}

static void *reader_main(void *arg)
{
    struct reader *R = arg;
    uint64_t s = 0x9e3779b97f4a7c15ULL * (uint64_t)(R->id + 1);
    char dn[8][16], un[32], tn[24];
    engine_thread_online(E);
    /* Odd readers run in loop mode (engine.h), as the server's loops do: one
     * read section across calls, a quiescent point every 16 reads. */
    bool loop = R->id & 1;
    if (loop)
        engine_thread_loop_begin(E);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (loop && (R->reads & 15) == 15)
            engine_thread_quiescent(E);
        int d = (int)(rnd(&s) % NDEV);
        unsigned op = (unsigned)(rnd(&s) % 16);
        if (op < 10) { /* by device */
            struct rctx x = {.dev = d};
            dev_name(dn[0], d);
            uint64_t c1 = snap();
            int rc = engine_inquire_device(E, dn[0], 7, on_row, &x, NULL);
            uint64_t c2 = snap();
            if (x.bad || (rc == -ENOENT && x.mask) ||
                (rc >= 0 && rc != __builtin_popcount(x.mask)) ||
                (rc < 0 && rc != -ENOENT))
                R->bad = 1;
            note(R, c1, c2, d, x.mask, 0, 0);
        } else if (op < 14) { /* by binding */
            int k = (int)(rnd(&s) % NROW);
            struct rctx x = {.dev = d};
            uri_name(un, k);
            uti_name(tn, d, k);
            uint64_t c1 = snap();
            int rc = engine_inquire_binding(E, un, strlen(un), tn, strlen(tn),
                                            on_row, &x, NULL);
            uint64_t c2 = snap();
            if (x.bad || (rc == 1) != (x.mask != 0) ||
                (rc != 1 && rc != -ENOENT) || (x.mask & ~(1u << k)))
                R->bad = 1;
            note(R, c1, c2, d, x.mask, 1, k);
        } else if (op < 15) { /* batch of 8 */
            struct engine_key keys[8];
            struct batch_ctx b = {0};
            int res[8];
            for (int i = 0; i < 8; i++) {
                b.per[i].dev = (d + i * 7) % NDEV;
                dev_name(dn[i], b.per[i].dev);
                keys[i].p = dn[i];
                keys[i].len = 7;
            }
            uint64_t c1 = snap();
            engine_inquire_device_batch(E, keys, 8, on_batch_row, &b, res);
            uint64_t c2 = snap();
            for (int i = 0; i < 8; i++) {
                if (b.per[i].bad ||
                    (res[i] >= 0 ? res[i] != __builtin_popcount(b.per[i].mask)
                                 : (res[i] != -ENOENT || b.per[i].mask)))
                    R->bad = 1;
                note(R, c1, c2, b.per[i].dev, b.per[i].mask, 0, 0);
            }
            if (b.bad)
                R->bad = 1;
            R->batches++;
        } else if (R->id == 0 && R->nit < ITER_MAX && (R->reads & 255) == 255) {
            /* a whole iteration, a few rows per call, across resizes */
            struct iter_obs *x = &R->it[R->nit];
            memset(x, 0, sizeof *x);
            uint64_t cur = 0;
            x->c1 = snap();
            do {
                int n = engine_iterate(E, &cur, 1 + (size_t)(rnd(&s) % 64),
                                       on_iter_row, x);
                if (n < 0) {
                    R->bad = 1;
                    break;
                }
            } while (cur != 0);
            x->c2 = snap();
            R->nit++;
            R->iters++;
        } else { /* history from a reader thread */
            dev_name(dn[0], d);
            struct engine_hist h = {.micros = R->reads, .event = ENGINE_H_INQUIRY,
                                    .principal = (const uint8_t *)"reader",
                                    .principal_len = 6};
            int rc = engine_history_add(E, dn[0], 7, &h);
            if (rc != 0 && rc != -ENOENT)
                R->bad = 1;
            int n = engine_history_get(E, dn[0], 7, 100, NULL, NULL);
            if (n > 8 || (n < 0 && n != -ENOENT))
                R->bad = 1;
            R->hists++;
        }
        R->reads++;
    }
    if (loop)
        CHECK(engine_thread_loop_end(E));
    engine_thread_offline(E);
    return NULL;
}

/* --- writer ---------------------------------------------------------- */

static void log_ver(int d, uint64_t c, uint32_t mask)
{
    struct vlog *l = &logs[d];
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        CHECK(l->v);
    }
    l->v[l->n++] = (struct ver){c, mask};
}

/* Row (d, k) present in every version in effect during [c1, c2 + 1]? And
 * present in at least one? */
static void row_span(int d, int k, uint64_t c1, uint64_t c2, int *always,
                     int *ever)
{
    const struct vlog *l = &logs[d];
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid].c <= c1)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t m = lo ? l->v[lo - 1].mask : 0;
    *always = (m >> k) & 1;
    *ever = *always;
    for (size_t i = lo; i < l->n && l->v[i].c <= c2 + 1; i++) {
        int b = (l->v[i].mask >> k) & 1;
        *always &= b;
        *ever |= b;
    }
}

static int check_obs(const struct obs *o)
{
    const struct vlog *l = &logs[o->dev];
    /* the version in effect at c1: last with c <= c1 (mask 0 before any) */
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->v[mid].c <= o->c1)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint32_t m = lo ? l->v[lo - 1].mask : 0;
    for (size_t i = lo;; i++) {
        uint32_t want = o->kind == 0 ? m : (m & (1u << o->row));
        if (want == o->mask)
            return 1;
        if (i == l->n || l->v[i].c > o->c2 + 1)
            return 0;
        m = l->v[i].mask;
    }
}

int main(void)
{
    double secs = 2.0;
    const char *env = getenv("ICS_STRESS_SECONDS");
    if (env) {
        char *end;
        secs = strtod(env, &end);
        if (end == env || *end || !(secs > 0 && secs <= 3600)) {
            fprintf(stderr, "ICS_STRESS_SECONDS=%s: want seconds in (0, 3600]\n", env);
            return 2;
        }
    }
    struct engine_config cfg = {.history_len = 8};
    CHECK_EQ(engine_create(&E, &cfg), 0);
    engine_thread_online(E);
    engine_thread_loop_begin(E); /* the writer too: its own grace periods */

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nr = ncpu < 2 ? 2 : (int)ncpu;
    if (nr > 8)
        nr = 8;
    struct reader *rs = calloc((size_t)nr, sizeof *rs);
    for (int i = 0; i < nr; i++) {
        rs[i].id = i;
        rs[i].o = malloc(OBS_MAX * sizeof *rs[i].o);
        rs[i].it = malloc(ITER_MAX * sizeof *rs[i].it);
        CHECK(rs[i].o && rs[i].it);
        CHECK_EQ(pthread_create(&rs[i].th, NULL, reader_main, &rs[i]), 0);
    }

    uint32_t mask[NDEV] = {0};
    uint64_t s = 12345, c = 0, filler = 0, filler_lo = 0;
    int grow = 1;
    char dn[16], un[32], tn[24], fd[32];
    struct engine_stats st0, st1;
    engine_stats(E, &st0);
    double end = now_s() + secs;
    uint64_t maps = 0, demaps = 0, eexist = 0;
    while (now_s() < end) {
        for (int it = 0; it < 200; it++) {
            unsigned op = (unsigned)(rnd(&s) % 100);
            if (op < 70) { /* toggle one tracked row */
                int d = (int)(rnd(&s) % NDEV), k = (int)(rnd(&s) % NROW);
                dev_name(dn, d);
                uri_name(un, k);
                uti_name(tn, d, k);
                if (!(mask[d] & (1u << k))) {
                    struct engine_map_req rq = {.dev = dn, .dev_len = 7,
                                                .uri = un, .uri_len = strlen(un),
                                                .uti = tn, .uti_len = strlen(tn)};
                    CHECK_EQ(engine_map(E, &rq, c + 1, NULL), 0);
                    mask[d] |= 1u << k;
                    maps++;
                } else if (op < 50) {
                    CHECK_EQ(engine_demap(E, dn, 7, un, strlen(un), tn,
                                          strlen(tn), 0, c + 1, NULL, NULL), 0);
                    mask[d] &= ~(1u << k);
                    demaps++;
                } else {
                    CHECK_EQ(engine_demap_binding(E, un, strlen(un), tn,
                                                  strlen(tn), c + 1, NULL, NULL), 1);
                    mask[d] &= ~(1u << k);
                    demaps++;
                }
                c++;
                log_ver(d, c, mask[d]);
                /* The binding is held: another device may not take it. */
                if (mask[d] & (1u << k)) {
                    char other[16];
                    dev_name(other, (d + 1) % NDEV);
                    struct engine_map_req rq = {.dev = other, .dev_len = 7,
                                                .uri = un, .uri_len = strlen(un),
                                                .uti = tn, .uti_len = strlen(tn)};
                    CHECK_EQ(engine_map(E, &rq, c + 1, NULL), -EEXIST);
                    eexist++;
                }
            } else if (op < 72) { /* drop a whole device */
                int d = (int)(rnd(&s) % NDEV);
                dev_name(dn, d);
                int rc = engine_demap_device(E, dn, 7, c + 1, NULL, NULL);
                CHECK_EQ(rc, mask[d] ? __builtin_popcount(mask[d]) : -ENOENT);
                if (rc > 0) {
                    mask[d] = 0;
                    c++;
                    log_ver(d, c, 0);
                }
            } else { /* filler rows: grow, then shrink back, to force resizes */
                if (grow) {
                    snprintf(fd, sizeof fd, "filler-%llu", (unsigned long long)filler);
                    struct engine_map_req rq = {.dev = fd, .dev_len = strlen(fd),
                                                .uri = "https://f", .uri_len = 9,
                                                .uti = fd, .uti_len = strlen(fd)};
                    CHECK_EQ(engine_map(E, &rq, c + 1, NULL), 0);
                    if (++filler - filler_lo >= 20000)
                        grow = 0;
                } else if (filler_lo < filler) {
                    snprintf(fd, sizeof fd, "filler-%llu", (unsigned long long)filler_lo);
                    CHECK_EQ(engine_demap_device(E, fd, strlen(fd), c + 1, NULL, NULL), 1);
                    if (++filler_lo == filler)
                        grow = 1;
                } else {
                    grow = 1;
                    continue;
                }
                c++;
            }
            /* release: the change is fully published before it is counted */
            atomic_store_explicit(&done, c, memory_order_release);
        }
        engine_thread_quiescent(E);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < nr; i++)
        CHECK_EQ(pthread_join(rs[i].th, NULL), 0);
    engine_stats(E, &st1);

    /* Check every observation against the writer's log. */
    uint64_t checked = 0, failed = 0;
    for (int i = 0; i < nr; i++) {
        CHECK_EQ(rs[i].bad, 0);
        reads_total += rs[i].reads;
        batch_total += rs[i].batches;
        hist_total += rs[i].hists;
        for (size_t j = 0; j < rs[i].n; j++) {
            checked++;
            if (!check_obs(&rs[i].o[j])) {
                if (failed++ < 5)
                    fprintf(stderr, "reader %d saw dev %d mask %08x (kind %d row %d) "
                            "in [%llu, %llu]: no such version\n", i,
                            rs[i].o[j].dev, rs[i].o[j].mask, rs[i].o[j].kind,
                            rs[i].o[j].row, (unsigned long long)rs[i].o[j].c1,
                            (unsigned long long)rs[i].o[j].c2);
            }
        }
        free(rs[i].o);
        /* Iterations: a row present throughout was visited exactly once;
         * none was visited twice or without ever existing meanwhile. */
        for (size_t j = 0; j < rs[i].nit; j++) {
            const struct iter_obs *x = &rs[i].it[j];
            for (int d = 0; d < NDEV; d++)
                for (int k = 0; k < NROW; k++) {
                    int always, ever;
                    row_span(d, k, x->c1, x->c2, &always, &ever);
                    int n = x->seen[d][k];
                    if ((always && n != 1) || n > 1 || (n && !ever)) {
                        if (failed++ < 5)
                            fprintf(stderr, "iteration %zu in [%llu, %llu]: "
                                    "dev %d row %d seen %d times (always %d, "
                                    "ever %d)\n", j,
                                    (unsigned long long)x->c1,
                                    (unsigned long long)x->c2, d, k, n,
                                    always, ever);
                    }
                }
        }
        iters_total += rs[i].iters;
        free(rs[i].it);
    }
    CHECK_EQ(failed, 0);
    /* The final state equals the writer's model. */
    for (int d = 0; d < NDEV; d++) {
        struct rctx x = {.dev = d};
        dev_name(dn, d);
        int rc = engine_inquire_device(E, dn, 7, on_row, &x, NULL);
        CHECK_EQ(x.bad, 0);
        CHECK_EQ(x.mask, mask[d]);
        CHECK_EQ(rc, mask[d] ? __builtin_popcount(mask[d]) : -ENOENT);
    }
    CHECK(st1.resizes > st0.resizes);
    CHECK(reads_total > 0);
    printf("stress: %.1f s, %d readers, %llu changes (%llu maps, %llu demaps, "
           "%llu EEXIST checks), %llu resizes, %llu reads (%llu batches, "
           "%llu history, %llu iterations), %llu observations checked\n",
           secs, nr,
           (unsigned long long)c, (unsigned long long)maps,
           (unsigned long long)demaps, (unsigned long long)eexist,
           (unsigned long long)(st1.resizes - st0.resizes),
           (unsigned long long)reads_total, (unsigned long long)batch_total,
           (unsigned long long)hist_total, (unsigned long long)iters_total,
           (unsigned long long)checked);
    engine_thread_offline(E);
    engine_destroy(E);
    for (int d = 0; d < NDEV; d++)
        free(logs[d].v);
    free(rs);
    return 0;
}
