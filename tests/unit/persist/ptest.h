/*
 * ptest.h — helpers shared by the persist/ tests: temp directories, a
 * wait group for done callbacks, an engine dump for state comparison, and a
 * fault-injecting store_io.
 */
#ifndef ICS_PTEST_H
#define ICS_PTEST_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "io.h"
#include "store.h"
#include "test.h"

/* --- wait group -------------------------------------------------------- */
struct wg {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, ok, failed, last_status;
    uint64_t max_lsn, last_lsn;
};
static inline void wg_init(struct wg *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}
static inline void wg_add(struct wg *w)
{
    pthread_mutex_lock(&w->mu);
    w->pending++;
    pthread_mutex_unlock(&w->mu);
}
static inline void wg_cancel(struct wg *w) /* the call was refused: no done */
{
    pthread_mutex_lock(&w->mu);
    w->pending--;
    pthread_mutex_unlock(&w->mu);
}
static inline void wg_done(void *arg, int status, uint64_t lsn)
{
    struct wg *w = arg;
    pthread_mutex_lock(&w->mu);
    w->pending--;
    w->last_status = status;
    w->last_lsn = lsn;
    if (status == 0) {
        w->ok++;
        if (lsn > w->max_lsn)
            w->max_lsn = lsn;
    } else {
        w->failed++;
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}
static inline void wg_wait(struct wg *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0) {
            fprintf(stderr, "wg_wait: done callbacks missing after 30 s (%d pending)\n",
                    w->pending);
            exit(1);
        }
    }
    pthread_mutex_unlock(&w->mu);
}

/* --- directories --------------------------------------------------------- */
static inline void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}
static inline void mk_tmpdir(char *out, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, n, "%s/icsp-XXXXXX", base ? base : "/tmp");
    CHECK(mkdtemp(out) != NULL);
}
static inline void write_key(const char *path, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    for (size_t i = 0; i < len; i++)
        fputc((int)((i * 37 + 11) & 0xff), f);
    fclose(f);
}
/* Lists files of dir with the given prefix into names (sorted). */
static inline int list_files(const char *dir, const char *prefix, char names[][64], int max)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (!strncmp(de->d_name, prefix, strlen(prefix)) && n < max)
            snprintf(names[n++], 64, "%.63s", de->d_name);
    if (d)
        closedir(d);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[i], names[j]) > 0) {
                char t[64];
                memcpy(t, names[i], 64);
                memcpy(names[i], names[j], 64);
                memcpy(names[j], t, 64);
            }
    return n;
}
static inline uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    CHECK(b);
    CHECK(fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}
static inline void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f);
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
}

/* --- engine dump: one sorted string per row ------------------------------ */
struct dump { char **v; size_t n, cap; };
static inline int dump_cb(void *arg, const struct engine_row *r)
{
    struct dump *d = arg;
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->v = realloc(d->v, d->cap * sizeof(char *));
    }
    char *s = malloc(128 * 3 + 1024 + 4096 + 64);
    int k = snprintf(s, 8192, "%.*s|%.*s|%.*s|%.*s|%u|", r->device_len, r->device,
                     r->uri_len, r->uri, r->uti_len, r->uti, r->owner_len, r->owner,
                     r->expires_at);
    for (uint32_t i = 0; i < r->prefs_len && k < 8000; i++)
        k += snprintf(s + k, 8192 - (size_t)k, "%02x", r->prefs[i]);
    d->v[d->n++] = s;
    return 0;
}
static inline int strp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}
static inline struct dump dump_engine(engine_t *e)
{
    struct dump d = {0};
    uint64_t cur = 0;
    engine_thread_online(e);
    do {
        CHECK(engine_iterate(e, &cur, 100, dump_cb, &d) >= 0);
    } while (cur != 0);
    engine_thread_offline(e);
    if (d.n)
        qsort(d.v, d.n, sizeof(char *), strp_cmp);
    return d;
}
static inline void dump_free(struct dump *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->v[i]);
    free(d->v);
    memset(d, 0, sizeof(*d));
}
static inline void dump_check_equal(const struct dump *a, const struct dump *b)
{
    if (a->n != b->n)
        fprintf(stderr, "dump sizes differ: %zu vs %zu\n", a->n, b->n);
    for (size_t i = 0; i < a->n && i < b->n; i++)
        if (strcmp(a->v[i], b->v[i])) {
            fprintf(stderr, "row %zu differs:\n  %s\n  %s\n", i, a->v[i], b->v[i]);
            break;
        }
    CHECK_EQ(a->n, b->n);
    for (size_t i = 0; i < a->n; i++)
        CHECK(strcmp(a->v[i], b->v[i]) == 0);
}

