/*
 * fuzz_engine_ops — decodes the input into a sequence of engine operations
 * on a small universe (8 devices, 4 URIs, 16 UTIs) and checks every result
 * against a reference model, including injected allocation failures (an
 * operation that fails with -ENOMEM must leave the model's state intact)
 * and a memory limit. Each step is 4 bytes: op, a, b, c.
 */
#include "engine.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ND 8
#define NU 4
#define NT 16

#define FAIL(...)                                                          \
    do {                                                                   \
        fprintf(stderr, "fuzz_engine_ops: " __VA_ARGS__);                  \
        fputc('\n', stderr);                                               \
        abort();                                                           \
    } while (0)
#define EXPECT(cond)                                                       \
    do {                                                                   \
        if (!(cond))                                                       \
            FAIL("line %d: %s", __LINE__, #cond);                          \
    } while (0)

struct model {
    int bdev[NU][NT];          /* device holding (uri, uti), -1: none */
    uint64_t blsn[NU][NT];
    uint32_t bexp[NU][NT];
    int known[ND];             /* record exists (history keeps it) */
    int owner[ND];             /* 0: none, else owner id */
    int prefs[ND];             /* 0: none, else prefs length */
    int hist[ND];              /* history entries kept */
    uint64_t klsn[ND];         /* ring's logged key: (klsn, kpart) */
    uint32_t kpart[ND];
    uint64_t lsn;
};

static long fail_in = -1;
static void *f_alloc(void *ctx, size_t n)
{
    (void)ctx;
    if (fail_in > 0 && --fail_in == 0)
        return NULL;
    return malloc(n);
}
static void f_free(void *ctx, void *p, size_t n)
{
    (void)ctx;
    (void)n;
    free(p);
}

static const char *DEV[ND] = {"d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7"};
static const char *URI[NU] = {"u0", "https://x", "u2", "urn:y"};
static const char *UTI[NT] = {"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7",
                              "t8", "t9", "ta", "tb", "tc", "td", "te", "tf"};
static const char *OWN[4] = {"", "alice", "bob", "carol"};

static int idx_of(const char *const *tab, int n, const uint8_t *p, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(tab[i]) == len && memcmp(tab[i], p, len) == 0)
            return i;
    return -1;
}

static int nrows(const struct model *m, int d)
{
    int n = 0;
    for (int u = 0; u < NU; u++)
        for (int t = 0; t < NT; t++)
            n += m->bdev[u][t] == d;
    return n;
}

/* A device record goes away with its last row unless history keeps it. */
static void settle(struct model *m, int d, uint32_t hlen)
{
    if (nrows(m, d) == 0 && !hlen) {
        m->known[d] = 0;
        m->owner[d] = 0;
        m->prefs[d] = 0;
    }
}

struct seen {
    const struct model *m;
    int dev;
    int n;
    uint64_t last;
};
static int check_row(void *arg, const struct engine_row *r)
{
    struct seen *s = arg;
    const struct model *m = s->m;
    int d = idx_of(DEV, ND, r->device, r->device_len);
    int u = idx_of(URI, NU, r->uri, r->uri_len);
    int t = idx_of(UTI, NT, r->uti, r->uti_len);
    EXPECT(d >= 0 && u >= 0 && t >= 0);
    EXPECT(s->dev < 0 || d == s->dev);
    EXPECT(m->bdev[u][t] == d);
    EXPECT(m->blsn[u][t] == r->lsn);
    EXPECT(m->bexp[u][t] == r->expires_at);
    EXPECT(r->lsn > s->last || s->dev < 0);
    s->last = r->lsn;
    EXPECT(r->owner_len == strlen(OWN[m->owner[d]]));
    EXPECT((int)r->prefs_len == m->prefs[d]);
    s->n++;
    return 0;
}

/* engine_iterate_devices: every known record, with the model's owner,
 * prefs and row count, and its ring's entries and key. */
