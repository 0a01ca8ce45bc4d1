/*
 * test_persist_snap_devs.c — snapshots hold everything a device record
 * holds (issues 3 and 7), regression tests for what used to be lost:
 *   a. a device demapped to no rows (history_len 16) keeps its owner, prefs
 *      and map/demap history across a snapshot whose earlier log segments
 *      are deleted, and a restart; plain and (c) sealed;
 *   b. changes in (start, end] of a fuzzy snapshot, which the image already
 *      holds, replayed at recovery: no history entry twice, none lost;
 *   d. a snapshot without DEVS blocks (written before they existed) loads;
 *   e. a damaged DEVS block is refused with a message saying what and
 *      where (decoder cases, checksum, authentication), also by ics-check.
 */
#include "ptest.h"
#include "seal.h"
#include "snap.h"
#include "wal.h"

static const char *ics_check;

/* --- a store on an engine with history ----------------------------------- */
static void hrig_open(struct rig *r, const struct store_config *cfg)
{
    struct engine_config ec = {.initial_devices = 16, .history_len = 16};
    char err[512];
    memset(r, 0, sizeof(*r));
    CHECK_EQ(engine_create(&r->e, &ec), 0);
    int rc = store_open(&r->s, r->e, cfg, err, sizeof(err));
    if (rc == 0)
        rc = store_recover(r->s, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "open/recover: %s\n", err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(store_start(r->s), 0);
}

static void snapshot_wait(store_t *s)
{
    struct wg w;
    wg_init(&w);
    wg_add(&w);
    CHECK_EQ(store_snapshot(s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.ok, 1);
}

/* --- a device's history and info as strings ------------------------------- */
struct hist { char **v; size_t n, cap; };
static int hist_cb(void *arg, const struct engine_hist *h)
{
    struct hist *l = arg;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(char *));
    }
    char *s = malloc(1600);
    snprintf(s, 1600, "%u|%llu|%.*s|%.*s|%.*s", h->event, (unsigned long long)h->micros,
             h->principal_len, h->principal, h->uri_len, h->uri, h->uti_len, h->uti);
    l->v[l->n++] = s;
    return 0;
}
static struct hist hist_of(engine_t *e, const char *dev)
{
    struct hist l = {0};
    engine_thread_online(e);
    int n = engine_history_get(e, dev, strlen(dev), 100, hist_cb, &l);
    engine_thread_offline(e);
    CHECK(n >= 0);
    CHECK_EQ((size_t)n, l.n);
    return l;
}
static void hist_free(struct hist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}
static void hist_check_equal(const char *dev, const struct hist *a, const struct hist *b)
{
    if (a->n != b->n) {
        fprintf(stderr, "%s: %zu history entries before the restart, %zu after\n", dev, a->n,
                b->n);
        for (size_t i = 0; i < a->n; i++)
            fprintf(stderr, "  before %s\n", a->v[i]);
        for (size_t i = 0; i < b->n; i++)
            fprintf(stderr, "  after  %s\n", b->v[i]);
    }
    CHECK_EQ(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i], b->v[i]))
            fprintf(stderr, "%s entry %zu: %s vs %s\n", dev, i, a->v[i], b->v[i]);
        CHECK(strcmp(a->v[i], b->v[i]) == 0);
    }
}
static int info_cb(void *arg, const struct engine_row *r)
{
    snprintf(arg, 256, "%.*s|%.*s", r->owner_len, r->owner ? (const char *)r->owner : "",
             (int)r->prefs_len, r->prefs ? (const char *)r->prefs : "");
    return 0;
}
static int info_of(engine_t *e, const char *dev, char *out)
{
    engine_thread_online(e);
    out[0] = 0;
    int r = engine_device_info(e, dev, strlen(dev), info_cb, out);
    engine_thread_offline(e);
    return r;
}

static void wait_one(struct wg *w, int r)
{
    if (r < 0)
        wg_cancel(w);
    wg_wait(w);
    CHECK(r >= 0);
}

