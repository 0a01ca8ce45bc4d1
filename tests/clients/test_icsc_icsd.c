/*
 * test_icsc_icsd.c — the C client library against a real icsd (argv[1]):
 * every operation, the statuses the server can be made to send, a 10,000
 * request pipeline, WATCH in the two-phase flow, a timeout while the server
 * is stopped (SIGSTOP), reconnect after a restart, and TLS with a client
 * certificate. Exit 77 when icsd is not built or does not answer yet; a
 * sub-test whose opcode the server does not serve yet is reported skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "icsc.h"
#include "test.h"

extern char **environ;

static const char *icsd_bin;
static char tmpdir[256];
static char secret[128];
static int ran, skipped;

typedef struct server { pid_t pid; uint16_t port, tls_port; char data[300]; const char *extra[10]; } server;

/* A failed CHECK exits: never leave an icsd behind. */
static pid_t live[4];
static void kill_live(void)
{
    for (int i = 0; i < 4; i++)
        if (live[i] > 0) {
            kill(live[i], SIGCONT);
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
}
static void track(pid_t pid, int on)
{
    for (int i = 0; i < 4; i++)
        if (on ? live[i] == 0 : live[i] == pid) {
            live[i] = on ? pid : 0;
            return;
        }
}

static int read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

static int server_start(server *s, uint16_t port)
{
    char pf[400], portarg[16];
    /* (static buffer: the port file holds at most two short lines) */
    snprintf(pf, sizeof pf, "%s/port", s->data);
    unlink(pf);
    mkdir(s->data, 0700);
    snprintf(portarg, sizeof portarg, "%u", port);
    const char *argv[20] = {icsd_bin, "--data", s->data, "--port", portarg, "--port-file", pf};
    int n = 7;
    for (int i = 0; s->extra[i]; i++)
        argv[n++] = s->extra[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    char log[400];
    snprintf(log, sizeof log, "%s.log", s->data);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&s->pid, icsd_bin, &fa, NULL, (char **)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        return -rc;
    track(s->pid, 1);
    for (int i = 0; i < 300; i++) {
        char buf[32];
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            track(s->pid, 0);
            s->pid = 0;
            return -ECHILD;
        }
        /* Line 1: the port; with TLS also a line "tls=PORT". */
        if (read_file(pf, buf, sizeof buf) > 0 && atoi(buf) > 0 &&
            (!s->extra[0] || strstr(buf, "tls="))) {
            s->port = (uint16_t)atoi(buf);
            char *t = strstr(buf, "tls=");
            s->tls_port = t ? (uint16_t)atoi(t + 4) : 0;
            return 0;
        }
        usleep(50 * 1000);
    }
    return -ETIMEDOUT;
}

static int server_stop(server *s)
{
    int st = 0;
    if (s->pid <= 0)
        return 0;
    track(s->pid, 0);
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(50 * 1000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return -1;
}

static int load_secret(const server *s)
{
    char path[400], buf[1024];
    snprintf(path, sizeof path, "%s/admin.cred", s->data);
    if (read_file(path, buf, sizeof buf) <= 0)
        return -1;
    char *p = strstr(buf, "secret=");
    if (!p)
        return -1;
    p += 7;
    size_t n = strcspn(p, "\r\n");
    if (n >= sizeof secret)
        return -1;
    memcpy(secret, p, n);
    secret[n] = 0;
    return 0;
}

static icsc *admin(const server *s, int timeout_ms)
{
    icsc_opts o = {.host = "127.0.0.1", .port = s->port, .user = "admin", .secret = secret,
                   .timeout_ms = timeout_ms};
    icsc *c = NULL;
    int rc = icsc_connect(&c, &o);
    if (rc)
        fprintf(stderr, "admin connect: %s\n", icsc_strerror(rc));
    return c;
}

static icsc *as_user(const server *s, const char *user, const char *pw)
{
    icsc_opts o = {.host = "127.0.0.1", .port = s->port, .user = user, .secret = pw, .timeout_ms = 5000};
    icsc *c = NULL;
    CHECK_EQ(icsc_connect(&c, &o), 0);
    return c;
}

/* A sub-test skips when the server answers that it does not serve an opcode. */
#define NEED(expr)                                                                 \
    do {                                                                           \
        int _rc = (expr);                                                          \
        if (_rc != 0) {                                                            \
            fprintf(stderr, "%s:%d: %s = %d (%s: %s)\n", __FILE__, __LINE__, #expr, \
                    _rc, icsc_strerror(_rc), "");                                  \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

static void t_operations(const server *s)
{
    icsc *c = admin(s, 10000);
    CHECK(c);
    char *ver = NULL, *who = NULL, *role = NULL;
    CHECK_EQ(icsc_noop(c), 0);
    CHECK_EQ(icsc_version(c, &ver), 0);
    CHECK(atoi(ver) >= 1);
    free(ver);
    NEED(icsc_whoami(c, &who, &role));
    CHECK(!strcmp(who, "admin") && !strcmp(role, "admin"));
    free(who);
    free(role);
    uint64_t lsn1 = 0, lsn2 = 0;
    NEED(icsc_map(c, "c-dev1", "https://c.example/a", "c-u1", 0, NULL, 0, &lsn1));
    CHECK(lsn1 > 0);
    CHECK_EQ(icsc_map(c, "c-dev1", "https://c.example/a", "c-u1", 0, NULL, 0, NULL), 0);
    CHECK_EQ(icsc_map(c, "c-dev1", "https://c.example/b", "c-u2", 3600, NULL, 0, &lsn2), 0);
    CHECK(lsn2 > lsn1);
    icsc_rows rows;
    NEED(icsc_inquire_device(c, "c-dev1", &rows));
    CHECK_EQ(rows.n, 2);
    int ttl_rows = 0;
    for (size_t i = 0; i < rows.n; i++)
        if (rows.v[i].expires_at > (uint32_t)time(NULL) + 3500)
            ttl_rows++;
    CHECK_EQ(ttl_rows, 1);
    icsc_rows_free(&rows);
    CHECK_EQ(icsc_get(c, "c-dev1", &rows), 0);
    CHECK_EQ(rows.n, 2);
    icsc_rows_free(&rows);
    CHECK_EQ(icsc_inquire_device(c, "c-none", &rows), ICSC_S_NOT_FOUND);
    char *dev = NULL;
    NEED(icsc_inquire_binding(c, "https://c.example/a", "c-u1", &dev));
    CHECK(!strcmp(dev, "c-dev1"));
    free(dev);
    NEED(icsc_demap(c, "c-dev1", "https://c.example/a", "c-u1", 0, NULL));
    CHECK_EQ(icsc_inquire_binding(c, "https://c.example/a", "c-u1", &dev), ICSC_S_NOT_FOUND);
    uint32_t n = 0;
    NEED(icsc_demap_device(c, "c-dev1", &n));
    CHECK_EQ(n, 1);
    CHECK_EQ(icsc_map(c, "c-dev3", "https://c.example/svc", "c-u3", 0, NULL, 0, NULL), 0);
    CHECK_EQ(icsc_map(c, "c-dev4", "https://c.example/svc", "c-u4", 0, NULL, 0, NULL), 0);
    NEED(icsc_demap_binding(c, "https://c.example/svc", "c-u3"));
    NEED(icsc_demap_service(c, "https://c.example/svc", &n));
    CHECK_EQ(n, 1);

    CHECK_EQ(icsc_map(c, "c-dev5", "https://c.example/h", "c-u5", 0, NULL, 0, NULL), 0);
    icsc_hist h;
    NEED(icsc_history(c, "c-dev5", 10, &h));
    CHECK(h.n >= 1);
    CHECK_EQ(h.v[h.n - 1].event, 1);
    icsc_history_free(&h);

    icsc_prefs p = {0}, q;
    char *deny[] = {"https://ads.example/"};
    icsc_window win[] = {{0x60, 0, 1440}};
    p.retention_s = 0;
    p.deny = deny;
    p.ndeny = 1;
    p.windows = win;
    p.nwindows = 1;
    NEED(icsc_prefs_set(c, "c-dev5", &p));
    NEED(icsc_prefs_get(c, "c-dev5", &q));
    CHECK_EQ(q.ndeny, 1);
    CHECK(!strcmp(q.deny[0], "https://ads.example/"));
    CHECK_EQ(q.nwindows, 1);
    CHECK_EQ(q.windows[0].weekdays, 0x60);
    icsc_prefs_free(&q);

    uint8_t *batch = NULL;
    size_t blen = 0;
    NEED(icsc_key_issue(c, 4, &batch, &blen));
    CHECK_EQ(blen, 8 + 1 + 2 + 4 * 16 + 32);
    NEED(icsc_key_validate(c, batch, blen));
    batch[blen - 1] ^= 1;
    CHECK_EQ(icsc_key_validate(c, batch, blen), ICSC_S_BAD_SIGNATURE);
    free(batch);
    CHECK_EQ(icsc_key_issue(c, 0, &batch, &blen), ICSC_S_EINVAL);
    CHECK_EQ(icsc_key_issue(c, 1001, &batch, &blen), ICSC_S_EINVAL);

    uint64_t snap = 0;
    NEED(icsc_snapshot(c, &snap));
    const char *scopes[] = {"CX-"};
    NEED(icsc_principal_set(c, "c-maker", ICSC_ROLE_IOT_SP, "pw", NULL, scopes, 1));
    icsc_principals pl;
    NEED(icsc_principal_list(c, &pl));
    int found = 0;
    for (size_t i = 0; i < pl.n; i++)
        if (!strcmp(pl.v[i].name, "c-maker")) {
            found = 1;
            CHECK_EQ(pl.v[i].roles, ICSC_ROLE_IOT_SP);
            CHECK(pl.v[i].nscopes == 1 && !strcmp(pl.v[i].scopes[0], "CX-"));
        }
    CHECK(found);
    icsc_principals_free(&pl);
    icsc *m = as_user(s, "c-maker", "pw");
    CHECK_EQ(icsc_map(m, "c-x", "https://c.example/x", "u", 0, NULL, 0, NULL), ICSC_S_ACCESS_DENIED);
    CHECK_EQ(icsc_principal_list(m, &pl), ICSC_S_ACCESS_DENIED);
    icsc_close(m);
    NEED(icsc_principal_del(c, "c-maker"));
    icsc_opts o = {.host = "127.0.0.1", .port = s->port, .user = "c-maker", .secret = "pw", .timeout_ms = 5000};
    CHECK_EQ(icsc_connect(&m, &o), ICSC_S_AUTH_ERROR);
    o.user = NULL;
    CHECK_EQ(icsc_connect(&m, &o), 0);
    CHECK_EQ(icsc_inquire_device(m, "c-dev5", &rows), ICSC_S_AUTH_ERROR);
    icsc_close(m);
    CHECK_EQ(icsc_call(c, 0x01, "\0\0\0\0\0\0\0\0", 8, "k", 1, "v", 1, 0, NULL, NULL), ICSC_S_NOT_SUPPORTED);
    CHECK_EQ(icsc_call(c, 0x99, NULL, 0, NULL, 0, NULL, 0, 0, NULL, NULL), ICSC_S_UNKNOWN_COMMAND);
    icsc_close(c);
    ran++;
}

/* Expects a refusal with exactly that status; no answer at all fails. */
#define REFUSED(expr, want)                                                       \
    do {                                                                          \
        int _rc = (expr);                                                         \
        CHECK_EQ(_rc, want);                                                      \
    } while (0)

static void t_exists(const server *s)
{
    icsc *c = admin(s, 5000);
    CHECK(c);
    uint64_t lsn = 0;
    NEED(icsc_map(c, "x-dev1", "https://x.example/a", "x-u1", 0, NULL, 0, &lsn));
    REFUSED(icsc_map(c, "x-dev2", "https://x.example/a", "x-u1", 0, NULL, 0, NULL), ICSC_S_EXISTS);
    REFUSED(icsc_demap(c, "x-dev1", "https://x.example/a", "x-u1", lsn + 100000, NULL), ICSC_S_EXISTS);
    CHECK_EQ(icsc_demap(c, "x-dev1", "https://x.example/a", "x-u1", lsn, NULL), 0);
    icsc_close(c);
    ran++;
}

static void t_pipeline(const server *s)
{
    icsc *c = admin(s, 10000);
    CHECK(c);
    icsc_batch *b = icsc_batch_new(c);
    char dev[32], uti[32];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 10000; i++) {
        snprintf(dev, sizeof dev, "cp-%d", i);
        snprintf(uti, sizeof uti, "cp-u%d", i);
        CHECK_EQ(icsc_batch_add_map(b, dev, "https://cp.example/", uti, 0), i);
    }
    CHECK_EQ(icsc_batch_flush(b), 0);
    int st = icsc_batch_status(b, 0);
    if (st == ICSC_S_UNKNOWN_COMMAND) {
        fprintf(stderr, "  SKIPPED %s: MAP not served\n", __func__);
        skipped++;
        icsc_batch_free(b);
        icsc_close(c);
        return;
    }
    uint64_t last = 0;
    for (size_t i = 0; i < 10000; i++) {
        CHECK_EQ(icsc_batch_status(b, i), 0);
        CHECK(icsc_batch_lsn(b, i) > last);
        last = icsc_batch_lsn(b, i);
    }
    icsc_batch_reset(b);
    for (int i = 0; i < 10000; i++) {
        snprintf(uti, sizeof uti, "cp-u%d", i);
        icsc_batch_add_inquire_binding(b, "https://cp.example/", uti);
    }
    CHECK_EQ(icsc_batch_flush(b), 0);
    for (size_t i = 0; i < 10000; i++) {
        size_t len;
        const uint8_t *v = icsc_batch_value(b, i, &len);
        snprintf(dev, sizeof dev, "cp-%zu", i);
        CHECK_EQ(icsc_batch_status(b, i), 0);
        CHECK(len == strlen(dev) && !memcmp(v, dev, len));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fprintf(stderr, "  pipelined 10,000 MAP + 10,000 INQUIRE_BINDING in %.2f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    icsc_batch_free(b);
    icsc_close(c);
    ran++;
}

static void t_two_phase_watch(const server *s)
{
    icsc *c = admin(s, 10000);
    CHECK(c);
    const char *ms[] = {"CW-"}, *ss[] = {"https://cw.example/"};
    NEED(icsc_principal_set(c, "cw-maker", ICSC_ROLE_IOT_SP, "m", NULL, ms, 1));
    NEED(icsc_principal_set(c, "cw-shop", ICSC_ROLE_TPSP, "s", NULL, ss, 1));
    icsc *maker = as_user(s, "cw-maker", "m"), *shop = as_user(s, "cw-shop", "s");
    NEED(icsc_watch(maker, ICSC_W_MAP_PENDING | ICSC_W_DEMAPPED));
    NEED(icsc_watch(shop, ICSC_W_MAP_RESULT));
    uint8_t rid[16];
    NEED(icsc_map_request(shop, "CW-0001", "https://cw.example/o", "cw-u1", 0, rid));
    icsc_event ev;
    CHECK_EQ(icsc_poll_event(maker, &ev, 5000), 0);
    CHECK_EQ(ev.code, ICSC_EV_MAP_PENDING);
    CHECK(ev.key_len == 16 && !memcmp(ev.key, rid, 16));
    CHECK(!strcmp(ev.a, "CW-0001") && !strcmp(ev.b, "https://cw.example/o") && !strcmp(ev.c, "cw-u1"));
    icsc_event_clear(&ev);
    NEED(icsc_map_confirm(maker, rid, "cw-fridge", NULL));
    CHECK_EQ(icsc_poll_event(shop, &ev, 5000), 0);
    CHECK_EQ(ev.code, ICSC_EV_MAP_RESULT);
    CHECK_EQ(ev.status, 0);
    CHECK(!strcmp(ev.a, "cw-fridge"));
    icsc_event_clear(&ev);
    NEED(icsc_map_request(shop, "CW-0002", "https://cw.example/o", "cw-u2", 0, rid));
    CHECK_EQ(icsc_poll_event(maker, &ev, 5000), 0);
    icsc_event_clear(&ev);
    NEED(icsc_map_reject(maker, rid, "declined"));
    CHECK_EQ(icsc_poll_event(shop, &ev, 5000), 0);
    CHECK_EQ(ev.status, ICSC_S_NOT_FOUND);
    CHECK(!strcmp(ev.a, "declined"));
    icsc_event_clear(&ev);
    NEED(icsc_demap(shop, "cw-fridge", "https://cw.example/o", "cw-u1", 0, NULL));
    CHECK_EQ(icsc_poll_event(maker, &ev, 5000), 0);
    CHECK_EQ(ev.code, ICSC_EV_DEMAPPED);
    CHECK(ev.key_len == 9 && !memcmp(ev.key, "cw-fridge", 9));
    icsc_event_clear(&ev);
    icsc_close(maker);
    icsc_close(shop);
    icsc_close(c);
    ran++;
}

static void wait_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 100; i++) {
        char *p;
        if (read_file(path, buf, sizeof buf) <= 0 || !(p = strrchr(buf, ')')) || p[2] == 'T')
            return;
        usleep(10 * 1000);
    }
}

static void t_timeout(const server *s)
{
    icsc *c = admin(s, 500);
    CHECK(c);
    CHECK_EQ(icsc_noop(c), 0);
    kill(s->pid, SIGSTOP);
    wait_stopped(s->pid);
    icsc_rows rows;
    /* A change written to a connection that then gets no answer. */
    CHECK_EQ(icsc_map(c, "t-dev", "https://t.example/", "t-u", 0, NULL, 0, NULL), ICSC_E_UNKNOWN_OUTCOME);
    /* A read: here the reconnect's SASL times out. */
    CHECK_EQ(icsc_inquire_device(c, "t-x", &rows), -ETIMEDOUT);
    kill(s->pid, SIGCONT);
    icsc_set_timeout(c, 10000);
    CHECK_EQ(icsc_noop(c), 0);
    CHECK(icsc_reconnects(c) >= 1);
    icsc_close(c);
    ran++;
}

static void t_restart(server *s)
{
    icsc *c = admin(s, 5000);
    CHECK(c);
    NEED(icsc_map(c, "r-dev", "https://r.example/", "r-u", 0, NULL, 0, NULL));
    uint16_t port = s->port;
    CHECK_EQ(server_stop(s), 0);
    CHECK(icsc_noop(c) < 0);
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++)
        if ((rc = server_start(s, port)) != 0)
            usleep(100 * 1000);
    CHECK_EQ(rc, 0);
    icsc_rows rows;
    CHECK_EQ(icsc_inquire_device(c, "r-dev", &rows), 0); /* durable, and reconnected */
    CHECK_EQ(rows.n, 1);
    icsc_rows_free(&rows);
    CHECK(icsc_reconnects(c) >= 1);
    icsc_close(c);
    ran++;
}

static void t_tls(void)
{
    char pki[400], cmd[1200];
    snprintf(pki, sizeof pki, "%s/pki", tmpdir);
    snprintf(cmd, sizeof cmd, "%s/scripts/mkcerts.sh %s admin >/dev/null 2>&1", ICS_SOURCE_DIR, pki);
    if (system(cmd) != 0) {
        fprintf(stderr, "  SKIPPED t_tls: scripts/mkcerts.sh failed\n");
        skipped++;
        return;
    }
    static char cert[500], key[500], ca[500];
    snprintf(cert, sizeof cert, "%s/server.pem", pki);
    snprintf(key, sizeof key, "%s/server.key", pki);
    snprintf(ca, sizeof ca, "%s/ca.pem", pki);
    server t = {.extra = {"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca, "--tls-port", "0", NULL}};
    snprintf(t.data, sizeof t.data, "%s/tls-data", tmpdir);
    if (server_start(&t, 0) != 0) {
        fprintf(stderr, "  SKIPPED t_tls: icsd does not start with --tls-cert yet\n");
        skipped++;
        return;
    }
    char ccert[500], ckey[500];
    snprintf(ccert, sizeof ccert, "%s/admin.pem", pki);
    snprintf(ckey, sizeof ckey, "%s/admin.key", pki);
    if (!t.tls_port) {
        fprintf(stderr, "  SKIPPED t_tls: icsd reports no TLS port yet\n");
        skipped++;
        server_stop(&t);
        return;
    }
    icsc_opts o = {.host = "127.0.0.1", .port = t.tls_port, .tls_ca = ca, .tls_cert = ccert,
                   .tls_key = ckey, .timeout_ms = 5000};
    icsc *c = NULL;
    int rc = icsc_connect(&c, &o);
    if (rc) {
        fprintf(stderr, "  SKIPPED t_tls: TLS handshake failed (%s): listener not wired yet?\n",
                icsc_strerror(rc));
        skipped++;
        server_stop(&t);
        return;
    }
    char *who = NULL, *role = NULL;
    CHECK_EQ(icsc_whoami(c, &who, &role), 0);
    CHECK(!strcmp(who, "admin"));
    free(who);
    free(role);
    icsc_batch *b = icsc_batch_new(c);
    char dev[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(dev, sizeof dev, "tls-%d", i);
        icsc_batch_add_map(b, dev, "https://tls.example/", dev, 0);
    }
    CHECK_EQ(icsc_batch_flush(b), 0);
    for (size_t i = 0; i < 2000; i++)
        CHECK_EQ(icsc_batch_status(b, i), 0);
    icsc_batch_free(b);
    icsc_close(c);
    /* A CA that did not sign the server: refused. */
    o.tls_ca = ccert;
    CHECK(icsc_connect(&c, &o) < 0);
    server_stop(&t);
    ran++;
}

int main(int argc, char **argv)
{
    if (argc < 2 || access(argv[1], X_OK) != 0)
        TEST_SKIP("icsd is not built yet");
    icsd_bin = argv[1];
    atexit(kill_live);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/icsc-it-XXXXXX");
    CHECK(mkdtemp(tmpdir));
    server s = {0};
    snprintf(s.data, sizeof s.data, "%s/data", tmpdir);
    int rc = server_start(&s, 0);
    if (rc)
        TEST_SKIP("icsd did not start (%s)", icsc_strerror(rc));
    if (load_secret(&s))
        TEST_SKIP("icsd wrote no admin.cred");
    icsc *c = admin(&s, 3000);
    if (!c || icsc_noop(c) != 0) {
        icsc_close(c);
        server_stop(&s);
        TEST_SKIP("icsd does not answer NOOP / SASL yet");
    }
    icsc_close(c);
    t_operations(&s);
    t_exists(&s);
    t_pipeline(&s);
    t_two_phase_watch(&s);
    t_timeout(&s);
    t_restart(&s);
    server_stop(&s);
    t_tls();
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", tmpdir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    fprintf(stderr, "test_icsc_icsd: %d sub-tests passed, %d skipped\n", ran, skipped);
    /* The server serves every wire-v1 opcode now: a skipped sub-test is a
     * regression, not a missing feature. */
    return skipped ? 1 : 0;
}
