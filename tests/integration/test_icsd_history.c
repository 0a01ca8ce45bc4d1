/* test_icsd_history.c — which inquiries a real icsd records in a device's
 * HISTORY (issue 7, wire-v1 3.3): exactly one inquiry entry per row a tpsp
 * got, whether the inquiry was answered alone (INQUIRE_DEVICE, GET,
 * INQUIRE_BINDING) or through the pipelined batch path
 * (engine_inquire_device_batch), and none for an inquiry that preferences
 * or the tpsp's scopes blocked, nor for admin's or the owner's. With
 * --history-len 0 nothing is recorded and inquiries still answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_resp r;

/* Inquiry entries (event 3) by principal who (and for URI uri, if not
 * NULL) in dev's HISTORY, as admin sees it. */
static int inquiries(int adm, const char *dev, const char *who, const char *uri)
{
    uint8_t ext[4] = {0, 0, 0, 0}; /* all entries kept */
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_HISTORY, 0, ext, 4, dev, (uint16_t)strlen(dev), NULL,
                        0), 0);
    CHECK(r.value_len >= 4);
    uint32_t n = wire_be32(r.value);
    const uint8_t *p = r.value + 4, *end = r.value + r.value_len;
    int found = 0;
    for (uint32_t i = 0; i < n; i++) {
        CHECK(end - p >= 9);
        uint8_t ev = p[8];
        p += 9;
        const uint8_t *f[3];
        uint16_t fl[3];
        for (int j = 0; j < 3; j++) {
            CHECK(end - p >= 2);
            fl[j] = wire_be16(p);
            f[j] = p + 2;
            p += 2 + fl[j];
            CHECK(p <= end);
        }
        if (ev == 3 && fl[0] == strlen(who) && !memcmp(f[0], who, fl[0]) &&
            (!uri || (fl[1] == strlen(uri) && !memcmp(f[1], uri, fl[1]))))
            found++;
    }
    CHECK(p == end);
    return found;
}

static uint64_t batched(int adm)
{
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_STAT, 0, NULL, 0, "ops", 3, NULL, 0), 0);
    CHECK(r.keylen == 17 && !memcmp(r.key, "batched_inquiries", 17));
    uint64_t n = strtoull((char *)r.value, NULL, 10);
    while (r.keylen) /* the group ends with an empty key */
        CHECK_EQ(itest_read(adm, &r), 0);
    return n;
}

