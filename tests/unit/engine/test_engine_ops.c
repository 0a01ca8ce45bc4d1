/*
 * test_engine_ops — every engine.h operation and its edges, one engine per
 * case, on small tables so that resizes happen early.
 */
#include "engine.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>

static engine_t *mk(uint32_t hist, size_t limit)
{
    engine_t *e = NULL;
    struct engine_config cfg = {.history_len = hist, .mem_limit = limit};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    return e;
}

static int map(engine_t *e, const char *d, const char *u, const char *t,
               uint64_t lsn)
{
    struct engine_map_req rq = {.dev = d, .dev_len = strlen(d), .uri = u,
                                .uri_len = strlen(u), .uti = t,
                                .uti_len = strlen(t)};
    return engine_map(e, &rq, lsn, NULL);
}

/* Collects rows as "uri|uti|lsn" lines. */
struct col {
    char buf[4096];
    size_t len;
    int n;
    char owner[256];
    char prefs[256];
    uint32_t exp;
};
static int collect(void *arg, const struct engine_row *r)
{
    struct col *c = arg;
    c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len,
                               "%.*s|%.*s|%llu;", r->uri_len,
                               (const char *)r->uri, r->uti_len,
                               (const char *)r->uti,
                               (unsigned long long)r->lsn);
    snprintf(c->owner, sizeof c->owner, "%.*s", r->owner_len,
             (const char *)r->owner);
    snprintf(c->prefs, sizeof c->prefs, "%.*s", (int)r->prefs_len,
             (const char *)r->prefs);
    c->exp = r->expires_at;
    c->n++;
    return 0;
}
static const char *rows_of(engine_t *e, const char *d, struct col *c)
{
    memset(c, 0, sizeof *c);
    int rc = engine_inquire_device(e, d, strlen(d), collect, c, NULL);
    if (rc < 0)
        snprintf(c->buf, sizeof c->buf, "ERR%d", rc);
    return c->buf;
}
static const char *dev_of(engine_t *e, const char *u, const char *t,
                          char out[256])
{
    static struct col c;
    memset(&c, 0, sizeof c);
    int rc = engine_inquire_binding(e, u, strlen(u), t, strlen(t), collect, &c,
                                    NULL);
    (void)rc;
    out[0] = 0;
    if (rc == 1)
        snprintf(out, 256, "%.200s", c.buf);
    else
        snprintf(out, 256, "ERR%d", rc);
    return out;
}

