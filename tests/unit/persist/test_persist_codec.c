/*
 * Pure codecs: CRC32C vectors, change payloads of every type, record and
 * file header checksums (every single-byte flip is caught), and the
 * snapshot writer/loader (round trip into a fresh engine, every flip caught).
 */
#include "ptest.h"
#include "seal.h"
#include "snap.h"
#include "wal.h"

static void crc(void)
{
    CHECK_EQ(wal_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(wal_crc32c(0, "", 0), 0);
    uint8_t buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (uint8_t)(i * 7);
    uint32_t whole = wal_crc32c(0, buf, sizeof(buf));
    for (size_t cut = 0; cut <= sizeof(buf); cut += 37)
        CHECK_EQ(wal_crc32c(wal_crc32c(0, buf, cut), buf + cut, sizeof(buf) - cut), whole);
}

static struct wal_bytes B(const char *s) { return (struct wal_bytes){(const uint8_t *)s, strlen(s)}; }

static void changes(void)
{
    for (uint8_t t = 1; t <= WAL_TYPE_MAX; t++) {
        struct wal_change c = {.type = t, .micros = 1234567890123ull, .dev = B("device-1"),
                               .uri = B("https://svc.example/x"), .uti = B("uti-42"),
                               .owner = B("owner"), .actor = B("actor"),
                               .data = B("payload bytes"), .expires_at = 99, .aux_kind = 7};
        size_t n = wal_change_size(&c);
        CHECK(n > 8);
        uint8_t *p = malloc(n);
        wal_change_encode(p, &c);
        struct wal_change d;
        CHECK_EQ(wal_change_decode(p, n, t, &d), 0);
        CHECK_EQ(d.micros, c.micros);
        CHECK_EQ(d.type, t);
        if (t != WAL_AUX && t != WAL_EXPIRE)
            CHECK(d.actor.n == 5 && !memcmp(d.actor.p, "actor", 5));
        if (t == WAL_MAP) {
            CHECK_EQ(d.expires_at, 99);
            CHECK(d.owner.n == 5 && d.dev.n == 8 && d.uti.n == 6 && d.uri.n == 21);
        }
        if (t == WAL_AUX)
            CHECK(d.aux_kind == 7 && d.data.n == 13 && !memcmp(d.data.p, "payload bytes", 13));
        if (t == WAL_PREFS)
            CHECK(d.data.n == 13);
        /* Every cut of the payload is refused, never read past. */
        for (size_t k = 0; k < n; k++) {
            uint8_t *q = malloc(k ? k : 1);
            memcpy(q, p, k);
            CHECK_EQ(wal_change_decode(q, k, t, &d), -EPROTO);
            free(q);
        }
        CHECK_EQ(wal_change_decode(p, n, 0, &d), -EPROTO);
        free(p);
    }
}

static void records(void)
{
    uint8_t rec[WAL_REC_HDR + 40];
    for (int i = 0; i < 40; i++)
        rec[WAL_REC_HDR + i] = (uint8_t)i;
    wal_rec_finish(rec, 77, WAL_DEMAP, 40);
    struct wal_rec r;
    CHECK_EQ(wal_rec_decode(rec, sizeof(rec), &r), (long)sizeof(rec));
    CHECK(r.lsn == 77 && r.type == WAL_DEMAP && r.len == 40 && r.payload == rec + WAL_REC_HDR);
    for (size_t k = 0; k < sizeof(rec); k++)
        CHECK_EQ(wal_rec_decode(rec, k, &r), 0); /* need more */
    for (size_t i = 0; i < sizeof(rec); i++)
        for (int bit = 0; bit < 8; bit++) {
            rec[i] ^= (uint8_t)(1 << bit);
            CHECK(wal_rec_decode(rec, sizeof(rec), &r) <= 0);
            rec[i] ^= (uint8_t)(1 << bit);
        }
    /* Resync finds the next good record after garbage, not before. */
    uint8_t two[2 * sizeof(rec) + 5];
    memset(two, 0xAA, sizeof(two));
    memcpy(two + 5 + sizeof(rec), rec, sizeof(rec));
    CHECK_EQ(wal_resync(two, sizeof(two), 76), (long)(5 + sizeof(rec)));
    CHECK_EQ(wal_resync(two, sizeof(two), 77), -1); /* not after its own LSN */
    memset(two, 0, sizeof(two));
    CHECK_EQ(wal_resync(two, sizeof(two), 0), -1);

    struct wal_fhdr h = {.version = 1, .flags = 1, .lsn = 5, .created_us = 9};
    memcpy(h.magic, wal_magic_log, 8);
    uint8_t hb[WAL_FHDR_SIZE];
    wal_fhdr_encode(hb, &h);
    struct wal_fhdr g;
    CHECK_EQ(wal_fhdr_decode(hb, sizeof(hb), wal_magic_log, &g), 0);
    CHECK(g.lsn == 5 && g.flags == 1 && g.created_us == 9);
    CHECK(wal_fhdr_decode(hb, sizeof(hb), wal_magic_snap, &g) < 0);
    CHECK_EQ(wal_fhdr_decode(hb, 10, wal_magic_log, &g), -EAGAIN);
    for (size_t i = 0; i < sizeof(hb); i++) {
        hb[i] ^= 0x10;
        CHECK(wal_fhdr_decode(hb, sizeof(hb), wal_magic_log, &g) < 0);
        hb[i] ^= 0x10;
    }
}

static int count_cb(void *arg, const struct engine_row *r)
{
    (*(int *)arg)++;
    return 0;
}

static void snapshot(int encrypted)
{
    char dir[256], path[300], key[300], err[512];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/s.snap", dir);
    snprintf(key, sizeof(key), "%s/key", dir);
    write_key(key, 32);
    struct seal seal;
    CHECK_EQ(seal_init(&seal, store_io_default(), encrypted ? key : NULL, err, sizeof(err)), 0);
    struct snap_writer *w;
    CHECK_EQ(snap_writer_open(&w, store_io_default(), path, 10, 1, &seal), 0);
    char dev[32], uri[64], uti[32];
    int rows = 0;
    for (int d = 0; d < 300; d++) {
        snprintf(dev, sizeof(dev), "device-%04d", d);
        for (int k = 0; k < 1 + d % 3; k++) {
            snprintf(uri, sizeof(uri), "https://service-%d.example", (d + k) % 5);
            snprintf(uti, sizeof(uti), "uti-%04d-%d", d, k);
            struct engine_row r = {
                (const uint8_t *)dev, (uint16_t)strlen(dev), (const uint8_t *)"own", 3,
                (const uint8_t *)uri, (uint16_t)strlen(uri), (const uint8_t *)uti,
                (uint16_t)strlen(uti), d % 4 ? NULL : (const uint8_t *)"PREFS",
                d % 4 ? 0 : 5, (uint32_t)(d % 2 ? 0 : 2000000000u + (uint32_t)d),
                (uint64_t)(rows + 1)};
            CHECK_EQ(snap_writer_row(w, &r), 0);
            rows++;
            if (rows % 100 == 0)
                CHECK_EQ(snap_writer_drain(w), 0);
        }
    }
    CHECK_EQ(snap_writer_aux(w, 3, "aux-record", 10), 0);
    CHECK_EQ(snap_writer_finish(w, 20), 0);
    snap_writer_close(w);
    size_t n;
    uint8_t *b = slurp(path, &n);
    CHECK(n < (size_t)rows * 60); /* compact: device and URI once per run */
    struct snap_info info;
    CHECK_EQ(snap_load_mem(NULL, b, n, &seal, NULL, NULL, &info, err, sizeof(err)), 0);
    CHECK(info.rows == (uint64_t)rows && info.devices == 300 && info.start_lsn == 10 &&
          info.end_lsn == 20);
    engine_t *e;
    struct engine_config ec = {.initial_devices = 16};
    CHECK_EQ(engine_create(&e, &ec), 0);
    CHECK_EQ(snap_load_mem(e, b, n, &seal, NULL, NULL, &info, err, sizeof(err)), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, rows);
    CHECK_EQ(st.devices, 300);
    CHECK_EQ(st.last_lsn, rows);
    int cnt = 0;
    engine_thread_online(e);
    CHECK_EQ(engine_inquire_device(e, "device-0005", 11, count_cb, &cnt, NULL), 3);
    engine_thread_offline(e);
    engine_destroy(e);
    /* Every byte flip is refused (sampled every 7th byte for time). */
    for (size_t i = 0; i < n; i += 7) {
        b[i] ^= 0x01;
        CHECK(snap_load_mem(NULL, b, n, &seal, NULL, NULL, &info, err, sizeof(err)) < 0);
        CHECK(strstr(err, "offset") != NULL || strstr(err, "key") != NULL);
        b[i] ^= 0x01;
    }
    /* Every truncation is refused. */
    for (size_t k = 0; k < n; k += 11)
        CHECK(snap_load_mem(NULL, b, k, &seal, NULL, NULL, &info, err, sizeof(err)) < 0);
    if (encrypted) {
        write_key(key, 31);
        struct seal bad;
        CHECK(seal_init(&bad, store_io_default(), key, err, sizeof(err)) < 0);
        CHECK(strstr(err, "32 bytes") != NULL);
        FILE *f = fopen(key, "wb");
        for (int i = 0; i < 32; i++)
            fputc(0x55, f);
        fclose(f);
        CHECK_EQ(seal_init(&bad, store_io_default(), key, err, sizeof(err)), 0);
        CHECK_EQ(snap_load_mem(NULL, b, n, &bad, NULL, NULL, &info, err, sizeof(err)),
                 -EKEYREJECTED);
        CHECK(strstr(err, "wrong key") != NULL);
        CHECK(snap_load_mem(NULL, b, n, NULL, NULL, NULL, &info, err, sizeof(err)) < 0);
        seal_fini(&bad);
    }
    free(b);
    seal_fini(&seal);
    rm_rf(dir);
    printf("snapshot codec %s: %d rows in %zu bytes (%.1f B/row)\n",
           encrypted ? "encrypted" : "plain", rows, n, (double)n / rows);
}

int main(void)
{
    crc();
    changes();
    records();
    snapshot(0);
    snapshot(1);
    printf("codec: ok\n");
    return 0;
}
