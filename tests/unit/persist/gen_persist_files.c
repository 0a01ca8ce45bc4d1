/*
 * gen_persist_files — writes the fuzz seed corpora and the corrupt fixtures
 * of persist/ from real files a real store writes (not a test; rerun it
 * when the format changes):
 *   gen_persist_files REPO_ROOT
 * fuzz/corpus/fuzz_wal_record/: a segment (mode 0), a cut one, and every
 *   record type's payload (mode 1); fuzz/corpus/fuzz_snap_load/: a snapshot
 *   (mode 0) and its first ROWS payload (mode 1).
 *   gen_persist_files REPO_ROOT devs
 * writes only fuzz/corpus/fuzz_snap_load/{snapshot_devs2,devs2_block}: a
 *   snapshot of an engine with history (records without rows, map/demap/
 *   expiry entries; mode 0) and its DEVS2 payload (mode 3), leaving the
 *   other seeds and fixtures as they are. The older seeds snapshot_devs
 *   and devs_block (mode 2) hold the DEVS layout the writer used before
 *   DEVS2, as does tests/assets/persist/devs_v1.snap (a copy of
 *   snapshot_devs): kept, not regenerated, so old files stay covered.
 * tests/assets/persist/{torn_tail,mid_corrupt,bad_snapshot}/: data
 *   directories test_persist_corrupt recovers or refuses.
 */
#include "ptest.h"
#include "snap.h"
#include "wal.h"

static void put(const char *root, const char *sub, const char *name, uint8_t mode,
                const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", root, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", root, sub, name);
    uint8_t *b = malloc(n + 1);
    b[0] = mode;
    memcpy(b + 1, p, n);
    spit(path, b, n + 1);
    free(b);
}

static int aux_apply(void *ctx, const void *p, size_t n, uint64_t lsn) { return 0; }
static int aux_dump(void *ctx, int (*emit)(void *, const void *, size_t), void *ectx)
{
    return emit(ectx, "principal alice", 15);
}
static const struct store_aux_ops aux_ops = {aux_apply, aux_dump};

static void make_dir(const char *dir, int snapshot)
{
    char err[512];
    struct store_config cfg = {.dir = dir, .segment_bytes = snapshot ? 1024 : 0};
    struct rig r;
    struct engine_config ec = {.initial_devices = 16}; /* see ptest.h rig_open */
    CHECK(engine_create(&r.e, &ec) == 0);
    CHECK(store_open(&r.s, r.e, &cfg, err, sizeof(err)) == 0);
    CHECK(store_register_aux(r.s, 4, &aux_ops, NULL) == 0);
    CHECK(store_recover(r.s, err, sizeof(err)) == 0);
    CHECK(store_start(r.s) == 0);
    struct wg w;
    wg_init(&w);
    char dev[32], uti[32];
    for (int i = 0; i < 12; i++) {
        snprintf(dev, sizeof(dev), "device-%02d", i / 2);
        snprintf(uti, sizeof(uti), "uti-%02d", i);
        map_wait(r.s, dev, i % 3 ? "https://a.example" : "https://b.example", uti, "owner",
                 i % 4 ? 0 : 2000000000u, &w);
    }
    if (snapshot) {
        wg_add(&w);
        store_set_prefs(r.s, "device-01", 9, "{\"share\":0}", 11, "alice", 5, wg_done, &w);
        wg_add(&w);
        store_snapshot(r.s, wg_done, &w);
        wg_wait(&w);
        wg_add(&w);
        store_demap(r.s, "device-02", 9, "https://a.example", 17, "uti-05", 6, 0, "bob", 3,
                    wg_done, &w);
        wg_add(&w);
        store_demap_device(r.s, "device-03", 9, "bob", 3, wg_done, &w);
        wg_add(&w);
        store_demap_binding(r.s, "https://a.example", 17, "uti-01", 6, "bob", 3, wg_done, &w);
        wg_add(&w);
        store_demap_service(r.s, "https://b.example", 17, "bob", 3, wg_done, &w);
        wg_add(&w);
        store_aux(r.s, 4, "principal bob", 13, wg_done, &w);
        wg_wait(&w);
    }
    rig_close(&r);
}

