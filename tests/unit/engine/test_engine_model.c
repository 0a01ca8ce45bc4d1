/*
 * test_engine_model — the engine against a reference model:
 *  1. failing the Nth allocation of each kind of change, for every N until
 *     it succeeds: -ENOMEM, nothing changed, no byte leaked;
 *  2. a large insert / lookup / delete round trip (1M rows by default;
 *     ICS_TEST_ROWS overrides, sanitizer builds use 200k) checked row by
 *     row against a plain array model.
 */
#include "engine.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* --- a counting, failing allocator (freed from liburcu's thread too) ---- */
struct seam {
    long live_bytes, live_blocks; /* atomics */
    long fail_in;                 /* fail when it drops to 0; < 0: never */
};
static void *s_alloc(void *ctx, size_t size)
{
    struct seam *s = ctx;
    if (__atomic_load_n(&s->fail_in, __ATOMIC_RELAXED) >= 0 &&
        __atomic_sub_fetch(&s->fail_in, 1, __ATOMIC_RELAXED) == 0)
        return NULL;
    void *p = malloc(size);
    if (p) {
        __atomic_add_fetch(&s->live_bytes, (long)size, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->live_blocks, 1, __ATOMIC_RELAXED);
    }
    return p;
}
static void s_free(void *ctx, void *p, size_t size)
{
    struct seam *s = ctx;
    __atomic_sub_fetch(&s->live_bytes, (long)size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&s->live_blocks, 1, __ATOMIC_RELAXED);
    free(p);
}

/* The whole observable state of a small engine, as a string. */
static int dump_row(void *arg, const struct engine_row *r)
{
    char *b = arg;
    size_t n = strlen(b);
    snprintf(b + n, 8192 - n, "%.*s/%.*s/%.*s/%.*s/%.*s/%u/%llu;",
             r->device_len, (const char *)r->device, r->owner_len,
             (const char *)r->owner, r->uri_len, (const char *)r->uri,
             r->uti_len, (const char *)r->uti, (int)r->prefs_len,
             (const char *)r->prefs, r->expires_at, (unsigned long long)r->lsn);
    return 0;
}
static void dump(engine_t *e, char out[8192])
{
    static const char *devs[] = {"d0", "d1", "d2", "d3"};
    out[0] = 0;
    for (int i = 0; i < 4; i++) {
        engine_inquire_device(e, devs[i], 2, dump_row, out, NULL);
        engine_device_info(e, devs[i], 2, dump_row, out);
        size_t n = strlen(out);
        snprintf(out + n, 8192 - n, "h%d;",
                 engine_history_get(e, devs[i], 2, 100, NULL, NULL));
    }
    struct engine_stats st;
    engine_stats(e, &st);
    size_t n = strlen(out);
    snprintf(out + n, 8192 - n, "rows=%llu devs=%llu uris=%llu lsn=%llu",
             (unsigned long long)st.rows, (unsigned long long)st.devices,
             (unsigned long long)st.uris, (unsigned long long)st.last_lsn);
}

static void base_state(engine_t *e)
{
    struct engine_map_req rq = {.dev = "d0", .dev_len = 2, .uri = "u0",
                                .uri_len = 2, .uti = "t0", .uti_len = 2,
                                .owner = "o0", .owner_len = 2};
    CHECK_EQ(engine_map(e, &rq, 1, NULL), 0);
    rq.uti = "t1";
    CHECK_EQ(engine_map(e, &rq, 2, NULL), 0);
    rq.dev = "d1";
    rq.uti = "t2";
    CHECK_EQ(engine_map(e, &rq, 3, NULL), 0);
    CHECK_EQ(engine_set_prefs(e, "d1", 2, "p", 1, 4), 0);
}