static void test_validation(void)
{
    engine_t *e = mk(0, 0);
    char big[2048];
    memset(big, 'a', sizeof big);
    struct engine_map_req rq = {.dev = "d", .dev_len = 1, .uri = "u",
                                .uri_len = 1, .uti = "t", .uti_len = 1};
    struct engine_map_req b = rq;
    b.dev_len = 0;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.uri_len = 0;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.uti_len = 0;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.dev = big; b.dev_len = ENGINE_ID_MAX + 1;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.uti = big; b.uti_len = ENGINE_ID_MAX + 1;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.uri = big; b.uri_len = ENGINE_URI_MAX + 1;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.uri = "a\0b"; b.uri_len = 3;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    b = rq; b.owner = big; b.owner_len = ENGINE_NAME_MAX + 1;
    CHECK_EQ(engine_map(e, &b, 1, NULL), -EINVAL);
    /* The maxima themselves are accepted, and bytes of any value in IDs. */
    b = rq; b.dev = big; b.dev_len = ENGINE_ID_MAX;
    b.uri = big; b.uri_len = ENGINE_URI_MAX;
    b.uti = big; b.uti_len = ENGINE_ID_MAX;
    b.owner = big; b.owner_len = ENGINE_NAME_MAX;
    CHECK_EQ(engine_map(e, &b, 1, NULL), 0);
    CHECK_EQ(engine_inquire_device(e, big, ENGINE_ID_MAX, NULL, NULL, NULL), 1);
    CHECK_EQ(engine_inquire_binding(e, big, ENGINE_URI_MAX, big, ENGINE_ID_MAX,
                                    NULL, NULL, NULL), 1);
    uint8_t bin[3] = {0, 0xff, 0};
    b = rq; b.dev = bin; b.dev_len = 3; b.uti = bin; b.uti_len = 3;
    CHECK_EQ(engine_map(e, &b, 2, NULL), 0);
    CHECK_EQ(engine_inquire_device(e, bin, 3, NULL, NULL, NULL), 1);
    CHECK_EQ(engine_inquire_device(e, bin, 2, NULL, NULL, NULL), -ENOENT);
    /* Readers validate too. */
    CHECK_EQ(engine_inquire_device(e, "x", 0, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_inquire_binding(e, "u", 0, "t", 1, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_inquire_binding(e, "u", 1, "t", 0, NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap(e, "", 0, "u", 1, "t", 1, 0, 3, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap_service(e, "", 0, 3, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_set_prefs(e, "d", 0, "p", 1, 3), -EINVAL);
    engine_destroy(e);
}

static void test_map_inquire(void)
{
    engine_t *e = mk(0, 0);
    struct col c;
    char out[256];
    uint64_t rl = 0, lsn = 0;
    CHECK_EQ(engine_inquire_device(e, "d1", 2, NULL, NULL, NULL), -ENOENT);
    CHECK_EQ(map(e, "d1", "u1", "t1", 10), 0);
    CHECK_EQ(map(e, "d1", "u2", "t2", 11), 0);
    CHECK_EQ(map(e, "d2", "u1", "t3", 12), 0);
    CHECK(strcmp(rows_of(e, "d1", &c), "u1|t1|10;u2|t2|11;") == 0);
    CHECK_EQ(c.n, 2);
    CHECK(strcmp(rows_of(e, "d2", &c), "u1|t3|12;") == 0);
    CHECK(strcmp(dev_of(e, "u2", "t2", out), "u2|t2|11;") == 0);
    CHECK(strcmp(dev_of(e, "u1", "t2", out), "ERR-2") == 0);
    CHECK_EQ(engine_inquire_device(e, "d1", 2, NULL, NULL, &lsn), 2);
    CHECK_EQ(lsn, 12);
    /* Same row twice: 1, nothing changes, the existing LSN comes back. */
    struct engine_map_req rq = {.dev = "d1", .dev_len = 2, .uri = "u1",
                                .uri_len = 2, .uti = "t1", .uti_len = 2};
    CHECK_EQ(engine_map(e, &rq, 13, &rl), 1);
    CHECK_EQ(rl, 10);
    /* The binding belongs to d1: mapping it to d2 is refused. */
    rq.dev = "d2";
    CHECK_EQ(engine_map(e, &rq, 14, &rl), -EEXIST);
    CHECK(strcmp(rows_of(e, "d2", &c), "u1|t3|12;") == 0);
    /* Demap then map elsewhere moves it. */
    CHECK_EQ(engine_demap(e, "d1", 2, "u1", 2, "t1", 2, 0, 15, NULL, NULL), 0);
    CHECK_EQ(engine_map(e, &rq, 16, &rl), 0);
    CHECK_EQ(rl, 16);
    CHECK(strcmp(rows_of(e, "d1", &c), "u2|t2|11;") == 0);
    CHECK(strcmp(rows_of(e, "d2", &c), "u1|t3|12;u1|t1|16;") == 0);
    CHECK(strcmp(dev_of(e, "u1", "t1", out), "u1|t1|16;") == 0);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 3);
    CHECK_EQ(st.devices, 2);
    CHECK_EQ(st.uris, 2);
    CHECK_EQ(st.last_lsn, 16);
    /* A stopping callback's value comes back. */
    CHECK_EQ(engine_inquire_device(e, "d2", 2, NULL, NULL, NULL), 2);
    engine_destroy(e);
}

static int stop7(void *arg, const struct engine_row *r)
{
    (void)r;
    ++*(int *)arg;
    return 7;
}

/* demap_service_if: refuses the devices whose prefs blob starts with 'k'. */
static bool pick_not_k(void *ctx, const uint8_t *prefs, uint32_t len)
{
    ++*(int *)ctx;
    return !(len && prefs[0] == 'k');
}

static void test_demap_service_if(void)
{
    engine_t *e = mk(0, 0);
    struct col c;
    int asked = 0;
    CHECK_EQ(map(e, "d1", "u1", "t1", 1), 0);
    CHECK_EQ(map(e, "d1", "u2", "t2", 2), 0);
    CHECK_EQ(map(e, "d2", "u1", "t3", 3), 0);
    CHECK_EQ(map(e, "d3", "u1", "t4", 4), 0);
    CHECK_EQ(engine_set_prefs(e, "d2", 2, "keep", 4, 5), 0);
    CHECK_EQ(engine_set_prefs(e, "d3", 2, "drop", 4, 6), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_demap_service_if(e, "u1", 2, 7, pick_not_k, &asked, collect, &c), 2);
    CHECK_EQ(c.n, 2);
    CHECK_EQ(asked, 3); /* once per device holding u1 */
    CHECK(strcmp(rows_of(e, "d1", &c), "u2|t2|2;") == 0);
    CHECK(strcmp(rows_of(e, "d2", &c), "u1|t3|3;") == 0); /* refused: kept */
    CHECK_EQ(engine_inquire_device(e, "d3", 2, NULL, NULL, NULL), -ENOENT);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.last_lsn, 7);
    /* Only refusing devices left: -ENOENT, and no change is published. */
    CHECK_EQ(engine_demap_service_if(e, "u1", 2, 8, pick_not_k, &asked, NULL, NULL), -ENOENT);
    engine_stats(e, &st);
    CHECK_EQ(st.last_lsn, 7);
    CHECK_EQ(st.rows, 2);
    /* pick NULL: every device, as engine_demap_service. */
    CHECK_EQ(engine_demap_service_if(e, "u1", 2, 9, NULL, NULL, NULL, NULL), 1);
    CHECK_EQ(engine_demap_service_if(e, "u1", 2, 10, NULL, NULL, NULL, NULL), -ENOENT);
    engine_destroy(e);
}

static void test_demaps(void)
{
    engine_t *e = mk(0, 0);
    struct col c;
    int calls = 0;
    CHECK_EQ(map(e, "d1", "u1", "t1", 1), 0);
    CHECK_EQ(map(e, "d1", "u2", "t2", 2), 0);
    CHECK_EQ(map(e, "d1", "u1", "t3", 3), 0);
    CHECK_EQ(map(e, "d2", "u1", "t4", 4), 0);
    CHECK_EQ(map(e, "d3", "u3", "t5", 5), 0);
    CHECK_EQ(engine_inquire_device(e, "d1", 2, stop7, &calls, NULL), 7);
    CHECK_EQ(calls, 1);
    /* Absent rows. */
    CHECK_EQ(engine_demap(e, "d9", 2, "u1", 2, "t1", 2, 0, 6, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap(e, "d1", 2, "u1", 2, "t4", 2, 0, 6, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap_binding(e, "u9", 2, "t1", 2, 6, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap_service(e, "u9", 2, 6, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap_device(e, "d9", 2, 6, NULL, NULL), -ENOENT);
    /* demap_service removes every row of u1 across devices. */
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_demap_service(e, "u1", 2, 7, collect, &c), 3);
    CHECK_EQ(c.n, 3);
    CHECK(strcmp(rows_of(e, "d1", &c), "u2|t2|2;") == 0);
    CHECK_EQ(engine_inquire_device(e, "d2", 2, NULL, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap_service(e, "u1", 2, 8, NULL, NULL), -ENOENT);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 2);
    CHECK_EQ(st.devices, 2);
    CHECK_EQ(st.uris, 2);
    /* demap_binding finds the device itself. */
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_demap_binding(e, "u3", 2, "t5", 2, 9, collect, &c), 1);
    CHECK(strcmp(c.buf, "u3|t5|5;") == 0);
    CHECK_EQ(engine_inquire_device(e, "d3", 2, NULL, NULL, NULL), -ENOENT);
    /* demap_device removes all rows, reporting each. */
    CHECK_EQ(map(e, "d1", "u4", "t6", 10), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_demap_device(e, "d1", 2, 11, collect, &c), 2);
    CHECK(strcmp(c.buf, "u2|t2|2;u4|t6|10;") == 0);
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 0);
    CHECK_EQ(st.devices, 0);
    CHECK_EQ(st.uris, 0);
    CHECK_EQ(st.last_lsn, 11);
    CHECK_EQ(engine_device_info(e, "d1", 2, NULL, NULL), -ENOENT);
    engine_destroy(e);
}

static void test_cas(void)
{
    engine_t *e = mk(0, 0);
    struct engine_map_req rq = {.dev = "d", .dev_len = 1, .uri = "u",
                                .uri_len = 1, .uti = "t", .uti_len = 1,
                                .cas = 5};
    uint64_t rl = 0;
    CHECK_EQ(engine_map(e, &rq, 1, &rl), -EEXIST); /* no row has LSN 5 */
    rq.cas = 0;
    CHECK_EQ(engine_map(e, &rq, 2, &rl), 0);
    rq.cas = 3;
    CHECK_EQ(engine_map(e, &rq, 3, &rl), -EEXIST);
    rq.cas = 2;
    CHECK_EQ(engine_map(e, &rq, 3, &rl), 1);
    CHECK_EQ(rl, 2);
    CHECK_EQ(engine_demap(e, "d", 1, "u", 1, "t", 1, 9, 4, NULL, NULL), -EEXIST);
    CHECK_EQ(engine_inquire_device(e, "d", 1, NULL, NULL, NULL), 1);
    CHECK_EQ(engine_demap(e, "d", 1, "u", 1, "t", 1, 2, 4, NULL, NULL), 0);
    CHECK_EQ(engine_inquire_device(e, "d", 1, NULL, NULL, NULL), -ENOENT);
    engine_destroy(e);
}

static void test_owner_prefs(void)
{
    engine_t *e = mk(0, 0);
    struct col c;
    struct engine_map_req rq = {.dev = "d", .dev_len = 1, .uri = "u",
                                .uri_len = 1, .uti = "t", .uti_len = 1,
                                .owner = "alice", .owner_len = 5};
    CHECK_EQ(engine_map(e, &rq, 1, NULL), 0);
    rows_of(e, "d", &c);
    CHECK(strcmp(c.owner, "alice") == 0);
    CHECK(strcmp(c.prefs, "") == 0);
    CHECK_EQ(engine_set_prefs(e, "x", 1, "p", 1, 2), -ENOENT);
    CHECK_EQ(engine_set_prefs(e, "d", 1, "no-ads", 6, 2), 0);
    rows_of(e, "d", &c);
    CHECK(strcmp(c.prefs, "no-ads") == 0);
    /* A second row without owner keeps it; with another owner changes it. */
    rq.uti = "t2"; rq.uti_len = 2; rq.owner_len = 0;
    CHECK_EQ(engine_map(e, &rq, 3, NULL), 0);
    rows_of(e, "d", &c);
    CHECK(strcmp(c.owner, "alice") == 0);
    CHECK(strcmp(c.prefs, "no-ads") == 0);
    rq.uti = "t3"; rq.owner = "bob"; rq.owner_len = 3;
    CHECK_EQ(engine_map(e, &rq, 4, NULL), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_device_info(e, "d", 1, collect, &c), 0);
    CHECK(strcmp(c.owner, "bob") == 0);
    CHECK(strcmp(c.prefs, "no-ads") == 0);
    CHECK_EQ(engine_set_prefs(e, "d", 1, NULL, 0, 5), 0);
    rows_of(e, "d", &c);
    CHECK(strcmp(c.prefs, "") == 0);
    engine_destroy(e);
}

static void test_expiry(void)
{
    engine_t *e = mk(0, 0);
    struct col c;
    struct engine_map_req rq = {.dev = "d", .dev_len = 1, .uri = "u",
                                .uri_len = 1, .uti = "t1", .uti_len = 2,
                                .expires_at = 100};
    CHECK_EQ(engine_map(e, &rq, 1, NULL), 0);
    rq.uti = "t2"; rq.expires_at = 200;
    CHECK_EQ(engine_map(e, &rq, 2, NULL), 0);
    rq.uti = "t3"; rq.expires_at = 0;
    CHECK_EQ(engine_map(e, &rq, 3, NULL), 0);
    CHECK_EQ(engine_collect_expired(e, 99, 10, collect, &c), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_collect_expired(e, 100, 10, collect, &c), 1);
    CHECK(strcmp(c.buf, "u|t1|1;") == 0);
    CHECK_EQ(c.exp, 100);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_collect_expired(e, 1000, 10, collect, &c), 2);
    CHECK_EQ(engine_collect_expired(e, 1000, 1, NULL, NULL), 1);
    /* The store removes each expired row itself. */
    CHECK_EQ(engine_demap(e, "d", 1, "u", 1, "t1", 2, 0, 4, NULL, NULL), 0);
    CHECK_EQ(engine_demap(e, "d", 1, "u", 1, "t2", 2, 0, 5, NULL, NULL), 0);
    CHECK_EQ(engine_collect_expired(e, 1000, 10, NULL, NULL), 0);
    /* A row added after a scan that raised the bound is still found. */
    rq.uti = "t4"; rq.expires_at = 500;
    CHECK_EQ(engine_map(e, &rq, 6, NULL), 0);
    CHECK_EQ(engine_collect_expired(e, 499, 10, NULL, NULL), 0);
    CHECK_EQ(engine_collect_expired(e, 500, 10, NULL, NULL), 1);
    CHECK(strcmp(rows_of(e, "d", &c), "u|t3|3;u|t4|6;") == 0);
    engine_destroy(e);

    /* The sweeper's pattern: collect a batch, remove it, collect again.
     * Every expired row comes out exactly once; rows that expire behind
     * where the last scan stopped are found after it wraps. */
    e = mk(0, 0);
    enum { NR = 3000 };
    static unsigned char got[NR];
    memset(got, 0, sizeof got);
    char d[32];
    uint64_t lsn = 100;
    for (int i = 0; i < NR; i++) {
        snprintf(d, sizeof d, "%d", i);
        struct engine_map_req r2 = {.dev = d, .dev_len = strlen(d), .uri = "u",
                                    .uri_len = 1, .uti = d, .uti_len = strlen(d),
                                    .expires_at = i % 2 ? 1000 : 2000};
        CHECK_EQ(engine_map(e, &r2, ++lsn, NULL), 0);
    }
    for (int phase = 0; phase < 2; phase++) {
        uint32_t now = phase ? 2000 : 1000;
        int calls = 0, total = 0, n;
        do {
            memset(&c, 0, sizeof c);
            n = engine_collect_expired(e, now, 10, collect, &c);
            CHECK(n >= 0 && n <= 10);
            for (char *p = c.buf; *p; p = strchr(p, ';') + 1) {
                int k = atoi(p + 2);
                CHECK(k >= 0 && k < NR && got[k] == 0 && (k % 2) != phase);
                got[k] = 1;
                snprintf(d, sizeof d, "%d", k);
                CHECK_EQ(engine_demap_device(e, d, strlen(d), ++lsn, NULL, NULL), 1);
            }
            total += n;
            calls++;
        } while (n > 0);
        CHECK_EQ(total, NR / 2);
        CHECK(calls <= NR / 2 / 10 + 2);
    }
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 0);
    engine_destroy(e);
}

struct hcol {
    char buf[1024];
    size_t len;
};
static int hcollect(void *arg, const struct engine_hist *h)
{
    struct hcol *c = arg;
    c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len,
                               "%llu:%u:%.*s:%.*s:%.*s;",
                               (unsigned long long)h->micros, h->event,
                               h->principal_len, (const char *)h->principal,
                               h->uri_len, (const char *)h->uri, h->uti_len,
                               (const char *)h->uti);
    return 0;
}

static void test_history(void)
{
    engine_t *e = mk(3, 0);
    struct hcol c;
    struct engine_hist h = {.micros = 1, .event = ENGINE_H_MAP,
                            .principal = (const uint8_t *)"p", .principal_len = 1,
                            .uri = (const uint8_t *)"u", .uri_len = 1,
                            .uti = (const uint8_t *)"t", .uti_len = 1};
    CHECK_EQ(engine_history_add(e, "d", 1, &h), -ENOENT);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, hcollect, &c), -ENOENT);
    CHECK_EQ(map(e, "d", "u", "t", 1), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, hcollect, &c), 0);
    for (uint64_t i = 1; i <= 5; i++) {
        h.micros = i;
        h.event = (uint8_t)(i % 4 + 1);
        CHECK_EQ(engine_history_add(e, "d", 1, &h), 0);
    }
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, hcollect, &c), 3);
    CHECK(strcmp(c.buf, "5:2:p:u:t;4:1:p:u:t;3:4:p:u:t;") == 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 2, hcollect, &c), 2);
    CHECK(strcmp(c.buf, "5:2:p:u:t;4:1:p:u:t;") == 0);
    /* The record outlives its last row, keeping history, owner, prefs. */
    CHECK_EQ(engine_set_prefs(e, "d", 1, "pp", 2, 2), 0);
    CHECK_EQ(engine_demap_device(e, "d", 1, 3, NULL, NULL), 1);
    CHECK_EQ(engine_inquire_device(e, "d", 1, NULL, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_demap_device(e, "d", 1, 4, NULL, NULL), -ENOENT);
    CHECK_EQ(engine_set_prefs(e, "d", 1, "x", 1, 4), -ENOENT);
    struct col rc;
    memset(&rc, 0, sizeof rc);
    CHECK_EQ(engine_device_info(e, "d", 1, collect, &rc), 0);
    CHECK(strcmp(rc.prefs, "pp") == 0);
    h.micros = 6;
    h.event = ENGINE_H_DEMAP;
    h.principal_len = 0;
    h.uti_len = 0;
    CHECK_EQ(engine_history_add(e, "d", 1, &h), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, hcollect, &c), 3);
    CHECK(strcmp(c.buf, "6:2::u:;5:2:p:u:t;4:1:p:u:t;") == 0);
    /* Mapping again reuses the record and its history. */
    CHECK_EQ(map(e, "d", "u", "t", 5), 0);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, NULL, NULL), 3);
    engine_destroy(e);

    /* history_len 0: adds are accepted and nothing is kept. */
    e = mk(0, 0);
    CHECK_EQ(map(e, "d", "u", "t", 1), 0);
    CHECK_EQ(engine_history_add(e, "d", 1, &h), 0);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, NULL, NULL), 0);
    engine_destroy(e);
}