/* A snapshot with DEVS blocks: history_len 16, records without rows. */
static void make_devs(const char *corpus)
{
    char dir[256], err[512], names[4][64], path[1024];
    mk_tmpdir(dir, sizeof(dir));
    struct store_config cfg = {.dir = dir};
    struct rig r;
    struct engine_config ec = {.initial_devices = 16, .history_len = 16};
    CHECK(engine_create(&r.e, &ec) == 0);
    CHECK(store_open(&r.s, r.e, &cfg, err, sizeof(err)) == 0);
    CHECK(store_recover(r.s, err, sizeof(err)) == 0);
    CHECK(store_start(r.s) == 0);
    struct wg w;
    wg_init(&w);
    char dev[32], uti[32];
    for (int i = 0; i < 8; i++) {
        snprintf(dev, sizeof(dev), "device-%02d", i / 2);
        snprintf(uti, sizeof(uti), "uti-%02d", i);
        map_wait(r.s, dev, i % 3 ? "https://a.example" : "https://b.example", uti, "owner", 0,
                 &w);
    }
    wg_add(&w);
    store_set_prefs(r.s, "device-01", 9, "{\"share\":0}", 11, "alice", 5, wg_done, &w);
    wg_add(&w);
    store_demap_device(r.s, "device-01", 9, "bob", 3, wg_done, &w);
    wg_add(&w);
    store_demap(r.s, "device-02", 9, "https://a.example", 17, "uti-05", 6, 0, "bob", 3,
                wg_done, &w);
    wg_add(&w);
    store_snapshot(r.s, wg_done, &w);
    wg_wait(&w);
    rig_close(&r);
    CHECK(list_files(dir, "snap-", names, 4) == 1);
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *snap = slurp(path, &n);
    put(corpus, "fuzz_snap_load", "snapshot_devs2", 0, snap, n);
    size_t off = WAL_FHDR_SIZE;
    struct snap_block b;
    long span;
    int found = 0;
    while ((span = snap_block_decode(snap + off, n - off, &b)) > 0) {
        if (b.type == SNAP_DEVS2) {
            put(corpus, "fuzz_snap_load", "devs2_block", 3, b.payload, b.len);
            found = 1;
            break;
        }
        off += (size_t)span;
    }
    CHECK(found);
    printf("corpus: snapshot with DEVS2 (%zu bytes)\n", n);
    free(snap);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[2], "devs")) {
        char corpus[512];
        snprintf(corpus, sizeof(corpus), "%s/fuzz/corpus", argv[1]);
        make_devs(corpus);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: gen_persist_files REPO_ROOT\n");
        return 2;
    }
    char corpus[512], assets[512], dir[256], path[1024], names[64][64];
    snprintf(corpus, sizeof(corpus), "%s/fuzz/corpus", argv[1]);
    snprintf(assets, sizeof(assets), "%s/tests/assets/persist", argv[1]);
    mkdir(assets, 0755);

    /* A plain 12-record log: corpus and the two log fixtures. */
    mk_tmpdir(dir, sizeof(dir));
    make_dir(dir, 0);
    CHECK(list_files(dir, "wal-", names, 64) == 1);
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *seg = slurp(path, &n);
    while (n > WAL_FHDR_SIZE && seg[n - 1] == 0)
        n--; /* drop the zero fill (these records end with the actor name, never 0) */
    put(corpus, "fuzz_wal_record", "segment", 0, seg, n);
    put(corpus, "fuzz_wal_record", "segment_cut", 0, seg, n - 9);
    size_t off = WAL_FHDR_SIZE, last_off = 0, fifth = 0;
    for (int i = 0; off < n; i++) {
        struct wal_rec rec;
        long span = wal_rec_decode(seg + off, n - off, &rec);
        CHECK(span > 0);
        if (i == 4)
            fifth = off;
        if (i == 0) {
            uint8_t *pb = malloc(rec.len + 1);
            pb[0] = rec.type;
            memcpy(pb + 1, rec.payload, rec.len);
            put(corpus, "fuzz_wal_record", "payload_MAP", 1, pb, rec.len + 1);
            free(pb);
        }
        last_off = off;
        off += (size_t)span;
    }
    struct wal_change ex = {.type = WAL_EXPIRE, .micros = 1,
                            .dev = {(const uint8_t *)"device-00", 9},
                            .uri = {(const uint8_t *)"https://a.example", 17},
                            .uti = {(const uint8_t *)"uti-00", 6}};
    uint8_t exb[128];
    exb[0] = WAL_EXPIRE;
    wal_change_encode(exb + 1, &ex);
    put(corpus, "fuzz_wal_record", "payload_EXPIRE", 1, exb, wal_change_size(&ex) + 1);
    char fx[600];
    snprintf(fx, sizeof(fx), "%s/torn_tail", assets);
    mkdir(fx, 0755);
    snprintf(path, sizeof(path), "%s/%s", fx, names[0]);
    spit(path, seg, last_off + 11);                 /* last record cut short */
    snprintf(fx, sizeof(fx), "%s/mid_corrupt", assets);
    mkdir(fx, 0755);
    snprintf(path, sizeof(path), "%s/%s", fx, names[0]);
    seg[fifth + WAL_REC_HDR + 4] ^= 0x20;           /* record 5's payload */
    spit(path, seg, n);
    printf("fixtures: torn tail at %zu, mid corruption at %zu (LSN 5)\n", last_off, fifth);
    free(seg);
    rm_rf(dir);

    /* A snapshot with every kind of block, and a log of every record type. */
    mk_tmpdir(dir, sizeof(dir));
    make_dir(dir, 1);
    CHECK(list_files(dir, "snap-", names, 64) == 1);
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    uint8_t *snap = slurp(path, &n);
    put(corpus, "fuzz_snap_load", "snapshot", 0, snap, n);
    struct snap_block b;
    CHECK(snap_block_decode(snap + WAL_FHDR_SIZE, n - WAL_FHDR_SIZE, &b) > 0);
    CHECK(b.type == SNAP_ROWS);
    put(corpus, "fuzz_snap_load", "rows_block", 1, b.payload, b.len);
    snprintf(fx, sizeof(fx), "%s/bad_snapshot", assets);
    mkdir(fx, 0755);
    char snapname[64];
    snprintf(snapname, sizeof(snapname), "%s", names[0]);
    int nseg = list_files(dir, "wal-", names, 64);
    for (int i = 0; i < nseg; i++) {
        char from[1024], to[1024];
        snprintf(from, sizeof(from), "%s/%.63s", dir, names[i]);
        snprintf(to, sizeof(to), "%s/%.63s", fx, names[i]);
        size_t m;
        uint8_t *s = slurp(from, &m);
        spit(to, s, m);
        /* every record type, as mode 1 payloads */
        size_t o = WAL_FHDR_SIZE;
        while (o < m) {
            struct wal_rec rec;
            long span = wal_rec_decode(s + o, m - o, &rec);
            if (span <= 0)
                break;
            char nm[32];
            snprintf(nm, sizeof(nm), "payload_%s", wal_type_name(rec.type));
            uint8_t *pb = malloc(rec.len + 1);
            pb[0] = rec.type;
            memcpy(pb + 1, rec.payload, rec.len);
            put(corpus, "fuzz_wal_record", nm, 1, pb, rec.len + 1);
            free(pb);
            o += (size_t)span;
        }
        free(s);
    }
    snap[n / 2] ^= 0x01;
    snprintf(path, sizeof(path), "%s/%s", fx, snapname);
    spit(path, snap, n);
    printf("fixture: bad snapshot %s (%zu bytes, byte %zu flipped), %d segments\n", snapname,
           n, n / 2, nseg);
    free(snap);
    rm_rf(dir);
    return 0;
}
