/*
 * test_persist_snap_devs2.c — the compact DEVS2 block (issue 3: snapshot
 * bytes per row with history):
 *   a. round trip through a real store's snapshot with history_len 16:
 *      every history entry field (event, micros, principal, URI, UTI), the
 *      ring keys, owners, prefs and rows equal before and after; devices
 *      with more rows than a DEVS2 entry carries, records without rows,
 *      entries that point at rows and entries that do not, micros going
 *      backwards, principals and URIs past the block tables' size; and
 *      with history_len 256 a history longer than one entry holds;
 *   b. a snapshot written before DEVS2 (tests/assets/persist/devs_v1.snap,
 *      DEVS blocks from the previous writer) still loads, history and all;
 *   c. the DEVS2 decoder on hand-made payloads (every field, and each kind
 *      of damage refused), and a damaged DEVS2 block of a real file
 *      refused by the loader, the store and ics-check with a message
 *      naming the block.
 */
#include "ptest.h"
#include "snap.h"
#include "wal.h"

static const char *ics_check, *assets;

/* --- engine contents as strings ------------------------------------------ */
struct strs { char **v; size_t n, cap; };
static void strs_add(struct strs *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = realloc(l->v, l->cap * sizeof(char *));
        CHECK(l->v);
    }
    l->v[l->n++] = strdup(s);
}
static void strs_free(struct strs *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}
static int hist_cb(void *arg, const struct engine_hist *h)
{
    char s[2600];
    snprintf(s, sizeof(s), "%u|%llu|%.*s|%.*s|%.*s", h->event, (unsigned long long)h->micros,
             h->principal_len, h->principal, h->uri_len, h->uri, h->uti_len, h->uti);
    strs_add(arg, s);
    return 0;
}
static int devs_cb(void *arg, const struct engine_device *d)
{
    char s[600];
    snprintf(s, sizeof(s), "%.*s", d->device_len, d->device);
    strs_add(arg, s);
    return 0;
}
static int info_cb_text(void *arg, const struct engine_row *r)
{
    snprintf(arg, 256, "%.*s|%.*s", r->owner_len, r->owner ? (const char *)r->owner : "",
             (int)r->prefs_len, r->prefs ? (const char *)r->prefs : "");
    return 0;
}
/* Every device record: "dev owner|prefs rows", then each history entry,
 * newest first, then the ring's key as seen by a logged add. */
static struct strs engine_text(engine_t *e)
{
    struct strs devs = {0}, out = {0};
    uint64_t cur = 0;
    do
        CHECK(engine_iterate_devices(e, &cur, 1000, devs_cb, NULL, &devs) >= 0);
    while (cur);
    qsort(devs.v, devs.n, sizeof(char *), strp_cmp);
    for (size_t i = 0; i < devs.n; i++) {
        const char *d = devs.v[i];
        char inf[256] = "", s[1024];
        CHECK_EQ(engine_device_info(e, d, strlen(d), info_cb_text, inf), 0);
        snprintf(s, sizeof(s), "%s %s %d", d, inf,
                 engine_inquire_device(e, d, strlen(d), NULL, NULL, NULL));
        strs_add(&out, s);
        CHECK(engine_history_get(e, d, strlen(d), 1000, hist_cb, &out) >= 0);
    }
    strs_free(&devs);
    return out;
}
static void strs_check_equal(const struct strs *a, const struct strs *b)
{
    if (a->n != b->n)
        fprintf(stderr, "%zu lines before, %zu after\n", a->n, b->n);
    CHECK_EQ(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i], b->v[i]))
            fprintf(stderr, "line %zu: '%s' vs '%s'\n", i, a->v[i], b->v[i]);
        CHECK(strcmp(a->v[i], b->v[i]) == 0);
    }
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

static void map_async(store_t *s, const char *dev, const char *uri, const char *uti,
                      const char *actor, struct wg *w)
{
    struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                "owner-x", 7, 0, 0};
    wg_add(w);
    if (store_map(s, &rq, actor, strlen(actor), wg_done, w) < 0)
        wg_cancel(w);
}
static void add_hist(engine_t *e, const char *dev, uint8_t ev, uint64_t micros,
                     const char *pr, const char *uri, const char *uti)
{
    struct engine_hist h = {.micros = micros, .event = ev,
                            .principal = (const uint8_t *)pr, .principal_len = (uint16_t)strlen(pr),
                            .uri = (const uint8_t *)uri, .uri_len = (uint16_t)strlen(uri),
                            .uti = (const uint8_t *)uti, .uti_len = (uint16_t)strlen(uti)};
    CHECK_EQ(engine_history_add(e, dev, strlen(dev), &h), 0);
}

