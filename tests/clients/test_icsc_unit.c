/*
 * test_icsc_unit.c — the C client library against the canned fake server
 * (fake_server.c) and its pure codec: every typed call decodes what the
 * server sent, wire statuses come back as ICSC_S_*, a 10,000-request
 * pipeline completes in order, events arrive by poll and by callback, a
 * silent server times out, a dropped change reports an unknown outcome while
 * a dropped read is retried on a fresh connection.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fake_server.h"
#include "icsc.h"
#include "test.h"

static long long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_codec(void)
{
    uint8_t buf[64];
    icsc_frame f;
    icsc_encode_header(buf, ICSC_MAGIC_RES, ICSC_OP_VERSION, 2, 1, 0x24, 6, 0xdeadbeef, 77);
    memcpy(buf + 24, "\x01kkabc", 6);
    CHECK_EQ(icsc_decode_frame(buf, 29, 1 << 20, &f), 0);        /* need more */
    CHECK_EQ(icsc_decode_frame(buf, 30, 1 << 20, &f), 30);
    CHECK_EQ(f.opcode, ICSC_OP_VERSION);
    CHECK_EQ(f.status, 0x24);
    CHECK_EQ(f.opaque, 0xdeadbeef);
    CHECK_EQ(f.cas, 77);
    CHECK_EQ(f.extras_len, 1);
    CHECK_EQ(f.key_len, 2);
    CHECK_MEM(f.key, "kk", 2);
    CHECK_EQ(f.value_len, 3);
    CHECK_MEM(f.value, "abc", 3);
    CHECK_EQ(icsc_decode_frame(buf, 30, 5, &f), -EMSGSIZE);
    buf[0] = 0x80; /* a request magic is not a response */
    CHECK_EQ(icsc_decode_frame(buf, 1, 1 << 20, &f), -EPROTO);
    buf[0] = 0x81;
    buf[5] = 1; /* data type must be 0 */
    CHECK_EQ(icsc_decode_frame(buf, 30, 1 << 20, &f), -EPROTO);
    buf[5] = 0;
    buf[3] = 9; /* key longer than the body */
    CHECK_EQ(icsc_decode_frame(buf, 30, 1 << 20, &f), -EPROTO);

    /* value validation: a count that overruns its container */
    uint8_t rows[] = {0, 0, 0, 2, 0, 1, 'u', 0, 1, 't', 0, 0, 0, 0};
    CHECK_EQ(icsc_validate_value(ICSC_OP_INQUIRE_DEVICE, 0, rows, sizeof rows), -EPROTO);
    rows[3] = 1;
    CHECK_EQ(icsc_validate_value(ICSC_OP_INQUIRE_DEVICE, 0, rows, sizeof rows), 0);
    CHECK_EQ(icsc_validate_value(ICSC_OP_MAP_REQUEST, 0, rows, 15), -EPROTO);
    CHECK_EQ(icsc_validate_value(ICSC_EV_MAP_RESULT, 1, rows + 4, 3), 0);
    CHECK_EQ(icsc_validate_value(0x99, 1, rows, 3), -EPROTO);
    uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    CHECK_EQ(icsc_validate_value(ICSC_OP_HISTORY, 0, huge, 4), -EPROTO);
    CHECK_EQ(icsc_validate_value(ICSC_OP_PRINCIPAL_LIST, 0, huge, 4), -EPROTO);

    icsc_rd r;
    uint32_t v32;
    uint16_t v16;
    icsc_rd_init(&r, "\x00\x01", 2);
    CHECK_EQ(icsc_rd_u16(&r, &v16), 0);
    CHECK_EQ(v16, 1);
    CHECK_EQ(icsc_rd_u32(&r, &v32), -EPROTO);
    CHECK_EQ(icsc_rd_u16(&r, &v16), -EPROTO); /* sticky */

    CHECK_EQ(icsc_roles_parse("admin,tpsp"), ICSC_ROLE_ADMIN | ICSC_ROLE_TPSP);
    CHECK_EQ(icsc_roles_parse("validator"), ICSC_ROLE_VALIDATOR);
    CHECK_EQ(icsc_roles_parse("admin,root"), -EINVAL);
    CHECK(strstr(icsc_strerror(ICSC_S_ACCESS_DENIED), "ACCESS_DENIED"));
    CHECK(strstr(icsc_strerror(ICSC_E_UNKNOWN_OUTCOME), "unknown outcome"));
    CHECK(strstr(icsc_strerror(-ETIMEDOUT), "timed out"));
}

