/*
 * Round trip: random map/demap/prefs/aux sequences against a reference
 * model, closed and reopened many times across snapshots and segment
 * rotations (tiny sizes), plain and encrypted; then expiry, retention and
 * the change listener (live and replay).
 */
#include "ptest.h"

/* --- reference model: rows only (dev, uri, uti, expires) ------------------ */
struct mrow { char dev[16], uri[24], uti[16]; uint32_t exp; };
static struct mrow model[4096];
static int nmodel;

static int mfind(const char *uri, const char *uti)
{
    for (int i = 0; i < nmodel; i++)
        if (!strcmp(model[i].uri, uri) && !strcmp(model[i].uti, uti))
            return i;
    return -1;
}
static void mdel(int i) { model[i] = model[--nmodel]; }

static struct dump model_dump(void)
{
    struct dump d = {0};
    for (int i = 0; i < nmodel; i++) {
        if (d.n == d.cap) {
            d.cap = d.cap ? d.cap * 2 : 256;
            d.v = realloc(d.v, d.cap * sizeof(char *));
        }
        char *s = malloc(128);
        snprintf(s, 128, "%.15s|%.23s|%.15s|%u", model[i].dev, model[i].uri, model[i].uti,
                 model[i].exp);
        d.v[d.n++] = s;
    }
    if (d.n)
        qsort(d.v, d.n, sizeof(char *), strp_cmp);
    return d;
}
/* The engine's rows cut to the model's fields. */
static struct dump rows_only(const struct dump *full)
{
    struct dump d = {0};
    d.cap = full->n + 1;
    d.v = calloc(d.cap, sizeof(char *));
    for (size_t i = 0; i < full->n; i++) {
        char dev[200], uri[200], uti[200], owner[200];
        unsigned exp = 0;
        CHECK(sscanf(full->v[i], "%199[^|]|%199[^|]|%199[^|]|%199[^|]|%u", dev, uri, uti,
                     owner, &exp) == 5);
        d.v[i] = malloc(700);
        snprintf(d.v[i], 700, "%s|%s|%s|%u", dev, uri, uti, exp);
    }
    d.n = full->n;
    if (d.n)
        qsort(d.v, d.n, sizeof(char *), strp_cmp);
    return d;
}

/* --- an aux module: a set of short strings -------------------------------- */
struct auxmod { char items[512][32]; int n; };
static int aux_apply(void *ctx, const void *p, size_t n, uint64_t lsn)
{
    struct auxmod *m = ctx;
    if (n == 0 || n >= 32)
        return -EINVAL;
    for (int i = 0; i < m->n; i++)
        if (strlen(m->items[i]) == n && !memcmp(m->items[i], p, n))
            return 0; /* idempotent */
    CHECK(m->n < 512);
    memcpy(m->items[m->n], p, n);
    m->items[m->n][n] = 0;
    m->n++;
    return 0;
}
static int aux_dump(void *ctx, int (*emit)(void *, const void *, size_t), void *ectx)
{
    struct auxmod *m = ctx;
    for (int i = 0; i < m->n; i++) {
        int r = emit(ectx, m->items[i], strlen(m->items[i]));
        if (r < 0)
            return r;
    }
    return 0;
}
static const struct store_aux_ops aux_ops = {aux_apply, aux_dump};

static int aux_has(const struct auxmod *m, const char *s)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->items[i], s))
            return 1;
    return 0;
}

static unsigned rnd_state = 12345;
static unsigned rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) & 0xffffff;
}

static int open_full(struct rig *r, const struct store_config *cfg, struct auxmod *am,
                     char *err, size_t errlen)
{
    struct engine_config ec = {.initial_devices = 16}; /* see ptest.h rig_open */
    memset(r, 0, sizeof(*r));
    CHECK(engine_create(&r->e, &ec) == 0);
    int rc = store_open(&r->s, r->e, cfg, err, errlen);
    if (rc < 0)
        return rc;
    CHECK(store_register_aux(r->s, 9, &aux_ops, am) == 0);
    CHECK(store_register_aux(r->s, 9, &aux_ops, am) == -EEXIST);
    rc = store_recover(r->s, err, errlen);
    if (rc < 0)
        return rc;
    CHECK(store_start(r->s) == 0);
    return 0;
}