/* Each op returns 0 / a count on success, -ENOMEM on allocation failure. */
static int op_new_device(engine_t *e)
{
    struct engine_map_req rq = {.dev = "d2", .dev_len = 2, .uri = "u9",
                                .uri_len = 2, .uti = "t9", .uti_len = 2,
                                .owner = "o9", .owner_len = 2};
    return engine_map(e, &rq, 10, NULL);
}
static int op_add_row(engine_t *e)
{
    struct engine_map_req rq = {.dev = "d0", .dev_len = 2, .uri = "u1",
                                .uri_len = 2, .uti = "t8", .uti_len = 2,
                                .owner = "o1", .owner_len = 2,
                                .expires_at = 77};
    return engine_map(e, &rq, 10, NULL);
}
static int op_prefs(engine_t *e)
{
    return engine_set_prefs(e, "d0", 2, "prefs!", 6, 10);
}
static int op_demap(engine_t *e)
{
    return engine_demap(e, "d0", 2, "u0", 2, "t0", 2, 0, 10, NULL, NULL);
}
static int op_demap_dev(engine_t *e)
{
    return engine_demap_device(e, "d0", 2, 10, NULL, NULL);
}
static int op_demap_service(engine_t *e)
{
    return engine_demap_service(e, "u0", 2, 10, NULL, NULL);
}
static int op_history(engine_t *e)
{
    struct engine_hist h = {.micros = 5, .event = ENGINE_H_INQUIRY,
                            .principal = (const uint8_t *)"pp",
                            .principal_len = 2};
    return engine_history_add(e, "d1", 2, &h);
}

static void test_fail_nth(int (*op)(engine_t *), const char *name,
                          uint32_t hist)
{
    struct seam s = {0, 0, -1};
    char before[8192], after[8192];
    int n;
    for (n = 1;; n++) {
        engine_t *e = NULL;
        struct engine_config cfg = {.history_len = hist,
                                    .alloc = {s_alloc, s_free, &s}};
        __atomic_store_n(&s.fail_in, -1, __ATOMIC_RELAXED);
        CHECK_EQ(engine_create(&e, &cfg), 0);
        base_state(e);
        dump(e, before);
        __atomic_store_n(&s.fail_in, n, __ATOMIC_RELAXED);
        int rc = op(e);
        __atomic_store_n(&s.fail_in, -1, __ATOMIC_RELAXED);
        dump(e, after);
        if (rc == -ENOMEM) {
            if (strcmp(before, after) != 0) {
                fprintf(stderr, "%s: failing allocation %d changed state\n"
                        " before: %s\n after:  %s\n", name, n, before, after);
                exit(1);
            }
            /* still consistent: the op now succeeds */
            CHECK(op(e) >= 0);
        } else {
            CHECK(rc >= 0);
            CHECK(strcmp(before, after) != 0);
        }
        engine_destroy(e);
        CHECK_EQ(__atomic_load_n(&s.live_bytes, __ATOMIC_RELAXED), 0);
        CHECK_EQ(__atomic_load_n(&s.live_blocks, __ATOMIC_RELAXED), 0);
        if (rc != -ENOMEM)
            break;
    }
    printf("  %s: succeeded once %d allocations were allowed\n", name, n);
}

static void test_create_fail(void)
{
    struct seam s = {0, 0, -1};
    for (int n = 1; n < 10; n++) {
        engine_t *e = NULL;
        struct engine_config cfg = {.alloc = {s_alloc, s_free, &s}};
        s.fail_in = n;
        int rc = engine_create(&e, &cfg);
        s.fail_in = -1;
        if (rc == 0) {
            engine_destroy(e);
            CHECK_EQ(s.live_bytes, 0);
            return;
        }
        CHECK_EQ(rc, -ENOMEM);
        CHECK_EQ(s.live_bytes, 0);
    }
    CHECK(0);
}

/* --- the big round trip ----------------------------------------------- */
static void key(char *out, char kind, uint64_t i)
{
    /* 36 bytes, UUID-shaped, unique per (kind, i) */
    snprintf(out, 37, "%c%07llx-0000-4000-8000-%012llx", kind,
             (unsigned long long)(i & 0xfffffff),
             (unsigned long long)(i * 0x9e3779b97f4a7c15ULL >> 16));
}

static int count_rows(void *arg, const struct engine_row *r)
{
    (void)r;
    ++*(long *)arg;
    return 0;
}

struct expect {
    const char *dev;
};
static int check_dev(void *arg, const struct engine_row *r)
{
    struct expect *x = arg;
    return (r->device_len == 36 && memcmp(r->device, x->dev, 36) == 0) ? 0 : 99;
}