/* --- a. and c. ----------------------------------------------------------------- */
static void survives_restart(int sealed)
{
    char dir[256], key[300];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    if (sealed)
        write_key(key, 32);
    struct store_config cfg = {.dir = dir, .segment_bytes = 4096,
                               .key_file = sealed ? key : NULL};
    struct rig r;
    hrig_open(&r, &cfg);
    struct wg w;
    wg_init(&w);
    const char *uri = "https://svc.example";
    CHECK_EQ(map_wait(r.s, "dev-a", uri, "uti-1", "alice", 0, &w), 0);
    CHECK_EQ(map_wait(r.s, "dev-a", uri, "uti-2", NULL, 0, &w), 0);
    wg_add(&w);
    wait_one(&w, store_set_prefs(r.s, "dev-a", 5, "PREFS-A", 7, "bob", 3, wg_done, &w));
    /* dev-a loses its last rows (one change, two entries); dev-b keeps one. */
    wg_add(&w);
    wait_one(&w, store_demap_device(r.s, "dev-a", 5, "carol", 5, wg_done, &w));
    uint64_t demap_lsn = w.last_lsn;
    CHECK_EQ(map_wait(r.s, "dev-b", uri, "uti-b1", "dave", 0, &w), 0);
    CHECK_EQ(map_wait(r.s, "dev-b", uri, "uti-b2", NULL, 0, &w), 0);
    wg_add(&w);
    wait_one(&w, store_demap(r.s, "dev-b", 5, uri, strlen(uri), "uti-b1", 6, 0, "erin", 4,
                             wg_done, &w));
    /* Enough log after them that their segments end before the snapshot. */
    for (int i = 0; i < 120; i++) {
        char dev[32];
        snprintf(dev, sizeof(dev), "filler-%03d", i);
        wg_add(&w);
        struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), dev, strlen(dev),
                                    NULL, 0, 0, 0};
        wait_one(&w, store_map(r.s, &rq, "tester", 6, wg_done, &w));
    }
    snapshot_wait(r.s);
    /* The log that held those changes is gone: only the snapshot has them. */
    char names[64][64];
    int nseg = list_files(dir, "wal-", names, 64);
    CHECK(nseg >= 1);
    uint64_t first;
    CHECK_EQ(wal_parse_name(names[0], "wal-", "log", &first), 0);
    CHECK(first > demap_lsn + 1);

    struct hist a0 = hist_of(r.e, "dev-a"), b0 = hist_of(r.e, "dev-b");
    CHECK_EQ(a0.n, 4); /* 2 demaps (one change), 2 maps; set_prefs has none */
    CHECK(!strncmp(a0.v[0], "2|", 2) && strstr(a0.v[0], "|carol|") && strstr(a0.v[0], "uti-2"));
    CHECK(!strncmp(a0.v[1], "2|", 2) && strstr(a0.v[1], "uti-1"));
    CHECK(!strncmp(a0.v[2], "1|", 2) && strstr(a0.v[2], "uti-2"));
    CHECK(!strncmp(a0.v[3], "1|", 2) && strstr(a0.v[3], "|tester|") && strstr(a0.v[3], "uti-1"));
    /* ...and one inquiry entry, which is memory-only (not logged): it goes. */
    struct engine_hist q = {.micros = 7, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)"spy", .principal_len = 3};
    engine_thread_online(r.e);
    CHECK_EQ(engine_history_add(r.e, "dev-b", 5, &q), 0);
    engine_thread_offline(r.e);
    struct hist b2 = hist_of(r.e, "dev-b");
    CHECK_EQ(b2.n, b0.n + 1);
    hist_free(&b2);
    hist_free(&a0);
    a0 = hist_of(r.e, "dev-a");
    struct engine_stats st0;
    engine_stats(r.e, &st0);
    rig_close(&r);

    hrig_open(&r, &cfg);
    char info[256];
    CHECK_EQ(info_of(r.e, "dev-a", info), 0);
    CHECK(!strcmp(info, "alice|PREFS-A"));
    CHECK_EQ(engine_inquire_device(r.e, "dev-a", 5, NULL, NULL, NULL), -ENOENT);
    CHECK_EQ(info_of(r.e, "dev-b", info), 0);
    CHECK(!strcmp(info, "dave|"));
    struct hist a1 = hist_of(r.e, "dev-a"), b1 = hist_of(r.e, "dev-b");
    hist_check_equal("dev-a", &a0, &a1);
    hist_check_equal("dev-b", &b0, &b1);
    struct engine_stats st1;
    engine_stats(r.e, &st1);
    CHECK_EQ(st1.devices, st0.devices);
    CHECK_EQ(st1.rows, st0.rows);
    /* The device can be mapped again and keeps its history and prefs. */
    CHECK_EQ(map_wait(r.s, "dev-a", uri, "uti-3", NULL, 0, &w), 0);
    CHECK_EQ(info_of(r.e, "dev-a", info), 0);
    CHECK(!strcmp(info, "alice|PREFS-A"));
    struct hist a2 = hist_of(r.e, "dev-a");
    CHECK_EQ(a2.n, 5);
    hist_free(&a2);
    rig_close(&r);

    /* ics-check counts the device records and their entries. */
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof(cmd), "%s %s%s %s 2>&1", ics_check, sealed ? "--key " : "",
             sealed ? key : "", dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    CHECK_EQ(pclose(p), 0);
    if (!strstr(out, "device records (history, or no rows) with"))
        fprintf(stderr, "%s", out);
    CHECK(strstr(out, "device records (history, or no rows) with"));
    hist_free(&a0);
    hist_free(&b0);
    hist_free(&a1);
    hist_free(&b1);
    rm_rf(dir);
    unlink(key);
}

