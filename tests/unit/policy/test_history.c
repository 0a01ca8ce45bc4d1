/*
 * test_history.c — HISTORY encoding over a real engine: newest first, the
 * max bound, and visibility (admin and owner all; a tpsp only its URIs and
 * NOT_FOUND when nothing is its own; others NOT_FOUND); and recording from
 * inside a row callback (history_record_row, the server's path) for single,
 * batched and binding inquiries, with history on and off.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "engine.h"
#include "history.h"
#include "test.h"

#define NOW_US 1700000000000000ull /* a Tuesday, 22:13 UTC */

static struct principal *mk(const char *name, uint8_t roles, const char *scope)
{
    struct principal *p = calloc(1, sizeof(*p) + sizeof(p->scopes[0]));
    CHECK(p);
    p->roles = roles;
    p->name_len = (uint16_t)strlen(name);
    memcpy(p->name, name, p->name_len);
    if (scope) {
        p->nscopes = 1;
        p->scopes[0].p = (const uint8_t *)scope;
        p->scopes[0].len = (uint16_t)strlen(scope);
    }
    return p;
}

static void map(engine_t *e, const char *dev, const char *uri, const char *uti,
                const char *owner, uint64_t lsn)
{
    struct engine_map_req rq = {
        .dev = dev, .dev_len = strlen(dev), .uri = uri, .uri_len = strlen(uri),
        .uti = uti, .uti_len = strlen(uti), .owner = owner, .owner_len = owner ? strlen(owner) : 0,
    };
    CHECK_EQ(engine_map(e, &rq, lsn, NULL), 0);
}

static void add(engine_t *e, const char *dev, uint8_t ev, uint64_t us, const char *who,
                const char *uri, const char *uti)
{
    struct engine_hist h = {
        .micros = us, .event = ev,
        .principal = (const uint8_t *)who, .principal_len = (uint16_t)strlen(who),
        .uri = (const uint8_t *)uri, .uri_len = (uint16_t)strlen(uri),
        .uti = (const uint8_t *)uti, .uti_len = (uint16_t)strlen(uti),
    };
    CHECK_EQ(engine_history_add(e, dev, strlen(dev), &h), 0);
}

/* Decodes a HISTORY value into "event:principal:uri" strings. */
static int decode(const struct buf *b, char out[][64], uint64_t *micros)
{
    const uint8_t *p = b->p, *end = b->p + b->len;
    CHECK(b->len >= 4);
    uint32_t n = (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
    p += 4;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t us = 0;
        for (int j = 0; j < 8; j++)
            us = us << 8 | *p++;
        micros[i] = us;
        uint8_t ev = *p++;
        int o = snprintf(out[i], 64, "%u", ev);
        for (int f = 0; f < 3; f++) {
            uint16_t l = (uint16_t)(p[0] << 8 | p[1]);
            p += 2;
            o += snprintf(out[i] + o, (size_t)(64 - o), ":%.*s", (int)l, (const char *)p);
            p += l;
        }
    }
    CHECK(p == end);
    return (int)n;
}

/* A row callback that records each row it sees, as net/handlers.c does. */
struct rec_ctx {
    engine_t *e;
    const char *who;
    uint64_t us;
    int rows, err;
};

static int record_cb(void *arg, const struct engine_row *row)
{
    struct rec_ctx *c = arg;
    c->rows++;
    int rc = history_record_row(c->e, row, c->who, strlen(c->who), c->us);
    if (rc)
        c->err = rc;
    return 0;
}

/* history_record_row from inside engine_inquire_device_ex (with the
 * ENGINE_INQ_RECORD hint), engine_inquire_device_batch and
 * engine_inquire_binding: one entry per visited row, with that row's URI
 * and UTI; nothing kept (and no error) with history_len 0. */