static void test_mem_limit(void)
{
    engine_t *e = mk(0, 64 << 10);
    char d[32], t[32];
    int i, rc = 0;
    for (i = 0; i < 100000; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        snprintf(t, sizeof t, "uti%d", i);
        rc = map(e, d, "https://svc.example", t, (uint64_t)i + 1);
        if (rc)
            break;
    }
    CHECK_EQ(rc, -ENOMEM);
    CHECK(i > 100);
    struct engine_stats a, b;
    engine_stats(e, &a);
    CHECK(a.bytes <= 64 << 10);
    CHECK_EQ(a.rows, (uint64_t)i);
    /* Refused again: nothing changed (rows, lookups, LSN). */
    CHECK_EQ(map(e, d, "https://svc.example", t, 999999), -ENOMEM);
    CHECK_EQ(engine_inquire_device(e, d, strlen(d), NULL, NULL, NULL), -ENOENT);
    engine_stats(e, &b);
    CHECK_EQ(b.rows, a.rows);
    CHECK_EQ(b.last_lsn, a.last_lsn);
    /* Removing works at the limit and frees room. */
    CHECK_EQ(engine_demap_device(e, "dev0", 4, (uint64_t)i + 1, NULL, NULL), 1);
    CHECK_EQ(engine_demap_device(e, "dev1", 4, (uint64_t)i + 2, NULL, NULL), 1);
    engine_destroy(e);
}

