/*
 * bench_persist — the durability benchmark's measuring tool (bench/README.md
 * "## Persistence"; bench/persist/run.sh drives it and Redis side by side).
 *
 *   bench_persist dsync    --dir D [--seconds S]
 *       raw O_DSYNC 4 KiB appends to a new file: writes/s of the disk
 *   bench_persist map      --dir D --writers N [--seconds S] [--relaxed]
 *       N threads, each mapping new rows and waiting for done (durable):
 *       changes/s, fdatasyncs, changes per fsync
 *   bench_persist build    --dir D --rows R [--tail T] [--rpd K] [--redis]
 *       writes a snapshot of R rows (K rows per device, 36-byte device IDs
 *       and UTIs, 28-byte URIs) and a WAL tail of T more maps; with --redis
 *       prints the same rows on stdout as Redis commands in RESP (a HASH per
 *       device, a STRING per binding) for redis-cli --pipe
 *   bench_persist recover  --dir D [--hist N]
 *       recovers D into a fresh engine (history_len N, default 0): rows/s,
 *       snapshot bytes/row
 *   bench_persist history  --dir D --rows R [--rpd K] [--hist N]
 *       what history costs a snapshot: R rows mapped through a real store
 *       with history_len N (default 16; 0 for the same without), every
 *       tenth device then demapped (a record without rows), a store
 *       snapshot, then recovery into a fresh engine: bytes/row, rows/s
 * Every figure is printed as "key=value" on one line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io.h"
#include "snap.h"
#include "store.h"

static const char *dir;
static double seconds = 5;
static int writers = 1, relaxed, rpd = 2, redis;
static uint64_t rows = 100000, tail = 10000, initial;
static int hist_len = -1; /* --hist: history = 16, recover = 0 when not given */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_persist: %s: %s\n", what, err);
    exit(1);
}

/* Fixed-width synthetic keys: "%08x-%04x-%04x-%04x-%012x" is 36 bytes. */
static void id36(char *out, char kind, uint64_t n)
{
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(n * 2654435761u),
             (unsigned)(kind & 0xffff), (unsigned)((n >> 16) & 0xffff), 0x8000u,
             (unsigned long long)(n & 0xffffffffffffull));
}
static void uri28(char *out, uint64_t n)
{
    snprintf(out, 29, "https://svc-%05u.example.io", (unsigned)(n % 1000));
}

/* --- dsync ---------------------------------------------------------------- */
static int cmd_dsync(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/dsync.bin", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DSYNC, 0600);
    if (fd < 0)
        die("open", strerror(errno));
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    double t0 = now_s(), t;
    uint64_t n = 0;
    while ((t = now_s()) - t0 < seconds) {
        if (pwrite(fd, buf, sizeof(buf), (off_t)(n * sizeof(buf))) != (ssize_t)sizeof(buf))
            die("pwrite", strerror(errno));
        n++;
    }
    close(fd);
    unlink(path);
    printf("dsync writes=%llu seconds=%.2f writes_per_s=%.0f\n", (unsigned long long)n,
           t - t0, (double)n / (t - t0));
    return 0;
}

/* --- map -------------------------------------------------------------------- */
struct one { pthread_mutex_t mu; pthread_cond_t cv; int done, status; };
static void one_done(void *arg, int status, uint64_t lsn)
{
    struct one *o = arg;
    pthread_mutex_lock(&o->mu);
    o->done = 1;
    o->status = status;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}
/* A map writer waits on a futex word of its own: one wake-up per
 * acknowledgement. (A mutex + condition variable signalled under the
 * mutex cost a second context switch per change, the woken writer blocking
 * again on the mutex the acknowledging thread still held: with 64 writers
 * on 2 cores that was a measurable share of the hand-off; bench/README.md.)
 * Static, so a late wake never touches an exited thread's stack. */