/* --- log capture ---------------------------------------------------------- */
struct logcap { pthread_mutex_t mu; char text[16384]; size_t n; };
static inline void logcap_fn(void *ctx, enum store_log_level lvl, const char *msg)
{
    struct logcap *c = ctx;
    pthread_mutex_lock(&c->mu);
    int k = snprintf(c->text + c->n, sizeof(c->text) - c->n, "%s\n", msg);
    if (k > 0 && c->n + (size_t)k < sizeof(c->text))
        c->n += (size_t)k;
    pthread_mutex_unlock(&c->mu);
}

/* --- fault-injecting io ---------------------------------------------------- */
struct faulty {
    struct store_io io;
    pthread_mutex_t mu;
    int writes, syncs, renames;     /* calls seen */
    int fail_write, fail_sync, fail_rename; /* fail the Nth call (1-based), 0 = never */
    int err;                        /* errno to inject (positive) */
    unsigned sync_delay_us;         /* slow disk */
};
static inline int faulty_hit(struct faulty *f, int *seen, int *arm)
{
    pthread_mutex_lock(&f->mu);
    int n = ++*seen, fail = *arm && n == *arm;
    pthread_mutex_unlock(&f->mu);
    return fail;
}
static inline ssize_t f_pwrite(void *ctx, int fd, const void *b, size_t n, uint64_t off)
{
    struct faulty *f = ctx;
    if (faulty_hit(f, &f->writes, &f->fail_write))
        return -f->err;
    return store_io_default()->pwrite(NULL, fd, b, n, off);
}
static inline int f_fdatasync(void *ctx, int fd)
{
    struct faulty *f = ctx;
    unsigned d = __atomic_load_n(&f->sync_delay_us, __ATOMIC_RELAXED);
    if (d)
        usleep(d);
    if (faulty_hit(f, &f->syncs, &f->fail_sync))
        return -f->err;
    return store_io_default()->fdatasync(NULL, fd);
}
static inline int f_fsync(void *ctx, int fd)
{
    struct faulty *f = ctx;
    if (faulty_hit(f, &f->syncs, &f->fail_sync))
        return -f->err;
    return store_io_default()->fsync(NULL, fd);
}
static inline int f_rename(void *ctx, const char *a, const char *b)
{
    struct faulty *f = ctx;
    if (faulty_hit(f, &f->renames, &f->fail_rename))
        return -f->err;
    return store_io_default()->rename(NULL, a, b);
}
static inline void faulty_init(struct faulty *f)
{
    memset(f, 0, sizeof(*f));
    f->io = *store_io_default();
    f->io.pwrite = f_pwrite;
    f->io.fdatasync = f_fdatasync;
    f->io.fsync = f_fsync;
    f->io.rename = f_rename;
    f->io.ctx = f;
    f->err = EIO;
    pthread_mutex_init(&f->mu, NULL);
}
static inline void faulty_delay(struct faulty *f, unsigned us)
{
    __atomic_store_n(&f->sync_delay_us, us, __ATOMIC_RELAXED);
}
/* Arms a failure of the next call of a kind. */
static inline void faulty_arm(struct faulty *f, int *seen, int *arm)
{
    pthread_mutex_lock(&f->mu);
    *arm = *seen + 1;
    pthread_mutex_unlock(&f->mu);
}

/* --- a store on an engine ------------------------------------------------- */
struct rig { engine_t *e; store_t *s; };
static inline int rig_open(struct rig *r, const struct store_config *cfg, char *err,
                           size_t errlen)
{
    /* Small, so the engine's indexes grow online during the tests (the
     * crash writer runs presized). A presized engine once failed maps with
     * -ENOMEM after a shrink: engine c4c2c49 fixed it. */
    struct engine_config ec = {.initial_devices = 16, .history_len = 0};
    memset(r, 0, sizeof(*r));
    CHECK(engine_create(&r->e, &ec) == 0);
    int rc = store_open(&r->s, r->e, cfg, err, errlen);
    if (rc < 0) {
        engine_destroy(r->e);
        r->e = NULL;
        return rc;
    }
    rc = store_recover(r->s, err, errlen);
    if (rc < 0) {
        store_close(r->s);
        engine_destroy(r->e);
        memset(r, 0, sizeof(*r));
        return rc;
    }
    CHECK(store_start(r->s) == 0);
    return 0;
}
static inline void rig_close(struct rig *r)
{
    store_close(r->s);
    engine_destroy(r->e);
    memset(r, 0, sizeof(*r));
}
/* Maps dev/uri/uti (strings) and waits; returns the map result. */
static inline int map_wait(store_t *s, const char *dev, const char *uri, const char *uti,
                           const char *owner, uint32_t exp, struct wg *w)
{
    struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                owner, owner ? strlen(owner) : 0, exp, 0};
    wg_add(w);
    int r = store_map(s, &rq, "tester", 6, wg_done, w);
    if (r < 0)
        wg_cancel(w);
    wg_wait(w);
    return r;
}

#endif
