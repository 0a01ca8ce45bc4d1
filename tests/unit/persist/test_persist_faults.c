/*
 * Fault injection through the store_io seam: a failed write or fdatasync
 * fails its whole batch with -EIO, turns the store read-only (-EROFS at
 * once), leaves inquiries working and loses nothing acknowledged across a
 * restart; a failed rename fails only the snapshot.
 */
#include "ptest.h"

static int one_row(void *arg, const struct engine_row *r) { return 0; }

enum { F_WRITE, F_SYNC, F_NOSPC, F_SEGMENT };

static void batch_fault(int kind)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    static struct faulty f;
    faulty_init(&f);
    static struct logcap lc;
    memset(&lc, 0, sizeof(lc));
    pthread_mutex_init(&lc.mu, NULL);
    struct store_config cfg = {.dir = dir, .io = &f.io, .log = logcap_fn, .log_ctx = &lc,
                               .segment_bytes = kind == F_SEGMENT ? 1 : 0};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    char dev[16], uti[16];
    for (int i = 0; i < 20; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        snprintf(uti, sizeof(uti), "t%d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://f.example", uti, "o", 0, &w), 0);
    }
    CHECK_EQ(w.ok, 20);
    if (kind == F_SYNC)
        faulty_arm(&f, &f.syncs, &f.fail_sync);
    else
        faulty_arm(&f, &f.writes, &f.fail_write);
    if (kind == F_NOSPC)
        f.err = ENOSPC;
    /* Several changes in flight: the failed batch fails all of its own. */
    struct wg w2;
    wg_init(&w2);
    for (int i = 0; i < 3; i++) {
        snprintf(dev, sizeof(dev), "x%d", i);
        struct engine_map_req rq = {dev, strlen(dev), "https://f.example", 17, dev,
                                    strlen(dev), NULL, 0, 0, 0};
        wg_add(&w2);
        int rc = store_map(r.s, &rq, NULL, 0, wg_done, &w2);
        if (rc < 0) {
            CHECK_EQ(rc, -EROFS); /* a later one may already see read-only */
            wg_cancel(&w2);
        }
    }
    wg_wait(&w2);
    CHECK(w2.failed >= 1);
    CHECK_EQ(w2.ok, 0);
    CHECK_EQ(w2.last_status, -EIO);
    struct engine_map_req rq = {"late", 4, "https://f.example", 17, "late", 4, NULL, 0, 0, 0};
    CHECK_EQ(store_map(r.s, &rq, NULL, 0, wg_done, &w), -EROFS);
    CHECK_EQ(store_demap_device(r.s, "d1", 2, NULL, 0, wg_done, &w), -EROFS);
    CHECK_EQ(store_snapshot(r.s, wg_done, &w), -EROFS);
    struct store_stats st;
    store_stats(r.s, &st);
    CHECK_EQ(st.read_only, 1);
    CHECK(st.durable_lsn >= 20 && st.durable_lsn < st.last_lsn + 1);
    /* Inquiries keep working. */
    engine_thread_online(r.e);
    CHECK_EQ(engine_inquire_device(r.e, "d7", 2, one_row, NULL, NULL), 1);
    engine_thread_offline(r.e);
    CHECK(strstr(lc.text, "read-only") != NULL);
    CHECK(strstr(lc.text, kind == F_NOSPC ? "No space" : "Input/output") != NULL);
    rig_close(&r);

    /* Restart on a healthy disk: every acknowledged change is there. */
    cfg.io = NULL;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    engine_thread_online(r.e);
    for (int i = 0; i < 20; i++) {
        snprintf(dev, sizeof(dev), "d%d", i);
        CHECK_EQ(engine_inquire_device(r.e, dev, strlen(dev), one_row, NULL, NULL), 1);
    }
    if (kind != F_SYNC) /* never written: cannot be there */
        CHECK_EQ(engine_inquire_device(r.e, "x0", 2, one_row, NULL, NULL), -ENOENT);
    engine_thread_offline(r.e);
    CHECK_EQ(map_wait(r.s, "after", "https://f.example", "after", NULL, 0, &w), 0);
    rig_close(&r);
    rm_rf(dir);
    printf("fault kind %d: ok\n", kind);
}

static void rename_fault(void)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    static struct faulty f;
    faulty_init(&f);
    struct store_config cfg = {.dir = dir, .io = &f.io};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < 10; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "r%d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://r.example", dev, NULL, 0, &w), 0);
    }
    faulty_arm(&f, &f.renames, &f.fail_rename);
    wg_add(&w);
    CHECK_EQ(store_snapshot(r.s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.last_status, -EIO);
    char names[8][64];
    CHECK_EQ(list_files(dir, "snap-", names, 8), 0); /* tmp removed, none published */
    struct store_stats st;
    store_stats(r.s, &st);
    CHECK_EQ(st.read_only, 0);  /* the log is fine: writes go on */
    CHECK_EQ(map_wait(r.s, "r10", "https://r.example", "r10", NULL, 0, &w), 0);
    wg_add(&w);
    CHECK_EQ(store_snapshot(r.s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.last_status, 0);
    CHECK_EQ(w.last_lsn, 11);
    CHECK_EQ(list_files(dir, "snap-", names, 8), 1);
    rig_close(&r);
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct engine_stats es;
    engine_stats(r.e, &es);
    CHECK_EQ(es.rows, 11);
    rig_close(&r);
    rm_rf(dir);
    printf("rename fault: ok\n");
}

int main(void)
{
    batch_fault(F_WRITE);
    batch_fault(F_SYNC);
    batch_fault(F_NOSPC);
    batch_fault(F_SEGMENT);
    rename_fault();
    return 0;
}