static void test_round_trip(void)
{
    long rows = 1000000;
#ifdef SANITIZED
    rows = 200000;
#endif
    if (getenv("ICS_TEST_ROWS"))
        rows = atol(getenv("ICS_TEST_ROWS"));
    /* Model: row r belongs to device r / 3 (3 rows each), URI r % 997. */
    unsigned char *present = calloc((size_t)rows, 1);
    CHECK(present);
    engine_t *e = NULL;
    CHECK_EQ(engine_create(&e, NULL), 0);
    char d[40], t[40], u[64];
    uint64_t lsn = 0;
    for (long r = 0; r < rows; r++) {
        key(d, 'd', (uint64_t)r / 3);
        key(t, 't', (uint64_t)r);
        snprintf(u, sizeof u, "https://svc%ld.example.com", r % 997);
        struct engine_map_req rq = {.dev = d, .dev_len = 36, .uri = u,
                                    .uri_len = strlen(u), .uti = t,
                                    .uti_len = 36};
        CHECK_EQ(engine_map(e, &rq, ++lsn, NULL), 0);
        present[r] = 1;
    }
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, (uint64_t)rows);
    CHECK_EQ(st.devices, (uint64_t)(rows + 2) / 3);
    CHECK_EQ(st.uris, rows < 997 ? rows : 997);
    /* Delete every row whose index is ≡ 1 (mod 2), by binding or by row. */
    for (long r = 1; r < rows; r += 2) {
        key(d, 'd', (uint64_t)r / 3);
        key(t, 't', (uint64_t)r);
        snprintf(u, sizeof u, "https://svc%ld.example.com", r % 997);
        if (r % 4 == 1)
            CHECK_EQ(engine_demap_binding(e, u, strlen(u), t, 36, ++lsn, NULL,
                                          NULL), 1);
        else
            CHECK_EQ(engine_demap(e, d, 36, u, strlen(u), t, 36, 0, ++lsn,
                                  NULL, NULL), 0);
        present[r] = 0;
    }
    /* Every device's row count and every binding matches the model. */
    for (long dv = 0; dv * 3 < rows; dv++) {
        long want = 0, got = 0;
        for (long r = dv * 3; r < dv * 3 + 3 && r < rows; r++)
            want += present[r];
        key(d, 'd', (uint64_t)dv);
        int rc = engine_inquire_device(e, d, 36, count_rows, &got, NULL);
        if (want == 0)
            CHECK_EQ(rc, -ENOENT);
        else {
            CHECK_EQ(rc, want);
            CHECK_EQ(got, want);
        }
    }
    for (long r = 0; r < rows; r++) {
        key(d, 'd', (uint64_t)r / 3);
        key(t, 't', (uint64_t)r);
        snprintf(u, sizeof u, "https://svc%ld.example.com", r % 997);
        struct expect x = {d};
        int rc = engine_inquire_binding(e, u, strlen(u), t, 36, check_dev, &x,
                                        NULL);
        CHECK_EQ(rc, present[r] ? 1 : -ENOENT);
    }
    engine_stats(e, &st);
    CHECK_EQ(st.rows, (uint64_t)(rows + 1) / 2);
    /* Delete the rest by device; the table ends empty. */
    for (long dv = 0; dv * 3 < rows; dv++) {
        key(d, 'd', (uint64_t)dv);
        long want = 0;
        for (long r = dv * 3; r < dv * 3 + 3 && r < rows; r++)
            want += present[r];
        int rc = engine_demap_device(e, d, 36, lsn + 1, NULL, NULL);
        CHECK_EQ(rc, want ? want : -ENOENT);
        if (rc > 0)
            lsn++;
    }
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 0);
    CHECK_EQ(st.devices, 0);
    CHECK_EQ(st.uris, 0);
    CHECK_EQ(st.last_lsn, lsn);
    CHECK(st.resizes > 0);
    printf("  round trip: %ld rows, %llu resizes\n", rows,
           (unsigned long long)st.resizes);
    engine_destroy(e);
    free(present);
}

int main(void)
{
    test_create_fail();
    test_fail_nth(op_new_device, "map new device", 0);
    test_fail_nth(op_new_device, "map new device with history", 4);
    test_fail_nth(op_add_row, "map another row", 0);
    test_fail_nth(op_prefs, "set prefs", 0);
    test_fail_nth(op_demap, "demap", 0);
    test_fail_nth(op_demap_dev, "demap device with history", 2);
    test_fail_nth(op_demap_service, "demap service", 0);
    test_fail_nth(op_history, "history add", 3);
    test_round_trip();
    printf("test_engine_model: ok\n");
    return 0;
}
