/*
 * test_persist_cov_recover.c — recovery (store_recover) on damage the other
 * tests leave out: a middle segment that cannot be read, whose header names
 * another LSN or fails its checksum, or that is missing (LSN gap); records
 * out of sequence; an encrypted record whose checksum holds but whose tag
 * does not; a log that starts after the newest snapshot. Each refusal is
 * checked by its message, and the intact directory recovers every row.
 */
#include "ptest.h"
#include "wal.h"

#define ROWS 30

static void make_log(const char *dir, uint64_t seg_bytes, const char *key, int snapshot)
{
    char err[512];
    struct store_config cfg = {.dir = dir, .segment_bytes = seg_bytes, .key_file = key};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < ROWS; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "d%02d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://c.example", dev, "own", 0, &w), 0);
        if (snapshot && i == ROWS / 2) {
            wg_add(&w);
            CHECK(store_snapshot(r.s, wg_done, &w) >= 0);
            wg_wait(&w);
        }
    }
    CHECK_EQ(w.failed, 0);
    rig_close(&r);
}

/* Rows recovered, or -1 with err filled. */
static long recover(const char *dir, const char *key, char *err, size_t errlen)
{
    struct store_config cfg = {.dir = dir, .key_file = key};
    struct rig r;
    err[0] = 0;
    if (rig_open(&r, &cfg, err, errlen) < 0)
        return -1;
    struct engine_stats es;
    engine_stats(r.e, &es);
    rig_close(&r);
    return (long)es.rows;
}

static int has(const char *err, const char *s)
{
    if (strstr(err, s))
        return 1;
    fprintf(stderr, "expected \"%s\" in: %s\n", s, err);
    return 0;
}

static void middle_segment(void)
{
    char dir[256], err[512], seg[512], names[64][64];
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 300, NULL, 0);
    int nseg = list_files(dir, "wal-", names, 64);
    CHECK(nseg >= 3);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[1]);
    size_t n;
    uint8_t *b = slurp(seg, &n);

    /* Unreadable. */
    CHECK_EQ(unlink(seg), 0);
    CHECK_EQ(mkdir(seg, 0700), 0);
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "cannot read") && has(err, names[1]));
    CHECK_EQ(rmdir(seg), 0);

    /* Missing: the next segment does not follow. */
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "(LSN gap)"));

    /* A valid header naming another LSN. */
    uint8_t *c = malloc(n);
    CHECK(c);
    memcpy(c, b, n);
    struct wal_fhdr h;
    CHECK_EQ(wal_fhdr_decode(c, n, wal_magic_log, &h), 0);
    h.lsn += 7;
    wal_fhdr_encode(c, &h);
    spit(seg, c, n);
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "bad segment header at offset 0 (not a segment)"));

    /* A header checksum mismatch. */
    memcpy(c, b, n);
    c[30] ^= 0x40;
    spit(seg, c, n);
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "bad segment header at offset 0 (checksum mismatch)"));
    free(c);

    spit(seg, b, n);
    free(b);
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), ROWS);
    rm_rf(dir);
    printf("middle segment: ok\n");
}

static void out_of_sequence(void)
{
    char dir[256], err[512], p[512];
    mk_tmpdir(dir, sizeof(dir));
    uint8_t buf[4096];
    struct wal_fhdr h = {.version = 1, .lsn = 1, .created_us = 1};
    memcpy(h.magic, wal_magic_log, 8);
    wal_fhdr_encode(buf, &h);
    size_t off = WAL_FHDR_SIZE;
    const uint64_t lsns[3] = {1, 3, 4};
    for (int i = 0; i < 3; i++) {
        char uti[8];
        snprintf(uti, sizeof(uti), "t%d", i);
        struct wal_change c = {.type = WAL_MAP, .micros = 1,
                               .dev = {(const uint8_t *)"dv", 2},
                               .uri = {(const uint8_t *)"https://x", 9},
                               .uti = {(const uint8_t *)uti, strlen(uti)}};
        size_t pn = wal_change_size(&c);
        wal_change_encode(buf + off + WAL_REC_HDR, &c);
        wal_rec_finish(buf + off, lsns[i], WAL_MAP, (uint32_t)pn);
        off += WAL_REC_HDR + pn;
    }
    snprintf(p, sizeof(p), "%s/wal-%016llx.log", dir, 1ull);
    spit(p, buf, off);
    /* LSN 3 after 1, and valid records follow: corruption, not a torn tail. */
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "LSN out of sequence") && has(err, "valid records follow"));
    rm_rf(dir);
    printf("out of sequence: ok\n");
}

static void sealed_record(void)
{
    char dir[256], err[512], key[300], seg[512], names[8][64];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    write_key(key, 32);
    make_log(dir, 0, key, 0);
    CHECK_EQ(list_files(dir, "wal-", names, 8), 1);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(seg, &n);
    uint8_t *c = malloc(n);
    CHECK(c);
    memcpy(c, b, n);
    struct wal_rec rec;
    CHECK(wal_rec_decode(c + WAL_FHDR_SIZE, n - WAL_FHDR_SIZE, &rec) > 0);
    c[WAL_FHDR_SIZE + WAL_REC_HDR + 2] ^= 0x11;
    wal_rec_finish(c + WAL_FHDR_SIZE, rec.lsn, rec.type, rec.len);
    spit(seg, c, n);
    CHECK_EQ(recover(dir, key, err, sizeof(err)), -1);
    CHECK(has(err, "does not authenticate"));
    free(c);
    spit(seg, b, n);
    free(b);
    CHECK_EQ(recover(dir, key, err, sizeof(err)), ROWS);
    rm_rf(dir);
    unlink(key);
    printf("sealed record: ok\n");
}

static void gap_after_snapshot(void)
{
    char dir[256], err[512], names[64][64], p[512];
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 0, NULL, 1);
    CHECK_EQ(list_files(dir, "snap-", names, 64), 1);
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), ROWS);
    int nseg = list_files(dir, "wal-", names, 64);
    for (int i = 0; i < nseg; i++) {
        snprintf(p, sizeof(p), "%.250s/%.63s", dir, names[i]);
        CHECK_EQ(unlink(p), 0);
    }
    uint8_t buf[WAL_FHDR_SIZE];
    struct wal_fhdr h = {.version = 1, .lsn = 1000, .created_us = 1};
    memcpy(h.magic, wal_magic_log, 8);
    wal_fhdr_encode(buf, &h);
    snprintf(p, sizeof(p), "%s/wal-%016llx.log", dir, 1000ull);
    spit(p, buf, sizeof(buf));
    CHECK_EQ(recover(dir, NULL, err, sizeof(err)), -1);
    CHECK(has(err, "log gap:") && has(err, "starts at LSN 1000"));
    rm_rf(dir);
    printf("gap after snapshot: ok\n");
}

int main(void)
{
    middle_segment();
    out_of_sequence();
    sealed_record();
    gap_after_snapshot();
    return 0;
}