static icsc *connect_to(fake_server *s, const char *secret, int timeout_ms, int *rc)
{
    icsc_opts o = {.host = "127.0.0.1", .port = s->port, .user = secret ? "admin" : NULL,
                   .secret = secret, .timeout_ms = timeout_ms};
    icsc *c = NULL;
    *rc = icsc_connect(&c, &o);
    return c;
}

static int nstat;
static void stat_cb(void *arg, const char *name, const char *value)
{
    if (strcmp(name, "pid") == 0)
        CHECK(strcmp(value, "42") == 0);
    nstat++;
}

static void test_calls(void)
{
    fake_server s;
    int rc;
    CHECK_EQ(fake_start(&s, FAKE_ANSWER), 0);

    icsc *bad = connect_to(&s, "wrong", 2000, &rc);
    CHECK(bad == NULL);
    CHECK_EQ(rc, ICSC_S_AUTH_ERROR);

    icsc *c = connect_to(&s, "s3cret", 2000, &rc);
    CHECK_EQ(rc, 0);
    CHECK(c);
    CHECK_EQ(icsc_noop(c), 0);

    char *ver = NULL;
    CHECK_EQ(icsc_version(c, &ver), 0);
    CHECK(strcmp(ver, "1.0.0 fake") == 0);
    free(ver);

    nstat = 0;
    CHECK_EQ(icsc_stat(c, NULL, stat_cb, NULL), 0);
    CHECK_EQ(nstat, 2);

    icsc_rows rows;
    CHECK_EQ(icsc_inquire_device(c, "dev1", &rows), 0);
    CHECK_EQ(rows.n, 2);
    CHECK(strcmp(rows.v[0].uri, "https://a.example/x") == 0);
    CHECK(strcmp(rows.v[1].uti, "uti-b") == 0);
    CHECK_EQ(rows.v[1].expires_at, 99);
    CHECK_EQ(rows.lsn, 3);
    icsc_rows_free(&rows);
    CHECK_EQ(icsc_get(c, "dev1", &rows), 0);
    CHECK_EQ(rows.n, 2);
    icsc_rows_free(&rows);

    CHECK_EQ(icsc_inquire_device(c, "nope", &rows), ICSC_S_NOT_FOUND);
    CHECK(strcmp(icsc_last_message(c), "no such device") == 0);

    char *dev = NULL;
    CHECK_EQ(icsc_inquire_binding(c, "https://a.example/x", "uti-a", &dev), 0);
    CHECK(strcmp(dev, "dev1") == 0);
    free(dev);

    uint64_t lsn1 = 0, lsn2 = 0;
    CHECK_EQ(icsc_map(c, "dev1", "https://a.example/x", "uti-a", 0, NULL, 0, &lsn1), 0);
    CHECK_EQ(icsc_map(c, "dev1", "https://a.example/x", "uti-a", 60, "fridge-maker", 0, &lsn2), 0);
    CHECK(lsn2 == lsn1 + 1);
    CHECK_EQ(icsc_demap(c, "dev1", "https://a.example/x", "uti-a", 0, &lsn1), 0);
    CHECK(lsn1 > lsn2);

    uint8_t rid[16];
    CHECK_EQ(icsc_map_request(c, "SER-1", "https://shop.example/o", "uti-9", 0, rid), 0);
    CHECK_MEM(rid, "0123456789abcdef", 16);
    CHECK_EQ(icsc_map_confirm(c, rid, "dev1", &lsn1), 0);
    CHECK_EQ(icsc_map_reject(c, rid, "user said no"), 0);

    uint32_t removed = 0;
    CHECK_EQ(icsc_demap_device(c, "dev1", &removed), 0);
    CHECK_EQ(removed, 5);
    CHECK_EQ(icsc_demap_service(c, "https://a.example/", &removed), 0);
    CHECK_EQ(icsc_demap_binding(c, "https://a.example/x", "uti-a"), 0);

    CHECK_EQ(icsc_export(c, 0, 100, &rows), 0);
    CHECK_EQ(rows.n, 1);
    CHECK(strcmp(rows.v[0].device, "devA") == 0);
    CHECK_EQ(rows.next_cursor, 1);
    icsc_rows_free(&rows);
    CHECK_EQ(icsc_export(c, 1, 100, &rows), 0);
    CHECK(strcmp(rows.v[0].device, "devB") == 0);
    CHECK_EQ(rows.next_cursor, 0);
    icsc_rows_free(&rows);

    uint8_t *batch = NULL;
    size_t blen = 0;
    CHECK_EQ(icsc_key_issue(c, 3, &batch, &blen), 0);
    CHECK_EQ(blen, 8 + 1 + 2 + 3 * 16 + 32);
    CHECK_EQ(icsc_key_validate(c, batch, blen), 0);
    batch[blen - 1] ^= 1;
    CHECK_EQ(icsc_key_validate(c, batch, blen), ICSC_S_BAD_SIGNATURE);
    free(batch);
    CHECK_EQ(icsc_key_issue(c, 0, &batch, &blen), ICSC_S_EINVAL);

    icsc_hist h;
    CHECK_EQ(icsc_history(c, "dev1", 10, &h), 0);
    CHECK_EQ(h.n, 1);
    CHECK_EQ(h.v[0].event, 3);
    CHECK(strcmp(h.v[0].principal, "shop") == 0);
    icsc_history_free(&h);

    char *who = NULL, *role = NULL;
    CHECK_EQ(icsc_whoami(c, &who, &role), 0);
    CHECK(strcmp(who, "admin") == 0 && strcmp(role, "admin") == 0);
    free(who);
    free(role);

    icsc_prefs p = {0}, q;
    char *allow[] = {"https://shop.example/"};
    char *deny[] = {"https://ads.example/", "https://spy.example/"};
    icsc_window w[] = {{0x1f, 480, 1080}};
    p.retention_s = 3600;
    p.allow = allow;
    p.nallow = 1;
    p.deny = deny;
    p.ndeny = 2;
    p.windows = w;
    p.nwindows = 1;
    CHECK_EQ(icsc_prefs_get(c, "dev1", &q), ICSC_S_NOT_FOUND);
    CHECK_EQ(icsc_prefs_set(c, "dev1", &p), 0);
    CHECK_EQ(icsc_prefs_get(c, "dev1", &q), 0);
    CHECK_EQ(q.retention_s, 3600);
    CHECK_EQ(q.nallow, 1);
    CHECK_EQ(q.ndeny, 2);
    CHECK(strcmp(q.deny[1], "https://spy.example/") == 0);
    CHECK_EQ(q.nwindows, 1);
    CHECK_EQ(q.windows[0].end_min, 1080);
    icsc_prefs_free(&q);

    const char *scopes[] = {"FRG-"};
    CHECK_EQ(icsc_principal_set(c, "fridge-maker", ICSC_ROLE_IOT_SP, "pw", NULL, scopes, 1), 0);
    icsc_principals pl;
    CHECK_EQ(icsc_principal_list(c, &pl), 0);
    CHECK_EQ(pl.n, 2);
    CHECK(strcmp(pl.v[1].name, "fridge-maker") == 0);
    CHECK_EQ(pl.v[1].roles, ICSC_ROLE_IOT_SP);
    CHECK_EQ(pl.v[1].nscopes, 2);
    CHECK(strcmp(pl.v[1].scopes[1], "FRX-") == 0);
    icsc_principals_free(&pl);
    CHECK_EQ(icsc_principal_del(c, "fridge-maker"), 0);
    CHECK_EQ(icsc_snapshot(c, &lsn1), 0);

    /* Every wire status comes back as itself, with the server's message. */
    static const int statuses[] = {ICSC_S_NOT_FOUND, ICSC_S_EXISTS, ICSC_S_TOO_LARGE,
        ICSC_S_EINVAL, ICSC_S_AUTH_ERROR, ICSC_S_ACCESS_DENIED, ICSC_S_UNKNOWN_COMMAND,
        ICSC_S_ENOMEM, ICSC_S_NOT_SUPPORTED, ICSC_S_INTERNAL, ICSC_S_TMPFAIL,
        ICSC_S_KEY_ROTATED, ICSC_S_BAD_SIGNATURE};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        char key[32], msg[32];
        snprintf(key, sizeof key, "status:%d", statuses[i]);
        snprintf(msg, sizeof msg, "canned %d", statuses[i]);
        CHECK_EQ(icsc_inquire_device(c, key, &rows), statuses[i]);
        CHECK(strcmp(icsc_last_message(c), msg) == 0);
        CHECK_EQ(icsc_map(c, key, "u", "t", 0, NULL, 0, NULL), statuses[i]);
        CHECK(strcmp(icsc_strerror(statuses[i]), "unknown wire status") != 0);
    }
    CHECK_EQ(icsc_call(c, 0x01 /* SET */, NULL, 0, "k", 1, NULL, 0, 0, NULL, NULL),
             ICSC_S_UNKNOWN_COMMAND);
    CHECK_EQ(icsc_reconnects(c), 0);
    icsc_close(c);
    fake_stop(&s);
}