static void roundtrip(int encrypted)
{
    char dir[256], key[300], err[512];
    mk_tmpdir(dir, sizeof(dir));
    snprintf(key, sizeof(key), "%s.key", dir);
    write_key(key, 32);
    static struct logcap lc;
    memset(&lc, 0, sizeof(lc));
    pthread_mutex_init(&lc.mu, NULL);
    struct store_config cfg = {.dir = dir, .segment_bytes = 2048,
                               .snapshot_log_bytes = 12000,
                               .key_file = encrypted ? key : NULL,
                               .log = logcap_fn, .log_ctx = &lc};
    nmodel = 0;
    struct auxmod expect_aux = {0};
    struct dump before = {0};
    uint64_t max_snapshots = 0, max_segments = 0, last_lsn = 0;
    int saw_snapshot_file = 0;
    for (int session = 0; session < 6; session++) {
        struct rig r;
        static struct auxmod am;
        memset(&am, 0, sizeof(am));
        if (open_full(&r, &cfg, &am, err, sizeof(err)) < 0) {
            fprintf(stderr, "open/recover failed: %s\nlog:\n%s", err, lc.text);
            exit(1);
        }
        struct store_stats st;
        store_stats(r.s, &st);
        CHECK_EQ(st.encrypted, encrypted);
        CHECK(st.last_lsn >= last_lsn);   /* LSNs never go back across restarts */
        /* State after recovery: the model (rows), the engine before close
         * (owners, prefs too), and the aux set. */
        struct dump got = dump_engine(r.e), m = model_dump(), ro = rows_only(&got);
        dump_check_equal(&m, &ro);
        if (session > 0)
            dump_check_equal(&before, &got);
        CHECK_EQ(am.n, expect_aux.n);
        for (int i = 0; i < expect_aux.n; i++)
            CHECK(aux_has(&am, expect_aux.items[i]));
        dump_free(&got);
        dump_free(&m);
        dump_free(&ro);
        dump_free(&before);

        struct wg w;
        wg_init(&w);
        for (int op = 0; op < 400; op++) {
            char dev[16], uri[24], uti[16], owner[16];
            snprintf(dev, sizeof(dev), "dev%u", rnd() % 40);
            snprintf(uri, sizeof(uri), "https://s%u.example", rnd() % 6);
            snprintf(uti, sizeof(uti), "uti%u", rnd() % 60);
            snprintf(owner, sizeof(owner), "own%c", dev[3]);
            unsigned k = rnd() % 100;
            int rc;
            wg_add(&w);
            if (k < 55) {
                uint32_t exp = rnd() % 2 ? 0 : 4000000000u - rnd() % 1000;
                struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti,
                                            strlen(uti), owner, strlen(owner), exp, 0};
                rc = store_map(r.s, &rq, "actor", 5, wg_done, &w);
                int i = mfind(uri, uti);
                if (i < 0) {
                    CHECK_EQ(rc, 0);
                    CHECK(nmodel < 4096);
                    snprintf(model[nmodel].dev, 16, "%s", dev);
                    snprintf(model[nmodel].uri, 24, "%s", uri);
                    snprintf(model[nmodel].uti, 16, "%s", uti);
                    model[nmodel].exp = exp;
                    nmodel++;
                } else if (!strcmp(model[i].dev, dev)) {
                    CHECK_EQ(rc, 1);
                } else {
                    CHECK_EQ(rc, -EEXIST);
                }
            } else if (k < 75 && nmodel) {
                struct mrow *x = &model[rnd() % (unsigned)nmodel];
                rc = store_demap(r.s, x->dev, strlen(x->dev), x->uri, strlen(x->uri), x->uti,
                                 strlen(x->uti), 0, "actor", 5, wg_done, &w);
                CHECK_EQ(rc, 1);
                mdel((int)(x - model));
            } else if (k < 80) {
                rc = store_demap_device(r.s, dev, strlen(dev), "a", 1, wg_done, &w);
                int cnt = 0;
                for (int i = nmodel - 1; i >= 0; i--)
                    if (!strcmp(model[i].dev, dev)) {
                        mdel(i);
                        cnt++;
                    }
                CHECK_EQ(rc, cnt ? cnt : -ENOENT);
            } else if (k < 85) {
                rc = store_demap_binding(r.s, uri, strlen(uri), uti, strlen(uti), "a", 1,
                                         wg_done, &w);
                int i = mfind(uri, uti);
                CHECK_EQ(rc, i >= 0 ? 1 : -ENOENT);
                if (i >= 0)
                    mdel(i);
            } else if (k < 87) {
                rc = store_demap_service(r.s, uri, strlen(uri), "a", 1, wg_done, &w);
                int cnt = 0;
                for (int i = nmodel - 1; i >= 0; i--)
                    if (!strcmp(model[i].uri, uri)) {
                        mdel(i);
                        cnt++;
                    }
                CHECK_EQ(rc, cnt ? cnt : -ENOENT);
            } else if (k < 95) {
                char prefs[8];
                snprintf(prefs, sizeof(prefs), "p%u", rnd() % 100);
                rc = store_set_prefs(r.s, dev, strlen(dev), prefs, strlen(prefs), "a", 1,
                                     wg_done, &w);
                int has = 0;
                for (int i = 0; i < nmodel; i++)
                    has |= !strcmp(model[i].dev, dev);
                if (has)
                    CHECK_EQ(rc, 0);
                else
                    CHECK(rc == 0 || rc == -ENOENT);
            } else {
                char item[32];
                snprintf(item, sizeof(item), "item-%d-%u", session, rnd() % 1000);
                rc = store_aux(r.s, 9, item, strlen(item), wg_done, &w);
                CHECK_EQ(rc, 0);
                if (!aux_has(&expect_aux, item)) {
                    snprintf(expect_aux.items[expect_aux.n], 32, "%s", item);
                    expect_aux.n++;
                }
            }
            if (rc < 0)
                wg_cancel(&w);
            if (op % 8 == 7)
                wg_wait(&w);
            if (op == 200 && session % 2 == 1) {
                wg_wait(&w);
                wg_add(&w);
                CHECK_EQ(store_snapshot(r.s, wg_done, &w), 0);
                wg_wait(&w);
                CHECK_EQ(w.last_status, 0);
            }
        }
        wg_wait(&w);
        CHECK_EQ(w.failed, 0);
        store_stats(r.s, &st);
        CHECK(st.durable_lsn == st.last_lsn);
        last_lsn = st.last_lsn;
        if (st.snapshots > max_snapshots)
            max_snapshots = st.snapshots;
        if (st.wal_segments > max_segments)
            max_segments = st.wal_segments;
        before = dump_engine(r.e);
        struct dump m2 = model_dump(), ro2 = rows_only(&before);
        dump_check_equal(&m2, &ro2);
        dump_free(&m2);
        dump_free(&ro2);
        rig_close(&r);
        char names[64][64];
        saw_snapshot_file |= list_files(dir, "snap-", names, 64) > 0;
    }
    dump_free(&before);
    CHECK(max_snapshots >= 1);
    CHECK(max_segments >= 2);
    CHECK(saw_snapshot_file);
    rm_rf(dir);
    unlink(key);
    printf("roundtrip %s: ok (%d rows at end, last LSN %llu)\n",
           encrypted ? "encrypted" : "plain", nmodel, (unsigned long long)last_lsn);
}