static void test_iterate_resize(void)
{
    engine_t *e = mk(0, 0);
    enum { N = 3000 };
    static unsigned char seen[N];
    char d[32], t[32];
    for (int i = 0; i < N / 4; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        snprintf(t, sizeof t, "%d", i);
        CHECK_EQ(map(e, d, "u", t, (uint64_t)i + 1), 0);
    }
    struct engine_stats st0, st1;
    engine_stats(e, &st0);
    /* Iterate a few rows at a time while the table grows by 2x and more
     * rows are added: the rows present from the start are seen once each. */
    uint64_t cur = 0;
    int calls = 0, added = N / 4;
    struct col c;
    memset(seen, 0, sizeof seen);
    do {
        memset(&c, 0, sizeof c);
        int n = engine_iterate(e, &cur, 7, collect, &c);
        CHECK(n >= 0 && n <= 7);
        /* parse "u|<i>|lsn;" entries */
        for (char *p = c.buf; *p; p = strchr(p, ';') + 1) {
            int k = atoi(p + 2);
            CHECK(k >= 0 && k < N);
            seen[k]++;
        }
        for (int j = 0; j < 9 && added < N; j++, added++) {
            snprintf(d, sizeof d, "dev%d", added);
            snprintf(t, sizeof t, "%d", added);
            CHECK_EQ(map(e, d, "u", t, (uint64_t)added + 1), 0);
        }
        calls++;
    } while (cur != 0);
    engine_stats(e, &st1);
    CHECK(st1.resizes > st0.resizes);
    for (int i = 0; i < N / 4; i++)
        CHECK_EQ(seen[i], 1);
    for (int i = N / 4; i < N; i++)
        CHECK(seen[i] <= 1);
    CHECK(calls > N / 4 / 7);
    /* A full pass on a quiet table sees every row exactly once. */
    for (; added < N; added++) {
        snprintf(d, sizeof d, "dev%d", added);
        snprintf(t, sizeof t, "%d", added);
        CHECK_EQ(map(e, d, "u", t, (uint64_t)added + 1), 0);
    }
    memset(seen, 0, sizeof seen);
    cur = 0;
    int total = 0;
    do {
        memset(&c, 0, sizeof c);
        int n = engine_iterate(e, &cur, 100, collect, &c);
        total += n;
        for (char *p = c.buf; *p; p = strchr(p, ';') + 1)
            seen[atoi(p + 2)]++;
    } while (cur != 0);
    CHECK_EQ(total, N);
    for (int i = 0; i < N; i++)
        CHECK_EQ(seen[i], 1);
    engine_destroy(e);
}

