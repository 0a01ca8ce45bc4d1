/*
 * test_persist_cov_store.c — store.h edges the other tests leave out:
 * lifecycle misuse (calls before recover/start, aux registration after
 * start or without callbacks, NULL arguments, close(NULL)), argument
 * bounds of every change call, the retention cap clamped at 2^32-1, an
 * unwritable data directory, recovery that meets an unfinished snapshot of
 * a crashed run, an unreadable snapshot, a snapshot or log record of an aux
 * kind nobody registered, a wrong key for a snapshot, and the read-only
 * state after a failed sync (changes and snapshots refused with -EROFS).
 */
#include "ptest.h"

static int aux_apply(void *ctx, const void *p, size_t n, uint64_t lsn)
{
    (void)p; (void)n; (void)lsn;
    ++*(int *)ctx;
    return 0;
}
static int aux_dump(void *ctx, int (*emit)(void *, const void *, size_t), void *ectx)
{
    (void)ctx;
    return emit(ectx, "state", 5);
}
static const struct store_aux_ops aux_ops = {aux_apply, aux_dump};

static int exp_cb(void *arg, const struct engine_row *r)
{
    *(uint32_t *)arg = r->expires_at;
    return 0;
}

static void lifecycle(void)
{
    char dir[256], err[512], sub[300];
    mk_tmpdir(dir, sizeof(dir));
    engine_t *e;
    struct engine_config ec = {.initial_devices = 8};
    CHECK_EQ(engine_create(&e, &ec), 0);
    store_t *s;
    struct store_config cfg = {.dir = dir};

    /* Required arguments; err may be NULL. */
    CHECK_EQ(store_open(&s, NULL, &cfg, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "required") != NULL);
    CHECK_EQ(store_open(&s, e, NULL, NULL, 0), -EINVAL);
    struct store_config nodir = {.dir = NULL};
    CHECK_EQ(store_open(&s, e, &nodir, err, sizeof(err)), -EINVAL);

    /* A data directory that cannot be created (its parent is a file). */
    snprintf(sub, sizeof(sub), "%s/file", dir);
    spit(sub, (const uint8_t *)"x", 1);
    snprintf(sub, sizeof(sub), "%s/file/data", dir);
    struct store_config bad = {.dir = sub};
    CHECK(store_open(&s, e, &bad, err, sizeof(err)) < 0);
    CHECK(strstr(err, "cannot create data directory") != NULL);
    snprintf(sub, sizeof(sub), "%s/file", dir);
    unlink(sub);

    /* An unfinished snapshot of a crashed run is removed at recovery. */
    char tmp[400];
    snprintf(tmp, sizeof(tmp), "%s/snap-%016llx.tmp", dir, 5ull);
    spit(tmp, (const uint8_t *)"partial", 7);

    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    int applied = 0;
    CHECK_EQ(store_register_aux(s, 3, NULL, &applied), -EINVAL);
    struct store_aux_ops half = {aux_apply, NULL};
    CHECK_EQ(store_register_aux(s, 3, &half, &applied), -EINVAL);
    CHECK_EQ(store_register_aux(s, 3, &aux_ops, &applied), 0);
    /* Nothing before recovery. */
    struct wg w;
    wg_init(&w);
    struct engine_map_req rq = {"d", 1, "https://u", 9, "t", 1, NULL, 0, 0, 0};
    CHECK_EQ(store_map(s, &rq, "a", 1, wg_done, &w), -EINVAL);
    CHECK_EQ(store_start(s), -EINVAL);
    CHECK_EQ(store_snapshot(s, wg_done, &w), -EINVAL);
    CHECK_EQ(store_recover(s, NULL, 0), 0);
    CHECK(access(tmp, F_OK) != 0);
    CHECK_EQ(store_snapshot(s, wg_done, &w), -EINVAL); /* recovered, not started */
    CHECK_EQ(store_start(s), 0);
    CHECK_EQ(store_start(s), -EINVAL);
    CHECK_EQ(store_register_aux(s, 4, &aux_ops, &applied), -EINVAL);

    /* Argument bounds of each change: refused, nothing logged. */
    static char big[70000];
    memset(big, 'x', sizeof(big));
    CHECK_EQ(store_map(s, NULL, "a", 1, wg_done, &w), -EINVAL);
    CHECK_EQ(store_map(s, &rq, big, ENGINE_NAME_MAX + 1, wg_done, &w), -EINVAL);
    struct engine_map_req huge = {big, 65536, "https://u", 9, "t", 1, NULL, 0, 0, 0};
    CHECK_EQ(store_map(s, &huge, "a", 1, wg_done, &w), -EINVAL);
    CHECK_EQ(store_demap(s, "d", 1, "https://u", 9, "t", 1, 0, big, ENGINE_NAME_MAX + 1,
                         wg_done, &w), -EINVAL);
    CHECK_EQ(store_demap_device(s, big, 65536, "a", 1, wg_done, &w), -EINVAL);
    CHECK_EQ(store_demap_binding(s, "https://u", 9, big, 65536, "a", 1, wg_done, &w),
             -EINVAL);
    CHECK_EQ(store_demap_service(s, big, 65536, "a", 1, wg_done, &w), -EINVAL);
    CHECK_EQ(store_set_prefs(s, "d", 1, "p", 1, big, ENGINE_NAME_MAX + 1, wg_done, &w),
             -EINVAL);
    CHECK_EQ(store_aux(s, 9, "x", 1, wg_done, &w), -EINVAL); /* kind not registered */
    struct store_stats st;
    store_stats(s, &st);
    CHECK_EQ(st.last_lsn, 0);
    CHECK_EQ(st.wal_records, 0);

    /* An aux record and a snapshot (which dumps the aux state). */
    wg_add(&w);
    CHECK(store_aux(s, 3, "rec", 3, wg_done, &w) >= 0);
    wg_wait(&w);
    CHECK_EQ(applied, 1);
    CHECK_EQ(map_wait(s, "d", "https://u", "t", "own", 0, &w), 0);
    wg_add(&w);
    CHECK(store_snapshot(s, wg_done, &w) >= 0);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    store_close(s);
    store_close(NULL);
    engine_destroy(e);

    /* Reopened without the aux kind registered: the snapshot's aux block
     * cannot be applied, recovery fails and says why. */
    CHECK_EQ(engine_create(&e, &ec), 0);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK(store_recover(s, err, sizeof(err)) < 0);
    CHECK(strstr(err, "aux") != NULL);
    store_close(s);
    engine_destroy(e);

    /* With the snapshot unreadable (a directory in its place). */
    char names[8][64], sp[400];
    CHECK_EQ(list_files(dir, "snap-", names, 8), 1);
    snprintf(sp, sizeof(sp), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(sp, &n);
    CHECK_EQ(unlink(sp), 0);
    CHECK_EQ(mkdir(sp, 0700), 0);
    CHECK_EQ(engine_create(&e, &ec), 0);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_register_aux(s, 3, &aux_ops, &applied), 0);
    CHECK(store_recover(s, err, sizeof(err)) < 0);
    CHECK(strstr(err, "cannot read") != NULL && strstr(err, names[0]) != NULL);
    store_close(s);
    engine_destroy(e);
    CHECK_EQ(rmdir(sp), 0);
    spit(sp, b, n);
    free(b);
    rm_rf(dir);
    printf("lifecycle: ok\n");
}

