/*
 * test_pending.c — the two-phase table: create/take by the routed iot_sp
 * only, IDs unique and random, per-principal bound, expiry in order.
 */
#include <errno.h>
#include <string.h>

#include "pending.h"
#include "test.h"

#define S(field, s) (memcpy((field), (s), strlen(s)), (uint16_t)strlen(s))

static struct pending_req req(const char *tpsp, const char *iot, const char *serial,
                              uint64_t now)
{
    struct pending_req r;
    memset(&r, 0, sizeof(r));
    r.tpsp_len = S(r.tpsp, tpsp);
    r.iot_sp_len = S(r.iot_sp, iot);
    r.serial_len = S(r.serial, serial);
    r.uri_len = S(r.uri, "https://svc.example/");
    r.uti_len = S(r.uti, "uti-1");
    r.ttl_s = 77;
    r.created_us = now;
    return r;
}

static void test_create_take(void)
{
    pending_t *t;
    CHECK_EQ(pending_create_table(&t, NULL), 0);
    struct pending_req r = req("tp", "acme", "ACME-1", 1000);
    uint8_t id[16], id2[16];
    CHECK_EQ(pending_create(t, &r, id), 0);
    CHECK_EQ(pending_create(t, &r, id2), 0);
    CHECK(memcmp(id, id2, 16) != 0);
    CHECK_EQ(pending_count(t), 2);

    struct pending_req out;
    /* Someone else, or a wrong ID: indistinguishable -ENOENT. */
    CHECK_EQ(pending_take(t, id, "other", 5, 0, &out), -ENOENT);
    CHECK_EQ(pending_take(t, id, "acm", 3, 0, &out), -ENOENT);
    CHECK_EQ(pending_take(t, id, "tp", 2, 0, &out), -ENOENT);   /* not even the requester */
    uint8_t bad[16];
    memcpy(bad, id, 16);
    bad[15] ^= 1;
    CHECK_EQ(pending_take(t, bad, "acme", 4, 0, &out), -ENOENT);
    CHECK_EQ(pending_count(t), 2);
    /* Open: known, and not expired by the time asked about. */
    CHECK(pending_is_open(t, id, 0) && pending_is_open(t, id, 2000));
    CHECK(!pending_is_open(t, id, 1000 + 600ull * 1000000u));
    CHECK(!pending_is_open(t, bad, 0));

    memset(&out, 0, sizeof(out));
    CHECK_EQ(pending_take(t, id, "acme", 4, 2000, &out), 0);
    CHECK_EQ(out.tpsp_len, 2);
    CHECK_MEM(out.tpsp, "tp", 2);
    CHECK_MEM(out.serial, "ACME-1", 6);
    CHECK_MEM(out.uti, "uti-1", 5);
    CHECK_EQ(out.ttl_s, 77);
    CHECK_EQ(out.created_us, 1000);
    CHECK_EQ(out.expires_us, 1000 + 600ull * 1000000u);
    /* Taken once only. */
    CHECK_EQ(pending_take(t, id, "acme", 4, 0, &out), -ENOENT);
    CHECK(!pending_is_open(t, id, 0));
    /* After its expiry time it is no longer takeable either. */
    CHECK_EQ(pending_take(t, id2, "acme", 4, 1000 + 600ull * 1000000u, &out), -ENOENT);
    CHECK_EQ(pending_take(t, id2, "acme", 4, 0, NULL), 0);
    CHECK_EQ(pending_count(t), 0);

    /* Bad requests. */
    struct pending_req e = r;
    e.tpsp_len = 0;
    CHECK_EQ(pending_create(t, &e, id), -EINVAL);
    e = r;
    e.uri_len = 0;
    CHECK_EQ(pending_create(t, &e, id), -EINVAL);
    e = r;
    e.uti_len = ENGINE_ID_MAX + 1;
    CHECK_EQ(pending_create(t, &e, id), -EINVAL);
    e = r;
    e.serial_len = 0;
    CHECK_EQ(pending_create(t, &e, id), -EINVAL);
    e = r;
    e.iot_sp_len = ENGINE_NAME_MAX + 1;
    CHECK_EQ(pending_create(t, &e, id), -EINVAL);
    pending_destroy_table(t);
}