/* --- b. a fuzzy snapshot's overlap ------------------------------------------------ */
/* An io that holds the snapshot writer's first block write (a drain
 * between two engine_iterate_devices calls, once ~1 MiB of rows is built:
 * the devices' 1000-byte prefs get there after ~1000 of them) until
 * released: changes made meanwhile have LSNs in (start, end], and those of
 * devices visited later are in the image too. */
struct holdio {
    struct store_io io;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int snap_fd, writes, held, released;
};
static int h_open(void *ctx, const char *path, int flags, mode_t mode)
{
    struct holdio *h = ctx;
    int fd = store_io_default()->open(NULL, path, flags, mode);
    size_t n = strlen(path);
    if (fd >= 0 && n > 4 && !strcmp(path + n - 4, ".tmp")) {
        pthread_mutex_lock(&h->mu);
        h->snap_fd = fd;
        h->writes = 0;
        pthread_mutex_unlock(&h->mu);
    }
    return fd;
}
static ssize_t h_pwrite(void *ctx, int fd, const void *b, size_t n, uint64_t off)
{
    struct holdio *h = ctx;
    pthread_mutex_lock(&h->mu);
    if (fd == h->snap_fd && ++h->writes == 2 && !h->released) {
        h->held = 1;
        pthread_cond_broadcast(&h->cv);
        while (!h->released)
            pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return store_io_default()->pwrite(NULL, fd, b, n, off);
}

#define NDEV 3000

static int count_new_maps(void *arg, const struct engine_hist *h)
{
    if (h->event == ENGINE_H_MAP && h->uti_len > 4 && !memcmp(h->uti, "new-", 4))
        ++*(int *)arg;
    return 0;
}

static void overlap_replay(void)
{
    char dir[256];
    mk_tmpdir(dir, sizeof(dir));
    struct holdio h;
    memset(&h, 0, sizeof(h));
    h.io = *store_io_default();
    h.io.open = h_open;
    h.io.pwrite = h_pwrite;
    h.io.ctx = &h;
    h.snap_fd = -1;
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    struct store_config cfg = {.dir = dir, .io = &h.io};
    struct rig r;
    hrig_open(&r, &cfg);
    const char *uri = "https://svc.example";
    struct wg w;
    wg_init(&w);
    char dev[32], uti[32];
    for (int i = 0; i < NDEV; i++)
        for (int k = 0; k < 2; k++) {
            snprintf(dev, sizeof(dev), "dev-%05d", i);
            snprintf(uti, sizeof(uti), "uti-%05d-%d", i, k);
            struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                        "owner", 5, 0, 0};
            wg_add(&w);
            if (store_map(r.s, &rq, "tester", 6, wg_done, &w) < 0)
                wg_cancel(&w);
        }
    static char big[1000];
    memset(big, 'p', sizeof(big));
    for (int i = 0; i < NDEV; i++) {
        snprintf(dev, sizeof(dev), "dev-%05d", i);
        wg_add(&w);
        if (store_set_prefs(r.s, dev, strlen(dev), big, sizeof(big), "bob", 3, wg_done, &w) < 0)
            wg_cancel(&w);
    }
    wg_wait(&w);
    CHECK_EQ(w.ok, 3 * NDEV);

    struct wg sw;
    wg_init(&sw);
    wg_add(&sw);
    CHECK_EQ(store_snapshot(r.s, wg_done, &sw), 0);
    pthread_mutex_lock(&h.mu);
    while (!h.held)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    /* Mid-snapshot: every device loses both rows (one change, two entries)
     * and gets a new one; half of them also change prefs. */
    for (int i = 0; i < NDEV; i++) {
        snprintf(dev, sizeof(dev), "dev-%05d", i);
        snprintf(uti, sizeof(uti), "new-%05d", i);
        wg_add(&w);
        if (store_demap_device(r.s, dev, strlen(dev), "carol", 5, wg_done, &w) < 0)
            wg_cancel(&w);
        struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                    NULL, 0, 0, 0};
        wg_add(&w);
        if (store_map(r.s, &rq, "dave", 4, wg_done, &w) < 0)
            wg_cancel(&w);
        if (i % 2) {
            wg_add(&w);
            if (store_set_prefs(r.s, dev, strlen(dev), "P", 1, "erin", 4, wg_done, &w) < 0)
                wg_cancel(&w);
        }
    }
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    pthread_mutex_lock(&h.mu);
    h.released = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    wg_wait(&sw);
    CHECK_EQ(sw.ok, 1);

    struct hist *before = calloc(NDEV, sizeof(*before));
    for (int i = 0; i < NDEV; i++) {
        snprintf(dev, sizeof(dev), "dev-%05d", i);
        before[i] = hist_of(r.e, dev);
        CHECK_EQ(before[i].n, 5);
    }
    struct dump d0 = dump_engine(r.e);
    rig_close(&r);

    /* The overlap is real: the image alone (no replay) already holds the
     * mid-snapshot map of some devices, and lacks it for others. */
    char names[4][64], path[512];
    CHECK_EQ(list_files(dir, "snap-", names, 4), 1);
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *img = slurp(path, &n);
    engine_t *e;
    struct engine_config ec = {.initial_devices = 16, .history_len = 16};
    CHECK_EQ(engine_create(&e, &ec), 0);
    engine_thread_online(e);
    struct snap_info info;
    char err[512];
    CHECK_EQ(snap_load_mem(e, img, n, NULL, NULL, NULL, &info, err, sizeof(err)), 0);
    int in_image = 0;
    for (int i = 0; i < NDEV; i++) {
        snprintf(dev, sizeof(dev), "dev-%05d", i);
        int c = 0;
        engine_history_get(e, dev, strlen(dev), 100, count_new_maps, &c);
        CHECK(c <= 1);
        in_image += c;
    }
    engine_thread_offline(e);
    engine_destroy(e);
    free(img);
    fprintf(stderr, "overlap: %d of %d devices' mid-snapshot maps are in the image, "
            "%llu device records, %llu entries\n", in_image, NDEV,
            (unsigned long long)info.dev_records, (unsigned long long)info.hist_entries);
    CHECK(in_image > 0 && in_image < NDEV);

    /* Recovery replays (start, end] over it: every history exactly once. */
    cfg.io = NULL;
    hrig_open(&r, &cfg);
    for (int i = 0; i < NDEV; i++) {
        snprintf(dev, sizeof(dev), "dev-%05d", i);
        struct hist a = hist_of(r.e, dev);
        hist_check_equal(dev, &before[i], &a);
        hist_free(&a);
        hist_free(&before[i]);
    }
    free(before);
    struct dump d1 = dump_engine(r.e);
    dump_check_equal(&d0, &d1);
    dump_free(&d0);
    dump_free(&d1);
    rig_close(&r);
    rm_rf(dir);
}

