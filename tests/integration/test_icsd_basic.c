/* test_icsd_basic.c — a real icsd over real sockets: every memcached
 * opcode, the identity-correlation opcodes as admin, the status codes they
 * produce, pipelining of 1,000 requests, EXPORT paging, restart keeping
 * data and a clean SIGTERM. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_srv srv;

static void test_memcached_ops(void)
{
    struct itest_resp r = {0};
    int fd = itest_connect(&srv);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_VERSION, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
    CHECK(r.value_len >= 5 && r.value[0] >= '1' && r.value[0] <= '9' && r.value[1] == '.');
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SASL_LIST_MECHS, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
    CHECK(strcmp((char *)r.value, "PLAIN") == 0);
    /* Before authentication: AUTH_ERROR for everything else. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "d", 1, NULL, 0),
             WIRE_S_AUTH_ERROR);
    CHECK(r.value_len > 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_STAT, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SET, 0, NULL, 0, "k", 1, "v", 1), WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_auth(fd, "admin", "wrong-secret"), WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_auth(fd, "nobody", "x"), WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SASL_AUTH, 0, NULL, 0, "CRAM-MD5", 8, "x", 1),
             WIRE_S_AUTH_ERROR);
    /* Malformed PLAIN (no NULs, empty authcid, no mechanism): AUTH_ERROR,
     * the only failure wire-v1 gives SASL_AUTH, and the connection goes on. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SASL_AUTH, 0, NULL, 0, "PLAIN", 5, "admin", 5),
             WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SASL_AUTH, 0, NULL, 0, "PLAIN", 5, "\0\0s", 3),
             WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SASL_AUTH, 0, NULL, 0, NULL, 0, "\0a\0s", 4),
             WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_auth(fd, "admin", srv.secret), WIRE_S_OK);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
    CHECK_EQ(r.value_len, 2 + 5 + 2 + 5);
    CHECK_MEM(r.value, "\0\5admin\0\5admin", 14);
    /* Unknown vs known-but-unserved opcodes, malformed and oversized. */
    CHECK_EQ(itest_call(fd, &r, 0x99, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_UNKNOWN_COMMAND);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SET, 0, "\0\0\0\0\0\0\0\0", 8, "k", 1, "v", 1),
             WIRE_S_NOT_SUPPORTED);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DELETE, 0, NULL, 0, "k", 1, NULL, 0), WIRE_S_NOT_SUPPORTED);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GET, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_EINVAL);
    char big[200];
    memset(big, 'x', sizeof big);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GET, 0, NULL, 0, big, 129, NULL, 0), WIRE_S_TOO_LARGE);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GET, 0, NULL, 0, "missing", 7, NULL, 0), WIRE_S_NOT_FOUND);

    /* QUIT answers OK then closes; QUITQ closes silently. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_QUIT, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
    CHECK(itest_closed(fd, 3000));
    close(fd);
    fd = itest_connect(&srv);
    CHECK_EQ(itest_req(fd, WIRE_OP_QUITQ, 1, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK(itest_closed(fd, 3000));
    close(fd);
    itest_resp_free(&r);
}

static uint32_t count_rows(const struct itest_resp *r, size_t skip)
{
    CHECK(r->value_len >= skip + 4);
    return wire_be32(r->value + skip);
}

static void test_map_inquire(void)
{
    struct itest_resp r = {0};
    int fd = itest_login(&srv, NULL, NULL);
    uint64_t lsn1 = 0, lsn2 = 0, lsn;
    CHECK_EQ(itest_map(fd, "dev-1", "https://a.example/svc", "uti-1", NULL, &lsn1), WIRE_S_OK);
    CHECK(lsn1 > 0);
    CHECK_EQ(itest_map(fd, "dev-1", "https://b.example/svc", "uti-2", NULL, &lsn2), WIRE_S_OK);
    CHECK(lsn2 > lsn1);
    /* The same row again: OK. The binding for another device: EXISTS. */
    CHECK_EQ(itest_map(fd, "dev-1", "https://a.example/svc", "uti-1", NULL, &lsn), WIRE_S_OK);
    CHECK_EQ(itest_map(fd, "dev-2", "https://a.example/svc", "uti-1", NULL, NULL), WIRE_S_EXISTS);

    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "dev-1", 5, NULL, 0), 0);
    CHECK_EQ(count_rows(&r, 0), 2);
    CHECK(r.cas >= lsn2);
    /* row: str16 URI, str16 UTI, u32 expires */
    CHECK_MEM(r.value + 4, "\0\25https://a.example/svc\0\5uti-1\0\0\0\0", 2 + 21 + 2 + 5 + 4);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GET, 0, NULL, 0, "dev-1", 5, NULL, 0), 0);
    CHECK_EQ(r.extlen, 4);
    CHECK_EQ(r.keylen, 0);
    CHECK_EQ(count_rows(&r, 0), 2);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GETK, 0, NULL, 0, "dev-1", 5, NULL, 0), 0);
    CHECK_EQ(r.keylen, 5);
    CHECK_MEM(r.key, "dev-1", 5);
    /* A miss: NOT_FOUND with the key echoed (memcached's GETK does). */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GETK, 0, NULL, 0, "dev-none", 8, NULL, 0),
             WIRE_S_NOT_FOUND);
    CHECK_EQ(r.keylen, 8);
    CHECK_MEM(r.key, "dev-none", 8);

    struct buf v = BUF_INIT;
    itest_s16(&v, "uti-2");
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_BINDING, 0, NULL, 0, "https://b.example/svc", 21,
                        v.p, (uint32_t)v.len), 0);
    CHECK_EQ(r.value_len, 5);
    CHECK_MEM(r.value, "dev-1", 5);
    buf_reset(&v);
    itest_s16(&v, "uti-9");
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_BINDING, 0, NULL, 0, "https://b.example/svc", 21,
                        v.p, (uint32_t)v.len), WIRE_S_NOT_FOUND);

    /* Quiet GETs: nothing on NOT_FOUND; NOOP answers after the hits. */
    CHECK_EQ(itest_req(fd, WIRE_OP_GETQ, 1, 0, NULL, 0, "nope", 4, NULL, 0), 0);
    CHECK_EQ(itest_req(fd, WIRE_OP_GETKQ, 2, 0, NULL, 0, "dev-1", 5, NULL, 0), 0);
    CHECK_EQ(itest_req(fd, WIRE_OP_GETKQ, 3, 0, NULL, 0, "nope", 4, NULL, 0), 0);
    CHECK_EQ(itest_req(fd, WIRE_OP_NOOP, 4, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.opaque, 2);
    CHECK_EQ(r.opcode, WIRE_OP_GETKQ);
    CHECK_MEM(r.key, "dev-1", 5);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.opaque, 4);
    CHECK_EQ(r.opcode, WIRE_OP_NOOP);

    /* CAS on MAP: apply only if the row's LSN matches. */
    buf_reset(&v);
    itest_s16(&v, "https://a.example/svc");
    itest_s16(&v, "uti-1");
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP, lsn1 + 1000, NULL, 0, "dev-1", 5, v.p,
                        (uint32_t)v.len), WIRE_S_EXISTS);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-1", 5, v.p, (uint32_t)v.len),
             WIRE_S_OK);
    CHECK(r.cas > lsn2);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-1", 5, v.p, (uint32_t)v.len),
             WIRE_S_NOT_FOUND);

    /* DEMAP_DEVICE / _BINDING / _SERVICE with their counts. */
    CHECK_EQ(itest_map(fd, "dev-3", "https://c.example/x", "u1", NULL, NULL), 0);
    CHECK_EQ(itest_map(fd, "dev-3", "https://c.example/y", "u2", NULL, NULL), 0);
    CHECK_EQ(itest_map(fd, "dev-4", "https://c.example/x", "u3", NULL, NULL), 0);
    CHECK_EQ(itest_map(fd, "dev-5", "https://c.example/z", "u4", NULL, NULL), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP_DEVICE, 0, NULL, 0, "dev-3", 5, NULL, 0), 0);
    CHECK_EQ(r.value_len, 4);
    CHECK_EQ(wire_be32(r.value), 2);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP_DEVICE, 0, NULL, 0, "dev-3", 5, NULL, 0),
             WIRE_S_NOT_FOUND);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP_SERVICE, 0, NULL, 0, "https://c.example/x", 19,
                        NULL, 0), 0);
    CHECK_EQ(wire_be32(r.value), 1);
    buf_reset(&v);
    itest_s16(&v, "u4");
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_DEMAP_BINDING, 0, NULL, 0, "https://c.example/z", 19, v.p,
                        (uint32_t)v.len), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "dev-5", 5, NULL, 0),
             WIRE_S_NOT_FOUND);

    /* HISTORY (admin sees every entry): map then demap of dev-5. */
    uint8_t ext[4] = {0, 0, 0, 10};
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_HISTORY, 0, ext, 4, "dev-5", 5, NULL, 0), 0);
    CHECK(wire_be32(r.value) >= 2);
    CHECK_EQ(r.value[4 + 8], 2); /* newest first: the demap */

    /* SNAPSHOT answers once durable, CAS = the LSN it covers. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_SNAPSHOT, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK(r.cas >= lsn2);
    buf_free(&v);
    itest_resp_free(&r);
    close(fd);
}

static void test_pipeline_and_export(void)
{
    struct itest_resp r = {0};
    int fd = itest_login(&srv, NULL, NULL);
    /* 1,000 pipelined requests, changes and inquiries mixed: responses in
     * request order even though the changes wait for fdatasync. */
    struct buf all = BUF_INIT, v = BUF_INIT;
    for (uint32_t i = 0; i < 1000; i++) {
        char dev[32], uri[64];
        snprintf(dev, sizeof dev, "pdev-%u", i / 2);
        snprintf(uri, sizeof uri, "https://p.example/%u", i);
        if (i % 2 == 0) {
            buf_reset(&v);
            itest_s16(&v, uri);
            itest_s16(&v, "uti");
            CHECK_EQ(wire_put_request(&all, WIRE_OP_MAP, i, 0, NULL, 0, dev,
                                      (uint16_t)strlen(dev), v.p, (uint32_t)v.len), 0);
        } else {
            CHECK_EQ(wire_put_request(&all, WIRE_OP_INQUIRE_DEVICE, i, 0, NULL, 0, dev,
                                      (uint16_t)strlen(dev), NULL, 0), 0);
        }
    }
    CHECK_EQ(itest_send(fd, all.p, all.len), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        CHECK_EQ(itest_read(fd, &r), 0);
        CHECK_EQ(r.opaque, i);
        CHECK_EQ(r.status, 0);
        if (i % 2)
            CHECK_EQ(count_rows(&r, 0), 1); /* sees the map just before it */
    }
    /* EXPORT pages through every row exactly once. */
    uint64_t cursor = 0;
    uint32_t total = 0, pages = 0;
    do {
        uint8_t key[8], ext[4] = {0, 0, 0, 37};
        buf_be64(key, cursor);
        CHECK_EQ(itest_call(fd, &r, WIRE_OP_EXPORT, 0, ext, 4, key, 8, NULL, 0), 0);
        CHECK(r.value_len >= 12);
        cursor = wire_be64(r.value);
        uint32_t n = wire_be32(r.value + 8);
        CHECK(n <= 37);
        total += n;
        pages++;
        CHECK(pages < 1000);
    } while (cursor != 0);
    CHECK(total >= 500);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_STAT, 0, NULL, 0, "engine", 6, NULL, 0), 0);
    uint64_t rows = 0;
    for (;;) {
        if (r.keylen == 4 && !memcmp(r.key, "rows", 4))
            rows = strtoull((char *)r.value, NULL, 10);
        if (r.keylen == 0)
            break;
        CHECK_EQ(itest_read(fd, &r), 0);
    }
    CHECK_EQ(rows, total);
    buf_free(&all);
    buf_free(&v);
    itest_resp_free(&r);
    close(fd);
}

