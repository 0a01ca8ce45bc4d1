/*
 * test_engine_cov_demo.c — runs engine_demo (argv[1]) and checks what it
 * prints: the row count it was asked to load, at least one device and at
 * most 1,000 URIs, and that bad arguments are refused with exit 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

static int run(const char *bin, const char *args, char *out, size_t outlen)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        TEST_SKIP("usage: test_engine_cov_demo ENGINE_DEMO");
    static char out[8192];

    /* 3000 rows in 1-4 rows per device: the summary counts exactly them. */
    CHECK_EQ(run(argv[1], "--rows 3000", out, sizeof(out)), 0);
    unsigned long long rows = 0, devs = 0, uris = 0, resizes = 0;
    const char *s = strstr(out, "engine_demo: ");
    CHECK(s != NULL);
    CHECK_EQ(sscanf(s, "engine_demo: %llu rows, %llu devices, %llu URIs, %llu resizes",
                    &rows, &devs, &uris, &resizes), 4);
    CHECK_EQ(rows, 3000);
    CHECK(devs >= 3000 / 4 && devs <= 3000);
    CHECK(uris >= 1 && uris <= 1000);
    CHECK(strstr(out, "bytes/row") != NULL);
    CHECK(strstr(out, "by device") != NULL && strstr(out, "by binding") != NULL);

    /* One row: one device, one URI. */
    CHECK_EQ(run(argv[1], "--rows 1", out, sizeof(out)), 0);
    s = strstr(out, "engine_demo: ");
    CHECK(s != NULL);
    CHECK_EQ(sscanf(s, "engine_demo: %llu rows, %llu devices, %llu URIs", &rows, &devs,
                    &uris), 3);
    CHECK_EQ(rows, 1);
    CHECK_EQ(devs, 1);
    CHECK_EQ(uris, 1);

    /* Refusals. */
    CHECK_EQ(run(argv[1], "--rows 0", out, sizeof(out)), 2);
    CHECK(strstr(out, "at least 1") != NULL);
    CHECK_EQ(run(argv[1], "--bogus", out, sizeof(out)), 2);
    CHECK(strstr(out, "usage:") != NULL);
    CHECK_EQ(run(argv[1], "--rows", out, sizeof(out)), 2);
    printf("engine_demo: ok\n");
    return 0;
}
