/* test_icsd_daemon.c — the daemon's surface: --help, a config file (and
 * its FILE:LINE errors), admin.cred on first start (mode 0600, the four
 * lines), the refusals of plaintext and --anonymous on a non-loopback
 * address, and --anonymous on loopback acting as the named principal. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static int run_icsd(const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 20 %s %s 2>&1", ICSD_PATH, args);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Logs in to s (name NULL: the admin from admin.cred) and checks WHOAMI's
 * answer is want (str16 principal, str16 role). */
static void check_whoami(const struct itest_srv *s, const char *name, const char *secret,
                         const char *want, size_t want_len)
{
    int fd = itest_login(s, name, secret);
    struct itest_resp r = {0};
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK_MEM(r.value, want, want_len);
    itest_resp_free(&r);
    close(fd);
}

int main(void)
{
    static char out[16384];
    CHECK_EQ(run_icsd("--help", out, sizeof out), 0);
    const char *flags[] = {"--data", "--listen", "--port", "--port-file", "--threads",
                           "--log-level", "--max-conns", "--max-conn-buffer", "--idle-timeout",
                           "--mem-limit", "--durability", "--relaxed-window-ms", "--key-file",
                           "--truncate-corrupt", "--history-len", "--snapshot-log-bytes",
                           "--anonymous", "--pending-ttl", "--config", NULL};
    for (int i = 0; flags[i]; i++)
        CHECK(strstr(out, flags[i]) != NULL);
    CHECK(run_icsd("--no-such-flag", out, sizeof out) != 0);
    CHECK(strstr(out, "unknown flag --no-such-flag") != NULL);

    char dir[] = "/tmp/icsd-daemon-XXXXXX";
    CHECK(mkdtemp(dir));
    char conf[300], args[900];
    snprintf(conf, sizeof conf, "%s/bad.conf", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "# ok\nthreads = 1\nidle-timeout = soon\n");
    fclose(f);
    snprintf(args, sizeof args, "--config %s --data %s/d1", conf, dir);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    char want[400];
    snprintf(want, sizeof want, "%s:3: idle-timeout", conf);
    CHECK(strstr(out, want) != NULL);

    /* Plaintext / anonymous on a non-loopback address: refused before
     * anything is bound. */
    snprintf(args, sizeof args, "--data %s/d2 --listen 0.0.0.0:0", dir);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    CHECK(strstr(out, "allow-plaintext-remote") != NULL);
    snprintf(args, sizeof args,
             "--data %s/d3 --listen 0.0.0.0:0 --allow-plaintext-remote --anonymous x", dir);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    CHECK(strstr(out, "allow-anonymous-remote") != NULL);
    /* A mistyped address is named as such; TLS files without a certificate
     * (no TLS listener would start) are refused, not ignored. */
    snprintf(args, sizeof args, "--data %s/d7 --listen 256.1.1.1:0", dir);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    CHECK(strstr(out, "'256.1.1.1' is not an IPv4 or IPv6 address") != NULL);
    snprintf(args, sizeof args, "--data %s/d8 --tls-key %s/nokey.pem", dir, dir);
    CHECK_EQ(run_icsd(args, out, sizeof out), 2);
    CHECK(strstr(out, "need --tls-cert") != NULL);

    /* --principals: a bad line stops the start naming FILE:LINE, nothing
     * applied; a good file creates the principals. */
    char pf[300];
    snprintf(pf, sizeof pf, "%s/principals", dir);
    f = fopen(pf, "w");
    fprintf(f, "# principals\npf roles=tpsp secret=pf-secret scopes=https://p.example/\n"
               "broken roles=nosuchrole\n");
    fclose(f);
    snprintf(args, sizeof args, "--data %s/d4 --port 0 --principals %s", dir, pf);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    snprintf(want, sizeof want, "%s:3", pf);
    CHECK(strstr(out, want) != NULL);
    /* That failed first start had already made the admin durable: its
     * credential must be there and work on the next start (it was
     * written only once the listener was up, so the secret was lost). */
    {
        struct itest_srv fs;
        memset(&fs, 0, sizeof fs);
        snprintf(fs.dir, sizeof fs.dir, "%s/d5", dir);
        CHECK_EQ(mkdir(fs.dir, 0700), 0);
        snprintf(fs.data, sizeof fs.data, "%s/data", fs.dir);
        snprintf(args, sizeof args, "--data %s --port 0 --principals %s", fs.data, pf);
        CHECK(run_icsd(args, out, sizeof out) != 0);
        char fcred[400];
        snprintf(fcred, sizeof fcred, "%s/admin.cred", fs.data);
        struct stat fst;
        CHECK_EQ(stat(fcred, &fst), 0);
        CHECK_EQ(fst.st_mode & 0777, 0600);
        itest_restart(&fs, NULL);
        check_whoami(&fs, NULL, NULL, "\0\5admin\0\5admin", 14);
        CHECK_EQ(itest_stop(&fs), 0);
    }
    f = fopen(pf, "w");
    fprintf(f, "pf roles=tpsp secret=pf-secret scopes=https://p.example/\n");
    fclose(f);
    {
        struct itest_srv ps;
        const char *pa[] = {"--principals", pf, NULL};
        itest_start(&ps, pa);
        check_whoami(&ps, "pf", "pf-secret", "\0\2pf\0\4tpsp", 10);
        CHECK_EQ(itest_stop(&ps), 0);
        itest_cleanup(&ps);
    }

    /* A good config file, then admin.cred. */
    struct itest_srv s;
    snprintf(conf, sizeof conf, "%s/good.conf", dir);
    f = fopen(conf, "w");
    fprintf(f, "log-level = debug\nhistory-len = 4\nanonymous = reader\n");
    fclose(f);
    const char *a[] = {"--config", conf, NULL};
    itest_start(&s, a);
    char cred[400];
    snprintf(cred, sizeof cred, "%s/admin.cred", s.data);
    struct stat st;
    CHECK_EQ(stat(cred, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    f = fopen(cred, "r");
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    snprintf(want, sizeof want, "host=127.0.0.1\nport=%u\nprincipal=admin\nsecret=", s.port);
    CHECK(strncmp(out, want, strlen(want)) == 0);
    CHECK(strlen(s.secret) >= 16);
    /* A second icsd on the port this one listens on is refused, not let
     * in beside it (the workers' SO_REUSEPORT would have allowed that). */
    snprintf(args, sizeof args, "--data %s/d6 --listen 127.0.0.1:%u", dir, s.port);
    CHECK(run_icsd(args, out, sizeof out) != 0);
    CHECK(strstr(out, "Address already in use") != NULL);

    /* --anonymous: unknown principal -> still unauthenticated; once it
     * exists, an unauthenticated loopback connection acts as it. */
    struct itest_resp r = {0};
    int fd = itest_connect(&s);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), WIRE_S_AUTH_ERROR);
    int adm = itest_login(&s, NULL, NULL);
    const char *sc[] = {"https://r.example/", NULL};
    CHECK_EQ(itest_principal(adm, "reader", 4, NULL, sc), 0);
    CHECK_EQ(itest_map(adm, "anon-dev", "https://r.example/1", "u1", NULL, NULL), 0);
    CHECK_EQ(itest_map(adm, "anon-dev", "https://z.example/1", "u2", NULL, NULL), 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_WHOAMI, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK_MEM(r.value, "\0\6reader\0\4tpsp", 14);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_GET, 0, NULL, 0, "anon-dev", 8, NULL, 0), 0);
    CHECK_EQ(wire_be32(r.value), 1);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_EXPORT, 0, "\0\0\0\1", 4, NULL, 0, NULL, 0),
             WIRE_S_ACCESS_DENIED);
    close(fd);
    close(adm);
    CHECK_EQ(itest_stop(&s), 0);
    itest_cleanup(&s);

    /* --max-conns: the connection over the bound is closed at once, the
     * others keep working. */
    const char *mc[] = {"--max-conns", "4", NULL};
    itest_start(&s, mc);
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = itest_connect(&s);
        CHECK_EQ(itest_call(fds[i], &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    }
    int extra = itest_connect(&s);
    CHECK(itest_closed(extra, 3000));
    close(extra);
    CHECK_EQ(itest_call(fds[0], &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    close(fds[3]);
    usleep(200000);
    extra = itest_connect(&s); /* a slot is free again */
    CHECK_EQ(itest_call(extra, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    close(extra);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    itest_resp_free(&r);
    CHECK_EQ(itest_stop(&s), 0);
    itest_cleanup(&s);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    if (system(args) != 0) {}
    return 0;
}