/* --- d. and e.: hand-made files ------------------------------------------------- */
static const uint8_t keycheck_ad[] = "icsd key check";
struct buf { uint8_t b[1 << 14]; size_t n; };
static void put(struct buf *b, const void *p, size_t n)
{
    CHECK(b->n + n <= sizeof(b->b));
    if (n)
        memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void var(struct buf *b, uint64_t v)
{
    uint8_t o[10];
    size_t i = 0;
    while (v >= 0x80) {
        o[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[i++] = (uint8_t)v;
    put(b, o, i);
}
static void str(struct buf *b, const char *s)
{
    var(b, strlen(s));
    put(b, s, strlen(s));
}
static void u8(struct buf *b, uint8_t v) { put(b, &v, 1); }

struct file { struct buf f; const struct seal *seal; uint8_t nonce[12]; uint64_t blocks; };
static void file_start(struct file *fl, uint64_t start_lsn, const struct seal *seal)
{
    memset(fl, 0, sizeof(*fl));
    fl->seal = seal;
    struct wal_fhdr h = {.version = 1, .lsn = start_lsn, .created_us = 1};
    memcpy(h.magic, wal_magic_snap, 8);
    if (seal) {
        h.flags = WAL_F_ENCRYPTED;
        seal_random(h.nonce, 12);
        memcpy(fl->nonce, h.nonce, 12);
        CHECK_EQ(seal_seal(seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad), NULL, 0,
                           h.check), 0);
    }
    wal_fhdr_encode(fl->f.b, &h);
    fl->f.n = WAL_FHDR_SIZE;
}
static size_t block(struct file *fl, uint8_t type, const uint8_t *pl, size_t n)
{
    uint8_t hdr[SNAP_BLK_HDR] = {0};
    static uint8_t sealed[1 << 14];
    hdr[8] = type;
    fl->blocks++;
    if (fl->seal) {
        CHECK(n + WAL_TAG <= sizeof(sealed));
        CHECK_EQ(seal_seal(fl->seal, fl->nonce, fl->blocks, hdr + 8, 4, pl, n, sealed), 0);
        pl = sealed;
        n += WAL_TAG;
    }
    wal_put32(hdr, (uint32_t)n);
    size_t at = fl->f.n;
    put(&fl->f, hdr, SNAP_BLK_HDR);
    put(&fl->f, pl, n);
    uint32_t c = wal_crc32c(0, fl->f.b + at, 4);
    c = wal_crc32c(c, fl->f.b + at + 8, SNAP_BLK_HDR - 8 + n);
    wal_put32(fl->f.b + at + 4, c);
    return at;
}
static void end_block(struct file *fl, uint64_t end_lsn, uint64_t rows, uint64_t devs)
{
    struct buf e = {.n = 0};
    var(&e, end_lsn);
    var(&e, rows);
    var(&e, devs);
    var(&e, fl->blocks);
    block(fl, SNAP_END, e.b, e.n);
}
static void rows2(struct buf *b)
{
    /* "dev" (owner "own", prefs "PF") with two rows, in the ROWS format. */
    u8(b, 1 | 2 | 4);
    str(b, "dev");
    str(b, "own");
    str(b, "PF");
    str(b, "https://u");
    str(b, "t1");
    var(b, 0);
    var(b, 3);
    u8(b, 0);
    var(b, 0);
    str(b, "t2");
    var(b, 0);
    var(b, 4);
}
static void hentry(struct buf *b, uint8_t ev, uint64_t micros, const char *uti)
{
    u8(b, ev);
    var(b, micros);
    str(b, "who");
    str(b, "https://u");
    str(b, uti);
}
/* A good DEVS payload: "gone" without rows (owner, prefs, two entries) and
 * "dev"'s history (one entry, no meta). */
static void devs_good(struct buf *b)
{
    u8(b, 1 | 2);
    str(b, "gone");
    str(b, "ghost");
    str(b, "GP");
    var(b, 7);
    var(b, 1);
    var(b, 2);
    hentry(b, ENGINE_H_MAP, 100, "g1");
    hentry(b, ENGINE_H_DEMAP, 200, "g1");
    u8(b, 0);
    str(b, "dev");
    var(b, 4);
    var(b, 0);
    var(b, 1);
    hentry(b, ENGINE_H_MAP, 300, "t2");
}

static engine_t *hengine(uint32_t hlen)
{
    engine_t *e;
    struct engine_config ec = {.initial_devices = 16, .history_len = hlen};
    CHECK_EQ(engine_create(&e, &ec), 0);
    engine_thread_online(e);
    return e;
}
static void hengine_done(engine_t *e)
{
    engine_thread_offline(e);
    engine_destroy(e);
}

static void old_format_loads(void)
{
    struct file fl;
    file_start(&fl, 4, NULL);
    struct buf rb = {.n = 0};
    rows2(&rb);
    block(&fl, SNAP_ROWS, rb.b, rb.n);
    end_block(&fl, 4, 2, 1);
    for (uint32_t hlen = 0; hlen <= 16; hlen += 16) {
        engine_t *e = hengine(hlen);
        struct snap_info info;
        char err[256] = "";
        CHECK_EQ(snap_load_mem(e, fl.f.b, fl.f.n, NULL, NULL, NULL, &info, err, sizeof(err)),
                 0);
        CHECK_EQ(info.rows, 2);
        CHECK_EQ(info.dev_records, 0);
        CHECK_EQ(engine_inquire_device(e, "dev", 3, NULL, NULL, NULL), 2);
        char inf[256];
        CHECK_EQ(engine_device_info(e, "dev", 3, info_cb, inf), 0);
        CHECK(!strcmp(inf, "own|PF"));
        CHECK_EQ(engine_history_get(e, "dev", 3, 100, NULL, NULL), 0);
        hengine_done(e);
    }
    /* ...and through a store's recovery (no log after it). */
    char dir[256], path[512];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/snap-%016llx.snap", dir, 4ull);
    spit(path, fl.f.b, fl.f.n);
    struct store_config cfg = {.dir = dir};
    struct rig r;
    hrig_open(&r, &cfg);
    CHECK_EQ(engine_inquire_device(r.e, "dev", 3, NULL, NULL, NULL), 2);
    struct wg w;
    wg_init(&w);
    CHECK_EQ(map_wait(r.s, "dev", "https://u", "t3", NULL, 0, &w), 0);
    CHECK_EQ(w.last_lsn, 5);
    rig_close(&r);
    rm_rf(dir);
}

static void devs_load(const struct seal *seal)
{
    struct file fl;
    file_start(&fl, 7, seal);
    struct buf rb = {.n = 0}, db = {.n = 0};
    devs_good(&db);
    /* DEVS first: "dev"'s history arrives before its rows. */
    block(&fl, SNAP_DEVS, db.b, db.n);
    rows2(&rb);
    block(&fl, SNAP_ROWS, rb.b, rb.n);
    end_block(&fl, 7, 2, 1);
    engine_t *e = hengine(16);
    struct snap_info info;
    char err[256] = "";
    int rc = snap_load_mem(e, fl.f.b, fl.f.n, seal, NULL, NULL, &info, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(info.dev_records, 2);
    CHECK_EQ(info.hist_entries, 3);
    char inf[256];
    CHECK_EQ(engine_device_info(e, "gone", 4, info_cb, inf), 0);
    CHECK(!strcmp(inf, "ghost|GP"));
    CHECK_EQ(engine_device_info(e, "dev", 3, info_cb, inf), 0);
    CHECK(!strcmp(inf, "own|PF"));
    CHECK_EQ(engine_inquire_device(e, "dev", 3, NULL, NULL, NULL), 2);
    struct hist g = hist_of(e, "gone"), d = hist_of(e, "dev");
    CHECK_EQ(g.n, 2);
    CHECK(!strcmp(g.v[0], "2|200|who|https://u|g1") && !strcmp(g.v[1], "1|100|who|https://u|g1"));
    CHECK_EQ(d.n, 1);
    hist_free(&g);
    hist_free(&d);
    /* The key came with it: a replayed entry up to it is a no-op. */
    struct engine_hist h = {.micros = 5, .event = ENGINE_H_DEMAP, .lsn = 7, .part = 1};
    CHECK_EQ(engine_history_add(e, "gone", 4, &h), 0);
    CHECK_EQ(engine_history_get(e, "gone", 4, 100, NULL, NULL), 2);
    h.part = 2;
    CHECK_EQ(engine_history_add(e, "gone", 4, &h), 0);
    CHECK_EQ(engine_history_get(e, "gone", 4, 100, NULL, NULL), 3);
    hengine_done(e);
}

static int devs_first(const struct buf *b, int skip)
{
    struct snap_devs it;
    struct snap_dev d;
    snap_devs_init(&it, b->b, b->n);
    for (int i = 0; i < skip; i++)
        CHECK_EQ(snap_devs_next(&it, &d), 1);
    return snap_devs_next(&it, &d);
}

static void devs_decoder(void)
{
    struct buf b = {.n = 0};
    devs_good(&b);
    CHECK_EQ(devs_first(&b, 2), 0);
    struct snap_devs it;
    struct snap_dev d;
    snap_devs_init(&it, b.b, b.n);
    CHECK_EQ(snap_devs_next(&it, &d), 1);
    CHECK(d.meta && d.has_prefs && d.nhist == 2 && d.hist_lsn == 7 && d.hist_part == 1);
    struct wal_bytes rest = d.hist;
    struct engine_hist h;
    CHECK_EQ(snap_hist_next(&rest, &h), 1);
    CHECK(h.event == ENGINE_H_MAP && h.micros == 100 && h.uti_len == 2);
    CHECK_EQ(snap_hist_next(&rest, &h), 1);
    CHECK_EQ(snap_hist_next(&rest, &h), 0);

    /* Unknown flags; prefs without meta; an empty device ID. */
    b.n = 0;
    u8(&b, 4);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 2);
    str(&b, "d");
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 0);
    var(&b, 0);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    /* An owner past the end; empty prefs. */
    b.n = 0;
    u8(&b, 1);
    str(&b, "d");
    var(&b, 50);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 3);
    str(&b, "d");
    str(&b, "o");
    var(&b, 0);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    /* A part without an LSN; a part beyond 32 bits. */
    b.n = 0;
    u8(&b, 0);
    str(&b, "d");
    var(&b, 0);
    var(&b, 1);
    var(&b, 0);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 0);
    str(&b, "d");
    var(&b, 5);
    var(&b, 1ull << 32);
    var(&b, 0);
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    /* More entries than the bytes could hold; one entry cut short. */
    b.n = 0;
    u8(&b, 0);
    str(&b, "d");
    var(&b, 5);
    var(&b, 0);
    var(&b, 1000);
    hentry(&b, ENGINE_H_MAP, 1, "t");
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 0);
    str(&b, "d");
    var(&b, 5);
    var(&b, 0);
    var(&b, 2);
    hentry(&b, ENGINE_H_MAP, 1, "t");
    u8(&b, ENGINE_H_MAP);
    var(&b, 1);
    str(&b, "w");
    str(&b, "u");
    str(&b, "t");
    b.n--; /* the UTI's last byte */
    CHECK_EQ(devs_first(&b, 0), -EPROTO);
    /* Inquiry entries are never written; an unknown event; a long UTI. */
    for (int ev = 0; ev < 3; ev++) {
        b.n = 0;
        u8(&b, 0);
        str(&b, "d");
        var(&b, 5);
        var(&b, 0);
        var(&b, 1);
        if (ev < 2) {
            hentry(&b, ev == 0 ? ENGINE_H_INQUIRY : 9, 1, "t");
        } else {
            char longid[ENGINE_ID_MAX + 2];
            memset(longid, 'x', sizeof(longid) - 1);
            longid[sizeof(longid) - 1] = 0;
            hentry(&b, ENGINE_H_MAP, 1, longid);
        }
        CHECK_EQ(devs_first(&b, 0), -EPROTO);
    }
}