static void aux_in_log_unregistered(void)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    engine_t *e;
    struct engine_config ec = {.initial_devices = 8};
    CHECK_EQ(engine_create(&e, &ec), 0);
    store_t *s;
    struct store_config cfg = {.dir = dir};
    int applied = 0;
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_register_aux(s, 5, &aux_ops, &applied), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
    CHECK_EQ(store_start(s), 0);
    struct wg w;
    wg_init(&w);
    wg_add(&w);
    CHECK(store_aux(s, 5, "rec", 3, wg_done, &w) >= 0);
    wg_wait(&w);
    store_close(s);
    engine_destroy(e);
    /* Replay meets the record of kind 5 with no module for it. */
    CHECK_EQ(engine_create(&e, &ec), 0);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK(store_recover(s, err, sizeof(err)) < 0);
    store_close(s);
    engine_destroy(e);
    /* With it registered, the record is applied once more on replay. */
    CHECK_EQ(engine_create(&e, &ec), 0);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    applied = 0;
    CHECK_EQ(store_register_aux(s, 5, &aux_ops, &applied), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
    CHECK_EQ(applied, 1);
    store_close(s);
    engine_destroy(e);
    rm_rf(dir);
    printf("aux in log unregistered: ok\n");
}

static void retention_cap(void)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    /* max_row_age so large the bound passes 2^32-1: clamped there. */
    struct store_config cfg = {.dir = dir, .max_row_age = UINT32_MAX};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    CHECK_EQ(map_wait(r.s, "d", "https://u", "t", NULL, 0, &w), 0);
    CHECK_EQ(map_wait(r.s, "d", "https://u", "t2", NULL, 12345, &w), 0);
    uint32_t exp = 0;
    engine_thread_online(r.e);
    CHECK_EQ(engine_inquire_binding(r.e, "https://u", 9, "t", 1, exp_cb, &exp, NULL), 1);
    CHECK_EQ(exp, UINT32_MAX);
    CHECK_EQ(engine_inquire_binding(r.e, "https://u", 9, "t2", 2, exp_cb, &exp, NULL), 1);
    CHECK_EQ(exp, 12345); /* an earlier expiry of its own is kept */
    engine_thread_offline(r.e);
    rig_close(&r);
    rm_rf(dir);
    printf("retention cap: ok\n");
}

