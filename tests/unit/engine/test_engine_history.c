/*
 * test_engine_history — the history ring (bounded, newest first, visible at
 * once, entries whole even while rewritten in place), recording from inside
 * a row callback (engine_history_add_row), and preferences kept inline in
 * the device record across every kind of record rewrite.
 */
#include "engine.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static engine_t *mk(uint32_t hist)
{
    engine_t *e = NULL;
    struct engine_config cfg = {.history_len = hist, .initial_devices = 4};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    return e;
}

static int map(engine_t *e, const char *d, const char *u, const char *t, uint64_t lsn)
{
    struct engine_map_req rq = {.dev = d, .dev_len = strlen(d), .uri = u, .uri_len = strlen(u),
                                .uti = t, .uti_len = strlen(t)};
    return engine_map(e, &rq, lsn, NULL);
}

/* An entry whose bytes all derive from k, so a torn or misplaced entry is
 * detected: principal "p<k>", URI of k % 7 * 90 + 5 bytes (inline and
 * overflow cells, growing and shrinking), UTI "t<k>". */
static size_t mk_uri(char *u, uint64_t k)
{
    size_t n = (size_t)(k % 7) * 90 + 5;
    for (size_t i = 0; i < n; i++)
        u[i] = (char)('a' + (k + i) % 26);
    return n;
}

struct hrec {
    int n;
    uint64_t micros[64];
    int bad;
};
static int hcheck(void *arg, const struct engine_hist *h)
{
    struct hrec *r = arg;
    uint64_t k = h->micros;
    char p[32], t[32], u[1024];
    int pl = snprintf(p, sizeof p, "p%llu", (unsigned long long)(k & 0xffffffff));
    int tl = snprintf(t, sizeof t, "t%llu", (unsigned long long)k);
    size_t ul = mk_uri(u, k);
    if (h->event != ENGINE_H_INQUIRY || h->principal_len != pl ||
        memcmp(h->principal, p, (size_t)pl) != 0 || h->uti_len != tl ||
        memcmp(h->uti, t, (size_t)tl) != 0 || h->uri_len != ul || memcmp(h->uri, u, ul) != 0)
        r->bad++;
    if (r->n < 64)
        r->micros[r->n] = k;
    r->n++;
    return 0;
}

static int add(engine_t *e, const char *d, uint64_t k)
{
    char p[32], t[32], u[1024];
    int pl = snprintf(p, sizeof p, "p%llu", (unsigned long long)(k & 0xffffffff));
    int tl = snprintf(t, sizeof t, "t%llu", (unsigned long long)k);
    size_t ul = mk_uri(u, k);
    struct engine_hist h = {.micros = k, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)p, .principal_len = (uint16_t)pl,
                            .uri = (const uint8_t *)u, .uri_len = (uint16_t)ul,
                            .uti = (const uint8_t *)t, .uti_len = (uint16_t)tl};
    return engine_history_add(e, d, strlen(d), &h);
}

/* Bound and order, over entries of every size (inline, overflow, a bigger
 * overflow replacing a smaller one, inline again over an overflow cell). */
static void test_ring_bound_order(void)
{
    engine_t *e = mk(4);
    CHECK_EQ(map(e, "d", "https://a", "x", 1), 0);
    for (uint64_t k = 1; k <= 40; k++) {
        CHECK_EQ(add(e, "d", k), 0);
        struct hrec r = {0};
        int n = engine_history_get(e, "d", 1, 100, hcheck, &r);
        CHECK_EQ(n, (int)(k < 4 ? k : 4));
        CHECK_EQ(r.bad, 0);
        for (int i = 0; i < n; i++)
            CHECK_EQ(r.micros[i], k - (uint64_t)i); /* newest first */
        memset(&r, 0, sizeof r);
        CHECK_EQ(engine_history_get(e, "d", 1, 2, hcheck, &r), (int)(k < 2 ? k : 2));
        CHECK_EQ(r.micros[0], k);
    }
    /* The longest entry the contract allows. */
    char p[ENGINE_NAME_MAX], u[ENGINE_URI_MAX], t[ENGINE_ID_MAX];
    memset(p, 'P', sizeof p);
    memset(u, 'U', sizeof u);
    memset(t, 'T', sizeof t);
    struct engine_hist h = {.micros = 99, .event = ENGINE_H_MAP,
                            .principal = (const uint8_t *)p, .principal_len = sizeof p,
                            .uri = (const uint8_t *)u, .uri_len = sizeof u,
                            .uti = (const uint8_t *)t, .uti_len = sizeof t};
    CHECK_EQ(engine_history_add(e, "d", 1, &h), 0);
    h.uri_len = ENGINE_URI_MAX + 1;
    CHECK_EQ(engine_history_add(e, "d", 1, &h), -EINVAL);
    struct hrec r = {0};
    CHECK_EQ(engine_history_get(e, "d", 1, 100, hcheck, &r), 4);
    CHECK_EQ(r.micros[0], 99);
    CHECK_EQ(r.bad, 1); /* the max entry is not of hcheck's kind */
    CHECK_EQ(r.micros[1], 40);
    engine_destroy(e);
}