static void test_record_row(uint32_t history_len)
{
    engine_t *e;
    struct engine_config cfg = {.initial_devices = 16, .history_len = history_len};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    engine_thread_online(e);
    map(e, "dA", "https://one/a", "ua", NULL, 1);
    map(e, "dA", "https://two/a", "ub", NULL, 2);
    map(e, "dB", "https://one/b", "uc", NULL, 3);
    struct principal *admin = mk("admin", PRINCIPAL_ADMIN, NULL);

    struct rec_ctx c = {e, "tp", 500, 0, 0};
    CHECK_EQ(engine_inquire_device_ex(e, "dA", 2, record_cb, &c, NULL, ENGINE_INQ_RECORD), 2);
    c.us = 600;
    struct engine_key keys[3] = {{"dB", 2}, {"nodev", 5}, {"dA", 2}};
    int results[3];
    engine_inquire_device_batch(e, keys, 3, record_cb, &c, results);
    CHECK_EQ(results[0], 1);
    CHECK_EQ(results[1], -ENOENT);
    CHECK_EQ(results[2], 2);
    c.us = 700;
    CHECK_EQ(engine_inquire_binding(e, "https://one/b", 13, "uc", 2, record_cb, &c, NULL), 1);
    CHECK_EQ(c.rows, 2 + 3 + 1);
    CHECK_EQ(c.err, 0);

    struct buf b = BUF_INIT;
    char got[16][64];
    uint64_t us[16];
    CHECK_EQ(history_encode(e, "dA", 2, admin, 0, NOW_US, &b), 0);
    if (history_len == 0) {
        CHECK_EQ(decode(&b, got, us), 0);
    } else {
        CHECK_EQ(decode(&b, got, us), 4); /* 2 single + 2 batched, newest first */
        CHECK(strcmp(got[0], "3:tp:https://two/a:ub") == 0 && us[0] == 600);
        CHECK(strcmp(got[1], "3:tp:https://one/a:ua") == 0 && us[1] == 600);
        CHECK(strcmp(got[2], "3:tp:https://two/a:ub") == 0 && us[2] == 500);
        CHECK(strcmp(got[3], "3:tp:https://one/a:ua") == 0 && us[3] == 500);
    }
    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dB", 2, admin, 0, NOW_US, &b), 0);
    if (history_len == 0) {
        CHECK_EQ(decode(&b, got, us), 0);
    } else {
        CHECK_EQ(decode(&b, got, us), 2); /* batched, then by binding */
        CHECK(strcmp(got[0], "3:tp:https://one/b:uc") == 0 && us[0] == 700);
        CHECK(strcmp(got[1], "3:tp:https://one/b:uc") == 0 && us[1] == 600);
    }
    CHECK_EQ(history_record_row(e, NULL, "tp", 2, 1), -EINVAL);
    buf_free(&b);
    free(admin);
    engine_thread_offline(e);
    engine_destroy(e);
}