static void test_bound(void)
{
    pending_t *t;
    struct pending_config cfg = {.ttl_s = 10, .max_per_principal = 8};
    CHECK_EQ(pending_create_table(&t, &cfg), 0);
    uint8_t ids[8][16], id[16];
    for (int i = 0; i < 8; i++) {
        struct pending_req r = req("tp", i % 2 ? "a" : "b", "S", 0);
        CHECK_EQ(pending_create(t, &r, ids[i]), 0);
    }
    /* The requester is at its bound. */
    struct pending_req r = req("tp", "a", "S", 0);
    CHECK_EQ(pending_create(t, &r, id), -EAGAIN);
    /* Another requester is not... */
    struct pending_req r2 = req("tp2", "c", "S", 0);
    CHECK_EQ(pending_create(t, &r2, id), 0);
    /* ... but a target has its own bound too. */
    for (int i = 0; i < 7; i++) {
        char name[8];
        snprintf(name, sizeof(name), "x%d", i);
        struct pending_req r3 = req(name, "c", "S", 0);
        CHECK_EQ(pending_create(t, &r3, id), 0);
    }
    struct pending_req r4 = req("fresh", "c", "S", 0);
    CHECK_EQ(pending_create(t, &r4, id), -EAGAIN);
    /* Taking one frees a slot for the requester. */
    CHECK_EQ(pending_take(t, ids[1], "a", 1, 0, NULL), 0);
    CHECK_EQ(pending_create(t, &r, id), 0);
    CHECK_EQ(pending_create(t, &r, id), -EAGAIN);
    pending_destroy_table(t);
}

struct seen {
    int n;
    uint8_t ids[64][16];
    char tpsp[64];
};

static void on_expire(void *arg, const uint8_t id[16], const struct pending_req *r)
{
    struct seen *s = arg;
    memcpy(s->ids[s->n], id, 16);
    s->tpsp[s->n] = (char)r->tpsp[0];
    s->n++;
}

static void test_expire(void)
{
    pending_t *t;
    struct pending_config cfg = {.ttl_s = 10};
    CHECK_EQ(pending_create_table(&t, &cfg), 0);
    uint8_t a[16], b[16], c[16];
    struct pending_req ra = req("a", "i", "S", 1000000);
    struct pending_req rb = req("b", "i", "S", 2000000);
    struct pending_req rc = req("c", "i", "S", 5000000);
    CHECK_EQ(pending_create(t, &ra, a), 0);
    CHECK_EQ(pending_create(t, &rb, b), 0);
    CHECK_EQ(pending_create(t, &rc, c), 0);

    struct seen s;
    memset(&s, 0, sizeof(s));
    CHECK_EQ(pending_expire(t, 10999999, on_expire, &s), 0);
    CHECK_EQ(s.n, 0);
    CHECK_EQ(pending_expire(t, 12000000, on_expire, &s), 2);
    CHECK_EQ(s.n, 2);
    CHECK_MEM(s.ids[0], a, 16);
    CHECK_MEM(s.ids[1], b, 16);
    CHECK_EQ(s.tpsp[0], 'a');
    CHECK_EQ(pending_count(t), 1);
    CHECK_EQ(pending_take(t, a, "i", 1, 0, NULL), -ENOENT);
    CHECK_EQ(pending_expire(t, 15000000, NULL, NULL), 1);
    CHECK_EQ(pending_count(t), 0);

    /* Many entries (grows the hash), all expire, counts return to zero so
     * the bound is free again. */
    uint8_t id[16];
    for (int i = 0; i < 1000; i++) {
        struct pending_req r = req("bulk", "i", "S", (uint64_t)i);
        CHECK_EQ(pending_create(t, &r, id), 0);
    }
    struct pending_req r = req("bulk", "i", "S", 0);
    CHECK_EQ(pending_create(t, &r, id), 0);
    CHECK_EQ(pending_count(t), 1001);
    CHECK_EQ(pending_take(t, id, "i", 1, 0, NULL), 0);
    CHECK_EQ(pending_expire(t, UINT64_MAX / 2, NULL, NULL), 1000);
    for (int i = 0; i < 1024; i++)
        CHECK_EQ(pending_create(t, &r, id), 0);
    CHECK_EQ(pending_create(t, &r, id), -EAGAIN);
    pending_destroy_table(t);
}

int main(void)
{
    test_create_take();
    test_bound();
    test_expire();
    return 0;
}
