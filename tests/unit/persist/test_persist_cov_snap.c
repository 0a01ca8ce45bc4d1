/*
 * test_persist_cov_snap.c — the snapshot decoders and loader on hand-made
 * files (built here from the format in persist/snap.h, independent of the
 * writer): every malformed row shape, an END block that disagrees or is
 * missing or followed by data, empty and rejected AUX blocks, binding
 * conflicts of a fuzzy snapshot, engine refusals while loading (memory
 * limit on a row and on prefs), and sealed blocks that are too short or do
 * not authenticate. Each case asserts the result and the message.
 */
#include "ptest.h"
#include "seal.h"
#include "snap.h"
#include "wal.h"

static const uint8_t keycheck_ad[] = "icsd key check";

/* --- builders ------------------------------------------------------------- */
struct buf { uint8_t b[1 << 16]; size_t n; };

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

/* One row: dev/owner/prefs only if dev != NULL, uri inline if uri != NULL
 * else the id. */
static void row(struct buf *b, const char *dev, const char *owner, const char *prefs,
                const char *uri, uint64_t uri_id, const char *uti, uint64_t exp, uint64_t lsn)
{
    u8(b, (uint8_t)((dev ? 1 : 0) | (uri ? 2 : 0) | (prefs ? 4 : 0)));
    if (dev) {
        str(b, dev);
        str(b, owner);
        if (prefs)
            str(b, prefs);
    }
    if (uri)
        str(b, uri);
    else
        var(b, uri_id);
    str(b, uti);
    var(b, exp);
    var(b, lsn);
}

struct file {
    struct buf f;
    const struct seal *seal;  /* NULL: plain */
    uint8_t nonce[12];
    uint64_t blocks;
};

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

/* Appends a block; raw: the payload goes in as is, not sealed. */
static void block(struct file *fl, uint8_t type, const uint8_t *pl, size_t n, int raw)
{
    uint8_t hdr[SNAP_BLK_HDR] = {0};
    static uint8_t sealed[1 << 16];
    hdr[8] = type;
    fl->blocks++;
    if (fl->seal && !raw) {
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
}

static void end_block(struct file *fl, uint64_t end_lsn, uint64_t rows, uint64_t devs,
                      uint64_t blocks)
{
    struct buf e = {.n = 0};
    var(&e, end_lsn);
    var(&e, rows);
    var(&e, devs);
    var(&e, blocks);
    block(fl, SNAP_END, e.b, e.n, 0);
}

static int load(engine_t *e, struct file *fl, const struct seal *seal, snap_aux_fn aux,
                struct snap_info *info, char *err, size_t errlen)
{
    return snap_load_mem(e, fl->f.b, fl->f.n, seal, aux, NULL, info, err, errlen);
}

static engine_t *mk_engine(size_t mem_limit)
{
    engine_t *e;
    struct engine_config ec = {.initial_devices = 16, .mem_limit = mem_limit};
    CHECK_EQ(engine_create(&e, &ec), 0);
    return e;
}

/* --- row decoder -------------------------------------------------------- */
static int rows_first(const struct buf *b, int skip)
{
    static struct snap_rows it;
    struct snap_row r;
    snap_rows_init(&it, b->b, b->n);
    for (int i = 0; i < skip; i++)
        CHECK_EQ(snap_rows_next(&it, &r), 1);
    return snap_rows_next(&it, &r);
}

static void row_decoder(void)
{
    struct buf b;
    /* A good pair: new device with prefs and new URI, then URI id 0. */
    b.n = 0;
    row(&b, "dev", "own", "PF", "https://u", 0, "t1", 5, 9);
    row(&b, NULL, NULL, NULL, NULL, 0, "t2", 0, 10);
    static struct snap_rows it;
    struct snap_row r;
    snap_rows_init(&it, b.b, b.n);
    CHECK_EQ(snap_rows_next(&it, &r), 1);
    CHECK(r.new_dev && r.has_prefs && r.prefs.n == 2 && r.expires_at == 5 && r.lsn == 9);
    CHECK_EQ(snap_rows_next(&it, &r), 1);
    CHECK(!r.new_dev && r.uri.n == 9 && !memcmp(r.uri.p, "https://u", 9) && r.lsn == 10);
    CHECK_EQ(snap_rows_next(&it, &r), 0);

    /* Unknown flag bits. */
    b.n = 0;
    u8(&b, 8);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    /* A new device with an empty ID. */
    b.n = 0;
    u8(&b, 3);
    var(&b, 0);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    /* Prefs longer than the payload. */
    b.n = 0;
    u8(&b, 7);
    str(&b, "dev");
    str(&b, "own");
    var(&b, 1000);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    /* A first row without its device; prefs flag without a new device. */
    b.n = 0;
    row(&b, NULL, NULL, NULL, "https://u", 0, "t", 0, 1);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    b.n = 0;
    row(&b, "dev", "own", NULL, "https://u", 0, "t1", 0, 1);
    u8(&b, 4 | 2);
    CHECK_EQ(rows_first(&b, 1), -EPROTO);
    /* An empty new URI; a URI id never defined. */
    b.n = 0;
    u8(&b, 3);
    str(&b, "dev");
    str(&b, "own");
    var(&b, 0);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    b.n = 0;
    row(&b, "dev", "own", NULL, NULL, 3, "t", 0, 1);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    /* An empty UTI; expires_at beyond 32 bits. */
    b.n = 0;
    row(&b, "dev", "own", NULL, "https://u", 0, "", 0, 1);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    b.n = 0;
    row(&b, "dev", "own", NULL, "https://u", 0, "t", 1ull << 33, 1);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    /* Varints: cut short, a 10th byte over 1, ten continuation bytes. */
    b.n = 0;
    u8(&b, 3);
    str(&b, "dev");
    str(&b, "own");
    str(&b, "https://u");
    str(&b, "t");
    u8(&b, 0x80); /* expires_at: continuation, then nothing */
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 3);
    for (int i = 0; i < 9; i++)
        u8(&b, 0xff);
    u8(&b, 0x02);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);
    b.n = 0;
    u8(&b, 3);
    for (int i = 0; i < 10; i++)
        u8(&b, 0x80);
    u8(&b, 0);
    CHECK_EQ(rows_first(&b, 0), -EPROTO);

    /* END payloads: good, and with trailing bytes. */
    struct snap_end en;
    b.n = 0;
    var(&b, 20);
    var(&b, 2);
    var(&b, 1);
    var(&b, 1);
    CHECK_EQ(snap_end_decode(b.b, b.n, &en), 0);
    CHECK(en.end_lsn == 20 && en.rows == 2 && en.devices == 1 && en.blocks == 1);
    u8(&b, 0);
    CHECK_EQ(snap_end_decode(b.b, b.n, &en), -EPROTO);
    printf("row decoder: ok\n");
}

