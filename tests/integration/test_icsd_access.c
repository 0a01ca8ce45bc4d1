/* test_icsd_access.c — access control (wire-v1 section 4) and the
 * two-phase mapping of Y.4462 10.1 against a real icsd: a tpsp sees only
 * rows of its URIs and gets NOT_FOUND for the rest, an iot_sp only its
 * devices, preferences hide rows, tpsp inquiries land in HISTORY, and
 * MAP_REQUEST -> MAP_PENDING -> MAP_CONFIRM/REJECT -> MAP_RESULT with the
 * events on both sides, the mailbox, DEMAPPED and pending expiry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_srv srv;
static struct itest_resp r;

static int inquire(int fd, const char *dev)
{
    int st = itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, dev, (uint16_t)strlen(dev),
                        NULL, 0);
    return st == 0 ? (int)wire_be32(r.value) : -st;
}

static int binding(int fd, const char *uri, const char *uti)
{
    struct buf v = BUF_INIT;
    itest_s16(&v, uti);
    int st = itest_call(fd, &r, WIRE_OP_INQUIRE_BINDING, 0, NULL, 0, uri, (uint16_t)strlen(uri),
                        v.p, (uint32_t)v.len);
    buf_free(&v);
    return st;
}

static void watch(int fd, uint32_t mask)
{
    uint8_t ext[4];
    buf_be32(ext, mask);
    CHECK_EQ(itest_req(fd, WIRE_OP_WATCH, 77, 0, ext, 4, NULL, 0, NULL, 0), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.magic, WIRE_MAGIC_RES);
    CHECK_EQ(r.opcode, WIRE_OP_WATCH);
    CHECK_EQ(r.status, 0);
}

/* Reads frames until an event with that code; fails on timeout. */
static void expect_event(int fd, uint8_t code)
{
    for (int i = 0; i < 100; i++) {
        CHECK_EQ(itest_read(fd, &r), 0);
        if (r.magic == WIRE_MAGIC_EVT && r.opcode == code)
            return;
    }
    CHECK(!"event not received");
}

static int map_request(int fd, const char *serial, const char *uri, const char *uti,
                       uint8_t id[16])
{
    struct buf v = BUF_INIT;
    itest_s16(&v, uri);
    itest_s16(&v, uti);
    int st = itest_call(fd, &r, WIRE_OP_MAP_REQUEST, 0, NULL, 0, serial,
                        (uint16_t)strlen(serial), v.p, (uint32_t)v.len);
    buf_free(&v);
    if (st == 0) {
        CHECK_EQ(r.value_len, 16);
        memcpy(id, r.value, 16);
    }
    return st;
}

static int confirm(int fd, const uint8_t id[16], const char *dev)
{
    struct buf v = BUF_INIT;
    itest_s16(&v, dev);
    int st = itest_call(fd, &r, WIRE_OP_MAP_CONFIRM, 0, NULL, 0, id, 16, v.p, (uint32_t)v.len);
    buf_free(&v);
    return st;
}

static void setup_principals(int adm)
{
    const char *acme[] = {"ACME-", NULL}, *ta[] = {"https://a.example/", NULL},
               *tb[] = {"https://b.example/", NULL}, *oth[] = {"OTH-", NULL};
    CHECK_EQ(itest_principal(adm, "acme", 2, "acme-pw", acme), 0);
    CHECK_EQ(itest_principal(adm, "other", 2, "other-pw", oth), 0);
    CHECK_EQ(itest_principal(adm, "tpA", 4, "tpa-pw", ta), 0);
    CHECK_EQ(itest_principal(adm, "tpB", 4, "tpb-pw", tb), 0);
}