/* The snapshot file of dir (the only one), read whole. */
static uint8_t *snap_file(const char *dir, char *path, size_t plen, size_t *n)
{
    char names[4][64];
    CHECK_EQ(list_files(dir, "snap-", names, 4), 1);
    snprintf(path, plen, "%s/%s", dir, names[0]);
    return slurp(path, n);
}
static int count_blocks(const uint8_t *p, size_t n, uint8_t type)
{
    int c = 0;
    size_t off = WAL_FHDR_SIZE;
    struct snap_block b;
    long span;
    while ((span = snap_block_decode(p + off, n - off, &b)) > 0) {
        c += b.type == type;
        off += (size_t)span;
    }
    return c;
}

/* --- a. ---------------------------------------------------------------------- */
static void roundtrip(uint32_t hlen)
{
    char dir[256], err[512], path[600];
    mk_tmpdir(dir, sizeof(dir));
    struct store_config cfg = {.dir = dir, .durability = STORE_RELAXED};
    engine_t *e = hengine(hlen);
    store_t *s;
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
    CHECK_EQ(store_start(s), 0);
    struct wg w;
    wg_init(&w);
    char dev[64], uri[1100], uti[200], actor[200];
    /* 5000 devices, one row each, each URI and principal its own: more
     * than a block's tables hold (SNAP_URI_MAX), so later literals take no
     * id and must still decode. */
    for (int i = 0; i < 5000; i++) {
        snprintf(dev, sizeof(dev), "d-%05d", i);
        snprintf(uri, sizeof(uri), "https://svc-%05d.example", i);
        snprintf(uti, sizeof(uti), "u-%05d", i);
        snprintf(actor, sizeof(actor), "actor-%d", i % 4500);
        map_async(s, dev, uri, uti, actor, &w);
    }
    /* 70 rows on one device (past SNAP_DEV_ROWS_MAX), 5 shared URIs. */
    for (int i = 0; i < 70; i++) {
        snprintf(uri, sizeof(uri), "https://many-%d.example", i % 5);
        snprintf(uti, sizeof(uti), "many-%02d", i);
        map_async(s, "many", uri, uti, i % 2 ? "alice" : "bob", &w);
    }
    /* A device with prefs; one demapped to no rows (owner and prefs stay);
     * one with a demapped row (its entry points at no row). */
    map_async(s, "pref", "https://p.example", "p1", "alice", &w);
    map_async(s, "pref", "https://p.example", "p2", "", &w);
    map_async(s, "gone", "https://g.example", "g1", "carol", &w);
    map_async(s, "half", "https://h.example", "h1", "dave", &w);
    map_async(s, "half", "https://h.example", "h2", "dave", &w);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    wg_add(&w);
    CHECK(store_set_prefs(s, "pref", 4, "{\"a\":1}", 7, "alice", 5, wg_done, &w) >= 0);
    wg_add(&w);
    CHECK(store_set_prefs(s, "gone", 4, "{\"g\":2}", 7, "carol", 5, wg_done, &w) >= 0);
    wg_add(&w);
    CHECK(store_demap_device(s, "gone", 4, "erin", 4, wg_done, &w) >= 0);
    wg_add(&w);
    CHECK(store_demap(s, "half", 4, "https://h.example", 17, "h1", 2, 0, "dave", 4, wg_done,
                      &w) >= 0);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    /* Entries added directly (not logged): expiry, micros going back and
     * to the extremes, an empty principal, the longest fields. */
    memset(uri, 'x', 1024);
    memcpy(uri, "https://", 8);
    uri[1024] = 0;
    memset(uti, 'y', 128);
    uti[128] = 0;
    memset(actor, 'z', 128);
    actor[128] = 0;
    add_hist(e, "half", ENGINE_H_EXPIRY, 5, "", "https://h.example", "h2");
    add_hist(e, "half", ENGINE_H_MAP, UINT64_MAX, actor, uri, uti);
    add_hist(e, "half", ENGINE_H_DEMAP, 0, actor, uri, uti);
    add_hist(e, "half", ENGINE_H_MAP, 1ull << 62, "dave", "https://h.example", "h2");
    /* The writer's worst case per entry (its size bound is checked with an
     * abort): micros jumping by ~2^62 each time, empty principal and URI. */
    map_async(s, "wild", "https://w.example", "w1", "x", &w);
    wg_wait(&w);
    for (uint32_t i = 0; i < hlen; i++)
        add_hist(e, "wild", ENGINE_H_DEMAP, i % 2 ? 5 : (1ull << 62) + i, "", "", "");
    if (hlen > 16) {
        /* More history bytes than one DEVS2 entry takes (HIST_CHUNK). */
        for (uint32_t i = 0; i < hlen; i++) {
            uri[20] = (char)('a' + i % 26);
            add_hist(e, "many", (uint8_t)(i % 3 ? ENGINE_H_MAP : ENGINE_H_DEMAP),
                     1000000 - i * 7, i % 2 ? actor : "bob", i % 5 ? uri : "https://many-1.example",
                     i % 5 ? uti : "many-06");
        }
    }
    struct strs before = engine_text(e);
    CHECK(before.n > 5000);
    wg_add(&w);
    CHECK_EQ(store_snapshot(s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    store_close(s);
    hengine_done(e);

    size_t n;
    uint8_t *snap = snap_file(dir, path, sizeof(path), &n);
    CHECK(count_blocks(snap, n, SNAP_DEVS2) >= 1);
    CHECK_EQ(count_blocks(snap, n, SNAP_DEVS), 0);
    /* Loaded from the file alone... */
    e = hengine(hlen);
    struct snap_info info;
    int rc = snap_load_mem(e, snap, n, NULL, NULL, NULL, &info, err, sizeof(err));
    if (rc)
        fprintf(stderr, "load: %s\n", err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(info.rows, 5000 + 70 + 2 + 1 + 1);
    CHECK(info.dev_records >= 5005);
    struct strs after = engine_text(e);
    strs_check_equal(&before, &after);
    strs_free(&after);
    /* The ring keys came along: a logged add at the key is a no-op, one
     * above it is not. */
    struct engine_hist h = {.micros = 9, .event = ENGINE_H_MAP, .lsn = 5000, .part = 0};
    int had = engine_history_get(e, "d-00042", 7, 1000, NULL, NULL);
    h.lsn = 43; /* d-00042's map: LSN 43 */
    CHECK_EQ(engine_history_add(e, "d-00042", 7, &h), 0);
    CHECK_EQ(engine_history_get(e, "d-00042", 7, 1000, NULL, NULL), had);
    h.lsn = 100000;
    CHECK_EQ(engine_history_add(e, "d-00042", 7, &h), 0);
    CHECK_EQ(engine_history_get(e, "d-00042", 7, 1000, NULL, NULL), had + 1);
    hengine_done(e);
    /* ...and through a store's recovery. */
    e = hengine(hlen);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
    after = engine_text(e);
    strs_check_equal(&before, &after);
    strs_free(&after);
    store_close(s);
    hengine_done(e);
    /* ics-check counts the same rows and the history entries. */
    char cmd[1024], out[4096], want[128];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", ics_check, dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t on = fread(out, 1, sizeof(out) - 1, p);
    out[on] = 0;
    CHECK_EQ(pclose(p), 0);
    snprintf(want, sizeof(want), "%llu rows", (unsigned long long)info.rows);
    if (!strstr(out, want))
        fprintf(stderr, "ics-check said:\n%s", out);
    CHECK(strstr(out, want));
    snprintf(want, sizeof(want), "%llu history entries", (unsigned long long)info.hist_entries);
    CHECK(strstr(out, want));
    free(snap);
    strs_free(&before);
    rm_rf(dir);
}

/* --- b. ---------------------------------------------------------------------- */
static void old_file_loads(void)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/devs_v1.snap", assets);
    size_t n;
    uint8_t *f = slurp(path, &n);
    CHECK(count_blocks(f, n, SNAP_DEVS) >= 1);
    CHECK_EQ(count_blocks(f, n, SNAP_DEVS2), 0);
    engine_t *e = hengine(16);
    struct snap_info info;
    char err[256] = "";
    int rc = snap_load_mem(e, f, n, NULL, NULL, NULL, &info, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(info.rows, 5);
    CHECK_EQ(info.dev_records, 4);
    CHECK_EQ(info.hist_entries, 11);
    struct strs t = engine_text(e);
    static const char *const want[] = {
        "device-00 owner| 2",
        "1|1795349964920311|tester|https://a.example|uti-01",
        "1|1795349964884373|tester|https://b.example|uti-00",
        "device-01 owner|{\"share\":0} -2",
        "2|1795349964938023|bob|https://b.example|uti-03",
        "2|1795349964938023|bob|https://a.example|uti-02",
        "1|1795349964936320|tester|https://b.example|uti-03",
        "1|1795349964931836|tester|https://a.example|uti-02",
        "device-02 owner| 1",
        "2|1795349964938045|bob|https://a.example|uti-05",
        "1|1795349964937140|tester|https://a.example|uti-05",
        "1|1795349964936862|tester|https://a.example|uti-04",
        "device-03 owner| 2",
        "1|1795349964937717|tester|https://a.example|uti-07",
        "1|1795349964937424|tester|https://b.example|uti-06",
    };
    struct strs w = {0};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        strs_add(&w, want[i]);
    strs_check_equal(&w, &t);
    strs_free(&w);
    strs_free(&t);
    hengine_done(e);
    free(f);
}

/* --- c. ---------------------------------------------------------------------- */
struct buf { uint8_t b[1 << 12]; size_t n; };
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
static void uref_lit(struct buf *b, const char *s)
{
    var(b, ((uint64_t)strlen(s) << 1) | 1);
    put(b, s, strlen(s));
}
static uint64_t zig(int64_t d) { return ((uint64_t)d << 1) ^ (uint64_t)(d >> 63); }

/* Faults a good payload can be given (0: none). */
enum { F_NONE, F_FLAGS, F_META_ROWS, F_PREFS_ALONE, F_NROWS0, F_NROWS_BIG, F_ROWREF,
       F_PRIN_ID, F_URI_ID, F_EVENT, F_HBITS, F_NHIST, F_CUT, F_N };
/* "dev" (owner "own", prefs "PF", two rows, entries pointing at them) and
 * "gone" (a record without rows, an entry with table refs and a literal
 * UTI). */
static void devs2_payload(struct buf *b, int fault)
{
    u8(b, fault == F_FLAGS ? 8 : fault == F_META_ROWS ? 1 | 4 : 4 | 2);
    str(b, "dev");
    str(b, "own");
    str(b, "PF");
    var(b, fault == F_NROWS0 ? 0 : fault == F_NROWS_BIG ? SNAP_DEV_ROWS_MAX + 1 : 2);
    uref_lit(b, "https://u");
    str(b, "t1");
    var(b, 0);
    var(b, 3);
    var(b, fault == F_URI_ID ? 2 : 0); /* URI id 0 (id 1 does not exist) */
    str(b, "t2");
    var(b, 2000000000);
    var(b, 4);
    var(b, 4); /* key */
    var(b, 0);
    var(b, 2);
    u8(b, ENGINE_H_MAP | 8 | 16);
    var(b, zig(100));
    str(b, "who");
    var(b, 0);
    u8(b, (uint8_t)((fault == F_EVENT ? 3 : ENGINE_H_DEMAP) | 16 | (fault == F_HBITS ? 32 : 0)));
    var(b, zig(-10));
    var(b, fault == F_PRIN_ID ? 1 : 0);
    var(b, fault == F_ROWREF ? 2 : 1);
    u8(b, fault == F_PREFS_ALONE ? 2 : 1);
    str(b, "gone");
    str(b, "ghost");
    var(b, 7);
    var(b, 1);
    var(b, fault == F_NHIST ? 2 : 1);
    u8(b, ENGINE_H_EXPIRY);
    var(b, zig(5));
    var(b, 0);
    var(b, 0);
    str(b, "g1");
    if (fault == F_CUT)
        b->n -= 1;
}

static void devs2_decoder(void)
{
    struct buf b = {.n = 0};
    devs2_payload(&b, F_NONE);
    struct snap_devs2 *it = malloc(sizeof(*it));
    CHECK(it);
    struct snap_dev d;
    struct engine_hist h;
    snap_devs2_init(it, b.b, b.n);
    CHECK_EQ(snap_devs2_next(it, &d), 1);
    CHECK(!d.meta && d.has_prefs && d.nrows == 2 && d.nhist == 2 && d.hist_lsn == 4);
    CHECK(d.owner.n == 3 && !memcmp(d.owner.p, "own", 3) && d.prefs.n == 2);
    CHECK(d.rows[1].uri.n == 9 && !memcmp(d.rows[1].uri.p, "https://u", 9));
    CHECK(d.rows[1].expires_at == 2000000000u && d.rows[1].lsn == 4);
    struct snap_drow rows[2];
    memcpy(rows, d.rows, sizeof(rows));
    struct snap_dev d1 = d;
    CHECK_EQ(snap_devs2_next(it, &d), 1);
    CHECK(d.meta && !d.has_prefs && d.nrows == 0 && d.nhist == 1 && d.hist_lsn == 7 &&
          d.hist_part == 1);
    CHECK_EQ(snap_devs2_next(it, &d), 0);
    /* The first entry's history decodes again after the iterator moved on
     * (the loader's lookahead does this). */
    struct snap_hist2 c;
    snap_hist2_init(&c, it, &d1, rows);
    CHECK_EQ(snap_hist2_next(&c, &h), 1);
    CHECK(h.event == ENGINE_H_MAP && h.micros == 100 && h.principal_len == 3 &&
          h.uti_len == 2 && !memcmp(h.uti, "t1", 2) && h.uri_len == 9);
    CHECK_EQ(snap_hist2_next(&c, &h), 1);
    CHECK(h.event == ENGINE_H_DEMAP && h.micros == 90 && !memcmp(h.principal, "who", 3) &&
          !memcmp(h.uti, "t2", 2));
    CHECK_EQ(snap_hist2_next(&c, &h), 0);
    snap_hist2_init(&c, it, &d, NULL);
    CHECK_EQ(snap_hist2_next(&c, &h), 1);
    CHECK(h.event == ENGINE_H_EXPIRY && h.micros == 95 && h.principal_len == 3 &&
          h.uri_len == 9 && h.uti_len == 2 && !memcmp(h.uti, "g1", 2));
    CHECK_EQ(snap_hist2_next(&c, &h), 0);
    /* Each fault is refused, in the entry it is in. */
    for (int f = F_FLAGS; f < F_N; f++) {
        b.n = 0;
        devs2_payload(&b, f);
        snap_devs2_init(it, b.b, b.n);
        int first = snap_devs2_next(it, &d);
        int second = first == 1 ? snap_devs2_next(it, &d) : first;
        int in_second = f == F_PREFS_ALONE || f == F_NHIST || f == F_CUT;
        if ((in_second ? second : first) != -EPROTO)
            fprintf(stderr, "fault %d: %d %d\n", f, first, second);
        if (in_second)
            CHECK_EQ(first, 1);
        CHECK_EQ(in_second ? second : first, -EPROTO);
    }
    free(it);
}

static void block_into(struct buf *f, uint8_t type, const uint8_t *pl, size_t n)
{
    uint8_t hdr[SNAP_BLK_HDR] = {0};
    hdr[8] = type;
    wal_put32(hdr, (uint32_t)n);
    size_t at = f->n;
    put(f, hdr, SNAP_BLK_HDR);
    put(f, pl, n);
    uint32_t crc = wal_crc32c(0, f->b + at, 4);
    wal_put32(f->b + at + 4, wal_crc32c(crc, f->b + at + 8, SNAP_BLK_HDR - 8 + n));
}
static void hand_file(struct buf *f, int fault)
{
    f->n = 0;
    struct wal_fhdr h = {.version = 1, .lsn = 7, .created_us = 1};
    memcpy(h.magic, wal_magic_snap, 8);
    wal_fhdr_encode(f->b, &h);
    f->n = WAL_FHDR_SIZE;
    struct buf pl = {.n = 0}, e = {.n = 0};
    devs2_payload(&pl, fault);
    block_into(f, SNAP_DEVS2, pl.b, pl.n);
    var(&e, 7);
    var(&e, 2);
    var(&e, 1);
    var(&e, 1);
    block_into(f, SNAP_END, e.b, e.n);
}

static void devs2_load_and_refuse(void)
{
    struct buf f;
    hand_file(&f, F_NONE);
    engine_t *e = hengine(16);
    struct snap_info info;
    char err[256] = "";
    int rc = snap_load_mem(e, f.b, f.n, NULL, NULL, NULL, &info, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK_EQ(rc, 0);
    CHECK(info.rows == 2 && info.devices == 1 && info.dev_records == 2 && info.hist_entries == 3);
    struct strs t = engine_text(e);
    static const char *const want[] = {
        "dev own|PF 2",
        "2|90|who|https://u|t2",
        "1|100|who|https://u|t1",
        "gone ghost| -2",
        "4|95|who|https://u|g1",
    };
    CHECK_EQ(t.n, 5);
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(t.v[i], want[i]))
            fprintf(stderr, "%s vs %s\n", t.v[i], want[i]);
        CHECK(!strcmp(t.v[i], want[i]));
    }
    strs_free(&t);
    hengine_done(e);
    /* A bad row reference in the first record, checksum intact. */
    hand_file(&f, F_ROWREF);
    e = hengine(16);
    rc = snap_load_mem(NULL, f.b, f.n, NULL, NULL, NULL, &info, err, sizeof(err));
    CHECK_EQ(rc, -EPROTO);
    CHECK(strstr(err, "DEVS block at offset 64: malformed device record after record 0"));
    CHECK_EQ(snap_load_mem(e, f.b, f.n, NULL, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    hengine_done(e);
}

/* A real file's DEVS2 block cut by a byte (length and checksum fixed up):
 * the loader, a store and ics-check refuse it, naming the block. */
static void real_block_cut(void)
{
    char dir[256], err[512], path[600];
    mk_tmpdir(dir, sizeof(dir));
    struct store_config cfg = {.dir = dir, .durability = STORE_RELAXED};
    engine_t *e = hengine(16);
    store_t *s;
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), 0);
    CHECK_EQ(store_start(s), 0);
    struct wg w;
    wg_init(&w);
    char dev[32], uti[32];
    for (int i = 0; i < 40; i++) {
        snprintf(dev, sizeof(dev), "dev-%02d", i / 2);
        snprintf(uti, sizeof(uti), "uti-%02d", i);
        map_async(s, dev, "https://a.example", uti, "tester", &w);
    }
    wg_wait(&w);
    wg_add(&w);
    CHECK_EQ(store_snapshot(s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.failed, 0);
    store_close(s);
    hengine_done(e);
    size_t n;
    uint8_t *p = snap_file(dir, path, sizeof(path), &n);
    size_t off = WAL_FHDR_SIZE, at = 0;
    struct snap_block b;
    long span;
    while ((span = snap_block_decode(p + off, n - off, &b)) > 0) {
        if (b.type == SNAP_DEVS2) {
            at = off;
            break;
        }
        off += (size_t)span;
    }
    CHECK(at);
    uint32_t len = wal_get32(p + at);
    memmove(p + at + SNAP_BLK_HDR + len - 1, p + at + SNAP_BLK_HDR + len,
            n - (at + SNAP_BLK_HDR + len));
    n--;
    wal_put32(p + at, len - 1);
    uint32_t crc = wal_crc32c(0, p + at, 4);
    wal_put32(p + at + 4, wal_crc32c(crc, p + at + 8, SNAP_BLK_HDR - 8 + len - 1));
    spit(path, p, n);
    char want[160];
    snprintf(want, sizeof(want), "DEVS block at offset %zu: malformed device record after "
             "record 19", at);
    struct snap_info info;
    CHECK_EQ(snap_load_mem(NULL, p, n, NULL, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    if (!strstr(err, want))
        fprintf(stderr, "got '%s', want '%s'\n", err, want);
    CHECK(strstr(err, want));
    e = hengine(16);
    CHECK_EQ(store_open(&s, e, &cfg, err, sizeof(err)), 0);
    CHECK_EQ(store_recover(s, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, path) && strstr(err, want));
    store_close(s);
    hengine_done(e);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", ics_check, dir);
    FILE *pp = popen(cmd, "r");
    CHECK(pp);
    size_t on = fread(out, 1, sizeof(out) - 1, pp);
    out[on] = 0;
    int st = pclose(pp);
    if (!strstr(out, want))
        fprintf(stderr, "ics-check said:\n%s", out);
    CHECK(strstr(out, "DAMAGED") && strstr(out, want));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    free(p);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc == 3);
    ics_check = argv[1];
    assets = argv[2];
    devs2_decoder();
    devs2_load_and_refuse();
    old_file_loads();
    real_block_cut();
    roundtrip(16);
    roundtrip(256);
    printf("test_persist_snap_devs2: ok\n");
    return 0;
}