/* Reads a STAT group; returns the number of stats and checks the end. */
static int stat_group(int fd, const char *g, const char *want, uint64_t *val)
{
    struct itest_resp r = {0};
    int n = 0;
    int st = itest_call(fd, &r, WIRE_OP_STAT, 0, NULL, 0, g, (uint16_t)strlen(g), NULL, 0);
    if (st != 0) {
        itest_resp_free(&r);
        return -st;
    }
    while (r.keylen) {
        n++;
        /* wire-v1: every stat's value is an ASCII number */
        CHECK(r.value_len > 0 && r.value_len < 21);
        for (size_t i = 0; i < r.value_len; i++)
            CHECK(r.value[i] >= '0' && r.value[i] <= '9');
        if (want && r.keylen == strlen(want) && !memcmp(r.key, want, r.keylen))
            *val = strtoull((char *)r.value, NULL, 10);
        CHECK_EQ(r.status, 0);
        CHECK_EQ(itest_read(fd, &r), 0);
    }
    itest_resp_free(&r);
    return n;
}

static void test_stats(void)
{
    int fd = itest_login(&srv, NULL, NULL);
    uint64_t v = 0;
    CHECK(stat_group(fd, "", "curr_connections", &v) >= 9);
    CHECK(v >= 1);
    v = 0;
    CHECK(stat_group(fd, "", "pid", &v) > 0);
    CHECK_EQ(v, srv.pid);
    CHECK(stat_group(fd, "wal", "syncs", &v) > 5);
    CHECK(v > 0);
    CHECK(stat_group(fd, "conns", NULL, NULL) > 3);
    v = 0;
    CHECK(stat_group(fd, "ops", "MAP_count", &v) > 3);
    CHECK(v >= 500);
    v = 0;
    CHECK(stat_group(fd, "ops", "INQUIRE_DEVICE_p99_us", &v) > 3);
    CHECK_EQ(stat_group(fd, "nosuchgroup", NULL, NULL), -WIRE_S_NOT_FOUND);
    close(fd);
}