static int inquire(int fd, uint8_t op, const char *dev)
{
    return itest_call(fd, &r, op, 0, NULL, 0, dev, (uint16_t)strlen(dev), NULL, 0);
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

/* A PREFS_SET value denying one URI prefix. */
static void deny(struct buf *v, const char *prefix)
{
    buf_put_u32(v, 0);
    buf_put_u16(v, 0);
    buf_put_u16(v, 1);
    itest_s16(v, prefix);
    buf_put_u16(v, 0);
}

static void setup(int adm)
{
    const char *th[] = {"https://h.example/", NULL}, *acme[] = {"ACME-", NULL};
    CHECK_EQ(itest_principal(adm, "tpH", 4, "tph-pw", th), 0);
    CHECK_EQ(itest_principal(adm, "acme", 2, "acme-pw", acme), 0);
    /* H1: one row of tpH's; H2: one of tpH's and one of another service;
     * HP: tpH's row, but the device's prefs deny h.example; HZ: no row of
     * tpH's at all. */
    CHECK_EQ(itest_map(adm, "dev-H1", "https://h.example/1", "h1", "acme", NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-H2", "https://h.example/2", "h2", NULL, NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-H2", "https://z.example/2", "z2", NULL, NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-HP", "https://h.example/p", "hp", NULL, NULL), 0);
    CHECK_EQ(itest_map(adm, "dev-HZ", "https://z.example/z", "hz", NULL, NULL), 0);
    struct buf v = BUF_INIT;
    deny(&v, "https://h.example/");
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_PREFS_SET, 0, NULL, 0, "dev-HP", 6, v.p,
                        (uint32_t)v.len), 0);
    buf_free(&v);
}

static void test_recorded(struct itest_srv *s)
{
    int adm = itest_login(s, NULL, NULL);
    setup(adm);
    int th = itest_login(s, "tpH", "tph-pw");
    int acme = itest_login(s, "acme", "acme-pw");

    /* Alone: INQUIRE_DEVICE, GET and INQUIRE_BINDING each record one entry
     * per row returned; blocked ones record nothing. */
    CHECK_EQ(inquire(th, WIRE_OP_INQUIRE_DEVICE, "dev-H1"), 0);
    CHECK_EQ(inquiries(adm, "dev-H1", "tpH", "https://h.example/1"), 1);
    CHECK_EQ(inquire(th, WIRE_OP_GET, "dev-H2"), 0);
    CHECK_EQ(wire_be32(r.value), 1); /* its row only */
    CHECK_EQ(inquiries(adm, "dev-H2", "tpH", "https://h.example/2"), 1);
    CHECK_EQ(inquiries(adm, "dev-H2", "tpH", NULL), 1); /* not the z.example row */
    CHECK_EQ(binding(th, "https://h.example/1", "h1"), 0);
    CHECK_MEM(r.value, "dev-H1", 6);
    CHECK_EQ(inquiries(adm, "dev-H1", "tpH", NULL), 2);
    CHECK_EQ(inquire(th, WIRE_OP_INQUIRE_DEVICE, "dev-HP"), WIRE_S_NOT_FOUND); /* prefs */
    CHECK_EQ(binding(th, "https://h.example/p", "hp"), WIRE_S_NOT_FOUND);
    CHECK_EQ(inquire(th, WIRE_OP_INQUIRE_DEVICE, "dev-HZ"), WIRE_S_NOT_FOUND); /* scope */
    CHECK_EQ(binding(th, "https://z.example/z", "hz"), WIRE_S_NOT_FOUND);
    CHECK_EQ(inquiries(adm, "dev-HP", "tpH", NULL), 0);
    CHECK_EQ(inquiries(adm, "dev-HZ", "tpH", NULL), 0);
    /* Admin's and the owner's inquiries are not a tpsp's: not recorded. */
    CHECK_EQ(inquire(adm, WIRE_OP_INQUIRE_DEVICE, "dev-H1"), 0);
    CHECK_EQ(inquire(acme, WIRE_OP_INQUIRE_DEVICE, "dev-H1"), 0);
    CHECK_EQ(binding(acme, "https://h.example/1", "h1"), 0);
    CHECK_EQ(inquiries(adm, "dev-H1", "admin", NULL), 0);
    CHECK_EQ(inquiries(adm, "dev-H1", "acme", NULL), 0);
    CHECK_EQ(inquiries(adm, "dev-H1", "tpH", NULL), 2);

    /* Pipelined: these frames arrive in one segment and are answered by
     * one engine_inquire_device_batch. H1 is asked twice (two entries),
     * H2 once by GETK (one entry, its tpH row), HP and HZ are blocked
     * (none), and a device that does not exist answers NOT_FOUND. */
    static const struct { uint8_t op; const char *dev; uint16_t st; } q[] = {
        {WIRE_OP_INQUIRE_DEVICE, "dev-H1", 0}, {WIRE_OP_GETK, "dev-H2", 0},
        {WIRE_OP_INQUIRE_DEVICE, "dev-HP", WIRE_S_NOT_FOUND},
        {WIRE_OP_GET, "dev-HZ", WIRE_S_NOT_FOUND},
        {WIRE_OP_INQUIRE_DEVICE, "no-such-device", WIRE_S_NOT_FOUND},
        {WIRE_OP_GET, "dev-H1", 0},
    };
    enum { NQ = sizeof q / sizeof q[0] };
    uint64_t b0 = batched(adm);
    struct buf pl = BUF_INIT;
    for (uint32_t i = 0; i < NQ; i++)
        wire_put_request(&pl, q[i].op, i, 0, NULL, 0, q[i].dev, (uint16_t)strlen(q[i].dev),
                         NULL, 0);
    wire_put_request(&pl, WIRE_OP_NOOP, 1000, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(itest_send(th, pl.p, pl.len), 0);
    buf_free(&pl);
    for (uint32_t i = 0; i < NQ; i++) {
        CHECK_EQ(itest_read(th, &r), 0);
        CHECK_EQ(r.opaque, i);
        CHECK_EQ(r.opcode, q[i].op);
        CHECK_EQ(r.status, q[i].st);
    }
    CHECK_EQ(itest_read(th, &r), 0);
    CHECK_EQ(r.opaque, 1000);
    /* All of them went through the batch (one read, one batch). */
    CHECK_EQ(batched(adm) - b0, NQ);
    CHECK_EQ(inquiries(adm, "dev-H1", "tpH", "https://h.example/1"), 2 + 2);
    CHECK_EQ(inquiries(adm, "dev-H2", "tpH", "https://h.example/2"), 1 + 1);
    CHECK_EQ(inquiries(adm, "dev-H2", "tpH", NULL), 2);
    CHECK_EQ(inquiries(adm, "dev-HP", "tpH", NULL), 0);
    CHECK_EQ(inquiries(adm, "dev-HZ", "tpH", NULL), 0);

    /* The owner pipelining: answered in a batch, recorded nowhere. */
    b0 = batched(adm);
    for (uint32_t i = 0; i < 4; i++)
        wire_put_request(&pl, WIRE_OP_INQUIRE_DEVICE, i, 0, NULL, 0, "dev-H1", 6, NULL, 0);
    CHECK_EQ(itest_send(acme, pl.p, pl.len), 0);
    buf_free(&pl);
    for (uint32_t i = 0; i < 4; i++) {
        CHECK_EQ(itest_read(acme, &r), 0);
        CHECK_EQ(r.status, 0);
    }
    CHECK_EQ(batched(adm) - b0, 4);
    CHECK_EQ(inquiries(adm, "dev-H1", "acme", NULL), 0);
    CHECK_EQ(inquiries(adm, "dev-H1", "tpH", NULL), 4);

    /* What tpH itself sees: its own inquiries, newest first. */
    uint8_t ext[4] = {0, 0, 0, 1};
    CHECK_EQ(itest_call(th, &r, WIRE_OP_HISTORY, 0, ext, 4, "dev-H1", 6, NULL, 0), 0);
    CHECK_EQ(wire_be32(r.value), 1);
    CHECK_EQ(r.value[4 + 8], 3);
    close(th);
    close(acme);
    close(adm);
}

/* --history-len 0: nothing kept, inquiries answered as before. */
static void test_history_off(void)
{
    struct itest_srv s;
    const char *args[] = {"--history-len", "0", NULL};
    itest_start(&s, args);
    int adm = itest_login(&s, NULL, NULL);
    setup(adm);
    int th = itest_login(&s, "tpH", "tph-pw");
    CHECK_EQ(inquire(th, WIRE_OP_INQUIRE_DEVICE, "dev-H1"), 0);
    CHECK_EQ(binding(th, "https://h.example/1", "h1"), 0);
    struct buf pl = BUF_INIT;
    for (uint32_t i = 0; i < 3; i++)
        wire_put_request(&pl, WIRE_OP_INQUIRE_DEVICE, i, 0, NULL, 0, "dev-H1", 6, NULL, 0);
    CHECK_EQ(itest_send(th, pl.p, pl.len), 0);
    buf_free(&pl);
    for (uint32_t i = 0; i < 3; i++) {
        CHECK_EQ(itest_read(th, &r), 0);
        CHECK_EQ(r.status, 0);
    }
    uint8_t ext[4] = {0};
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_HISTORY, 0, ext, 4, "dev-H1", 6, NULL, 0), 0);
    CHECK_EQ(wire_be32(r.value), 0);
    close(th);
    close(adm);
    CHECK_EQ(itest_stop(&s), 0);
    itest_cleanup(&s);
}

int main(void)
{
    struct itest_srv s;
    const char *args[] = {"--history-len", "16", NULL};
    itest_start(&s, args);
    test_recorded(&s);
    CHECK_EQ(itest_stop(&s), 0);
    itest_cleanup(&s);
    test_history_off();
    itest_resp_free(&r);
    return 0;
}
