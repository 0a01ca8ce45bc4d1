/*
 * Corruption and truncation: a log cut at every record boundary and inside
 * every record recovers exactly the prefix (torn tail, logged); a flipped
 * byte before the tail refuses to start with a message naming file, offset
 * and LSN (or, with truncate_corrupt, cuts there and says so); damage at
 * the end of a non-last segment is corruption; a damaged snapshot refuses;
 * wrong, missing and short keys and a second process are refused clearly.
 * argv[1] (optional): the ics-check binary, run on intact and damaged dirs.
 */
#include "ptest.h"
#include "wal.h"

#define N 12

static const char *check_bin;

static void make_log(const char *dir, uint64_t seg_bytes, const char *key)
{
    char err[512];
    struct store_config cfg = {.dir = dir, .segment_bytes = seg_bytes, .key_file = key};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < N; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "dev%02d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://c.example", dev, "own", 0, &w), 0);
    }
    rig_close(&r);
}

/* Opens and recovers; returns rows, or -1 with err filled. */
static long try_open(const char *dir, int truncate_corrupt, const char *key,
                     struct logcap *lc, char *err, size_t errlen)
{
    struct store_config cfg = {.dir = dir, .truncate_corrupt = truncate_corrupt,
                               .key_file = key, .log = logcap_fn, .log_ctx = lc};
    struct rig r;
    memset(lc->text, 0, sizeof(lc->text));
    lc->n = 0;
    if (rig_open(&r, &cfg, err, errlen) < 0)
        return -1;
    struct engine_stats es;
    engine_stats(r.e, &es);
    rig_close(&r);
    return (long)es.rows;
}

static int run_check(const char *args, const char *dir)
{
    if (!check_bin)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s %s >/dev/null 2>&1", check_bin, args, dir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void single_segment(void)
{
    char dir[256], err[512], seg[512], names[8][64];
    static struct logcap lc;
    pthread_mutex_init(&lc.mu, NULL);
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 0, NULL);
    CHECK_EQ(list_files(dir, "wal-", names, 8), 1);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *orig = slurp(seg, &n);
    size_t offs[N + 1];
    offs[0] = WAL_FHDR_SIZE;
    for (int i = 0; i < N; i++) {
        struct wal_rec rec;
        long span = wal_rec_decode(orig + offs[i], n - offs[i], &rec);
        CHECK(span > 0);
        CHECK_EQ(rec.lsn, (uint64_t)i + 1);
        offs[i + 1] = offs[i] + (size_t)span;
    }
    /* The rest of the segment is zero-filled ahead of the writes. */
    CHECK(offs[N] <= n);
    for (size_t k = offs[N]; k < n; k++)
        CHECK(orig[k] == 0);
    if (check_bin) {
        CHECK_EQ(run_check("", dir), 0);
        CHECK_EQ(run_check("--dump", dir), 0);
    }
    /* Truncation at and inside every record: the complete prefix survives. */
    for (int i = 0; i < N; i++) {
        size_t cuts[3] = {offs[i], offs[i] + 7, offs[i + 1] - 1};
        for (int c = 0; c < 3; c++) {
            spit(seg, orig, cuts[c]);
            long rows = try_open(dir, 0, NULL, &lc, err, sizeof(err));
            if (rows != i)
                fprintf(stderr, "cut %zu: rows %ld (%s)\n%s", cuts[c], rows, err, lc.text);
            CHECK_EQ(rows, i);
            if (c > 0)
                CHECK(strstr(lc.text, "torn record") != NULL);
            if (i == 0) {
                /* A newest segment without records is removed. */
                CHECK_EQ(list_files(dir, "wal-", names, 8), 0);
            } else {
                /* The torn bytes are cut: the file ends at the prefix. */
                size_t m;
                free(slurp(seg, &m));
                CHECK_EQ(m, offs[i]);
            }
        }
    }
    /* A flipped byte: corruption before the tail, torn at the tail. */
    for (int i = 0; i < N; i++) {
        for (int where = 0; where < 2; where++) {
            uint8_t *b = malloc(n);
            memcpy(b, orig, n);
            size_t at = offs[i] + (where ? WAL_REC_HDR + 3 : 0); /* payload / length */
            b[at] ^= 0x40;
            spit(seg, b, n);
            long rows = try_open(dir, 0, NULL, &lc, err, sizeof(err));
            if (i == N - 1) {
                CHECK_EQ(rows, N - 1);
                CHECK(strstr(lc.text, "torn record") != NULL);
            } else {
                char want[128];
                CHECK_EQ(rows, -1);
                CHECK(strstr(err, names[0]) != NULL);
                snprintf(want, sizeof(want), "offset %zu ", offs[i]);
                CHECK(strstr(err, want) != NULL);
                snprintf(want, sizeof(want), "LSN %d", i + 1);
                CHECK(strstr(err, want) != NULL);
                if (check_bin && where == 0 && i == 3)
                    CHECK_EQ(run_check("", dir), 1);
                /* The operator flag cuts the log there and says so. */
                rows = try_open(dir, 1, NULL, &lc, err, sizeof(err));
                CHECK_EQ(rows, i);
                CHECK(strstr(lc.text, "truncat") != NULL);
                CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), i);
            }
            free(b);
        }
    }
    /* ics-check --truncate cuts a damaged log too. */
    if (check_bin) {
        uint8_t *b = malloc(n);
        memcpy(b, orig, n);
        b[offs[5] + WAL_REC_HDR + 1] ^= 1;
        spit(seg, b, n);
        free(b);
        CHECK_EQ(run_check("", dir), 1);
        CHECK_EQ(run_check("--truncate --yes", dir), 0);
        CHECK_EQ(run_check("", dir), 0);
        CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), 5);
        CHECK_EQ(run_check("--bogus", dir), 2);
    }
    free(orig);
    rm_rf(dir);
    printf("single segment: ok\n");
}