static void wrong_key_snapshot(void)
{
    char dir[256], err[512], key[300], key2[300];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    snprintf(key2, sizeof(key2), "%s.key2", dir);
    write_key(key, 32);
    FILE *f = fopen(key2, "wb");
    CHECK(f);
    for (int i = 0; i < 32; i++)
        fputc(i * 3, f);
    fclose(f);
    struct store_config cfg = {.dir = dir, .key_file = key};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    CHECK_EQ(map_wait(r.s, "d", "https://u", "t", NULL, 0, &w), 0);
    wg_add(&w);
    CHECK(store_snapshot(r.s, wg_done, &w) >= 0);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    rig_close(&r);
    cfg.key_file = key2;
    CHECK(rig_open(&r, &cfg, err, sizeof(err)) < 0);
    CHECK(strstr(err, "wrong key for") != NULL && strstr(err, "snap-") != NULL);
    cfg.key_file = key;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct engine_stats es;
    engine_stats(r.e, &es);
    CHECK_EQ(es.rows, 1);
    rig_close(&r);
    rm_rf(dir);
    unlink(key);
    unlink(key2);
    printf("wrong key snapshot: ok\n");
}

static uint64_t test_clock(void *ctx)
{
    return __atomic_load_n((uint64_t *)ctx, __ATOMIC_RELAXED);
}