/* --- loader -------------------------------------------------------------- */
static int aux_reject(void *arg, uint8_t kind, const void *p, size_t n)
{
    (void)arg; (void)p; (void)n;
    return kind == 9 ? -EINVAL : 0;
}

static int prefs_cb(void *arg, const struct engine_row *r)
{
    *(uint32_t *)arg = r->prefs_len;
    return 0;
}

static void loader_plain(void)
{
    static struct file fl;
    struct snap_info info;
    char err[512];
    struct buf rows;

    /* Good: 2 rows of one device with prefs, an AUX block, END. */
    rows.n = 0;
    row(&rows, "dev", "own", "PF", "https://u", 0, "t1", 0, 9);
    row(&rows, NULL, NULL, NULL, NULL, 0, "t2", 0, 10);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    block(&fl, SNAP_AUX, (const uint8_t *)"\x03" "abc", 4, 0);
    end_block(&fl, 12, 2, 1, 2);
    engine_t *e = mk_engine(0);
    CHECK_EQ(load(e, &fl, NULL, aux_reject, &info, err, sizeof(err)), 0);
    CHECK(info.rows == 2 && info.devices == 1 && info.blocks == 2 && info.end_lsn == 12);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 2);
    uint32_t plen = 0;
    engine_thread_online(e);
    CHECK_EQ(engine_device_info(e, "dev", 3, prefs_cb, &plen), 0);
    engine_thread_offline(e);
    CHECK_EQ(plen, 2);
    engine_destroy(e);

    /* The END block disagrees (rows), is missing, or data follows it. */
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 3, 1, 1);
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "END block at offset") && strstr(err, "disagrees"));
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 4, 2, 1, 1); /* ends before it starts */
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EBADMSG);
    CHECK(strstr(err, "no END block (snapshot incomplete)") != NULL);
    CHECK_EQ(info.bad_off, fl.f.n);
    file_start(&fl, 5, NULL);
    end_block(&fl, 12, 0, 0, 0);
    size_t end_at = fl.f.n;
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "data after the END block") != NULL);
    CHECK_EQ(info.bad_off, end_at);

    /* A malformed row: the block's offset and the row count are named. */
    struct buf bad = rows;
    u8(&bad, 0x40);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, bad.b, bad.n, 0);
    end_block(&fl, 12, 2, 1, 1);
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "block at offset 64: malformed row after row 2") != NULL);

    /* AUX: empty, and rejected by its module (only when loading). */
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_AUX, NULL, 0, 0);
    end_block(&fl, 12, 0, 0, 1);
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "empty aux block at offset 64") != NULL);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_AUX, (const uint8_t *)"\x09zz", 3, 0);
    end_block(&fl, 12, 0, 0, 1);
    CHECK_EQ(load(NULL, &fl, NULL, aux_reject, &info, err, sizeof(err)), 0);
    e = mk_engine(0);
    CHECK_EQ(load(e, &fl, NULL, aux_reject, &info, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "aux block (kind 9) at offset 64 rejected") != NULL);
    engine_destroy(e);

    /* A binding on two devices (fuzzy snapshot): the first one wins and the
     * conflict is counted for the WAL to settle. */
    rows.n = 0;
    row(&rows, "devA", "own", NULL, "https://u", 0, "same", 0, 9);
    row(&rows, "devB", "own", NULL, NULL, 0, "same", 0, 11);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 2, 2, 1);
    e = mk_engine(0);
    CHECK_EQ(load(e, &fl, NULL, NULL, &info, err, sizeof(err)), 0);
    CHECK_EQ(info.conflicts, 1);
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 1);
    engine_destroy(e);
    printf("loader plain: ok\n");
}

