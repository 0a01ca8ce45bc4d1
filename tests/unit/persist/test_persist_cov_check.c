/*
 * test_persist_cov_check.c — ics-check (argv[1]) on the cases the other
 * tests leave out: usage and I/O errors, a directory held by a store,
 * --dump of every record kind, --truncate answered yes on stdin,
 * removal of later segments, damaged segment headers, LSN gaps, records
 * out of sequence or undecodable, unreadable files, an encrypted record
 * that does not authenticate, encrypted snapshots without or with a wrong
 * key, and a log that does not reach back to the snapshot. Each check
 * asserts the exit code and the line ics-check prints.
 */
#include <sys/wait.h>

#include "ptest.h"
#include "wal.h"

static const char *check_bin;
static char out[1 << 16];

/* Runs ics-check with args on dir (stdin from `answer` if given); returns
 * the exit code, output in out. */
static int run(const char *args, const char *dir, const char *answer)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s%s%s%s %s %s 2>&1", answer ? "printf '" : "",
             answer ? answer : "", answer ? "' | " : "", check_bin, args, dir);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whether ics-check printed s; shows its output when not. */
static int saw(const char *s)
{
    if (strstr(out, s))
        return 1;
    fprintf(stderr, "ics-check did not print \"%s\"; it printed:\n%s\n", s, out);
    return 0;
}

static int aux_apply(void *ctx, const void *p, size_t n, uint64_t lsn)
{
    (void)ctx; (void)p; (void)n; (void)lsn;
    return 0;
}
static int aux_dump(void *ctx, int (*emit)(void *, const void *, size_t), void *ectx)
{
    (void)ctx; (void)emit; (void)ectx;
    return 0;
}

/* A started store with aux kind 7 registered. */
static void open_aux(struct rig *r, const char *dir, uint64_t seg_bytes, const char *key)
{
    char err[512];
    struct store_config cfg = {.dir = dir, .segment_bytes = seg_bytes, .key_file = key};
    struct engine_config ec = {.initial_devices = 16};
    memset(r, 0, sizeof(*r));
    CHECK_EQ(engine_create(&r->e, &ec), 0);
    CHECK_EQ(store_open(&r->s, r->e, &cfg, err, sizeof(err)), 0);
    static const struct store_aux_ops ops = {aux_apply, aux_dump};
    CHECK_EQ(store_register_aux(r->s, 7, &ops, NULL), 0);
    CHECK_EQ(store_recover(r->s, err, sizeof(err)), 0);
    CHECK_EQ(store_start(r->s), 0);
}

/* n maps (devices "d00".."d<n>"), and optionally one of each other kind. */
static void make_log(const char *dir, uint64_t seg_bytes, const char *key, int n, int kinds,
                     int snapshot)
{
    struct rig r;
    open_aux(&r, dir, seg_bytes, key);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < n; i++) {
        char dev[16];
        snprintf(dev, sizeof(dev), "d%02d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://c.example", dev, "own", 0, &w), 0);
    }
    if (kinds) {
        CHECK_EQ(map_wait(r.s, "ab\x01\\z", "https://k.example", "u1", "own", 4000000000u, &w),
                 0);
        wg_add(&w);
        CHECK(store_set_prefs(r.s, "ab\x01\\z", 5, "xyz", 3, "tester", 6, wg_done, &w) >= 0);
        wg_wait(&w);
        wg_add(&w);
        CHECK(store_aux(r.s, 7, "hello", 5, wg_done, &w) >= 0);
        wg_wait(&w);
        wg_add(&w);
        CHECK_EQ(store_demap(r.s, "ab\x01\\z", 5, "https://k.example", 17, "u1", 2, 0,
                             "tester", 6, wg_done, &w), 1);
        wg_wait(&w);
        CHECK_EQ(w.failed, 0);
    }
    if (snapshot) {
        wg_add(&w);
        CHECK(store_snapshot(r.s, wg_done, &w) >= 0);
        wg_wait(&w);
        CHECK_EQ(w.failed, 0);
    }
    rig_close(&r);
}