static void multi_segment(void)
{
    char dir[256], err[512], seg[512], names[32][64];
    static struct logcap lc;
    pthread_mutex_init(&lc.mu, NULL);
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 300, NULL);
    int nseg = list_files(dir, "wal-", names, 32);
    CHECK(nseg >= 3);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), N);
    /* Damage the last record of the first segment: not a tail. */
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(seg, &n);
    b[n - 2] ^= 0xff;
    spit(seg, b, n);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, names[0]) != NULL);
    CHECK(strstr(err, "corrupt record") != NULL);
    b[n - 2] ^= 0xff;
    spit(seg, b, n - 5); /* a cut in the middle of the log is not a torn tail */
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    spit(seg, b, n);
    free(b);
    /* A missing middle segment is a gap. */
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[1]);
    uint8_t *mid = slurp(seg, &n);
    unlink(seg);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "gap") != NULL);
    spit(seg, mid, n);
    free(mid);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), N);
    rm_rf(dir);
    printf("multi segment: ok\n");
}

static void snapshot_damage(void)
{
    char dir[256], err[512], path[512], names[8][64];
    static struct logcap lc;
    pthread_mutex_init(&lc.mu, NULL);
    mk_tmpdir(dir, sizeof(dir));
    struct store_config cfg = {.dir = dir, .segment_bytes = 400};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < 30; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "s%02d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://s.example", dev, "own", 0, &w), 0);
    }
    wg_add(&w);
    CHECK_EQ(store_snapshot(r.s, wg_done, &w), 0);
    wg_wait(&w);
    CHECK_EQ(w.last_status, 0);
    CHECK_EQ(map_wait(r.s, "late", "https://s.example", "late", "own", 0, &w), 0);
    rig_close(&r);
    CHECK_EQ(list_files(dir, "snap-", names, 8), 1);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), 31);
    snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *orig = slurp(path, &n);
    for (size_t at = 0; at < n; at += n / 9 + 1) {
        orig[at] ^= 0x08;
        spit(path, orig, n);
        CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
        CHECK(strstr(err, names[0]) != NULL);
        CHECK(strstr(err, "offset") != NULL);
        orig[at] ^= 0x08;
    }
    spit(path, orig, n - 3);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    if (check_bin)
        CHECK_EQ(run_check("", dir), 1);
    spit(path, orig, n);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), 31);
    if (check_bin)
        CHECK_EQ(run_check("", dir), 0);
    free(orig);
    rm_rf(dir);
    printf("snapshot damage: ok\n");
}