static void test_pipeline(void)
{
    fake_server s;
    int rc;
    CHECK_EQ(fake_start(&s, FAKE_ANSWER), 0);
    icsc *c = connect_to(&s, "s3cret", 5000, &rc);
    CHECK(c);
    icsc_batch *b = icsc_batch_new(c);
    char dev[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(dev, sizeof dev, "dev-%d", i);
        int idx = i % 10 == 9 ? icsc_batch_add_inquire_device(b, i % 20 == 19 ? "dev1" : dev)
                              : icsc_batch_add_map(b, dev, "https://a.example/x", dev, 0);
        CHECK_EQ(idx, i);
    }
    CHECK_EQ(icsc_batch_flush(b), 0);
    CHECK_EQ(icsc_batch_count(b), 10000);
    uint64_t last = 0;
    for (size_t i = 0; i < 10000; i++) {
        if (i % 10 == 9) {
            CHECK_EQ(icsc_batch_status(b, i), i % 20 == 19 ? 0 : ICSC_S_NOT_FOUND);
            size_t len;
            const uint8_t *v = icsc_batch_value(b, i, &len);
            if (i % 20 == 19)
                CHECK(len > 4 && v[3] == 2);
            continue;
        }
        CHECK_EQ(icsc_batch_status(b, i), 0);
        CHECK(icsc_batch_lsn(b, i) > last); /* in request order */
        last = icsc_batch_lsn(b, i);
    }
    /* A batch can be reused. */
    icsc_batch_reset(b);
    CHECK_EQ(icsc_batch_add_demap(b, "dev-1", "https://a.example/x", "dev-1"), 0);
    CHECK_EQ(icsc_batch_add_inquire_binding(b, "https://a.example/x", "dev-1"), 1);
    CHECK_EQ(icsc_batch_flush(b), 0);
    size_t len;
    const uint8_t *v = icsc_batch_value(b, 1, &len);
    CHECK(len == 4 && memcmp(v, "dev1", 4) == 0);
    /* A batch broken mid-way: the change after the drop has an unknown outcome. */
    icsc_batch_reset(b);
    icsc_batch_add_map(b, "a", "u", "t", 0);
    icsc_batch_add_map(b, "drop", "u", "t", 0);
    icsc_batch_add_map(b, "b", "u", "t", 0);
    CHECK(icsc_batch_flush(b) < 0);
    CHECK_EQ(icsc_batch_status(b, 0), 0);
    CHECK_EQ(icsc_batch_status(b, 1), ICSC_E_UNKNOWN_OUTCOME);
    CHECK_EQ(icsc_batch_status(b, 2), ICSC_E_UNKNOWN_OUTCOME);
    icsc_batch_free(b);

    /* The streaming pipeline: a window of 100 in flight over 5,000 requests,
     * answers in order (the fake's MAP LSNs increase by one each). */
    uint64_t first = 0, seen = 0;
    size_t sent = 0;
    while (seen < 5000) {
        while (sent < 5000 && icsc_pipe_in_flight(c) < 100) {
            char mv[] = "\0\1u\0\1t";
            CHECK_EQ(icsc_pipe_send(c, ICSC_OP_MAP, NULL, 0, "pd", 2, mv, sizeof mv - 1, 0), 0);
            sent++;
        }
        icsc_frame f;
        CHECK_EQ(icsc_pipe_recv(c, &f, -1), 0);
        CHECK_EQ(f.status, 0);
        if (!first)
            first = f.cas;
        CHECK_EQ(f.cas, first + seen);
        seen++;
    }
    CHECK_EQ(icsc_pipe_in_flight(c), 0);
    icsc_frame f;
    CHECK_EQ(icsc_pipe_recv(c, &f, 10), -ENOENT);
    CHECK_EQ(icsc_noop(c), 0); /* ordinary calls work after it */
    icsc_close(c);
    fake_stop(&s);
}