static void seg_path(const char *dir, int idx, char *p, size_t n)
{
    char names[64][64];
    int k = list_files(dir, "wal-", names, 64);
    CHECK(idx < k);
    snprintf(p, n, "%s/%s", dir, names[idx]);
}

static void usage_and_io(void)
{
    CHECK_EQ(run("", "", NULL), 2);
    CHECK(saw("usage:"));
    CHECK_EQ(run("--key", "", NULL), 2);
    CHECK_EQ(run("", "/nonexistent/icsd-cov-dir", NULL), 2);
    CHECK(saw("cannot open /nonexistent/icsd-cov-dir"));
    printf("usage and io: ok\n");
}

static void dump_and_lock(void)
{
    char dir[256];
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 0, NULL, 2, 1, 0);
    CHECK_EQ(run("--dump", dir, NULL), 0);
    CHECK(saw("MAP") || saw("map"));
    CHECK(saw(" dev=ab\\x01\\x5cz"));
    CHECK(saw(" owner=own"));
    CHECK(saw(" expires=4000000000"));
    CHECK(saw(" prefs=3 bytes"));
    CHECK(saw(" kind=7 data=5 bytes"));
    CHECK(saw(" actor=tester"));
    CHECK(saw("summary: ok; 1 segment(s), 6 records"));

    /* A running store holds the LOCK: ics-check refuses to look. */
    struct rig r;
    open_aux(&r, dir, 0, NULL);
    CHECK_EQ(run("", dir, NULL), 2);
    CHECK(saw("in use by a running icsd"));
    rig_close(&r);
    CHECK_EQ(run("", dir, NULL), 0);
    rm_rf(dir);
    printf("dump and lock: ok\n");
}

/* Flips one payload byte of the k-th record of seg (0-based). If refinish,
 * the header CRC is recomputed so only authentication can notice. Returns
 * the record's offset. */
static uint64_t damage_record(const char *seg, int k, int refinish)
{
    size_t n;
    uint8_t *b = slurp(seg, &n);
    uint64_t off = WAL_FHDR_SIZE;
    struct wal_rec rec;
    for (int i = 0;; i++) {
        long span = wal_rec_decode(b + off, n - off, &rec);
        CHECK(span > 0);
        if (i == k)
            break;
        off += (uint64_t)span;
    }
    b[off + WAL_REC_HDR + rec.len / 2] ^= 0x5a;
    if (refinish)
        wal_rec_finish(b + off, rec.lsn, rec.type, rec.len);
    spit(seg, b, n);
    free(b);
    return off;
}

static void truncate_confirm(void)
{
    char dir[256], seg[512];
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 0, NULL, 6, 0, 0);
    seg_path(dir, 0, seg, sizeof(seg));
    size_t n0;
    free(slurp(seg, &n0));
    uint64_t off = damage_record(seg, 2, 0);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("checksum mismatch"));
    CHECK(saw("valid records follow: corruption"));
    /* Asked and answered yes on stdin: cut at the damaged record. */
    size_t n1;
    free(slurp(seg, &n1));
    CHECK_EQ(n1, n0);
    CHECK_EQ(run("--truncate", dir, "y\\n"), 0);
    CHECK(saw("Continue? [y/N]"));
    CHECK(saw("truncated: the log now ends at LSN 2"));
    free(slurp(seg, &n1));
    CHECK_EQ(n1, off);
    CHECK_EQ(run("", dir, NULL), 0);
    CHECK(saw("2 records"));
    rm_rf(dir);
    printf("truncate confirm: ok\n");
}