struct dseen { const struct model *m; engine_t *e; int devs, rows, cur; uint32_t hlen; };
static int check_dev(void *arg, const struct engine_device *dv)
{
    struct dseen *s = arg;
    const struct model *m = s->m;
    int d = idx_of(DEV, ND, dv->device, dv->device_len);
    EXPECT(d >= 0 && m->known[d]);
    EXPECT(dv->owner_len == strlen(OWN[m->owner[d]]));
    EXPECT((int)dv->prefs_len == m->prefs[d]);
    EXPECT((int)dv->rows == nrows(m, d));
    uint64_t kl;
    uint32_t kp;
    int n = engine_device_history(s->e, dv, NULL, NULL, &kl, &kp);
    EXPECT(n == (s->hlen ? m->hist[d] : 0));
    EXPECT(kl == m->klsn[d] && kp == m->kpart[d]);
    s->devs++;
    s->cur = d;
    return 0;
}
static int check_dev_row(void *arg, const struct engine_row *r)
{
    struct dseen *s = arg;
    EXPECT(idx_of(DEV, ND, r->device, r->device_len) == s->cur);
    s->rows++;
    return 0;
}

static int count_fn(void *arg, const struct engine_row *r)
{
    (void)r;
    ++*(int *)arg;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t hlen = data[0] & 7; /* 0..7: rings grow 2, 4, 7 */
    size_t limit = (data[1] & 1) ? 4096u + (size_t)data[1] * 64u : 0;
    data += 2;
    size -= 2;
    struct engine_config cfg = {.history_len = hlen, .mem_limit = limit,
                                .alloc = {f_alloc, f_free, NULL},
                                .hash_seed = 0x5eed}; /* reproducible runs */
    engine_t *e = NULL;
    fail_in = -1;
    if (engine_create(&e, &cfg) != 0)
        return 0; /* a tiny limit may refuse the engine itself */
    struct model m;
    memset(&m, 0, sizeof m);
    for (int u = 0; u < NU; u++)
        for (int t = 0; t < NT; t++)
            m.bdev[u][t] = -1;
    static const char blob[256] = {0};

    for (size_t i = 0; i + 4 <= size; i += 4) {
        uint8_t op = data[i], a = data[i + 1], b = data[i + 2], c = data[i + 3];
        int d = a % ND, u = b % NU, t = (b >> 2) % NT;
        uint64_t nl = m.lsn + 1;
        int rc;
        if ((op >> 4) == 0xf) { /* fail the c-th allocation of the next op */
            fail_in = (c % 8) + 1;
            continue;
        }
        switch (op % 12) {
        case 0:
        case 1: { /* map, maybe with owner, TTL and CAS */
            int own = c & 3;
            uint64_t cas = (op & 0x10) ? m.blsn[u][t] + (c >> 7) : 0;
            struct engine_map_req rq = {
                .dev = DEV[d], .dev_len = strlen(DEV[d]),
                .uri = URI[u], .uri_len = strlen(URI[u]),
                .uti = UTI[t], .uti_len = strlen(UTI[t]),
                .owner = OWN[own], .owner_len = strlen(OWN[own]),
                .expires_at = (c & 0x40) ? (uint32_t)(c & 0x3f) + 1 : 0,
                .cas = cas};
            uint64_t rl = 0;
            rc = engine_map(e, &rq, nl, &rl);
            if (m.bdev[u][t] >= 0) {
                if (m.bdev[u][t] != d || (cas && cas != m.blsn[u][t]))
                    EXPECT(rc == -EEXIST);
                else {
                    EXPECT(rc == 1);
                    EXPECT(rl == m.blsn[u][t]);
                }
            } else if (cas) {
                EXPECT(rc == -EEXIST);
            } else if (rc == -ENOMEM) {
                EXPECT(fail_in >= 0 || limit);
            } else {
                EXPECT(rc == 0 && rl == nl);
                m.bdev[u][t] = d;
                m.blsn[u][t] = nl;
                m.bexp[u][t] = rq.expires_at;
                m.known[d] = 1;
                if (own)
                    m.owner[d] = own;
                m.lsn = nl;
            }
            break;
        }
        case 2: { /* demap one row, maybe with CAS */
            uint64_t cas = (op & 0x10) ? m.blsn[u][t] + (c & 1) : 0;
            rc = engine_demap(e, DEV[d], strlen(DEV[d]), URI[u], strlen(URI[u]),
                              UTI[t], strlen(UTI[t]), cas, nl, NULL, NULL);
            if (m.bdev[u][t] != d)
                EXPECT(rc == -ENOENT);
            else if (cas && cas != m.blsn[u][t])
                EXPECT(rc == -EEXIST);
            else if (rc == -ENOMEM)
                EXPECT(fail_in >= 0);
            else {
                EXPECT(rc == 0);
                m.bdev[u][t] = -1;
                m.lsn = nl;
                settle(&m, d, hlen);
            }
            break;
        }
        case 3: { /* demap device */
            int n = nrows(&m, d), seen = 0;
            rc = engine_demap_device(e, DEV[d], strlen(DEV[d]), nl, count_fn, &seen);
            if (!n)
                EXPECT(rc == -ENOENT);
            else if (rc == -ENOMEM)
                EXPECT(fail_in >= 0 && seen == 0);
            else {
                EXPECT(rc == n && seen == n);
                for (int x = 0; x < NU; x++)
                    for (int y = 0; y < NT; y++)
                        if (m.bdev[x][y] == d)
                            m.bdev[x][y] = -1;
                m.lsn = nl;
                settle(&m, d, hlen);
            }
            break;
        }
        case 4: { /* demap binding */
            int owner = m.bdev[u][t];
            rc = engine_demap_binding(e, URI[u], strlen(URI[u]), UTI[t],
                                      strlen(UTI[t]), nl, NULL, NULL);
            if (owner < 0)
                EXPECT(rc == -ENOENT);
            else if (rc == -ENOMEM)
                EXPECT(fail_in >= 0);
            else {
                EXPECT(rc == 1);
                m.bdev[u][t] = -1;
                m.lsn = nl;
                settle(&m, owner, hlen);
            }
            break;
        }
        case 5: { /* demap service: may stop part way on -ENOMEM */
            int n = 0, seen = 0;
            for (int y = 0; y < NT; y++)
                n += m.bdev[u][y] >= 0;
            rc = engine_demap_service(e, URI[u], strlen(URI[u]), nl, count_fn,
                                      &seen);
            if (!n) {
                EXPECT(rc == -ENOENT);
                break;
            }
            if (rc == -ENOMEM)
                EXPECT(fail_in >= 0);
            else
                EXPECT(rc == n && seen == n);
            /* Whatever was removed is gone: resync from the engine. */
            for (int y = 0; y < NT; y++) {
                int owner = m.bdev[u][y];
                if (owner < 0)
                    continue;
                int r2 = engine_inquire_binding(e, URI[u], strlen(URI[u]),
                                                UTI[y], strlen(UTI[y]), NULL,
                                                NULL, NULL);
                if (r2 == -ENOENT) {
                    m.bdev[u][y] = -1;
                    settle(&m, owner, hlen);
                    m.lsn = nl;
                } else {
                    EXPECT(r2 == 1 && rc == -ENOMEM);
                }
            }
            break;
        }
        case 6: { /* prefs */
            int len = c & 1 ? 0 : c;
            rc = engine_set_prefs(e, DEV[d], strlen(DEV[d]), blob, (size_t)len, nl);
            if (!nrows(&m, d))
                EXPECT(rc == -ENOENT);
            else if (rc == -ENOMEM)
                EXPECT(fail_in >= 0 || limit);
            else {
                EXPECT(rc == 0);
                m.prefs[d] = len;
                m.lsn = nl;
            }
            break;
        }
        case 7: { /* inquire by device, single and batched */
            struct seen s = {&m, d, 0, 0};
            uint64_t lsn = 0;
            rc = engine_inquire_device(e, DEV[d], strlen(DEV[d]), check_row, &s, &lsn);
            int n = nrows(&m, d);
            EXPECT(rc == (n ? n : -ENOENT) && s.n == n && lsn == m.lsn);
            struct engine_key keys[3] = {{DEV[d], strlen(DEV[d])},
                                         {DEV[(d + 1) % ND], 2},
                                         {DEV[d], 0}};
            int res[3];
            struct seen s2 = {&m, -1, 0, 0};
            engine_inquire_device_batch(e, keys, 3, check_row, &s2, res);
            int n1 = nrows(&m, (d + 1) % ND);
            EXPECT(res[0] == (n ? n : -ENOENT));
            EXPECT(res[1] == (n1 ? n1 : -ENOENT));
            EXPECT(res[2] == -EINVAL && s2.n == n + n1);
            rc = engine_device_info(e, DEV[d], strlen(DEV[d]), NULL, NULL);
            EXPECT(rc == (m.known[d] ? 0 : -ENOENT));
            break;
        }
        case 8: { /* inquire by binding */
            struct seen s = {&m, -1, 0, 0};
            rc = engine_inquire_binding(e, URI[u], strlen(URI[u]), UTI[t],
                                        strlen(UTI[t]), check_row, &s, NULL);
            EXPECT(rc == (m.bdev[u][t] >= 0 ? 1 : -ENOENT));
            break;
        }
        case 9: { /* expiry collection */
            uint32_t now = c & 0x7f;
            int want = 0;
            for (int x = 0; x < NU; x++)
                for (int y = 0; y < NT; y++)
                    want += m.bdev[x][y] >= 0 && m.bexp[x][y] &&
                            m.bexp[x][y] <= now;
            struct seen s = {&m, -1, 0, 0};
            rc = engine_collect_expired(e, now, 1000, check_row, &s);
            EXPECT(rc == want && s.n == want);
            if (want > 1)
                EXPECT(engine_collect_expired(e, now, 1, NULL, NULL) == 1);
            break;
        }
        case 10: { /* full iteration, in steps of max */
            size_t max = (size_t)(c % 5) + 1;
            uint64_t cur = 0;
            if (op & 0x10) { /* over device records, with their rings */
                struct dseen ds = {&m, e, 0, 0, -1, hlen};
                int calls = 0;
                do {
                    EXPECT(engine_iterate_devices(e, &cur, max, check_dev, check_dev_row,
                                                  &ds) >= 0);
                    EXPECT(++calls < 1000);
                } while (cur);
                int devs = 0, rows = 0;
                for (int x = 0; x < ND; x++) {
                    devs += m.known[x];
                    rows += nrows(&m, x);
                }
                EXPECT(ds.devs == devs && ds.rows == rows);
                break;
            }
            struct seen s = {&m, -1, 0, 0};
            int total = 0, calls = 0;
            do {
                rc = engine_iterate(e, &cur, max, check_row, &s);
                EXPECT(rc >= 0);
                total += rc;
                EXPECT(++calls < 1000);
            } while (cur);
            int want = 0;
            for (int x = 0; x < ND; x++)
                want += nrows(&m, x);
            EXPECT(total == want && s.n == want);
            break;
        }
        case 11: { /* history; with 0x10 a logged entry keyed (c, op bit 5) */
            struct engine_hist h = {.micros = nl, .event = ENGINE_H_INQUIRY,
                                    .principal = (const uint8_t *)"p",
                                    .principal_len = 1};
            int logged = (op & 0x10) && c;
            if (logged) {
                h.event = ENGINE_H_MAP;
                h.lsn = c;
                h.part = (op >> 5) & 1;
            }
            /* a logged entry not above the ring's key is a no-op */
            int fresh = !logged || h.lsn > m.klsn[d] ||
                        (h.lsn == m.klsn[d] && h.part > m.kpart[d]);
            rc = engine_history_add(e, DEV[d], strlen(DEV[d]), &h);
            if (!m.known[d])
                EXPECT(rc == -ENOENT);
            else if (rc == -ENOMEM)
                EXPECT(fail_in >= 0 || limit);
            else {
                EXPECT(rc == 0);
                if (fresh && (uint32_t)m.hist[d] < hlen)
                    m.hist[d]++;
                if (fresh && logged && hlen) {
                    m.klsn[d] = h.lsn;
                    m.kpart[d] = h.part;
                }
            }
            rc = engine_history_get(e, DEV[d], strlen(DEV[d]), 100, NULL, NULL);
            EXPECT(rc == (m.known[d] ? m.hist[d] : -ENOENT));
            break;
        }
        }
        fail_in = -1;
        struct engine_stats st;
        engine_stats(e, &st);
        int want = 0, devs = 0;
        for (int x = 0; x < ND; x++) {
            want += nrows(&m, x);
            devs += m.known[x];
        }
        EXPECT(st.rows == (uint64_t)want);
        EXPECT(st.devices == (uint64_t)devs);
        EXPECT(st.last_lsn == m.lsn);
    }
    engine_destroy(e);
    return 0;
}