static void test_visibility(int adm)
{
    CHECK_EQ(itest_map(adm, "dev-A1", "https://a.example/1", "u1", "acme", NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-A1", "https://b.example/1", "u2", "acme", NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-X", "https://b.example/x", "ux", NULL, NULL), 0);
    int acme = itest_login(&srv, "acme", "acme-pw");
    int ta = itest_login(&srv, "tpA", "tpa-pw");
    int tb = itest_login(&srv, "tpB", "tpb-pw");
    int oth = itest_login(&srv, "other", "other-pw");

    CHECK_EQ(inquire(adm, "dev-A1"), 2);
    CHECK_EQ(inquire(acme, "dev-A1"), 2);
    CHECK_EQ(inquire(ta, "dev-A1"), 1);
    CHECK(memmem(r.value, r.value_len, "https://a.example/1", 19) != NULL);
    CHECK(memmem(r.value, r.value_len, "b.example", 9) == NULL);
    CHECK_EQ(inquire(tb, "dev-A1"), 1);
    /* Not its rows: NOT_FOUND, exactly as for a device that does not exist. */
    CHECK_EQ(inquire(ta, "dev-X"), -WIRE_S_NOT_FOUND);
    CHECK_EQ(inquire(ta, "no-such-device"), -WIRE_S_NOT_FOUND);
    CHECK_EQ(inquire(oth, "dev-A1"), -WIRE_S_NOT_FOUND);
    CHECK_EQ(inquire(acme, "dev-X"), -WIRE_S_NOT_FOUND);
    CHECK_EQ(binding(ta, "https://b.example/1", "u2"), WIRE_S_NOT_FOUND);
    CHECK_EQ(binding(tb, "https://b.example/1", "u2"), 0);
    CHECK_MEM(r.value, "dev-A1", 6);
    CHECK_EQ(binding(acme, "https://b.example/1", "u2"), 0);
    CHECK_EQ(binding(oth, "https://b.example/1", "u2"), WIRE_S_NOT_FOUND);
    /* Role checks: ACCESS_DENIED for opcodes the role may not send. */
    CHECK_EQ(itest_map(ta, "dev-Z", "https://a.example/z", "uz", NULL, NULL),
             WIRE_S_ACCESS_DENIED);
    CHECK_EQ(itest_call(ta, &r, WIRE_OP_SNAPSHOT, 0, NULL, 0, NULL, 0, NULL, 0),
             WIRE_S_ACCESS_DENIED);
    /* A tpsp demapping another tpsp's row: NOT_FOUND, and the row stays. */
    struct buf v = BUF_INIT;
    itest_s16(&v, "https://b.example/1");
    itest_s16(&v, "u2");
    CHECK_EQ(itest_call(ta, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-A1", 6, v.p, (uint32_t)v.len),
             WIRE_S_NOT_FOUND);
    CHECK_EQ(itest_call(oth, &r, WIRE_OP_DEMAP_DEVICE, 0, NULL, 0, "dev-A1", 6, NULL, 0),
             WIRE_S_NOT_FOUND);
    CHECK_EQ(itest_call(ta, &r, WIRE_OP_DEMAP_SERVICE, 0, NULL, 0, "https://b.example/1", 19,
                        NULL, 0), WIRE_S_NOT_FOUND);
    CHECK_EQ(inquire(adm, "dev-A1"), 2);

    /* HISTORY: tpA's inquiry is recorded (event 3); tpB sees only its URIs. */
    uint8_t ext[4] = {0, 0, 0, 50};
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_HISTORY, 0, ext, 4, "dev-A1", 6, NULL, 0), 0);
    CHECK(wire_be32(r.value) >= 3);
    CHECK_EQ(r.value[4 + 8], 3);
    CHECK(memmem(r.value, r.value_len, "tpB", 3) != NULL);
    CHECK(memmem(r.value, r.value_len, "tpA", 3) != NULL);
    CHECK_EQ(itest_call(tb, &r, WIRE_OP_HISTORY, 0, ext, 4, "dev-A1", 6, NULL, 0), 0);
    CHECK(memmem(r.value, r.value_len, "a.example", 9) == NULL);

    /* The same answers when pipelined (the server batches the lookups of
     * inquiries that arrive together). */
    struct buf pl = BUF_INIT;
    for (uint32_t i = 0; i < 60; i++) {
        static const char *devs[] = {"dev-A1", "dev-X", "no-such-device"};
        static const uint8_t ops[] = {WIRE_OP_INQUIRE_DEVICE, WIRE_OP_GETK, WIRE_OP_GETQ,
                                      WIRE_OP_GET};
        const char *d = devs[i % 3];
        wire_put_request(&pl, ops[i % 4], i, 0, NULL, 0, d, (uint16_t)strlen(d), NULL, 0);
    }
    wire_put_request(&pl, WIRE_OP_NOOP, 1000, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(itest_send(ta, pl.p, pl.len), 0);
    for (uint32_t i = 0; i < 60; i++) {
        uint8_t op = (uint8_t[]){WIRE_OP_INQUIRE_DEVICE, WIRE_OP_GETK, WIRE_OP_GETQ,
                                 WIRE_OP_GET}[i % 4];
        if (i % 3 != 0 && op == WIRE_OP_GETQ)
            continue; /* quiet miss: no answer */
        CHECK_EQ(itest_read(ta, &r), 0);
        CHECK_EQ(r.opaque, i);
        CHECK_EQ(r.opcode, op);
        if (i % 3 == 0) {
            CHECK_EQ(r.status, 0);
            CHECK_EQ(r.extlen, op == WIRE_OP_INQUIRE_DEVICE ? 0 : 4);
            CHECK_EQ(r.keylen, op == WIRE_OP_GETK ? 6 : 0);
            CHECK_EQ(wire_be32(r.value), 1);
            CHECK(memmem(r.value, r.value_len, "https://a.example/1", 19) != NULL);
            CHECK(memmem(r.value, r.value_len, "b.example", 9) == NULL);
        } else {
            CHECK_EQ(r.status, WIRE_S_NOT_FOUND);
            /* GETK echoes the key on a miss too, as memcached does */
            const char *d = (i % 3 == 1) ? "dev-X" : "no-such-device";
            CHECK_EQ(r.keylen, op == WIRE_OP_GETK ? strlen(d) : 0);
            if (op == WIRE_OP_GETK)
                CHECK_MEM(r.key, d, strlen(d));
        }
    }
    CHECK_EQ(itest_read(ta, &r), 0);
    CHECK_EQ(r.opaque, 1000);
    buf_free(&pl);
    /* ... and they did go through the batched lookup. */
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_STAT, 0, NULL, 0, "ops", 3, NULL, 0), 0);
    CHECK(r.keylen == 17 && !memcmp(r.key, "batched_inquiries", 17));
    CHECK(strtoull((char *)r.value, NULL, 10) >= 2);
    while (r.keylen)
        CHECK_EQ(itest_read(adm, &r), 0);

    /* Preferences: the owner denies b.example; tpB then sees nothing. */
    v.len = 0;
    buf_put_u32(&v, 0);
    buf_put_u16(&v, 0);
    buf_put_u16(&v, 1);
    itest_s16(&v, "https://b.example/");
    buf_put_u16(&v, 0);
    CHECK_EQ(itest_call(ta, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-A1", 6, v.p, (uint32_t)v.len),
             WIRE_S_ACCESS_DENIED);
    CHECK_EQ(itest_call(oth, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-A1", 6, v.p,
                        (uint32_t)v.len), WIRE_S_NOT_FOUND);
    CHECK_EQ(itest_call(acme, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-A1", 6, v.p, 3),
             WIRE_S_EINVAL);
    CHECK_EQ(itest_call(acme, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-A1", 6, v.p,
                        (uint32_t)v.len), 0);
    CHECK(r.cas > 0);
    CHECK_EQ(itest_call(acme, &r, WIRE_OP_PREFS_GET, 0, NULL, 0, "dev-A1", 6, NULL, 0), 0);
    CHECK_EQ(r.value_len, v.len);
    CHECK_MEM(r.value, v.p, v.len);
    CHECK_EQ(inquire(tb, "dev-A1"), -WIRE_S_NOT_FOUND);
    CHECK_EQ(binding(tb, "https://b.example/1", "u2"), WIRE_S_NOT_FOUND);
    /* ... nor may it remove the row its preferences hide: NOT_FOUND, as
     * for a row that does not exist, and the row stays. */
    {
        struct buf d = BUF_INIT;
        itest_s16(&d, "https://b.example/1");
        itest_s16(&d, "u2");
        CHECK_EQ(itest_call(tb, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-A1", 6, d.p,
                            (uint32_t)d.len), WIRE_S_NOT_FOUND);
        d.len = 0;
        itest_s16(&d, "u2");
        CHECK_EQ(itest_call(tb, &r, WIRE_OP_DEMAP_BINDING, 0, NULL, 0, "https://b.example/1", 19,
                            d.p, (uint32_t)d.len), WIRE_S_NOT_FOUND);
        buf_free(&d);
        CHECK_EQ(inquire(adm, "dev-A1"), 2);
        /* DEMAP_SERVICE by tpB removes the URI's rows it may see (dev-S1,
         * no prefs) and not dev-A1's, which its preferences hide: the
         * count says 1, dev-A1 keeps both rows; again: NOT_FOUND. */
        CHECK_EQ(itest_map(adm, "dev-S1", "https://b.example/1", "s1", NULL, NULL), 0);
        CHECK_EQ(itest_call(tb, &r, WIRE_OP_DEMAP_SERVICE, 0, NULL, 0, "https://b.example/1",
                            19, NULL, 0), 0);
        CHECK_EQ(r.value_len, 4);
        CHECK_EQ(wire_be32(r.value), 1);
        CHECK_EQ(inquire(adm, "dev-S1"), -WIRE_S_NOT_FOUND);
        CHECK_EQ(inquire(adm, "dev-A1"), 2);
        CHECK_EQ(itest_call(tb, &r, WIRE_OP_DEMAP_SERVICE, 0, NULL, 0, "https://b.example/1",
                            19, NULL, 0), WIRE_S_NOT_FOUND);
        CHECK_EQ(inquire(adm, "dev-A1"), 2);
    }
    /* DEMAPPED goes to every watcher who may see the row: the owner and an
     * admin, not the tpsp the device's preferences hide it from. dev-A2
     * (same prefs) loses its hidden row first, then dev-B3 (no prefs) a
     * row tpB sees: tpB's first event must be dev-B3's. */
    {
        int adm_w = itest_login(&srv, NULL, NULL);
        int acme_w = itest_login(&srv, "acme", "acme-pw");
        int tb_w = itest_login(&srv, "tpB", "tpb-pw");
        watch(adm_w, WIRE_W_DEMAPPED);
        watch(acme_w, WIRE_W_DEMAPPED);
        watch(tb_w, WIRE_W_DEMAPPED);
        CHECK_EQ(itest_map(adm, "dev-A2", "https://b.example/2h", "h2", "acme", NULL), 0);
        CHECK_EQ(itest_call(acme, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-A2", 6, v.p,
                            (uint32_t)v.len), 0);
        CHECK_EQ(itest_map(adm, "dev-B3", "https://b.example/3", "u3", NULL, NULL), 0);
        struct buf d = BUF_INIT;
        itest_s16(&d, "https://b.example/2h");
        itest_s16(&d, "h2");
        CHECK_EQ(itest_call(adm, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-A2", 6, d.p,
                            (uint32_t)d.len), 0);
        d.len = 0;
        itest_s16(&d, "https://b.example/3");
        itest_s16(&d, "u3");
        CHECK_EQ(itest_call(adm, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-B3", 6, d.p,
                            (uint32_t)d.len), 0);
        buf_free(&d);
        expect_event(acme_w, WIRE_EV_DEMAPPED);
        CHECK_MEM(r.key, "dev-A2", 6);
        expect_event(adm_w, WIRE_EV_DEMAPPED);
        CHECK_MEM(r.key, "dev-A2", 6);
        expect_event(adm_w, WIRE_EV_DEMAPPED);
        CHECK_MEM(r.key, "dev-B3", 6);
        expect_event(tb_w, WIRE_EV_DEMAPPED);
        CHECK_EQ(r.keylen, 6);
        CHECK_MEM(r.key, "dev-B3", 6);
        close(adm_w);
        close(acme_w);
        close(tb_w);
    }
    /* A MAP for a denied URI is refused. */
    CHECK_EQ(itest_map(adm, "dev-A1", "https://b.example/2", "u3", NULL, NULL),
             WIRE_S_ACCESS_DENIED);
    /* Retention: a device with a 1-hour bound gives new rows that expiry. */
    struct buf ret = BUF_INIT;
    buf_put_u32(&ret, 3600);
    buf_put_u16(&ret, 0);
    buf_put_u16(&ret, 0);
    buf_put_u16(&ret, 0);
    CHECK_EQ(itest_map(adm, "dev-R", "https://a.example/r1", "r1", "acme", NULL), 0);
    CHECK_EQ(itest_call(acme, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-R", 5, ret.p,
                        (uint32_t)ret.len), 0);
    CHECK_EQ(itest_map(adm, "dev-R", "https://a.example/r2", "r2", NULL, NULL), 0);
    CHECK_EQ(inquire(adm, "dev-R"), 2);
    {
        uint32_t now = (uint32_t)time(NULL);
        /* rows: r1 (no expiry), then r2 with now + 3600 at most */
        size_t off = 4 + 2 + 20 + 2 + 2;
        CHECK_EQ(wire_be32(r.value + off), 0);
        off += 4 + 2 + 20 + 2 + 2;
        uint32_t exp = wire_be32(r.value + off);
        CHECK(exp >= now + 3590 && exp <= now + 3610);
    }
    buf_free(&ret);
    CHECK_EQ(inquire(ta, "dev-A1"), 1);
    CHECK_EQ(inquire(acme, "dev-A1"), 2);
    buf_free(&v);
    close(acme);
    close(ta);
    close(tb);
    close(oth);
}

static void test_two_phase(void)
{
    int acme = itest_login(&srv, "acme", "acme-pw");
    int acme_w = itest_login(&srv, "acme", "acme-pw");
    int ta = itest_login(&srv, "tpA", "tpa-pw");
    int ta_w = itest_login(&srv, "tpA", "tpa-pw");
    int oth = itest_login(&srv, "other", "other-pw");
    watch(acme_w, WIRE_W_MAP_PENDING | WIRE_W_DEMAPPED);
    watch(ta_w, WIRE_W_MAP_RESULT | WIRE_W_DEMAPPED);
    uint8_t id[16], id2[16];

    /* Out of scope / nobody owns the serial. */
    CHECK_EQ(map_request(ta, "ACME-0007", "https://b.example/7", "u7", id),
             WIRE_S_ACCESS_DENIED);
    CHECK_EQ(map_request(ta, "ZZZ-0007", "https://a.example/7", "u7", id), WIRE_S_NOT_FOUND);

    CHECK_EQ(map_request(ta, "ACME-0007", "https://a.example/7", "u7", id), 0);
    expect_event(acme_w, WIRE_EV_MAP_PENDING);
    CHECK_EQ(r.keylen, 16);
    CHECK_MEM(r.key, id, 16);
    CHECK_MEM(r.value, "\0\11ACME-0007\0\23https://a.example/7\0\2u7", 2 + 9 + 2 + 19 + 2 + 2);
    /* Only the routed iot_sp may answer; a tpsp may not at all. */
    CHECK_EQ(confirm(oth, id, "dev-A7"), WIRE_S_NOT_FOUND);
    CHECK_EQ(confirm(ta, id, "dev-A7"), WIRE_S_ACCESS_DENIED);
    CHECK_EQ(confirm(acme, id, "dev-A7"), 0);
    CHECK(r.cas > 0);
    expect_event(ta_w, WIRE_EV_MAP_RESULT);
    CHECK_EQ(r.status, 0);
    CHECK_MEM(r.key, id, 16);
    CHECK_MEM(r.value, "\0\6dev-A7", 8);
    CHECK_EQ(confirm(acme, id, "dev-A7"), WIRE_S_NOT_FOUND); /* taken once */
    CHECK_EQ(inquire(ta, "dev-A7"), 1);
    CHECK_EQ(inquire(acme, "dev-A7"), 1); /* acme owns it now */

    /* Reject: the tpsp gets MAP_RESULT NOT_FOUND with the reason. */
    CHECK_EQ(map_request(ta, "ACME-0008", "https://a.example/8", "u8", id2), 0);
    expect_event(acme_w, WIRE_EV_MAP_PENDING);
    struct buf v = BUF_INIT;
    itest_s16(&v, "user declined");
    CHECK_EQ(itest_call(acme, &r, WIRE_OP_MAP_REJECT, 0, NULL, 0, id2, 16, v.p, (uint32_t)v.len),
             0);
    expect_event(ta_w, WIRE_EV_MAP_RESULT);
    CHECK_EQ(r.status, WIRE_S_NOT_FOUND);
    CHECK_MEM(r.key, id2, 16);
    CHECK_MEM(r.value, "\0\15user declined", 15);

    /* DEMAPPED reaches both the owner and the tpsp of the URI. */
    v.len = 0;
    itest_s16(&v, "https://a.example/7");
    itest_s16(&v, "u7");
    CHECK_EQ(itest_call(ta, &r, WIRE_OP_DEMAP, 0, NULL, 0, "dev-A7", 6, v.p, (uint32_t)v.len), 0);
    uint64_t lsn = r.cas;
    expect_event(ta_w, WIRE_EV_DEMAPPED);
    CHECK_EQ(r.keylen, 6);
    CHECK_MEM(r.key, "dev-A7", 6);
    CHECK_EQ(r.cas, lsn);
    expect_event(acme_w, WIRE_EV_DEMAPPED);
    CHECK_MEM(r.key, "dev-A7", 6);

    /* A row whose ttl passes is removed as if demapped: DEMAPPED (with its
     * own LSN) to the owner and the tpsp. */
    uint8_t ttl[4] = {0, 0, 0, 1};
    v.len = 0;
    itest_s16(&v, "https://a.example/ttl");
    itest_s16(&v, "u-ttl");
    itest_s16(&v, "acme");
    int adm2 = itest_login(&srv, NULL, NULL);
    CHECK_EQ(itest_call(adm2, &r, WIRE_OP_MAP, 0, ttl, 4, "dev-TTL", 7, v.p, (uint32_t)v.len), 0);
    uint64_t map_lsn = r.cas;
    CHECK_EQ(inquire(ta, "dev-TTL"), 1);
    CHECK_EQ(wire_be32(r.value + 4 + 2 + 21 + 2 + 5) != 0, 1); /* expires_at set */
    expect_event(ta_w, WIRE_EV_DEMAPPED);
    CHECK_MEM(r.key, "dev-TTL", 7);
    CHECK(r.cas > map_lsn);
    expect_event(acme_w, WIRE_EV_DEMAPPED);
    CHECK_MEM(r.key, "dev-TTL", 7);
    CHECK_EQ(inquire(ta, "dev-TTL"), -WIRE_S_NOT_FOUND);
    close(adm2);

    /* Mailbox: with no WATCH connection the MAP_RESULT waits, and comes
     * right after the next WATCH. */
    close(ta_w);
    CHECK_EQ(map_request(ta, "ACME-0009", "https://a.example/9", "u9", id), 0);
    expect_event(acme_w, WIRE_EV_MAP_PENDING);
    CHECK_EQ(confirm(acme, id, "dev-A9"), 0);
    ta_w = itest_login(&srv, "tpA", "tpa-pw");
    watch(ta_w, WIRE_W_MAP_RESULT);
    expect_event(ta_w, WIRE_EV_MAP_RESULT);
    CHECK_MEM(r.key, id, 16);
    CHECK_EQ(r.status, 0);
    buf_free(&v);
    close(acme);
    close(acme_w);
    close(ta);
    close(ta_w);
    close(oth);
}

static void test_pending_expiry(void)
{
    struct itest_srv s2;
    const char *args[] = {"--pending-ttl", "1", NULL};
    itest_start(&s2, args);
    int adm = itest_login(&s2, NULL, NULL);
    const char *acme[] = {"ACME-", NULL}, *ta[] = {"https://a.example/", NULL};
    CHECK_EQ(itest_principal(adm, "acme", 2, "acme-pw", acme), 0);
    CHECK_EQ(itest_principal(adm, "tpA", 4, "tpa-pw", ta), 0);
    int t = itest_login(&s2, "tpA", "tpa-pw");
    int tw = itest_login(&s2, "tpA", "tpa-pw");
    int a = itest_login(&s2, "acme", "acme-pw");
    watch(tw, WIRE_W_MAP_RESULT);
    uint8_t id[16];
    CHECK_EQ(map_request(t, "ACME-1", "https://a.example/1", "u1", id), 0);
    expect_event(tw, WIRE_EV_MAP_RESULT); /* within SO_RCVTIMEO (10 s) */
    CHECK_EQ(r.status, WIRE_S_NOT_FOUND);
    CHECK_MEM(r.key, id, 16);
    CHECK_EQ(confirm(a, id, "dev-1"), WIRE_S_NOT_FOUND);
    /* Its MAP_PENDING waited in acme's mailbox (acme was not watching);
     * the request is gone, so a WATCH now gets only the open one. */
    uint8_t id2[16];
    CHECK_EQ(map_request(t, "ACME-2", "https://a.example/2", "u2", id2), 0);
    int aw = itest_login(&s2, "acme", "acme-pw");
    watch(aw, WIRE_W_MAP_PENDING);
    expect_event(aw, WIRE_EV_MAP_PENDING);
    CHECK_EQ(r.keylen, 16);
    CHECK_MEM(r.key, id2, 16);
    close(aw);

    /* Pending requests are bounded per principal: past the bound,
     * TMPFAIL (try again later), and nothing else breaks. */
    struct buf all = BUF_INIT, v = BUF_INIT;
    itest_s16(&v, "https://a.example/flood");
    itest_s16(&v, "uf");
    for (uint32_t i = 0; i < 1100; i++)
        wire_put_request(&all, WIRE_OP_MAP_REQUEST, i, 0, NULL, 0, "ACME-F", 6, v.p,
                         (uint32_t)v.len);
    CHECK_EQ(itest_send(t, all.p, all.len), 0);
    int ok = 0, tmpfail = 0;
    for (uint32_t i = 0; i < 1100; i++) {
        CHECK_EQ(itest_read(t, &r), 0);
        CHECK_EQ(r.opaque, i);
        if (r.status == 0)
            ok++;
        else if (r.status == WIRE_S_TMPFAIL)
            tmpfail++;
    }
    CHECK(ok >= 1 && ok <= 1024);
    CHECK_EQ(ok + tmpfail, 1100);
    CHECK_EQ(itest_call(t, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    buf_free(&all);
    buf_free(&v);
    close(t);
    close(tw);
    close(a);
    close(adm);
    CHECK_EQ(itest_stop(&s2), 0);
    itest_cleanup(&s2);
}

/* At-least-once across a WATCH connection going away: the watcher
 * half-closes (the server sees EOF and closes its side) while a MAP_RESULT
 * for it is being raised. Every result must reach the tpsp, on the old
 * connection if it was sent before the close, else from the mailbox on the
 * next WATCH; never neither. Rounds race the close against the event. */
static void test_watch_close_race(void)
{
    int acme = itest_login(&srv, "acme", "acme-pw");
    int acme_w = itest_login(&srv, "acme", "acme-pw");
    int ta = itest_login(&srv, "tpA", "tpa-pw");
    watch(acme_w, WIRE_W_MAP_PENDING);
    int via_old = 0, via_mailbox = 0;
    for (int round = 0; round < 12; round++) {
        int ta_w = itest_login(&srv, "tpA", "tpa-pw");
        watch(ta_w, WIRE_W_MAP_RESULT);
        char serial[32], dev[32], uti[32];
        snprintf(serial, sizeof serial, "ACME-R%02d", round);
        snprintf(dev, sizeof dev, "dev-R%02d", round);
        snprintf(uti, sizeof uti, "ur%02d", round);
        uint8_t id[16];
        CHECK_EQ(map_request(ta, serial, "https://a.example/r", uti, id), 0);
        expect_event(acme_w, WIRE_EV_MAP_PENDING);
        /* Round 0 closes before the confirm, round 1 after its answer
         * (the result was raised by then), the others 0.15 ms apart after
         * sending it, so the close lands before, during and after the
         * raise (the result is raised once the map is durable). */
        if (round == 0)
            CHECK_EQ(shutdown(ta_w, SHUT_WR), 0);
        struct buf v = BUF_INIT;
        itest_s16(&v, dev);
        CHECK_EQ(itest_req(acme, WIRE_OP_MAP_CONFIRM, 5, 0, NULL, 0, id, 16, v.p,
                           (uint32_t)v.len), 0);
        buf_free(&v);
        if (round >= 2) {
            usleep((useconds_t)(round - 2) * 150);
            CHECK_EQ(shutdown(ta_w, SHUT_WR), 0);
        }
        CHECK_EQ(itest_read(acme, &r), 0);
        CHECK_EQ(r.status, 0);
        if (round == 1)
            CHECK_EQ(shutdown(ta_w, SHUT_WR), 0);
        /* The old connection: the result, or EOF once the server closed. */
        int got = 0;
        while (!got && itest_read(ta_w, &r) == 0)
            got = r.magic == WIRE_MAGIC_EVT && r.opcode == WIRE_EV_MAP_RESULT &&
                  memcmp(r.key, id, 16) == 0;
        close(ta_w);
        if (got) {
            via_old++;
            continue;
        }
        int nw = itest_login(&srv, "tpA", "tpa-pw");
        watch(nw, WIRE_W_MAP_RESULT);
        for (int i = 0; i < 8 && !got; i++) {
            expect_event(nw, WIRE_EV_MAP_RESULT);
            got = memcmp(r.key, id, 16) == 0;
        }
        CHECK(got);
        via_mailbox++;
        close(nw);
    }
    fprintf(stderr, "watch close race: %d on the old connection, %d via the mailbox\n",
            via_old, via_mailbox);
    close(acme);
    close(acme_w);
    close(ta);
}

int main(void)
{
    itest_start(&srv, NULL);
    int adm = itest_login(&srv, NULL, NULL);
    setup_principals(adm);
    test_visibility(adm);
    test_two_phase();
    test_watch_close_race();
    close(adm);
    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    test_pending_expiry();
    itest_resp_free(&r);
    return 0;
}