static void multi_segment(void)
{
    char dir[256], seg[512], seg2[512], names[64][64];
    mk_tmpdir(dir, sizeof(dir));
    make_log(dir, 300, NULL, 30, 0, 0);
    int nseg = list_files(dir, "wal-", names, 64);
    if (nseg < 3)
        fprintf(stderr, "only %d segments\n", nseg);
    CHECK(nseg >= 3);
    CHECK_EQ(run("", dir, NULL), 0);

    /* A middle segment missing: LSN gap. */
    seg_path(dir, 1, seg, sizeof(seg));
    size_t n;
    uint8_t *b = slurp(seg, &n);
    CHECK_EQ(unlink(seg), 0);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("LSN GAP:"));
    spit(seg, b, n);
    CHECK_EQ(run("", dir, NULL), 0);

    /* Damaged headers: too short, checksum, another segment's name. */
    spit(seg, b, 10);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("DAMAGED header at offset 0 (file too short)"));
    b[20] ^= 1;
    spit(seg, b, n);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("(checksum mismatch)"));
    b[20] ^= 1;
    /* A valid header whose LSN is not the one in the file name. */
    struct wal_fhdr h;
    CHECK_EQ(wal_fhdr_decode(b, n, wal_magic_log, &h), 0);
    h.lsn += 100;
    uint8_t hb[WAL_FHDR_SIZE];
    memcpy(hb, b, WAL_FHDR_SIZE);
    wal_fhdr_encode(b, &h);
    spit(seg, b, n);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("(not a segment)"));
    memcpy(b, hb, WAL_FHDR_SIZE);
    spit(seg, b, n);
    /* The newest segment's header torn: said so. */
    snprintf(seg2, sizeof(seg2), "%s/%s", dir, names[nseg - 1]);
    size_t nl;
    uint8_t *bl = slurp(seg2, &nl);
    spit(seg2, bl, 30);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("torn creation of the newest segment"));
    spit(seg2, bl, nl);
    free(bl);
    /* A segment that cannot be read. */
    CHECK_EQ(unlink(seg), 0);
    CHECK_EQ(mkdir(seg, 0700), 0);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw(": cannot read"));
    CHECK_EQ(rmdir(seg), 0);
    spit(seg, b, n);
    free(b);
    CHECK_EQ(run("", dir, NULL), 0);

    /* Damage in the first segment: --truncate --yes removes the later ones. */
    seg_path(dir, 0, seg, sizeof(seg));
    damage_record(seg, 0, 0);
    CHECK_EQ(run("--truncate --yes", dir, NULL), 0);
    CHECK(saw("removed "));
    CHECK_EQ(list_files(dir, "wal-", names, 64), 1);
    CHECK_EQ(run("", dir, NULL), 0);
    CHECK(saw("0 records"));
    rm_rf(dir);
    printf("multi segment: ok\n");
}

/* Writes a segment starting at first holding the given records. */
static void craft_segment(const char *dir, uint64_t first, const uint64_t *lsns,
                          const uint8_t *types, const uint8_t *const *payloads,
                          const uint32_t *lens, int nrec)
{
    uint8_t buf[8192];
    struct wal_fhdr h = {.version = 1, .lsn = first, .created_us = 1};
    memcpy(h.magic, wal_magic_log, 8);
    wal_fhdr_encode(buf, &h);
    size_t off = WAL_FHDR_SIZE;
    for (int i = 0; i < nrec; i++) {
        CHECK(off + WAL_REC_HDR + lens[i] < sizeof(buf));
        memcpy(buf + off + WAL_REC_HDR, payloads[i], lens[i]);
        wal_rec_finish(buf + off, lsns[i], types[i], lens[i]);
        off += WAL_REC_HDR + lens[i];
    }
    char p[512];
    snprintf(p, sizeof(p), "%s/wal-%016llx.log", dir, (unsigned long long)first);
    spit(p, buf, off);
}

static void crafted(void)
{
    char dir[256];
    mk_tmpdir(dir, sizeof(dir));
    uint8_t pl[256];
    struct wal_change c = {.type = WAL_MAP, .micros = 5,
                           .dev = {(const uint8_t *)"dv", 2},
                           .uri = {(const uint8_t *)"https://x", 9},
                           .uti = {(const uint8_t *)"ut", 2}};
    size_t pn = wal_change_size(&c);
    CHECK(pn < sizeof(pl));
    wal_change_encode(pl, &c);
    CHECK_EQ(wal_change_decode(pl, pn, WAL_MAP, &c), 0);

    /* A header alone: an empty log, ok. */
    craft_segment(dir, 1, NULL, NULL, NULL, NULL, 0);
    CHECK_EQ(run("", dir, NULL), 0);
    CHECK(saw("0 records, LSN 1..1"));
    CHECK(saw("no snapshot"));

    /* LSN 1 then 3. */
    const uint8_t *pls[2] = {pl, pl};
    uint32_t lens[2] = {(uint32_t)pn, (uint32_t)pn};
    uint8_t types[2] = {WAL_MAP, WAL_MAP};
    uint64_t lsns[2] = {1, 3};
    craft_segment(dir, 1, lsns, types, pls, lens, 2);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("(LSN 2): LSN out of sequence"));

    /* A well-formed record whose payload is not a change of its type. */
    static const uint8_t junk[3] = {1, 2, 3};
    pls[1] = junk;
    lens[1] = 3;
    lsns[1] = 2;
    craft_segment(dir, 1, lsns, types, pls, lens, 2);
    CHECK_EQ(run("", dir, NULL), 1);
    CHECK(saw("(LSN 2): undecodable payload"));
    rm_rf(dir);
    printf("crafted: ok\n");
}

