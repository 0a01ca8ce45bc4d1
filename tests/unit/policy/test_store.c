/*
 * test_store.c — principals and signing keys through a real store: set,
 * close, reopen, recover; the principal is back and its secret verifies, a
 * batch signed by the current key still validates, deletes and rotations
 * survive too, also across a snapshot (the aux dump), and the clear secret
 * is in no file of the data directory.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "history.h"
#include "keys.h"
#include "prefs.h"
#include "principal.h"
#include "store.h"
#include "test.h"
#include "waiter.h"

#define SECRET "pw-8c1f0e77-unique-clear-secret"

struct node {
    engine_t *e;
    store_t *s;
    principal_reg_t *reg;
    keys_t *k;
};

#define NOW_US 1700000000000000ull /* a Tuesday, 22:13 UTC */

static void up(struct node *n, const char *dir)
{
    struct engine_config ec = {.initial_devices = 16, .history_len = 8};
    CHECK_EQ(engine_create(&n->e, &ec), 0);
    struct store_config sc = {.dir = dir};
    char err[256] = "";
    int rc = store_open(&n->s, n->e, &sc, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "store_open: %d %s\n", rc, err);
    CHECK_EQ(rc, 0);
    struct principal_config pc = {.iterations = 1000};
    CHECK_EQ(principal_reg_create(&n->reg, &pc), 0);
    CHECK_EQ(keys_create(&n->k, NULL), 0);
    CHECK_EQ(principal_register_aux(n->reg, n->s), 0);
    CHECK_EQ(keys_register_aux(n->k, n->s), 0);
    store_set_prefs_filter(n->s, prefs_allows); /* as icsd does */
    rc = store_recover(n->s, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "store_recover: %d %s\n", rc, err);
    CHECK_EQ(rc, 0);
    CHECK_EQ(store_start(n->s), 0);
}

static void down(struct node *n)
{
    store_close(n->s);
    principal_reg_destroy(n->reg);
    keys_destroy(n->k);
    engine_destroy(n->e);
}

static void set(struct node *n, const char *name, uint8_t roles, const char *secret,
                const char *scope)
{
    static struct principal_def d;
    memset(&d, 0, sizeof(d));
    d.name.p = (const uint8_t *)name;
    d.name.len = (uint16_t)strlen(name);
    d.roles = roles;
    if (secret) {
        d.secret.p = (const uint8_t *)secret;
        d.secret.len = (uint16_t)strlen(secret);
    }
    if (scope) {
        d.nscopes = 1;
        d.scopes[0].p = (const uint8_t *)scope;
        d.scopes[0].len = (uint16_t)strlen(scope);
    }
    CHECK_EQ(principal_set(n->reg, n->s, &d, NULL, NULL), 0);
}

static int verify(struct node *n, const char *name, const char *secret)
{
    struct principal *p = principal_get(n->reg, name, strlen(name));
    if (!p)
        return -ENOENT;
    int rc = principal_verify_secret(p, secret, strlen(secret));
    principal_put(p);
    return rc;
}

static int rows_of(struct node *n, const char *dev)
{
    engine_thread_online(n->e);
    int rc = engine_inquire_device(n->e, dev, strlen(dev), NULL, NULL, NULL);
    engine_thread_offline(n->e);
    return rc;
}

static void map_row(struct node *n, const char *dev, const char *uri, const char *uti)
{
    struct engine_map_req rq = {.dev = dev, .dev_len = strlen(dev), .uri = uri,
                                .uri_len = strlen(uri), .uti = uti, .uti_len = strlen(uti)};
    struct store_waiter w = STORE_WAITER_INIT;
    CHECK_EQ(store_map(n->s, &rq, "admin", 5, store_waiter_done, &w), 0);
    CHECK_EQ(store_waiter_wait(&w), 0);
}

static int found_secret;
static int scan(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)f;
    if (type != FTW_F)
        return 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    if (memmem(buf, n, SECRET, strlen(SECRET)))
        found_secret = 1;
    return 0;
}

static int rm(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st;
    (void)type;
    (void)f;
    return remove(path);
}