static void expect_refused(struct file *fl, const struct seal *seal, int want_rc,
                           const char *want)
{
    engine_t *e = hengine(16);
    struct snap_info info;
    char err[256] = "";
    int rc = snap_load_mem(NULL, fl->f.b, fl->f.n, seal, NULL, NULL, &info, err, sizeof(err));
    if (rc != want_rc || !strstr(err, want))
        fprintf(stderr, "got %d '%s', want %d '%s'\n", rc, err, want_rc, want);
    CHECK_EQ(rc, want_rc);
    CHECK(strstr(err, want));
    /* The loader says the same and leaves nothing half-restored behind
     * that it did not report (recovery checks first, then loads). */
    rc = snap_load_mem(e, fl->f.b, fl->f.n, seal, NULL, NULL, &info, err, sizeof(err));
    CHECK_EQ(rc, want_rc);
    hengine_done(e);
}

static void devs_corrupt(const struct seal *seal)
{
    char want[128];
    /* A malformed second record, checksum and seal intact. */
    struct file fl;
    file_start(&fl, 7, seal);
    struct buf db = {.n = 0};
    devs_good(&db);
    u8(&db, 0);
    str(&db, "x");
    var(&db, 9);
    var(&db, 0);
    var(&db, 1);
    hentry(&db, 7, 1, "t"); /* unknown event */
    size_t at = block(&fl, SNAP_DEVS, db.b, db.n);
    end_block(&fl, 7, 0, 0);
    snprintf(want, sizeof(want), "DEVS block at offset %zu: malformed device record after "
             "record 2", at);
    expect_refused(&fl, seal, -EPROTO, want);

    /* A flipped payload byte of a good block: checksum, or (sealed) it
     * would not authenticate if the CRC were fixed up too. */
    file_start(&fl, 7, seal);
    db.n = 0;
    devs_good(&db);
    at = block(&fl, SNAP_DEVS, db.b, db.n);
    end_block(&fl, 7, 0, 0);
    fl.f.b[at + SNAP_BLK_HDR + 3] ^= 0x20;
    snprintf(want, sizeof(want), "bad block at offset %zu (checksum mismatch)", at);
    expect_refused(&fl, seal, -EBADMSG, want);
    if (seal) {
        uint32_t len = wal_get32(fl.f.b + at);
        uint32_t c = wal_crc32c(0, fl.f.b + at, 4);
        c = wal_crc32c(c, fl.f.b + at + 8, SNAP_BLK_HDR - 8 + len);
        wal_put32(fl.f.b + at + 4, c);
        snprintf(want, sizeof(want), "block at offset %zu does not authenticate", at);
        expect_refused(&fl, seal, -EBADMSG, want);
    }
    /* A DEVS block dropped whole: END's block count disagrees (sealed:
     * END's nonce counter no longer matches its place first). */
    file_start(&fl, 7, seal);
    db.n = 0;
    devs_good(&db);
    block(&fl, SNAP_DEVS, db.b, db.n);
    fl.f.n = WAL_FHDR_SIZE;
    end_block(&fl, 7, 0, 0);
    if (seal)
        expect_refused(&fl, seal, -EBADMSG, "block at offset 64 does not authenticate");
    else
        expect_refused(&fl, seal, -EPROTO, "END block at offset 64 disagrees");
    if (seal)
        return;
    /* ics-check says DAMAGED with the same message. */
    file_start(&fl, 7, NULL);
    db.n = 0;
    devs_good(&db);
    u8(&db, 8);
    at = block(&fl, SNAP_DEVS, db.b, db.n);
    end_block(&fl, 7, 0, 0);
    char dir[256], path[512], cmd[1024], out[4096];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/snap-%016llx.snap", dir, 7ull);
    spit(path, fl.f.b, fl.f.n);
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", ics_check, dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    int st = pclose(p);
    snprintf(want, sizeof(want), "DAMAGED: DEVS block at offset %zu: malformed device record "
             "after record 2", at);
    if (!strstr(out, want))
        fprintf(stderr, "ics-check said:\n%s", out);
    CHECK(strstr(out, want));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    /* ...and a store refuses to start on it, naming the file. */
    struct store_config cfg = {.dir = dir};
    engine_t *e = hengine(16);
    store_t *s;
    char err[512];
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, path) && strstr(err, "malformed device record"));
    store_close(s);
    hengine_done(e);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    ics_check = argv[1];
    old_format_loads();
    devs_decoder();
    devs_load(NULL);
    devs_corrupt(NULL);
    char dir[256], key[300];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s/key", dir);
    write_key(key, 32);
    struct seal seal;
    char err[256];
    CHECK_EQ(seal_init(&seal, store_io_default(), key, err, sizeof(err)), 0);
    devs_load(&seal);
    devs_corrupt(&seal);
    seal_fini(&seal);
    rm_rf(dir);
    survives_restart(0);
    survives_restart(1);
    overlap_replay();
    printf("test_persist_snap_devs: ok\n");
    return 0;
}