int main(void)
{
    engine_t *e;
    struct engine_config cfg = {.initial_devices = 16, .history_len = 8};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    engine_thread_online(e);
    map(e, "dev1", "https://one/app", "u1", "acme", 1);
    map(e, "dev1", "https://two/app", "u2", NULL, 2);
    add(e, "dev1", ENGINE_H_MAP, 100, "acme", "https://one/app", "u1");
    add(e, "dev1", ENGINE_H_MAP, 200, "admin", "https://two/app", "u2");
    CHECK_EQ(history_record_inquiry(e, "dev1", 4, "t1", 2, "https://one/app", 15, "u1", 2, 300), 0);
    CHECK_EQ(history_record_inquiry(e, "dev1", 4, "t2", 2, "https://two/app", 15, "u2", 2, 400), 0);
    CHECK_EQ(history_record_inquiry(e, "nodev", 5, "t2", 2, "u", 1, "u", 1, 400), -ENOENT);

    struct principal *admin = mk("admin", PRINCIPAL_ADMIN, NULL);
    struct principal *acme = mk("acme", PRINCIPAL_IOT_SP, "ACME-");
    struct principal *other = mk("other", PRINCIPAL_IOT_SP, "ACME-");
    struct principal *t1 = mk("t1", PRINCIPAL_TPSP, "https://one/");
    struct principal *t3 = mk("t3", PRINCIPAL_TPSP, "https://three/");
    struct principal *gen = mk("gen", PRINCIPAL_GENERATOR, "https://one/");

    struct buf b = BUF_INIT;
    char got[16][64];
    uint64_t us[16];
    CHECK_EQ(history_encode(e, "dev1", 4, admin, 0, NOW_US, &b), 0);
    CHECK_EQ(decode(&b, got, us), 4);
    CHECK(strcmp(got[0], "3:t2:https://two/app:u2") == 0); /* newest first */
    CHECK(strcmp(got[3], "1:acme:https://one/app:u1") == 0);
    CHECK(us[0] == 400 && us[1] == 300 && us[2] == 200 && us[3] == 100);

    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, acme, 2, NOW_US, &b), 0); /* owner, bounded */
    CHECK_EQ(decode(&b, got, us), 2);
    CHECK(us[0] == 400 && us[1] == 300);

    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, t1, 0, NOW_US, &b), 0);   /* its URIs only */
    CHECK_EQ(decode(&b, got, us), 2);
    CHECK(strcmp(got[0], "3:t1:https://one/app:u1") == 0);
    CHECK(strcmp(got[1], "1:acme:https://one/app:u1") == 0);
    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, t1, 1, NOW_US, &b), 0);
    CHECK_EQ(decode(&b, got, us), 1);

    /* Preferences that refuse t1's URI hide its entries as they hide the
     * row: NOT_FOUND, as if the device did not exist; the owner and admin
     * still see everything; cleared, t1 sees its entries again. */
    static const uint8_t deny_one[] = {
        0, 0, 0, 0, /* retention */ 0, 0, /* no allow list */
        0, 1, 0, 12, 'h', 't', 't', 'p', 's', ':', '/', '/', 'o', 'n', 'e', '/',
        0, 0, /* no windows */
    };
    CHECK_EQ(engine_set_prefs(e, "dev1", 4, deny_one, sizeof deny_one, 3), 0);
    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, t1, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(b.len, 0);
    CHECK_EQ(history_encode(e, "dev1", 4, acme, 0, NOW_US, &b), 0);
    CHECK_EQ(decode(&b, got, us), 4);
    CHECK_EQ(engine_set_prefs(e, "dev1", 4, NULL, 0, 4), 0);
    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, t1, 0, NOW_US, &b), 0);
    CHECK_EQ(decode(&b, got, us), 2);

    /* Nothing to see: NOT_FOUND, and the buffer is as it was. */
    buf_reset(&b);
    CHECK_EQ(buf_put_u8(&b, 0x77), 0);
    CHECK_EQ(history_encode(e, "dev1", 4, t3, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(history_encode(e, "dev1", 4, other, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(history_encode(e, "dev1", 4, gen, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(history_encode(e, "dev1", 4, NULL, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(history_encode(e, "nodev", 5, admin, 0, NOW_US, &b), -ENOENT);
    CHECK_EQ(b.len, 1);

    /* The ring keeps the newest history_len entries. */
    for (int i = 0; i < 10; i++)
        CHECK_EQ(history_record_inquiry(e, "dev1", 4, "t1", 2, "https://one/app", 15, "u1", 2,
                                        1000 + (uint64_t)i), 0);
    buf_reset(&b);
    CHECK_EQ(history_encode(e, "dev1", 4, admin, 0, NOW_US, &b), 0);
    CHECK_EQ(decode(&b, got, us), 8);
    CHECK_EQ(us[0], 1009);
    CHECK_EQ(us[7], 1002);

    buf_free(&b);
    free(admin); free(acme); free(other); free(t1); free(t3); free(gen);
    engine_thread_offline(e);
    engine_destroy(e);

    test_record_row(8);
    test_record_row(0);
    return 0;
}