static void read_only(void)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    static struct faulty fy;
    faulty_init(&fy);
    /* A clock the test moves, so the row expires only once read-only. */
    static uint64_t now = 1000ull * 1000000u;
    struct store_config cfg = {.dir = dir, .io = &fy.io, .sweep_interval_ms = 10,
                               .clock_us = test_clock, .clock_ctx = &now};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    CHECK_EQ(map_wait(r.s, "d0", "https://u", "t0", NULL, 2000, &w), 0);
    CHECK_EQ(w.failed, 0);
    faulty_arm(&fy, &fy.syncs, &fy.fail_sync);
    CHECK_EQ(map_wait(r.s, "d1", "https://u", "t1", NULL, 0, &w), 0);
    CHECK_EQ(w.failed, 1);
    CHECK_EQ(w.last_status, -EIO);
    struct store_stats st;
    store_stats(r.s, &st);
    CHECK_EQ(st.read_only, 1);
    /* Every later change and a snapshot: -EROFS at once. */
    CHECK_EQ(map_wait(r.s, "d2", "https://u", "t2", NULL, 0, &w), -EROFS);
    wg_add(&w);
    int sr = store_snapshot(r.s, wg_done, &w);
    if (sr < 0)
        wg_cancel(&w);
    wg_wait(&w);
    CHECK(sr == -EROFS || w.last_status == -EROFS);
    /* The sweep finds the expired row (expires_at 2000 < now 3000) but
     * cannot remove it: it stays, and inquiries still answer. */
    __atomic_store_n(&now, 3000ull * 1000000u, __ATOMIC_RELAXED);
    usleep(100 * 1000);
    engine_thread_online(r.e);
    uint32_t exp = 0;
    CHECK_EQ(engine_inquire_binding(r.e, "https://u", 9, "t0", 2, exp_cb, &exp, NULL), 1);
    CHECK_EQ(exp, 2000);
    engine_thread_offline(r.e);
    store_stats(r.s, &st);
    CHECK_EQ(st.expired, 0);
    rig_close(&r);
    rm_rf(dir);
    printf("read only: ok\n");
}

static int count_hist(void *arg, const struct engine_hist *h)
{
    (void)h;
    ++*(int *)arg;
    return 0;
}

/* A map the memory limit lets in whose history entry it refuses (the
 * ring's first cells come with the first entry): the change stands, the
 * entry is counted as dropped and the log says so once. The limit that
 * does this is searched for, 8 bytes at a time, between the engine's size
 * before and after one recorded map. */
static void history_dropped(void)
{
    struct engine_config ec = {.initial_devices = 8, .history_len = 16};
    engine_t *e;
    CHECK_EQ(engine_create(&e, &ec), 0);
    struct engine_stats es;
    engine_stats(e, &es);
    uint64_t before = es.bytes;
    struct engine_map_req rq = {"dev-1", 5, "https://svc.example", 19, "uti-1", 5, "own", 3, 0, 0};
    CHECK_EQ(engine_map(e, &rq, 1, NULL), 0);
    engine_stats(e, &es);
    uint64_t mapped = es.bytes;
    engine_destroy(e);

    int found = 0;
    for (uint64_t lim = mapped; lim <= mapped + 2048 && !found; lim += 8) {
        char dir[256], err[512];
        mk_tmpdir(dir, sizeof(dir));
        struct logcap lc = {.mu = PTHREAD_MUTEX_INITIALIZER};
        struct engine_config lec = {.initial_devices = 8, .history_len = 16,
                                    .mem_limit = (size_t)lim};
        CHECK_EQ(engine_create(&e, &lec), 0);
        store_t *s;
        struct store_config cfg = {.dir = dir, .log = logcap_fn, .log_ctx = &lc};
        CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
        CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
        CHECK_EQ(store_start(s), 0);
        struct wg w;
        wg_init(&w);
        int r = map_wait(s, "dev-1", "https://svc.example", "uti-1", "own", 0, &w);
        int entries = 0;
        engine_history_get(e, "dev-1", 5, 16, count_hist, &entries);
        struct store_stats st;
        store_stats(s, &st);
        if (r == 0 && entries == 0) {
            found = 1;
            CHECK_EQ(st.history_dropped, 1);
            CHECK(strstr(lc.text, "history entry of LSN 1 not kept") != NULL);
            CHECK_EQ(st.last_lsn, 1); /* the change itself stands */
        } else if (r == 0) {
            CHECK_EQ(st.history_dropped, 0);
            CHECK_EQ(entries, 1);
        }
        store_close(s);
        engine_destroy(e);
        rm_rf(dir);
    }
    CHECK(before < mapped);
    CHECK(found);
    printf("history dropped: ok\n");
}

int main(void)
{
    history_dropped();
    lifecycle();
    aux_in_log_unregistered();
    retention_cap();
    wrong_key_snapshot();
    read_only();
    return 0;
}