struct wone { uint32_t done; int status; };
static struct wone wones[256];
static void wone_done(void *arg, int status, uint64_t lsn)
{
    struct wone *o = arg;
    o->status = status;
    /* release: the writer that sees done sees status. */
    __atomic_store_n(&o->done, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &o->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
static void wone_wait(struct wone *o)
{
    /* acquire: pairs with wone_done's release. */
    while (!__atomic_load_n(&o->done, __ATOMIC_ACQUIRE))
        syscall(SYS_futex, &o->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}
static store_t *S;
static volatile int stop_flag;
static uint64_t total_done;

static void *map_thread(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg, n = 0;
    struct wone *o = &wones[id - 1];
    char dev[40], uti[40], uri[40];
    while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
        uint64_t k = id * 1000000000ull + n++;
        id36(dev, 'd', k / 2);
        id36(uti, 'u', k);
        uri28(uri, k);
        struct engine_map_req rq = {dev, 36, uri, 28, uti, 36, "provider-007", 12, 0, 0};
        __atomic_store_n(&o->done, 0, __ATOMIC_RELAXED); /* no done is pending */
        if (store_map(S, &rq, "bench", 5, wone_done, o) < 0)
            die("store_map", "refused");
        wone_wait(o);
        if (o->status)
            die("done", strerror(-o->status));
        __atomic_fetch_add(&total_done, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void open_store(engine_t **e, int durability)
{
    struct engine_config ec = {.initial_devices = 16};
    if (engine_create(e, &ec) < 0)
        die("engine", "create");
    char err[512];
    struct store_config cfg = {.dir = dir, .durability = durability,
                               .snapshot_log_bytes = 1ull << 40};
    if (store_open(&S, *e, &cfg, err, sizeof(err)) < 0 || store_recover(S, err, sizeof(err)) < 0)
        die("store", err);
    if (store_start(S) < 0)
        die("store", "start");
}

static int cmd_map(void)
{
    engine_t *e;
    open_store(&e, relaxed ? STORE_RELAXED : STORE_SYNC);
    pthread_t th[256];
    if (writers > 256)
        writers = 256;
    struct store_stats a, b;
    store_stats(S, &a);
    double t0 = now_s();
    for (int i = 0; i < writers; i++)
        pthread_create(&th[i], NULL, map_thread, (void *)(uintptr_t)(i + 1));
    usleep((useconds_t)(seconds * 1e6));
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < writers; i++)
        pthread_join(th[i], NULL);
    double t = now_s() - t0;
    store_stats(S, &b);
    uint64_t n = __atomic_load_n(&total_done, __ATOMIC_RELAXED);
    uint64_t syncs = b.syncs - a.syncs, recs = b.wal_records - a.wal_records;
    /* sync_us: the mean fdatasync; busy: the share of the run a sync was
     * running (1.0: the disk's flush is the whole cycle, nothing left to
     * overlap). */
    uint64_t sus = b.sync_us_total - a.sync_us_total;
    printf("map mode=%s writers=%d changes=%llu seconds=%.2f changes_per_s=%.0f syncs=%llu "
           "changes_per_sync=%.1f max_batch=%llu sync_us=%.0f sync_busy=%.2f\n",
           relaxed ? "relaxed" : "sync", writers, (unsigned long long)n, t, (double)n / t,
           (unsigned long long)syncs, syncs ? (double)recs / (double)syncs : 0.0,
           (unsigned long long)b.batch_max, syncs ? (double)sus / (double)syncs : 0.0,
           (double)sus / 1e6 / t);
    store_close(S);
    engine_destroy(e);
    return 0;
}

/* --- build ------------------------------------------------------------------ */
static char *rbuf;
static size_t rlen;
static void rflush(void)
{
    if (rlen && fwrite(rbuf, 1, rlen, stdout) != rlen)
        die("stdout", strerror(errno));
    rlen = 0;
}
static void resp(int argc, const char **argv, const size_t *lens)
{
    if (rlen > (1u << 20))
        rflush();
    rlen += (size_t)sprintf(rbuf + rlen, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        rlen += (size_t)sprintf(rbuf + rlen, "$%zu\r\n", lens[i]);
        memcpy(rbuf + rlen, argv[i], lens[i]);
        rlen += lens[i];
        rbuf[rlen++] = '\r';
        rbuf[rlen++] = '\n';
    }
}
static void redis_row(const char *dev, const char *uri, const char *uti)
{
    char field[80], key[80];
    int fl = snprintf(field, sizeof(field), "%s|%s", uri, uti);
    int kl = snprintf(key, sizeof(key), "%s|%s", uri, uti);
    const char *h[] = {"HSET", dev, field, "0"};
    size_t hl[] = {4, 36, (size_t)fl, 1};
    resp(4, h, hl);
    const char *s[] = {"SET", key, dev};
    size_t sl[] = {3, (size_t)kl, 36};
    resp(3, s, sl);
}

static void tail_done(void *arg, int status, uint64_t lsn)
{
    if (status)
        die("tail map", strerror(-status));
}

static int cmd_build(void)
{
    if (redis)
        rbuf = malloc(2u << 20);
    mkdir(dir, 0700);
    char path[4096];
    /* As if taken with no writer running: start LSN = end LSN = rows. */
    snprintf(path, sizeof(path), "%s/snap-%016llx.snap", dir, (unsigned long long)rows);
    struct snap_writer *w;
    if (snap_writer_open(&w, store_io_default(), path, rows, 1, NULL) < 0)
        die("snapshot", path);
    char dev[40], uti[40], uri[40];
    for (uint64_t i = 0; i < rows; i++) {
        id36(dev, 'd', i / (uint64_t)rpd);
        id36(uti, 'u', i);
        uri28(uri, i * 7);
        struct engine_row r = {(const uint8_t *)dev, 36, (const uint8_t *)"provider-007", 12,
                               (const uint8_t *)uri, 28, (const uint8_t *)uti, 36, NULL, 0,
                               0, i + 1};
        if (snap_writer_row(w, &r) < 0 || (i % 1024 == 1023 && snap_writer_drain(w) < 0))
            die("snapshot", "row");
        if (redis)
            redis_row(dev, uri, uti);
    }
    if (snap_writer_finish(w, rows) < 0)
        die("snapshot", "finish");
    uint64_t sbytes = snap_writer_bytes(w);
    snap_writer_close(w);
    /* The tail: maps through a real store, relaxed so the build is quick. */
    engine_t *e;
    double t0 = now_s();
    open_store(&e, STORE_RELAXED);
    for (uint64_t i = rows; i < rows + tail; i++) {
        id36(dev, 'd', i / (uint64_t)rpd);
        id36(uti, 'u', i);
        uri28(uri, i * 7);
        struct engine_map_req rq = {dev, 36, uri, 28, uti, 36, "provider-007", 12, 0, 0};
        int r = store_map(S, &rq, "bench", 5, tail_done, NULL);
        if (r < 0)
            die("tail map", strerror(-r));
        if (redis)
            redis_row(dev, uri, uti);
    }
    store_close(S);
    engine_destroy(e);
    if (redis)
        rflush();
    fprintf(stderr, "build rows=%llu tail=%llu snapshot_bytes=%llu snapshot_bytes_per_row=%.1f "
            "build_s=%.1f\n", (unsigned long long)rows, (unsigned long long)tail,
            (unsigned long long)sbytes, (double)sbytes / (double)rows, now_s() - t0);
    return 0;
}

/* --- recover ------------------------------------------------------------------ */
static int cmd_recover(void)
{
    engine_t *e;
    /* The capacity hint a deployment gives (--initial), as icsd would. */
    struct engine_config ec = {.initial_devices = initial ? initial : 16,
                               .history_len = hist_len > 0 ? (uint32_t)hist_len : 0};
    if (engine_create(&e, &ec) < 0)
        die("engine", "create");
    char err[512];
    struct store_config cfg = {.dir = dir};
    double t0 = now_s();
    if (store_open(&S, e, &cfg, err, sizeof(err)) < 0 || store_recover(S, err, sizeof(err)) < 0)
        die("recover", err);
    double t = now_s() - t0;
    struct engine_stats es;
    engine_stats(e, &es);
    struct store_stats st;
    store_stats(S, &st);
    printf("recover rows=%llu seconds=%.3f rows_per_s=%.0f log_records=%llu "
           "snapshot_bytes=%llu snapshot_bytes_per_row=%.1f\n", (unsigned long long)es.rows, t,
           (double)es.rows / t, (unsigned long long)st.recovered_records,
           (unsigned long long)st.snapshot_bytes,
           es.rows ? (double)st.snapshot_bytes / (double)(es.rows - st.recovered_records) : 0.0);
    store_close(S);
    engine_destroy(e);
    return 0;
}

/* --- history ---------------------------------------------------------------- */
static int cmd_history(void)
{
    engine_t *e;
    if (hist_len < 0)
        hist_len = 16;
    struct engine_config ec = {.initial_devices = rows / (uint64_t)rpd + 16,
                               .history_len = (uint32_t)hist_len};
    if (engine_create(&e, &ec) < 0)
        die("engine", "create");
    char err[512];
    struct store_config cfg = {.dir = dir, .durability = STORE_RELAXED,
                               .snapshot_log_bytes = 1ull << 40};
    if (store_open(&S, e, &cfg, err, sizeof(err)) < 0 || store_recover(S, err, sizeof(err)) < 0)
        die("store", err);
    if (store_start(S) < 0)
        die("store", "start");
    char dev[40], uti[40], uri[40];
    for (uint64_t i = 0; i < rows; i++) {
        id36(dev, 'd', i / (uint64_t)rpd);
        id36(uti, 'u', i);
        uri28(uri, i * 7);
        struct engine_map_req rq = {dev, 36, uri, 28, uti, 36, "provider-007", 12, 0, 0};
        if (store_map(S, &rq, "bench", 5, tail_done, NULL) < 0)
            die("map", "refused");
    }
    uint64_t ndev = rows / (uint64_t)rpd, gone = 0;
    for (uint64_t d = 0; d < ndev; d += 10) {
        id36(dev, 'd', d);
        int r = store_demap_device(S, dev, 36, "bench", 5, tail_done, NULL);
        if (r < 0)
            die("demap", strerror(-r));
        gone += (uint64_t)r;
    }
    struct one o = {.done = 0};
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    double t0 = now_s();
    if (store_snapshot(S, one_done, &o) < 0)
        die("snapshot", "refused");
    pthread_mutex_lock(&o.mu);
    while (!o.done)
        pthread_cond_wait(&o.cv, &o.mu);
    pthread_mutex_unlock(&o.mu);
    double ts = now_s() - t0;
    if (o.status)
        die("snapshot", strerror(-o.status));
    struct store_stats st;
    store_stats(S, &st);
    struct engine_stats es;
    engine_stats(e, &es);
    store_close(S);
    engine_destroy(e);
    /* Recovery reads the snapshot only: its log is all covered. */
    if (engine_create(&e, &ec) < 0)
        die("engine", "create");
    t0 = now_s();
    if (store_open(&S, e, &cfg, err, sizeof(err)) < 0 || store_recover(S, err, sizeof(err)) < 0)
        die("recover", err);
    double tr = now_s() - t0;
    struct engine_stats es2;
    engine_stats(e, &es2);
    if (es2.rows != es.rows || es2.devices != es.devices)
        die("recover", "rows or devices differ");
    printf("history history_len=%u rows=%llu devices=%llu rowless_devices=%llu "
           "snapshot_bytes=%llu snapshot_bytes_per_row=%.1f snapshot_s=%.2f "
           "recover_s=%.3f recover_rows_per_s=%.0f\n", (unsigned)hist_len,
           (unsigned long long)es.rows, (unsigned long long)es.devices,
           (unsigned long long)(hist_len ? ndev / 10 + (ndev % 10 != 0) : 0),
           (unsigned long long)st.snapshot_bytes,
           (double)st.snapshot_bytes / (double)es.rows, ts, tr, (double)es.rows / tr);
    (void)gone;
    store_close(S);
    engine_destroy(e);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        goto usage;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--writers") && i + 1 < argc) writers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--tail") && i + 1 < argc) tail = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rpd") && i + 1 < argc) rpd = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--initial") && i + 1 < argc) initial = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--hist") && i + 1 < argc) hist_len = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--relaxed")) relaxed = 1;
        else if (!strcmp(argv[i], "--redis")) redis = 1;
        else goto usage;
    }
    if (!dir || rpd < 1)
        goto usage;
    if (!strcmp(argv[1], "dsync")) return cmd_dsync();
    if (!strcmp(argv[1], "map")) return cmd_map();
    if (!strcmp(argv[1], "build")) return cmd_build();
    if (!strcmp(argv[1], "recover")) return cmd_recover();
    if (!strcmp(argv[1], "history")) return cmd_history();
usage:
    fprintf(stderr, "usage: bench_persist dsync|map|build|recover|history --dir D "
                    "[--seconds S] [--writers N] [--relaxed] [--rows R] [--tail T] [--rpd K] "
                    "[--redis] [--hist N]\n");
    return 2;
}