/* engine_history_add_row from inside a row callback: visible at once. */
struct rowrec {
    engine_t *e;
    uint64_t k;
    int rc;
};
static int record_cb(void *arg, const struct engine_row *row)
{
    struct rowrec *x = arg;
    struct engine_hist h = {.micros = x->k, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)"shop", .principal_len = 4,
                            .uri = row->uri, .uri_len = row->uri_len,
                            .uti = row->uti, .uti_len = row->uti_len};
    x->rc = engine_history_add_row(x->e, row, &h);
    return 0;
}
struct scol {
    char buf[512];
    size_t len;
};
static int scollect(void *arg, const struct engine_hist *h)
{
    struct scol *c = arg;
    c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len, "%llu:%.*s:%.*s:%.*s;",
                               (unsigned long long)h->micros, h->principal_len,
                               (const char *)h->principal, h->uri_len, (const char *)h->uri,
                               h->uti_len, (const char *)h->uti);
    return 0;
}
static void test_add_row(void)
{
    engine_t *e = mk(3);
    CHECK_EQ(map(e, "d", "https://a", "t1", 1), 0);
    CHECK_EQ(map(e, "d", "https://b", "t2", 2), 0);
    struct rowrec x = {e, 7, 1};
    CHECK_EQ(engine_inquire_device_ex(e, "d", 1, record_cb, &x, NULL, ENGINE_INQ_RECORD), 2);
    CHECK_EQ(x.rc, 0);
    struct scol c = {0};
    CHECK_EQ(engine_history_get(e, "d", 1, 10, scollect, &c), 2);
    CHECK(strcmp(c.buf, "7:shop:https://b:t2;7:shop:https://a:t1;") == 0);
    /* Through the binding index too, and the flag is only a hint. */
    x.k = 8;
    CHECK_EQ(engine_inquire_binding(e, "https://a", 9, "t1", 2, record_cb, &x, NULL), 1);
    x.k = 9;
    CHECK_EQ(engine_inquire_device_ex(e, "zz", 2, record_cb, &x, NULL, ENGINE_INQ_RECORD),
             -ENOENT);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, scollect, &c), 3);
    CHECK(strcmp(c.buf, "8:shop:https://a:t1;7:shop:https://b:t2;7:shop:https://a:t1;") == 0);
    CHECK_EQ(engine_history_add_row(e, NULL, NULL), -EINVAL);
    /* The batch with the flag: the same results, each returned row
     * recorded once, keys in order (the ring prefetch is only a hint). */
    struct engine_key keys[3] = {{"d", 1}, {"zz", 2}, {"d", 1}};
    int res[3];
    x.k = 10;
    engine_inquire_device_batch_ex(e, keys, 3, record_cb, &x, res, ENGINE_INQ_RECORD);
    CHECK_EQ(res[0], 2);
    CHECK_EQ(res[1], -ENOENT);
    CHECK_EQ(res[2], 2);
    CHECK_EQ(x.rc, 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, scollect, &c), 3); /* a ring of 3 */
    CHECK(strcmp(c.buf, "10:shop:https://b:t2;10:shop:https://a:t1;10:shop:https://b:t2;") ==
          0);
    engine_destroy(e);

    e = mk(0); /* no history: accepted, nothing kept */
    CHECK_EQ(map(e, "d", "https://a", "t1", 1), 0);
    x = (struct rowrec){e, 1, 1};
    CHECK_EQ(engine_inquire_device(e, "d", 1, record_cb, &x, NULL), 1);
    CHECK_EQ(x.rc, 0);
    CHECK_EQ(engine_history_get(e, "d", 1, 10, NULL, NULL), 0);
    engine_destroy(e);
}