static void encrypted(void)
{
    char dir[256], key[300], key2[300], seg[512], args[400], names[8][64];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    snprintf(key2, sizeof(key2), "%s.key2", dir);
    write_key(key, 32);
    FILE *f = fopen(key2, "wb");
    CHECK(f);
    for (int i = 0; i < 32; i++)
        fputc(255 - i, f);
    fclose(f);
    make_log(dir, 0, key, 5, 0, 1);
    CHECK_EQ(list_files(dir, "snap-", names, 8), 1);
    snprintf(args, sizeof(args), "--key %s", key);
    CHECK_EQ(run(args, dir, NULL), 0);
    CHECK(saw(": ok, LSN "));

    /* Snapshot and log encrypted: no key, wrong key. */
    CHECK_EQ(run("", dir, NULL), 2);
    CHECK(saw("encrypted, give --key"));
    snprintf(args, sizeof(args), "--key %s", key2);
    CHECK_EQ(run(args, dir, NULL), 2);
    CHECK(saw(": wrong key"));

    /* A record whose checksum holds but whose tag does not. */
    snprintf(args, sizeof(args), "--key %s", key);
    int nseg = list_files(dir, "wal-", names, 8);
    CHECK(nseg >= 1);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(seg, &n);
    struct wal_rec rec;
    if (wal_rec_decode(b + WAL_FHDR_SIZE, n - WAL_FHDR_SIZE, &rec) > 0) {
        damage_record(seg, 0, 1);
        CHECK_EQ(run(args, dir, NULL), 1);
        CHECK(saw("does not authenticate"));
        spit(seg, b, n);
        CHECK_EQ(run(args, dir, NULL), 0);
    }
    free(b);

    /* A snapshot that cannot be read. */
    char sp[512];
    CHECK_EQ(list_files(dir, "snap-", names, 8), 1);
    snprintf(sp, sizeof(sp), "%s/%s", dir, names[0]);
    b = slurp(sp, &n);
    CHECK_EQ(unlink(sp), 0);
    CHECK_EQ(mkdir(sp, 0700), 0);
    CHECK_EQ(run(args, dir, NULL), 1);
    CHECK(saw("DAMAGED: cannot read"));
    CHECK_EQ(rmdir(sp), 0);
    spit(sp, b, n);
    free(b);

    /* The log does not reach back to the snapshot: replace the segments by
     * one that starts far after it. */
    for (int i = 0; i < nseg; i++) {
        snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
        CHECK_EQ(list_files(dir, "wal-", names, 8), nseg - i);
        snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
        CHECK_EQ(unlink(seg), 0);
    }
    craft_segment(dir, 1000, NULL, NULL, NULL, NULL, 0);
    CHECK_EQ(run(args, dir, NULL), 1);
    CHECK(saw("LOG GAP: the log starts at LSN 1000 but the snapshot ends at"));
    rm_rf(dir);
    unlink(key);
    unlink(key2);
    printf("encrypted: ok\n");
}

int main(int argc, char **argv)
{
    if (argc < 2)
        TEST_SKIP("usage: test_persist_cov_check ICS_CHECK");
    check_bin = argv[1];
    usage_and_io();
    dump_and_lock();
    truncate_confirm();
    multi_segment();
    crafted();
    encrypted();
    return 0;
}