static int ncb;
static void ev_cb(void *arg, const icsc_event *ev)
{
    CHECK_EQ(ev->code, ICSC_EV_MAP_PENDING);
    CHECK(strcmp(ev->a, "SER-1") == 0);
    ncb++;
}

static void test_watch(void)
{
    fake_server s;
    int rc;
    CHECK_EQ(fake_start(&s, FAKE_ANSWER), 0);
    icsc *c = connect_to(&s, "s3cret", 2000, &rc);
    CHECK(c);
    icsc_event ev;
    CHECK_EQ(icsc_poll_event(c, &ev, 50), -ETIMEDOUT);
    CHECK_EQ(icsc_watch(c, ICSC_W_MAP_PENDING | ICSC_W_DEMAPPED), 0);
    CHECK_EQ(icsc_poll_event(c, &ev, 1000), 0);
    CHECK_EQ(ev.code, ICSC_EV_DEMAPPED);
    CHECK_EQ(ev.lsn, 11);
    CHECK(ev.key_len == 4 && memcmp(ev.key, "dev1", 4) == 0);
    CHECK(strcmp(ev.a, "https://a.example/x") == 0 && strcmp(ev.b, "uti-a") == 0);
    icsc_event_clear(&ev);
    /* An event interleaved before a response is kept for poll. */
    CHECK_EQ(icsc_map(c, "dev2", "u", "t", 0, NULL, 0, NULL), 0);
    CHECK_EQ(icsc_poll_event(c, &ev, 0), 0);
    CHECK_EQ(ev.code, ICSC_EV_MAP_PENDING);
    CHECK(ev.key_len == 16);
    CHECK(strcmp(ev.c, "uti-9") == 0);
    icsc_event_clear(&ev);
    /* With a callback, it is delivered during the call. */
    icsc_set_event_cb(c, ev_cb, NULL);
    CHECK_EQ(icsc_map(c, "dev3", "u", "t", 0, NULL, 0, NULL), 0);
    CHECK_EQ(ncb, 1);
    /* WATCH is re-armed after a reconnect: the fake sends its DEMAPPED again. */
    icsc_set_event_cb(c, NULL, NULL);
    CHECK_EQ(icsc_call(c, ICSC_OP_QUIT, NULL, 0, NULL, 0, NULL, 0, 0, NULL, NULL), 0);
    CHECK_EQ(icsc_noop(c), 0);
    CHECK_EQ(icsc_reconnects(c), 1);
    CHECK_EQ(icsc_poll_event(c, &ev, 1000), 0);
    CHECK_EQ(ev.code, ICSC_EV_DEMAPPED);
    icsc_event_clear(&ev);
    icsc_close(c);
    fake_stop(&s);
}

