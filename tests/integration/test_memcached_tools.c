/* test_memcached_tools.c — stock libmemcached tools against icsd (binary
 * protocol, SASL PLAIN through libsasl2-modules; memcping has no --binary
 * flag and goes binary by itself once given SASL credentials): memcping, memcstat and
 * memccat answer correctly. Skipped (77) when the tools are missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_srv srv;

/* Runs cmd, returns its exit status and up to cap bytes of its stdout. */
static int run(const char *cmd, char *out, size_t cap)
{
    char full[1024];
    snprintf(full, sizeof full, "timeout 20 %s 2>/dev/null", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(void)
{
    const char *tools[] = {"/usr/bin/memcping", "/usr/bin/memcstat", "/usr/bin/memccat"};
    for (int i = 0; i < 3; i++)
        if (access(tools[i], X_OK) != 0)
            TEST_SKIP("%s missing (Debian package libmemcached-tools)", tools[i]);
    if (access("/usr/lib/x86_64-linux-gnu/sasl2/libplain.so", R_OK) != 0 &&
        access("/usr/lib/x86_64-linux-gnu/sasl2/libplain.so.2", R_OK) != 0)
        TEST_SKIP("SASL PLAIN plugin missing (Debian package libsasl2-modules)");

    itest_start(&srv, NULL);
    int fd = itest_login(&srv, NULL, NULL);
    CHECK_EQ(itest_map(fd, "tool-dev", "https://tools.example/a", "uti-7", NULL, NULL), 0);
    close(fd);

    char cmd[600], out[8192];
    snprintf(cmd, sizeof cmd, "memcping --servers=127.0.0.1:%u -u admin -p %s", srv.port,
             srv.secret);
    CHECK_EQ(run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "memcping --servers=127.0.0.1:%u -u admin -p wrong",
             srv.port);
    CHECK(run(cmd, out, sizeof out) != 0);

    snprintf(cmd, sizeof cmd, "memcstat --binary --servers=127.0.0.1:%u -u admin -p %s",
             srv.port, srv.secret);
    CHECK_EQ(run(cmd, out, sizeof out), 0);
    char want[64];
    snprintf(want, sizeof want, "pid: %d", (int)srv.pid);
    CHECK(strstr(out, want) != NULL);
    CHECK(strstr(out, "rows: 1") != NULL);
    CHECK(strstr(out, "uptime: ") != NULL);
    /* wire-v1: stats are numbers, so no memcached-style "version" stat */
    CHECK(strstr(out, "version:") == NULL);

    snprintf(cmd, sizeof cmd, "memccat --binary --servers=127.0.0.1:%u -u admin -p %s tool-dev",
             srv.port, srv.secret);
    CHECK_EQ(run(cmd, out, sizeof out), 0);
    /* The value is INQUIRE_DEVICE's: u32 n = 1, str16 URI, str16 UTI, u32. */
    CHECK_MEM(out, "\0\0\0\1\0\27https://tools.example/a\0\5uti-7", 4 + 2 + 23 + 2 + 5);
    snprintf(cmd, sizeof cmd, "memccat --binary --servers=127.0.0.1:%u -u admin -p %s no-such",
             srv.port, srv.secret);
    CHECK(run(cmd, out, sizeof out) != 0);

    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    return 0;
}