static void test_principals_and_keys(void)
{
    struct itest_resp r = {0};
    int fd = itest_login(&srv, NULL, NULL);
    const char *sc[] = {"https://t.example/", NULL};
    CHECK_EQ(itest_principal(fd, "tp1", 4, "tp1-secret", sc), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_PRINCIPAL_LIST, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK(wire_be32(r.value) == 2);
    CHECK(memmem(r.value, r.value_len, "tp1", 3) != NULL);
    CHECK(memmem(r.value, r.value_len, "tp1-secret", 10) == NULL);
    /* Malformed PRINCIPAL_SET: EINVAL with a message. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_PRINCIPAL_SET, 0, NULL, 0, "bad", 3, "\x04\x00", 2),
             WIRE_S_EINVAL);
    CHECK(r.value_len > 0);

    int t = itest_login(&srv, "tp1", "tp1-secret");
    CHECK_EQ(itest_call(t, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK_MEM(r.value, "\0\3tp1\0\4tpsp", 11);
    /* A tpsp may not EXPORT or manage principals. */
    CHECK_EQ(itest_call(t, &r, WIRE_OP_EXPORT, 0, "\0\0\0\1", 4, NULL, 0, NULL, 0),
             WIRE_S_ACCESS_DENIED);
    CHECK_EQ(itest_call(t, &r, WIRE_OP_PRINCIPAL_LIST, 0, NULL, 0, NULL, 0, NULL, 0),
             WIRE_S_ACCESS_DENIED);
    /* PRINCIPAL_DEL: its connection loses its rights at once. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_PRINCIPAL_DEL, 0, NULL, 0, "tp1", 3, NULL, 0), 0);
    CHECK_EQ(itest_call(t, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_AUTH_ERROR);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_PRINCIPAL_DEL, 0, NULL, 0, "tp1", 3, NULL, 0),
             WIRE_S_NOT_FOUND);
    close(t);

    /* KEY_ISSUE / KEY_VALIDATE; a flipped bit is BAD_SIGNATURE. */
    uint8_t cnt[2] = {0, 3};
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_ISSUE, 0, cnt, 2, NULL, 0, NULL, 0), 0);
    CHECK_EQ(r.value_len, 11 + 3 * 16 + 32);
    uint8_t batch[200];
    memcpy(batch, r.value, r.value_len);
    uint32_t bl = r.value_len;
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, batch, bl), 0);
    batch[20] ^= 1;
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, batch, bl),
             WIRE_S_BAD_SIGNATURE);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, batch, 5),
             WIRE_S_EINVAL);
    cnt[0] = 0x10;
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_ISSUE, 0, cnt, 2, NULL, 0, NULL, 0), WIRE_S_EINVAL);
    itest_resp_free(&r);
    close(fd);
}