static void test_timeout(void)
{
    fake_server s;
    int rc;
    CHECK_EQ(fake_start(&s, FAKE_SILENT), 0);
    /* SASL at connect: the handshake itself times out. */
    long long t0 = ms_now();
    icsc *c = connect_to(&s, "s3cret", 300, &rc);
    CHECK(c == NULL);
    CHECK_EQ(rc, -ETIMEDOUT);
    CHECK(ms_now() - t0 < 3000);
    c = connect_to(&s, NULL, 300, &rc);
    CHECK_EQ(rc, 0);
    t0 = ms_now();
    CHECK_EQ(icsc_noop(c), -ETIMEDOUT);
    CHECK(ms_now() - t0 >= 250 && ms_now() - t0 < 3000);
    /* A change that timed out may have been applied: unknown outcome. */
    CHECK_EQ(icsc_map(c, "d", "u", "t", 0, NULL, 0, NULL), ICSC_E_UNKNOWN_OUTCOME);
    icsc_batch *b = icsc_batch_new(c);
    icsc_batch_add_inquire_device(b, "d");
    t0 = ms_now();
    CHECK_EQ(icsc_batch_flush(b), -ETIMEDOUT);
    CHECK(ms_now() - t0 < 3000);
    CHECK_EQ(icsc_batch_status(b, 0), -ETIMEDOUT);
    icsc_batch_free(b);
    icsc_close(c);
    fake_stop(&s);

    /* Nobody listening: refused, quickly. */
    fake_server gone;
    CHECK_EQ(fake_start(&gone, FAKE_ANSWER), 0);
    uint16_t port = gone.port;
    fake_stop(&gone);
    icsc_opts o = {.host = "127.0.0.1", .port = port, .timeout_ms = 1000};
    CHECK_EQ(icsc_connect(&c, &o), -ECONNREFUSED);
}