/* Regression: a shrink that begins when a table is suddenly almost empty
 * (one DEMAP_SERVICE removing everything) must not be overfilled by the
 * inserts that follow before it completes. */
static void test_shrink_then_refill(void)
{
    engine_t *e = mk(0, 0);
    char d[32];
    uint64_t lsn = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5000; i++) {
            snprintf(d, sizeof d, "r%d-%d", round, i);
            CHECK_EQ(map(e, d, i == 4999 ? "keep" : "gone", d, ++lsn), 0);
        }
        CHECK_EQ(engine_demap_service(e, "gone", 4, ++lsn, NULL, NULL), 4999);
    }
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 3);
    for (int round = 0; round < 3; round++) {
        snprintf(d, sizeof d, "r%d-4999", round);
        CHECK_EQ(engine_inquire_device(e, d, strlen(d), NULL, NULL, NULL), 1);
        CHECK_EQ(engine_inquire_binding(e, "keep", 4, d, strlen(d), NULL, NULL,
                                        NULL), 1);
    }
    /* once quiet, the indexes shrink back */
    for (int i = 0; i < 2000; i++) {
        CHECK_EQ(map(e, "x", "u", "t", ++lsn), 0);
        CHECK_EQ(engine_demap(e, "x", 1, "u", 1, "t", 1, 0, ++lsn, NULL, NULL), 0);
    }
    engine_stats(e, &st);
    CHECK(st.device_slots <= 64 && st.binding_slots <= 64);
    engine_destroy(e);
}

