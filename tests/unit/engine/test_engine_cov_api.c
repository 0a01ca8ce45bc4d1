/*
 * test_engine_cov_api.c — engine API edges the other tests leave out: a
 * row callback that stops engine_iterate (the cursor resumes at the same
 * device), engine_inquire_binding and engine_collect_expired stopped by
 * their callback, the LSN an inquiry by binding reports, NULL/oversized
 * arguments of the demap and info calls, ENGINE_INQ_RECORD (a hint that
 * changes no result), and engine_destroy(NULL).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "test.h"

static void map(engine_t *e, const char *dev, const char *uri, const char *uti,
                uint32_t exp, uint64_t lsn)
{
    struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                "own", 3, exp, 0};
    CHECK_EQ(engine_map(e, &rq, lsn, NULL), 0);
}

struct visit { int n, stop_at; char last[64]; };
static int visit_cb(void *arg, const struct engine_row *r)
{
    struct visit *v = arg;
    v->n++;
    snprintf(v->last, sizeof(v->last), "%.*s/%.*s", r->device_len, r->device, r->uti_len,
             r->uti);
    return v->n == v->stop_at ? 42 : 0;
}

static int first_dev_cb(void *arg, const struct engine_row *r)
{
    char *out = arg;
    if (!out[0])
        snprintf(out, 64, "%.*s/", r->device_len, r->device);
    return 0;
}

static void iterate_stop(engine_t *e)
{
    /* 40 devices x 2 rows: stop on the 7th row. */
    struct visit v = {0, 7, ""};
    uint64_t cur = 0;
    CHECK_EQ(engine_iterate(e, &cur, 1000, visit_cb, &v), 42);
    CHECK(cur != 0);
    /* Resuming starts at the stopped device's first row (a device's rows
     * are never split), so the rows of that device seen before the stop
     * (k = 1 or 2, the stopped row included) come again: 80 + k in all. */
    char first[64] = "";
    uint64_t c2 = cur;
    CHECK(engine_iterate(e, &c2, 1, first_dev_cb, first) >= 1);
    CHECK(strncmp(v.last, first, strlen(first)) == 0);
    struct visit rest = {0, -1, ""};
    int calls = 0;
    do {
        int before = rest.n;
        int k = engine_iterate(e, &cur, 5, visit_cb, &rest);
        CHECK(k >= 0);
        CHECK_EQ(k, rest.n - before);
        calls++;
    } while (cur != 0);
    CHECK(calls > 1);
    CHECK(v.n + rest.n == 81 || v.n + rest.n == 82);
    /* max 0 visits nothing. */
    cur = 0;
    CHECK_EQ(engine_iterate(e, &cur, 0, visit_cb, &rest), 0);
}

static void api_edges(void)
{
    engine_t *e;
    struct engine_config cfg = {.initial_devices = 4, .history_len = 4, .hash_seed = 7};
    CHECK_EQ(engine_create(&e, &cfg), 0);
    engine_thread_online(e);
    char dev[16], uti[16];
    uint64_t lsn = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(dev, sizeof(dev), "dev%02d", i);
        snprintf(uti, sizeof(uti), "a%02d", i);
        map(e, dev, "https://s", uti, i < 10 ? 100 : 0, ++lsn);
        snprintf(uti, sizeof(uti), "b%02d", i);
        map(e, dev, "https://s", uti, i < 10 ? 100 : 0, ++lsn);
    }
    iterate_stop(e);

    /* Inquiry by binding: the LSN reported, a callback that stops. */
    uint64_t at = 0;
    struct visit v = {0, 1, ""};
    CHECK_EQ(engine_inquire_binding(e, "https://s", 9, "b03", 3, visit_cb, &v, &at), 42);
    CHECK_EQ(at, lsn);
    CHECK(strcmp(v.last, "dev03/b03") == 0);
    v.stop_at = -1;
    CHECK_EQ(engine_inquire_binding(e, "https://s", 9, "b03", 3, visit_cb, &v, NULL), 1);
    CHECK_EQ(engine_inquire_binding(e, "https://s", 9, "zz", 2, visit_cb, &v, &at), -ENOENT);

    /* The record hint: same rows, same count. */
    struct visit a = {0, -1, ""}, b = {0, -1, ""};
    CHECK_EQ(engine_inquire_device_ex(e, "dev05", 5, visit_cb, &a, NULL, ENGINE_INQ_RECORD), 2);
    CHECK_EQ(engine_inquire_device_ex(e, "dev05", 5, visit_cb, &b, NULL, 0), 2);
    CHECK(a.n == 2 && b.n == 2 && strcmp(a.last, b.last) == 0);

    /* Expired rows (expires_at 100 on the first 10 devices): stopped after
     * 3, then all 20 at once. */
    struct visit x = {0, 3, ""};
    CHECK_EQ(engine_collect_expired(e, 1000, 100, visit_cb, &x), 42);
    CHECK_EQ(x.n, 3);
    x.n = 0;
    x.stop_at = -1;
    CHECK_EQ(engine_collect_expired(e, 1000, 100, visit_cb, &x), 20);
    x.n = 0;
    CHECK_EQ(engine_collect_expired(e, 99, 100, visit_cb, &x), 0);

    /* Bad arguments change nothing. */
    static char longid[ENGINE_ID_MAX + 2];
    memset(longid, 'x', sizeof(longid) - 1);
    CHECK_EQ(engine_demap_device(e, NULL, 3, ++lsn, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap_device(e, longid, ENGINE_ID_MAX + 1, lsn, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap_binding(e, "https://s", 9, NULL, 3, lsn, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap_binding(e, "https://s", 9, "a01", 0, lsn, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_demap_binding(e, NULL, 9, "a01", 3, lsn, NULL, NULL), -EINVAL);
    CHECK_EQ(engine_device_info(e, NULL, 3, visit_cb, &v), -EINVAL);
    CHECK_EQ(engine_device_info(e, "dev01", 0, visit_cb, &v), -EINVAL);
    CHECK_EQ(engine_demap_device(e, "nodev", 5, lsn, NULL, NULL), -ENOENT);
    struct engine_stats st;
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 80);
    CHECK_EQ(st.last_lsn, 80);
    /* And the good calls after them still work. */
    CHECK_EQ(engine_demap_binding(e, "https://s", 9, "a01", 3, 81, NULL, NULL), 1);
    CHECK_EQ(engine_demap_device(e, "dev01", 5, 82, NULL, NULL), 1);
    engine_stats(e, &st);
    CHECK_EQ(st.rows, 78);
    CHECK_EQ(st.last_lsn, 82);

    engine_thread_offline(e);
    engine_destroy(e);
    engine_destroy(NULL);
    printf("api edges: ok\n");
}

int main(void)
{
    api_edges();
    return 0;
}