static void test_reconnect(void)
{
    fake_server s;
    int rc;
    CHECK_EQ(fake_start(&s, FAKE_ANSWER), 0);
    icsc *c = connect_to(&s, "s3cret", 2000, &rc);
    CHECK(c);
    /* The connection breaks after a change was sent: never re-sent. */
    CHECK_EQ(icsc_map(c, "drop", "u", "t", 0, NULL, 0, NULL), ICSC_E_UNKNOWN_OUTCOME);
    CHECK_EQ(atomic_load(&s.connections), 1);
    /* The next call reconnects (and re-authenticates). */
    CHECK_EQ(icsc_noop(c), 0);
    CHECK_EQ(icsc_reconnects(c), 1);
    /* A read whose connection breaks is retried once on a fresh one. */
    icsc_rows rows;
    CHECK_EQ(icsc_inquire_device(c, "dropread", &rows), 0);
    CHECK_EQ(rows.n, 2);
    icsc_rows_free(&rows);
    CHECK_EQ(icsc_reconnects(c), 2);
    /* The server closed an idle connection: a change goes on a new one. */
    CHECK_EQ(icsc_call(c, ICSC_OP_QUIT, NULL, 0, NULL, 0, NULL, 0, 0, NULL, NULL), 0);
    usleep(100 * 1000);
    CHECK_EQ(icsc_map(c, "d", "u", "t", 0, NULL, 0, NULL), 0);
    CHECK_EQ(icsc_reconnects(c), 3);
    icsc_close(c);

    /* With reconnect off, a broken connection is reported. */
    icsc_opts o = {.host = "127.0.0.1", .port = s.port, .user = "admin", .secret = "s3cret",
                   .timeout_ms = 2000, .no_reconnect = 1};
    CHECK_EQ(icsc_connect(&c, &o), 0);
    CHECK_EQ(icsc_map(c, "drop", "u", "t", 0, NULL, 0, NULL), ICSC_E_UNKNOWN_OUTCOME);
    CHECK_EQ(icsc_noop(c), -ENOTCONN);
    icsc_close(c);
    fake_stop(&s);
}

int main(void)
{
    test_codec();
    test_calls();
    test_pipeline();
    test_watch();
    test_timeout();
    test_reconnect();
    printf("test_icsc_unit: ok\n");
    return 0;
}