static void loader_memory(void)
{
    static struct file fl;
    struct snap_info info;
    char err[512];
    struct buf rows;
    /* Measure what one plain row costs, then give the engine just that. */
    rows.n = 0;
    row(&rows, "dev", "own", NULL, "https://u", 0, "t1", 0, 9);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 1, 1, 1);
    engine_t *e = mk_engine(0);
    struct engine_stats st;
    engine_stats(e, &st);
    size_t base = (size_t)st.bytes;
    CHECK_EQ(load(e, &fl, NULL, NULL, &info, err, sizeof(err)), 0);
    engine_stats(e, &st);
    engine_destroy(e);
    size_t one = (size_t)st.bytes;
    CHECK(one > base);

    /* Too little memory for the row itself. */
    e = mk_engine(base + (one - base) / 2);
    CHECK_EQ(load(e, &fl, NULL, NULL, &info, err, sizeof(err)), -ENOMEM);
    CHECK(strstr(err, "row 1 cannot be loaded") != NULL);
    engine_destroy(e);

    /* Enough for the row, not for its 4 KiB prefs. */
    static char big[4097];
    memset(big, 'p', 4096);
    rows.n = 0;
    row(&rows, "dev", "own", big, "https://u", 0, "t1", 0, 9);
    file_start(&fl, 5, NULL);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 1, 1, 1);
    e = mk_engine(one + 256);
    CHECK_EQ(load(e, &fl, NULL, NULL, &info, err, sizeof(err)), -ENOMEM);
    CHECK(strstr(err, "prefs cannot be loaded") != NULL);
    engine_destroy(e);
    printf("loader memory: ok\n");
}

static void loader_sealed(void)
{
    char dir[256], key[300], err[512];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s/key", dir);
    write_key(key, 32);
    struct seal seal;
    CHECK_EQ(seal_init(&seal, store_io_default(), key, err, sizeof(err)), 0);
    static struct file fl;
    struct snap_info info;
    struct buf rows;
    rows.n = 0;
    row(&rows, "dev", "own", NULL, "https://u", 0, "t1", 0, 9);

    file_start(&fl, 5, &seal);
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 1, 1, 1);
    CHECK_EQ(load(NULL, &fl, &seal, NULL, &info, err, sizeof(err)), 0);
    CHECK_EQ(info.rows, 1);
    /* Without the key: refused before any block. */
    CHECK_EQ(load(NULL, &fl, NULL, NULL, &info, err, sizeof(err)), -ENOKEY);
    CHECK(strstr(err, "no key given") != NULL);

    /* A sealed block shorter than a tag. */
    file_start(&fl, 5, &seal);
    block(&fl, SNAP_ROWS, (const uint8_t *)"abcd", 4, 1);
    end_block(&fl, 12, 0, 0, 1);
    CHECK_EQ(load(NULL, &fl, &seal, NULL, &info, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "sealed block too short at offset 64") != NULL);

    /* A block whose checksum holds but whose tag does not (sealed under
     * another block index). */
    file_start(&fl, 5, &seal);
    fl.blocks = 1;
    block(&fl, SNAP_ROWS, rows.b, rows.n, 0);
    end_block(&fl, 12, 1, 1, 1);
    CHECK_EQ(load(NULL, &fl, &seal, NULL, &info, err, sizeof(err)), -EBADMSG);
    CHECK(strstr(err, "block at offset 64 does not authenticate") != NULL);
    seal_fini(&seal);
    rm_rf(dir);
    printf("loader sealed: ok\n");
}

int main(void)
{
    row_decoder();
    loader_plain();
    loader_memory();
    loader_sealed();
    return 0;
}