int main(void)
{
    char dir[] = "/tmp/ics-policy-XXXXXX";
    CHECK(mkdtemp(dir));
    struct node n;
    struct buf b1 = BUF_INIT, b2 = BUF_INIT;
    char admin_secret[33];

    /* First life: bootstrap, a principal, a key, a batch. */
    up(&n, dir);
    CHECK_EQ(principal_count(n.reg), 0);
    CHECK_EQ(principal_bootstrap_admin(n.reg, n.s, "admin", admin_secret, sizeof(admin_secret)), 0);
    set(&n, "acme", PRINCIPAL_IOT_SP, SECRET, "ACME-");
    set(&n, "gone", PRINCIPAL_TPSP, "x", "https://gone/");
    {
        /* Certificate only, pinned: the pin must survive too. */
        static struct principal_def d;
        memset(&d, 0, sizeof(d));
        d.name.p = (const uint8_t *)"pinned";
        d.name.len = 6;
        d.roles = PRINCIPAL_TPSP;
        d.has_fp = true;
        memset(d.fp, 0xc3, sizeof(d.fp));
        d.nscopes = 2;
        d.scopes[0].p = (const uint8_t *)"https://p1/";
        d.scopes[0].len = 11;
        d.scopes[1].p = (const uint8_t *)"https://p2/";
        d.scopes[1].len = 11;
        CHECK_EQ(principal_set(n.reg, n.s, &d, NULL, NULL), 0);
    }
    /* The asynchronous form: done comes from a store thread once durable. */
    struct store_waiter w = STORE_WAITER_INIT;
    CHECK_EQ(principal_del(n.reg, n.s, "gone", 4, store_waiter_done, &w), 0);
    CHECK_EQ(store_waiter_wait(&w), 0);
    CHECK(w.lsn > 0);
    /* A map through the store (history entry 1, logged) and an inquiry
     * record (entry 3, memory only). */
    struct engine_map_req rq = {.dev = "dev1", .dev_len = 4, .uri = "https://u/", .uri_len = 10,
                                .uti = "uti1", .uti_len = 4, .owner = "acme", .owner_len = 4};
    struct store_waiter wm = STORE_WAITER_INIT;
    CHECK_EQ(store_map(n.s, &rq, "admin", 5, store_waiter_done, &wm), 0);
    CHECK_EQ(store_waiter_wait(&wm), 0);
    engine_thread_online(n.e);
    CHECK_EQ(history_record_inquiry(n.e, "dev1", 4, "shop", 4, "https://u/", 10, "uti1", 4, 42), 0);
    struct principal *adm = principal_get(n.reg, "admin", 5);
    struct buf h = BUF_INIT;
    CHECK_EQ(history_encode(n.e, "dev1", 4, adm, 0, NOW_US, &h), 0);
    CHECK_EQ(h.p[3], 2);             /* n = 2: the inquiry, then the map */
    CHECK_EQ(h.p[4 + 8], 3);
    buf_reset(&h);
    engine_thread_offline(n.e);
    /* A tpsp's DEMAP_SERVICE (store_demap_service_prefs) passes over the
     * devices whose preferences refuse the URI, and the log replays that
     * decision (second life, below). */
    {
        static const uint8_t deny_svc[] = {
            0, 0, 0, 0, 0, 0, /* retention, no allow list */
            0, 1, 0, 12, 'h', 't', 't', 'p', 's', ':', '/', '/', 's', 'v', 'c', '/',
            0, 0, /* no windows */
        };
        map_row(&n, "pdev", "https://svc/x", "p1");
        map_row(&n, "qdev", "https://svc/x", "q1");
        map_row(&n, "qdev", "https://other/", "q2");
        struct store_waiter wp = STORE_WAITER_INIT;
        CHECK_EQ(store_set_prefs(n.s, "pdev", 4, deny_svc, sizeof deny_svc, "acme", 4,
                                 store_waiter_done, &wp), 0);
        CHECK_EQ(store_waiter_wait(&wp), 0);
        struct store_waiter wd = STORE_WAITER_INIT;
        CHECK_EQ(store_demap_service_prefs(n.s, "https://svc/x", 13, "shop", 4,
                                           store_waiter_done, &wd), 1);
        CHECK_EQ(store_waiter_wait(&wd), 0);
        CHECK_EQ(rows_of(&n, "pdev"), 1); /* refused: kept */
        CHECK_EQ(rows_of(&n, "qdev"), 1); /* its other URI only */
        /* Only refusing devices left: NOT_FOUND, nothing logged. */
        CHECK_EQ(store_demap_service_prefs(n.s, "https://svc/x", 13, "shop", 4, NULL, NULL),
                 -ENOENT);
    }
    CHECK_EQ(keys_maybe_rotate(n.k, n.s, 1000), 1);
    CHECK_EQ(keys_issue(n.k, 5, 1000, &b1), 0);
    CHECK_EQ(keys_validate(n.k, b1.p, b1.len), 0);
    down(&n);

    /* Second life: everything is back from the log. */
    up(&n, dir);
    CHECK_EQ(principal_count(n.reg), 3);
    {
        struct principal *pp = principal_get(n.reg, "pinned", 6);
        uint8_t fp[32];
        memset(fp, 0xc3, sizeof(fp));
        CHECK(pp && !pp->has_secret && principal_fp_matches(pp, fp));
        fp[0] = 0;
        CHECK(!principal_fp_matches(pp, fp));
        CHECK_EQ(pp->nscopes, 2);
        CHECK_MEM(pp->scopes[1].p, "https://p2/", 11);
        principal_put(pp);
    }
    CHECK_EQ(verify(&n, "acme", SECRET), 0);
    CHECK_EQ(verify(&n, "acme", "wrong"), -EACCES);
    CHECK_EQ(verify(&n, "admin", admin_secret), 0);
    CHECK_EQ(verify(&n, "gone", "x"), -ENOENT);
    struct principal *r = principal_route_serial(n.reg, "ACME-1", 6);
    CHECK(r && r->name_len == 4);
    principal_put(r);
    CHECK_EQ(keys_current_id(n.k), 1);
    CHECK_EQ(keys_validate(n.k, b1.p, b1.len), 0); /* restart kept the key */
    CHECK_EQ(rows_of(&n, "pdev"), 1); /* the filtered demap replayed alike */
    CHECK_EQ(rows_of(&n, "qdev"), 1);
    /* History: the logged map came back, the inquiry did not (memory only). */
    engine_thread_online(n.e);
    CHECK_EQ(history_encode(n.e, "dev1", 4, adm, 0, NOW_US, &h), 0);
    CHECK_EQ(h.p[3], 1);
    CHECK_EQ(h.p[4 + 8], 1);                               /* event map */
    CHECK_EQ(h.p[4 + 9 + 1], 5);                           /* str16 principal */
    CHECK_MEM(h.p + 4 + 9 + 2, "admin", 5);
    engine_thread_offline(n.e);
    principal_put(adm);
    buf_free(&h);
    char again[33];
    CHECK_EQ(principal_bootstrap_admin(n.reg, n.s, "admin", again, sizeof(again)), -EEXIST);

    /* Rotate, replace, then snapshot: the aux dumps carry the state. */
    CHECK_EQ(keys_rotate(n.k, n.s, 2000, NULL, NULL), 0);
    CHECK_EQ(keys_validate(n.k, b1.p, b1.len), -ESTALE);
    CHECK_EQ(keys_issue(n.k, 7, 2000, &b2), 0);
    set(&n, "acme", PRINCIPAL_IOT_SP | PRINCIPAL_TPSP, "second", "ACME-");
    struct store_waiter ws = STORE_WAITER_INIT;
    CHECK_EQ(store_snapshot(n.s, store_waiter_done, &ws), 0);
    CHECK_EQ(store_waiter_wait(&ws), 0);
    /* And one change after the snapshot, in the log only. */
    set(&n, "late", PRINCIPAL_VALIDATOR, "l8", NULL);
    down(&n);

    /* Third life: snapshot + log tail. */
    up(&n, dir);
    CHECK_EQ(principal_count(n.reg), 4);
    CHECK_EQ(verify(&n, "acme", SECRET), -EACCES);
    CHECK_EQ(verify(&n, "acme", "second"), 0);
    CHECK_EQ(verify(&n, "late", "l8"), 0);
    CHECK_EQ(verify(&n, "admin", admin_secret), 0);
    struct principal *a = principal_get(n.reg, "acme", 4);
    CHECK(a && a->roles == (PRINCIPAL_IOT_SP | PRINCIPAL_TPSP));
    principal_put(a);
    CHECK_EQ(keys_current_id(n.k), 2);
    CHECK_EQ(keys_validate(n.k, b2.p, b2.len), 0);
    CHECK_EQ(keys_validate(n.k, b1.p, b1.len), -ESTALE);
    down(&n);

    /* Only salted hashes reached the disk. */
    nftw(dir, scan, 8, FTW_PHYS);
    CHECK(!found_secret);
    nftw(dir, rm, 8, FTW_DEPTH | FTW_PHYS);
    buf_free(&b1);
    buf_free(&b2);
    return 0;
}