static void keys_and_lock(void)
{
    char dir[256], err[512], key[300], key2[300], nokey[300];
    static struct logcap lc;
    pthread_mutex_init(&lc.mu, NULL);
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    snprintf(key2, sizeof(key2), "%s.key2", dir);
    snprintf(nokey, sizeof(nokey), "%s.missing", dir);
    write_key(key, 32);
    make_log(dir, 0, key);
    CHECK_EQ(try_open(dir, 0, key, &lc, err, sizeof(err)), N);
    FILE *f = fopen(key2, "wb");
    for (int i = 0; i < 32; i++)
        fputc(i, f);
    fclose(f);
    CHECK_EQ(try_open(dir, 0, key2, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "wrong key for") != NULL && strstr(err, "wal-") != NULL);
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "encrypted") != NULL);
    CHECK_EQ(try_open(dir, 0, nokey, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "cannot open key file") != NULL);
    write_key(key2, 16);
    CHECK_EQ(try_open(dir, 0, key2, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "32 bytes") != NULL);
    if (check_bin) {
        char args[400];
        snprintf(args, sizeof(args), "--key %s", key);
        CHECK_EQ(run_check(args, dir), 0);
        CHECK_EQ(run_check("", dir), 2);
    }
    /* The data is not in the files in clear. */
    char names[8][64], seg[512];
    CHECK_EQ(list_files(dir, "wal-", names, 8), 1);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(seg, &n);
    CHECK(memmem(b, n, "dev05", 5) == NULL && memmem(b, n, "c.example", 9) == NULL);
    free(b);

    /* One process per directory. */
    struct store_config cfg = {.dir = dir, .key_file = key};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    engine_t *e2;
    struct engine_config ec = {.initial_devices = 8};
    CHECK_EQ(engine_create(&e2, &ec), 0);
    store_t *s2;
    CHECK_EQ(store_open(&s2, e2, &cfg, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, "in use") != NULL);
    engine_destroy(e2);
    rig_close(&r);
    rm_rf(dir);
    unlink(key);
    unlink(key2);
    printf("keys and lock: ok\n");
}

/* The committed fixtures (tests/assets/persist, see gen_persist_files). */
static void copy_fixture(const char *assets, const char *name, char *dir, size_t dirlen)
{
    char src[600], names[16][64];
    mk_tmpdir(dir, dirlen);
    snprintf(src, sizeof(src), "%s/%s", assets, name);
    int n = list_files(src, "", names, 16);
    for (int i = 0; i < n; i++) {
        if (names[i][0] == '.')
            continue;
        char a[1024], b[1024];
        size_t len;
        snprintf(a, sizeof(a), "%.600s/%.63s", src, names[i]);
        snprintf(b, sizeof(b), "%.255s/%.63s", dir, names[i]);
        uint8_t *p = slurp(a, &len);
        spit(b, p, len);
        free(p);
    }
}

static void fixtures(const char *assets)
{
    char dir[256], err[512];
    static struct logcap lc;
    pthread_mutex_init(&lc.mu, NULL);
    copy_fixture(assets, "torn_tail", dir, sizeof(dir));
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), 11);
    CHECK(strstr(lc.text, "torn record at the tail of") != NULL);
    CHECK(strstr(lc.text, "offset 999") != NULL);
    rm_rf(dir);
    copy_fixture(assets, "mid_corrupt", dir, sizeof(dir));
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "wal-0000000000000001.log at offset 404 (LSN 5,") != NULL);
    if (check_bin)
        CHECK_EQ(run_check("", dir), 1);
    CHECK_EQ(try_open(dir, 1, NULL, &lc, err, sizeof(err)), 4);
    rm_rf(dir);
    copy_fixture(assets, "bad_snapshot", dir, sizeof(dir));
    CHECK_EQ(try_open(dir, 0, NULL, &lc, err, sizeof(err)), -1);
    CHECK(strstr(err, "snap-000000000000000d.snap") != NULL && strstr(err, "offset") != NULL);
    rm_rf(dir);
    printf("fixtures: ok\n");
}

int main(int argc, char **argv)
{
    check_bin = argc > 1 ? argv[1] : NULL;
    if (argc > 2)
        fixtures(argv[2]);
    single_segment();
    multi_segment();
    snapshot_damage();
    keys_and_lock();
    return 0;
}