static double now_s(void);

/* Growable rings (issue 2): a ring's cells come in segments (cells 0-1,
 * 2-3, 4-7, ... cut at history_len) made as entries need them. Bound, order
 * and every entry's bytes (inline and overflow) hold across each new
 * segment and the wrap after the last, for history_len of every shape; the
 * snapshot's reader (oldest first) agrees. */
struct ocol {
    uint64_t micros[64];
    int n, bad;
};
static int ocheck(void *arg, const struct engine_hist *h)
{
    struct ocol *o = arg;
    struct hrec r = {0};
    hcheck(&r, h);
    o->bad += r.bad;
    if (o->n < 64)
        o->micros[o->n] = h->micros;
    o->n++;
    return 0;
}
static int dev_hist(void *arg, const struct engine_device *d)
{
    engine_t *e = ((void **)arg)[0];
    return engine_device_history(e, d, ocheck, ((void **)arg)[1], NULL, NULL) < 0;
}
static void test_ring_growth(void)
{
    const uint32_t lens[] = {1, 2, 3, 5, 16, 33};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        uint32_t hl = lens[li];
        engine_t *e = mk(hl);
        CHECK_EQ(map(e, "d", "https://a", "x", 1), 0);
        for (uint64_t k = 1; k <= 2 * (uint64_t)hl + 9; k++) {
            CHECK_EQ(add(e, "d", k), 0);
            uint64_t want = k < hl ? k : hl;
            struct hrec r = {0};
            CHECK_EQ(engine_history_get(e, "d", 1, 100, hcheck, &r), (int)want);
            CHECK_EQ(r.bad, 0);
            for (uint64_t i = 0; i < want; i++)
                CHECK_EQ(r.micros[i], k - i); /* newest first */
            struct ocol o = {{0}, 0, 0};
            void *ctx[2] = {e, &o};
            uint64_t cur = 0;
            CHECK_EQ(engine_iterate_devices(e, &cur, 100, dev_hist, NULL, ctx), 1);
            CHECK_EQ(o.n, (int)want);
            CHECK_EQ(o.bad, 0);
            for (uint64_t i = 0; i < want; i++)
                CHECK_EQ(o.micros[i], k - want + 1 + i); /* oldest first */
        }
        engine_destroy(e);
    }
}

/* What a ring costs a device with one or two entries (issue 2: it was
 * 64 + 72 x history_len bytes, ~1.2 KB at 16, whatever the entries). Two
 * engines get the same devices and maps, one with history_len 0; with 16
 * the difference per device is the ring: its header and a first segment
 * of two cells, far under the old whole ring. */
static void test_ring_memory(void)
{
    enum { N = 1000 };
    engine_t *off = mk(0), *on = mk(16);
    char d[16], t[16];
    for (int i = 0; i < N; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        snprintf(t, sizeof t, "uti-%d", i);
        CHECK_EQ(map(off, d, "https://shop.example/orders", t, (uint64_t)i + 1), 0);
        CHECK_EQ(map(on, d, "https://shop.example/orders", t, (uint64_t)i + 1), 0);
    }
    struct engine_stats a, b, c;
    engine_stats(off, &a);
    engine_stats(on, &b);
    /* No entry yet: a header only. */
    double hdr = ((double)b.bytes - (double)a.bytes) / N;
    CHECK(hdr > 0 && hdr <= 64);
    struct engine_hist h = {.micros = 1, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)"acme-iot", .principal_len = 8,
                            .uri = (const uint8_t *)"https://shop.example/orders",
                            .uri_len = 27, .uti = (const uint8_t *)"uti-7f3a", .uti_len = 8};
    for (int i = 0; i < N; i++) {
        snprintf(d, sizeof d, "dev%d", i);
        CHECK_EQ(engine_history_add(on, d, strlen(d), &h), 0);
        if (i % 2)
            CHECK_EQ(engine_history_add(on, d, strlen(d), &h), 0);
    }
    engine_stats(on, &c);
    double per = ((double)c.bytes - (double)a.bytes) / N;
    printf("ring memory: %.0f B/device with 1-2 entries at history_len 16 (header %.0f)\n",
           per, hdr);
    CHECK(per <= 64 + 32 + 2 * 96);
    CHECK(per < 1216.0 / 4);
    engine_destroy(off);
    engine_destroy(on);
}