static void test_key_rotation(void)
{
    /* A batch signed before a rotation answers KEY_ROTATED afterwards. */
    struct itest_srv k;
    const char *args[] = {"--key-rotate-interval", "1", NULL};
    itest_start(&k, args);
    struct itest_resp r = {0};
    int fd = itest_login(&k, NULL, NULL);
    uint8_t cnt[2] = {0, 2};
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_ISSUE, 0, cnt, 2, NULL, 0, NULL, 0), 0);
    uint8_t batch[200];
    uint32_t bl = r.value_len;
    memcpy(batch, r.value, bl);
    int st = 0;
    for (int i = 0; i < 50; i++) { /* the schedule is checked once a second */
        usleep(200000);
        st = itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, batch, bl);
        if (st != 0)
            break;
    }
    CHECK_EQ(st, WIRE_S_KEY_ROTATED);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_ISSUE, 0, cnt, 2, NULL, 0, NULL, 0), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, r.value, r.value_len),
             0);
    itest_resp_free(&r);
    close(fd);
    CHECK_EQ(itest_stop(&k), 0);
    itest_cleanup(&k);
}

static void test_restart_keeps_data(void)
{
    CHECK_EQ(itest_stop(&srv), 0);
    itest_restart(&srv, NULL);
    struct itest_resp r = {0};
    int fd = itest_login(&srv, NULL, NULL); /* the same admin secret */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "dev-1", 5, NULL, 0), 0);
    CHECK_EQ(count_rows(&r, 0), 1);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "pdev-499", 8, NULL, 0), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "dev-3", 5, NULL, 0),
             WIRE_S_NOT_FOUND);
    itest_resp_free(&r);
    close(fd);
}