/* Regression (reported by the policy benchmark): with a large
 * initial_devices hint, map + set_prefs per device used to start a shrink
 * of the nearly empty table after every change, and maps then overfilled
 * it. The hint is now a floor: no resize at all until the table fills. */
static void test_hint_is_a_floor(void)
{
    engine_t *e = NULL;
    struct engine_config cfg = {.initial_devices = 1000};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    char d[32];
    uint64_t lsn = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        CHECK_EQ(map(e, d, "u", d, ++lsn), 0);
        CHECK_EQ(engine_set_prefs(e, d, strlen(d), "p", 1, ++lsn), 0);
    }
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 1000);
    CHECK_EQ(st.resizes, 0);
    CHECK(st.device_slots >= 2000);
    for (int i = 0; i < 1000; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        CHECK_EQ(engine_inquire_device(e, d, strlen(d), NULL, NULL, NULL), 1);
    }
    engine_destroy(e);
}

static void test_batch(void)
{
    engine_t *e = mk(0, 0);
    char d[40][16];
    struct engine_key keys[40];
    int res[40];
    for (int i = 0; i < 40; i++) {
        snprintf(d[i], sizeof d[i], "d%d", i);
        keys[i].p = d[i];
        keys[i].len = strlen(d[i]);
        if (i % 3 == 0)
            continue;
        for (int k = 0; k < i % 4 + 1; k++) {
            char t[16];
            snprintf(t, sizeof t, "%d.%d", i, k);
            CHECK_EQ(map(e, d[i], "u", t, (uint64_t)(i * 10 + k + 1)), 0);
        }
    }
    keys[5].len = 0;
    struct col c;
    memset(&c, 0, sizeof c);
    engine_inquire_device_batch(e, keys, 40, collect, &c, res);
    int rows = 0;
    for (int i = 0; i < 40; i++) {
        if (i == 5)
            CHECK_EQ(res[i], -EINVAL);
        else if (i % 3 == 0)
            CHECK_EQ(res[i], -ENOENT);
        else {
            CHECK_EQ(res[i], i % 4 + 1);
            rows += res[i];
        }
    }
    CHECK_EQ(c.n, rows);
    /* key order kept: the first rows belong to d1 */
    CHECK(strncmp(c.buf, "u|1.0|11;u|1.1|12;u|2.0|21;", 27) == 0);
    engine_destroy(e);
}