/* A growth that the memory limit refuses: -ENOMEM, the ring unchanged. */
static void test_ring_growth_limit(void)
{
    engine_t *e = mk(16);
    CHECK_EQ(map(e, "d", "https://a", "x", 1), 0);
    CHECK_EQ(add(e, "d", 7), 0); /* 7 % 7 == 0: an inline entry */
    CHECK_EQ(add(e, "d", 14), 0);
    struct engine_stats st;
    engine_stats(e, &st);
    engine_destroy(e);
    engine_t *l = NULL;
    struct engine_config cfg = {.history_len = 16, .initial_devices = 4,
                                .mem_limit = st.bytes + 64};
    CHECK_EQ(engine_create(&l, &cfg), 0);
    CHECK_EQ(map(l, "d", "https://a", "x", 1), 0);
    CHECK_EQ(add(l, "d", 7), 0);
    CHECK_EQ(add(l, "d", 14), 0);
    CHECK_EQ(add(l, "d", 21), -ENOMEM); /* needs the segment of cells 2-3 */
    struct hrec r = {0};
    CHECK_EQ(engine_history_get(l, "d", 1, 100, hcheck, &r), 2);
    CHECK_EQ(r.bad, 0);
    CHECK_EQ(r.micros[0], 14);
    CHECK_EQ(r.micros[1], 7);
    engine_destroy(l);
}

/* Rings growing while they are read and written: a writer keeps creating
 * devices, two threads record on the newest ones (an add of a young ring
 * may publish a new segment while readers walk the ring), and the main
 * thread reads them: every entry whole, each thread's entries newest
 * first, never more than history_len. */