static void test_mem_limit(void)
{
    /* A small engine memory limit: changes answer ENOMEM and change
     * nothing; inquiries keep working. */
    struct itest_srv m;
    const char *args[] = {"--mem-limit", "64K", NULL};
    itest_start(&m, args);
    struct itest_resp r = {0};
    int fd = itest_login(&m, NULL, NULL);
    int i, st = 0;
    char dev[32];
    for (i = 0; i < 5000; i++) {
        snprintf(dev, sizeof dev, "m-%d", i);
        st = itest_map(fd, dev, "https://m.example/a-rather-long-service-uri-to-fill-memory", dev,
                       NULL, NULL);
        if (st != 0)
            break;
    }
    CHECK_EQ(st, WIRE_S_ENOMEM);
    CHECK(i > 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, dev, (uint16_t)strlen(dev),
                        NULL, 0), WIRE_S_NOT_FOUND);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, "m-0", 3, NULL, 0), 0);
    itest_resp_free(&r);
    close(fd);
    CHECK_EQ(itest_stop(&m), 0);
    itest_cleanup(&m);
}

/* STAT conns busy_poll_hits / busy_poll_timeouts, read on fd. */
static void poll_stats(int fd, uint64_t *hits, uint64_t *timeouts)
{
    struct itest_resp r = {0};
    *hits = *timeouts = UINT64_MAX;
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_STAT, 0, NULL, 0, "conns", 5, NULL, 0), WIRE_S_OK);
    while (r.keylen) {
        if (r.keylen == 14 && !memcmp(r.key, "busy_poll_hits", 14))
            *hits = strtoull((char *)r.value, NULL, 10);
        if (r.keylen == 18 && !memcmp(r.key, "busy_poll_timeouts", 18))
            *timeouts = strtoull((char *)r.value, NULL, 10);
        CHECK_EQ(itest_read(fd, &r), 0);
    }
    itest_resp_free(&r);
    CHECK(*hits != UINT64_MAX && *timeouts != UINT64_MAX);
}

/* Adaptive polling: one client in a tight loop gets a polling worker (its
 * requests found by polls, not wake-ups); --busy-poll-us 0 never polls.
 * The bound is generous (100 ms) so that a slow, loaded or sanitized run
 * still turns around within it: what is checked is the mechanism, not the
 * speed (bench/net/run.sh measures that). */
static void test_busy_poll(void)
{
    for (int on = 1; on >= 0; on--) {
        struct itest_srv s;
        const char *extra[] = {"--busy-poll-us", on ? "100000" : "0", NULL};
        itest_start(&s, extra);
        struct itest_resp r = {0};
        int fd = itest_login(&s, "admin", s.secret);
        uint64_t h0, t0, h1, t1;
        poll_stats(fd, &h0, &t0);
        for (int i = 0; i < 200; i++)
            CHECK_EQ(itest_call(fd, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_OK);
        poll_stats(fd, &h1, &t1);
        if (on) {
            CHECK(h1 - h0 >= 100); /* most of the 200 round trips */
        } else {
            CHECK_EQ(h1, 0);
            CHECK_EQ(t1, 0);
        }
        itest_resp_free(&r);
        close(fd);
        CHECK_EQ(itest_stop(&s), 0);
        itest_cleanup(&s);
    }
}

int main(void)
{
    itest_start(&srv, NULL);
    test_memcached_ops();
    test_map_inquire();
    test_pipeline_and_export();
    test_stats();
    test_principals_and_keys();
    test_restart_keeps_data();
    test_mem_limit();
    test_key_rotation();
    test_busy_poll();
    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    return 0;
}