/* --- expiry, retention, listener ------------------------------------------- */
struct fclock { uint64_t us; };
static uint64_t fake_clock(void *ctx)
{
    return __atomic_load_n(&((struct fclock *)ctx)->us, __ATOMIC_RELAXED);
}
struct events { pthread_mutex_t mu; int map, demap, expire, prefs, replayed; uint64_t last_lsn; int ordered; };
static void listener(void *arg, const struct store_change *c)
{
    struct events *ev = arg;
    pthread_mutex_lock(&ev->mu);
    if (c->lsn < ev->last_lsn)
        ev->ordered = 0;
    ev->last_lsn = c->lsn;
    switch (c->type) {
    case STORE_C_MAP: ev->map++; break;
    case STORE_C_DEMAP: ev->demap++; break;
    case STORE_C_EXPIRE: ev->expire++; break;
    case STORE_C_PREFS: ev->prefs++; break;
    }
    ev->replayed += c->replay;
    pthread_mutex_unlock(&ev->mu);
}

static void expiry(void)
{
    char dir[256], err[512];
    mk_tmpdir(dir, sizeof(dir));
    struct fclock clk = {1700000000ull * 1000000u};
    struct store_config cfg = {.dir = dir, .sweep_interval_ms = 10, .clock_us = fake_clock,
                               .clock_ctx = &clk, .max_row_age = 3600};
    struct events ev = {.ordered = 1};
    pthread_mutex_init(&ev.mu, NULL);
    struct rig r;
    struct engine_config ec = {.initial_devices = 16};
    CHECK(engine_create(&r.e, &ec) == 0);
    CHECK(store_open(&r.s, r.e, &cfg, err, sizeof(err)) == 0);
    store_set_listener(r.s, listener, &ev);
    CHECK(store_recover(r.s, err, sizeof(err)) == 0);
    CHECK(store_start(r.s) == 0);
    struct wg w;
    wg_init(&w);
    uint32_t now = 1700000000u;
    CHECK_EQ(map_wait(r.s, "d1", "u1", "t1", "o", now + 5, &w), 0);
    CHECK_EQ(map_wait(r.s, "d1", "u1", "t2", "o", 0, &w), 0);      /* retention: now+3600 */
    CHECK_EQ(map_wait(r.s, "d2", "u1", "t3", "o", now + 100000, &w), 0); /* capped too */
    struct dump d = dump_engine(r.e);
    CHECK_EQ(d.n, 3);
    char want[64];
    snprintf(want, sizeof(want), "d1|u1|t2|o|%u|", now + 3600);
    CHECK(!strcmp(d.v[1], want));
    snprintf(want, sizeof(want), "d2|u1|t3|o|%u|", now + 3600);
    CHECK(!strcmp(d.v[2], want));
    dump_free(&d);
    /* Time passes: the sweep removes the first row only, then the rest. */
    __atomic_store_n(&clk.us, (uint64_t)(now + 10) * 1000000u, __ATOMIC_RELAXED);
    struct store_stats st;
    for (int i = 0; i < 500; i++) {
        store_stats(r.s, &st);
        if (st.expired >= 1)
            break;
        usleep(10000);
    }
    CHECK_EQ(st.expired, 1);
    usleep(50000);
    d = dump_engine(r.e);
    CHECK_EQ(d.n, 2);
    dump_free(&d);
    pthread_mutex_lock(&ev.mu);
    CHECK_EQ(ev.map, 3);
    CHECK_EQ(ev.expire, 1);
    CHECK(ev.ordered);
    CHECK_EQ(ev.replayed, 0);
    pthread_mutex_unlock(&ev.mu);
    /* The durable expiry survives a restart; the listener sees replays. */
    store_close(r.s);
    engine_destroy(r.e);
    struct events ev2 = {.ordered = 1};
    pthread_mutex_init(&ev2.mu, NULL);
    CHECK(engine_create(&r.e, &ec) == 0);
    CHECK(store_open(&r.s, r.e, &cfg, err, sizeof(err)) == 0);
    store_set_listener(r.s, listener, &ev2);
    CHECK(store_recover(r.s, err, sizeof(err)) == 0);
    CHECK_EQ(ev2.map, 3);
    CHECK_EQ(ev2.expire, 1);
    CHECK_EQ(ev2.replayed, 4);
    CHECK(ev2.ordered);
    CHECK(store_start(r.s) == 0);
    d = dump_engine(r.e);
    CHECK_EQ(d.n, 2);
    dump_free(&d);
    __atomic_store_n(&clk.us, (uint64_t)(now + 4000) * 1000000u, __ATOMIC_RELAXED);
    for (int i = 0; i < 500; i++) {
        store_stats(r.s, &st);
        if (st.expired >= 2)
            break;
        usleep(10000);
    }
    CHECK_EQ(st.expired, 2);
    rig_close(&r);
    rm_rf(dir);
    printf("expiry/retention/listener: ok\n");
}

int main(void)
{
    roundtrip(0);
    roundtrip(1);
    expiry();
    return 0;
}