#define GH 32
#define GN 400
static engine_t *GE;
static atomic_int gstop, gmapped;
static void *g_writer(void *arg)
{
    (void)arg;
    engine_thread_online(GE);
    for (int n = 0; n < GN && !atomic_load(&gstop); n++) {
        char d[16];
        snprintf(d, sizeof d, "g%d", n);
        CHECK_EQ(map(GE, d, "https://g", d, (uint64_t)n + 1), 0);
        atomic_store(&gmapped, n + 1);
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    engine_thread_offline(GE);
    return NULL;
}
/* The batch path's ring prefetch loads segment pointers while rings grow. */
static int g_row(void *arg, const struct engine_row *row)
{
    uint64_t k = *(uint64_t *)arg;
    char p[32], t[32], u[1024];
    int pl = snprintf(p, sizeof p, "p%llu", (unsigned long long)(k & 0xffffffff));
    int tl = snprintf(t, sizeof t, "t%llu", (unsigned long long)k);
    size_t ul = mk_uri(u, k);
    struct engine_hist h = {.micros = k, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)p, .principal_len = (uint16_t)pl,
                            .uri = (const uint8_t *)u, .uri_len = (uint16_t)ul,
                            .uti = (const uint8_t *)t, .uti_len = (uint16_t)tl};
    CHECK_EQ(engine_history_add_row(GE, row, &h), 0);
    return 0;
}
static void *g_adder(void *arg)
{
    int tid = (int)(intptr_t)arg;
    engine_thread_online(GE);
    uint64_t k = 0;
    while (!atomic_load(&gstop)) {
        int m = atomic_load(&gmapped);
        if (m == 0)
            continue;
        char d[16];
        snprintf(d, sizeof d, "g%d", m - 1 - (int)(k % 3 < (uint64_t)m ? k % 3 : 0));
        uint64_t key = (uint64_t)tid << 32 | ++k;
        if (k & 1) {
            CHECK_EQ(add(GE, d, key), 0);
        } else {
            struct engine_key q = {d, strlen(d)};
            int rc = 0;
            engine_inquire_device_batch_ex(GE, &q, 1, g_row, &key, &rc, ENGINE_INQ_RECORD);
            CHECK_EQ(rc, 1);
        }
    }
    engine_thread_offline(GE);
    return NULL;
}
static void test_growth_race(void)
{
    GE = mk(GH);
    pthread_t t[3];
    CHECK_EQ(pthread_create(&t[0], NULL, g_writer, NULL), 0);
    CHECK_EQ(pthread_create(&t[1], NULL, g_adder, (void *)1), 0);
    CHECK_EQ(pthread_create(&t[2], NULL, g_adder, (void *)2), 0);
    engine_thread_online(GE);
    double end = now_s() + 1.0;
    uint64_t gets = 0, seen = 0;
    while (now_s() < end && atomic_load(&gmapped) < GN) {
        int m = atomic_load(&gmapped);
        for (int j = 0; j < 3 && j < m; j++) {
            char d[16];
            snprintf(d, sizeof d, "g%d", m - 1 - j);
            struct hrec r = {0};
            int n = engine_history_get(GE, d, strlen(d), 100, hcheck, &r);
            CHECK(n >= 0 && n <= GH);
            CHECK_EQ(r.bad, 0);
            uint64_t last[3] = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
            for (int i = 0; i < n; i++) {
                int tid = (int)(r.micros[i] >> 32);
                CHECK(tid == 1 || tid == 2);
                CHECK(r.micros[i] < last[tid]);
                last[tid] = r.micros[i];
            }
            gets++;
            seen += (uint64_t)n;
        }
    }
    atomic_store(&gstop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    engine_thread_offline(GE);
    engine_destroy(GE);
    CHECK(seen > 0);
    printf("growth race: %llu HISTORY reads, %llu entries checked\n",
           (unsigned long long)gets, (unsigned long long)seen);
}

/* Prefs live inline in the record: every rewrite of the record keeps them,
 * every read path shows them, and a device without prefs shows none. */
struct pcol {
    char s[512];
    int n;
};
static int pcollect(void *arg, const struct engine_row *r)
{
    struct pcol *c = arg;
    size_t l = strlen(c->s);
    snprintf(c->s + l, sizeof c->s - l, "%.*s=%.*s;", r->uti_len ? (int)r->uti_len : 1,
             r->uti_len ? (const char *)r->uti : "-", (int)r->prefs_len,
             r->prefs ? (const char *)r->prefs : "");
    c->n++;
    return 0;
}
static const char *pdev(engine_t *e, const char *d, struct pcol *c)
{
    memset(c, 0, sizeof *c);
    if (engine_inquire_device(e, d, strlen(d), pcollect, c, NULL) < 0)
        strcpy(c->s, "ENOENT");
    return c->s;
}
static void test_prefs_inline(uint32_t hist)
{
    engine_t *e = mk(hist);
    struct pcol c;
    uint64_t lsn = 1;
    CHECK_EQ(map(e, "d", "https://a", "t1", lsn++), 0);
    CHECK_EQ(map(e, "o", "https://a", "o1", lsn++), 0);
    CHECK(strcmp(pdev(e, "d", &c), "t1=;") == 0);
    CHECK_EQ(engine_set_prefs(e, "d", 1, "P1", 2, lsn++), 0);
    CHECK(strcmp(pdev(e, "d", &c), "t1=P1;") == 0);
    CHECK(strcmp(pdev(e, "o", &c), "o1=;") == 0);
    CHECK_EQ(map(e, "d", "https://b", "t2", lsn++), 0); /* map copies them */
    CHECK(strcmp(pdev(e, "d", &c), "t1=P1;t2=P1;") == 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_inquire_binding(e, "https://b", 9, "t2", 2, pcollect, &c, NULL), 1);
    CHECK(strcmp(c.s, "t2=P1;") == 0);
    /* Replacing with longer prefs moves the rows: bindings must follow. */
    char big[300];
    memset(big, 'Q', sizeof big);
    CHECK_EQ(engine_set_prefs(e, "d", 1, big, sizeof big, lsn++), 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_inquire_binding(e, "https://a", 9, "t1", 2, pcollect, &c, NULL), 1);
    CHECK_EQ(strlen(c.s), 3 + sizeof big + 1);
    CHECK_EQ(engine_set_prefs(e, "d", 1, "P3", 2, lsn++), 0);
    CHECK_EQ(engine_demap(e, "d", 1, "https://a", 9, "t1", 2, 0, lsn++, NULL, NULL), 0);
    CHECK(strcmp(pdev(e, "d", &c), "t2=P3;") == 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_device_info(e, "d", 1, pcollect, &c), 0);
    CHECK(strcmp(c.s, "-=P3;") == 0);
    uint64_t cur = 0;
    memset(&c, 0, sizeof c);
    CHECK_EQ(engine_iterate(e, &cur, 100, pcollect, &c), 2);
    CHECK(strstr(c.s, "t2=P3;") && strstr(c.s, "o1=;"));
    CHECK_EQ(engine_set_prefs(e, "d", 1, NULL, 0, lsn++), 0); /* clear */
    CHECK(strcmp(pdev(e, "d", &c), "t2=;") == 0);
    CHECK_EQ(engine_set_prefs(e, "d", 1, NULL, 0, lsn++), 0); /* clear again */
    CHECK_EQ(engine_set_prefs(e, "d", 1, "P4", 2, lsn++), 0);
    CHECK_EQ(engine_demap_device(e, "d", 1, lsn++, NULL, NULL), 1);
    CHECK(strcmp(pdev(e, "d", &c), "ENOENT") == 0);
    memset(&c, 0, sizeof c);
    /* With history the record outlives its rows, prefs included. */
    CHECK_EQ(engine_device_info(e, "d", 1, pcollect, &c), hist ? 0 : -ENOENT);
    if (hist)
        CHECK(strcmp(c.s, "-=P4;") == 0);
    CHECK_EQ(map(e, "d", "https://c", "t3", lsn++), 0);
    CHECK(strcmp(pdev(e, "d", &c), hist ? "t3=P4;" : "t3=;") == 0);
    /* Memory: prefs cost their bytes, and clearing gives them back once
     * the old record versions are reclaimed (engine_destroy checks the
     * books balance to zero through the allocator seam in test_engine_model). */
    engine_destroy(e);
}

/* Two threads record inquiries (from inside the row callback) on a few
 * devices while a writer maps, demaps and sets prefs on them and a reader
 * checks every HISTORY it gets: bounded, each thread's entries newest first,
 * no entry torn. */
#define CD 4
#define CH 8
static engine_t *CE;
static atomic_int cstop;
static atomic_uint_fast64_t cadds[2];
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
struct crec {
    int tid;
    uint64_t k;
    int err;
};
static int crecord(void *arg, const struct engine_row *row)
{
    struct crec *x = arg;
    char p[32], t[32], u[1024];
    /* principal p<low 32 bits of k>, k = tid << 32 | n */
    int pl = snprintf(p, sizeof p, "p%llu", (unsigned long long)(x->k & 0xffffffff));
    int tl = snprintf(t, sizeof t, "t%llu", (unsigned long long)x->k);
    size_t ul = mk_uri(u, x->k);
    struct engine_hist h = {.micros = x->k, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)p, .principal_len = (uint16_t)pl,
                            .uri = (const uint8_t *)u, .uri_len = (uint16_t)ul,
                            .uti = (const uint8_t *)t, .uti_len = (uint16_t)tl};
    (void)row;
    if (engine_history_add_row(CE, row, &h) != 0)
        x->err++;
    return 1; /* record once per inquiry */
}
static void *recorder(void *arg)
{
    int tid = (int)(intptr_t)arg;
    engine_thread_online(CE);
    struct crec x = {tid, 0, 0};
    uint64_t n = 0;
    while (!atomic_load(&cstop)) {
        char d[8];
        snprintf(d, sizeof d, "d%d", (int)(n % CD));
        x.k = (uint64_t)tid << 32 | ++n;
        int rc;
        if (n & 1) {
            rc = engine_inquire_device_ex(CE, d, strlen(d), crecord, &x, NULL, ENGINE_INQ_RECORD);
        } else {
            /* the batch path, whose ring prefetch races the writer too */
            struct engine_key key = {d, strlen(d)};
            engine_inquire_device_batch_ex(CE, &key, 1, crecord, &x, &rc, ENGINE_INQ_RECORD);
        }
        if (rc != 1 && rc != -ENOENT)
            x.err++;
        if (rc == 1)
            atomic_fetch_add(&cadds[tid], 1);
    }
    CHECK_EQ(x.err, 0);
    engine_thread_offline(CE);
    return NULL;
}
static void *writer(void *arg)
{
    (void)arg;
    engine_thread_online(CE);
    uint64_t lsn = 1000;
    for (uint64_t n = 0; !atomic_load(&cstop); n++) {
        char d[8], t[16];
        snprintf(d, sizeof d, "d%d", (int)(n % CD));
        snprintf(t, sizeof t, "w%d-%d", (int)(n % CD), (int)(n % 3));
        if (n % 5 == 4)
            engine_demap_device(CE, d, strlen(d), ++lsn, NULL, NULL);
        else
            map(CE, d, "https://w", t, ++lsn);
        if (n % 3 == 0)
            engine_set_prefs(CE, d, strlen(d), "pp", 2, ++lsn);
    }
    engine_thread_offline(CE);
    return NULL;
}
static void test_concurrent(void)
{
    CE = mk(CH);
    for (int d = 0; d < CD; d++) {
        char dn[8], t[16];
        snprintf(dn, sizeof dn, "d%d", d);
        snprintf(t, sizeof t, "w%d-0", d);
        CHECK_EQ(map(CE, dn, "https://w", t, (uint64_t)d + 1), 0);
    }
    pthread_t t[3];
    CHECK_EQ(pthread_create(&t[0], NULL, recorder, (void *)0), 0);
    CHECK_EQ(pthread_create(&t[1], NULL, recorder, (void *)1), 0);
    CHECK_EQ(pthread_create(&t[2], NULL, writer, NULL), 0);
    engine_thread_online(CE);
    double end = now_s() + 1.0;
    uint64_t gets = 0, seen = 0;
    while (now_s() < end) {
        for (int d = 0; d < CD; d++) {
            char dn[8];
            snprintf(dn, sizeof dn, "d%d", d);
            struct hrec r = {0};
            int n = engine_history_get(CE, dn, strlen(dn), 100, hcheck, &r);
            CHECK(n >= 0 && n <= CH);
            CHECK_EQ(r.bad, 0);
            /* Per thread, micros (its sequence) strictly decreasing. */
            uint64_t last[2] = {UINT64_MAX, UINT64_MAX};
            for (int i = 0; i < n; i++) {
                int tid = (int)(r.micros[i] >> 32);
                CHECK(tid == 0 || tid == 1);
                CHECK(r.micros[i] < last[tid]);
                last[tid] = r.micros[i];
            }
            gets++;
            seen += (uint64_t)n;
        }
    }
    atomic_store(&cstop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    /* Quiet now: every ring is full and exactly the newest CH entries. */
    for (int d = 0; d < CD; d++) {
        char dn[8];
        snprintf(dn, sizeof dn, "d%d", d);
        struct hrec r = {0};
        CHECK_EQ(engine_history_get(CE, dn, strlen(dn), 100, hcheck, &r), CH);
        CHECK_EQ(r.bad, 0);
    }
    engine_thread_offline(CE);
    engine_destroy(CE);
    CHECK(atomic_load(&cadds[0]) > CH && atomic_load(&cadds[1]) > CH);
    printf("concurrent: %llu + %llu recorded, %llu HISTORY reads, %llu entries checked\n",
           (unsigned long long)atomic_load(&cadds[0]), (unsigned long long)atomic_load(&cadds[1]),
           (unsigned long long)gets, (unsigned long long)seen);
}

int main(void)
{
    test_ring_bound_order();
    test_add_row();
    test_prefs_inline(0);
    test_prefs_inline(4);
    test_concurrent();
    test_ring_growth();
    test_ring_memory();
    test_ring_growth_limit();
    test_growth_race();
    printf("test_engine_history: ok\n");
    return 0;
}