/* A thread that never calls engine_thread_online is registered on its
 * first read and unregistered when it exits; otherwise the grace periods
 * that reclaim memory afterwards would wait on (or read) a dead thread. */
static void *forgetful_reader(void *arg)
{
    engine_t *e = arg;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(engine_inquire_device(e, "d", 1, NULL, NULL, NULL), 1);
    return NULL;
}
static void *nested_reader(void *arg)
{
    engine_t *e = arg;
    engine_thread_online(e);
    engine_thread_online(e); /* nesting is counted */
    engine_thread_offline(e);
    CHECK_EQ(engine_inquire_device(e, "d", 1, NULL, NULL, NULL), 1);
    engine_thread_offline(e);
    return NULL;
}

static void test_thread_registration(void)
{
    engine_t *e = mk(3, 0);
    CHECK_EQ(map(e, "d", "u", "t", 1), 0);
    for (int round = 0; round < 4; round++) {
        pthread_t th[2];
        CHECK_EQ(pthread_create(&th[0], NULL, forgetful_reader, e), 0);
        CHECK_EQ(pthread_create(&th[1], NULL, nested_reader, e), 0);
        CHECK_EQ(pthread_join(th[0], NULL), 0);
        CHECK_EQ(pthread_join(th[1], NULL), 0);
        /* changes whose reclamation needs grace periods, after the exits */
        for (int i = 0; i < 300; i++) {
            char t[16];
            snprintf(t, sizeof t, "x%d", i);
            uint64_t lsn = (uint64_t)(round * 1000 + i) * 2 + 2;
            CHECK_EQ(map(e, "d", "u", t, lsn), 0);
            CHECK_EQ(engine_demap(e, "d", 1, "u", 1, t, strlen(t), 0, lsn + 1,
                                  NULL, NULL), 0);
        }
    }
    engine_destroy(e); /* waits for every callback: would hang if stuck */
}

int main(void)
{
    test_validation();
    test_map_inquire();
    test_demaps();
    test_demap_service_if();
    test_cas();
    test_owner_prefs();
    test_expiry();
    test_history();
    test_mem_limit();
    test_iterate_resize();
    test_batch();
    test_shrink_then_refill();
    test_thread_registration();
    test_hint_is_a_floor();
    printf("test_engine_ops: ok\n");
    return 0;
}
