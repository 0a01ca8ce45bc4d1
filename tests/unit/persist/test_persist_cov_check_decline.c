/*
 * test_persist_cov_check_decline.c — ics-check --truncate answered "n"
 * changes nothing, says so, exits 1 and (under ASan) leaks nothing.
 * Regression: that path once returned without freeing its segment list, so
 * LeakSanitizer failed the run and the buffered "nothing changed" was lost.
 */
#include <sys/wait.h>

#include "ptest.h"
#include "wal.h"

static char out[1 << 16];

int main(int argc, char **argv)
{
    if (argc < 2)
        TEST_SKIP("usage: test_persist_cov_check_decline ICS_CHECK");
    char dir[256], err[512], seg[512], names[8][64], cmd[1024];
    mk_tmpdir(dir, sizeof(dir));
    struct store_config cfg = {.dir = dir};
    struct rig r;
    CHECK_EQ(rig_open(&r, &cfg, err, sizeof(err)), 0);
    struct wg w;
    wg_init(&w);
    for (int i = 0; i < 4; i++) {
        char dev[8];
        snprintf(dev, sizeof(dev), "d%d", i);
        CHECK_EQ(map_wait(r.s, dev, "https://u", dev, NULL, 0, &w), 0);
    }
    rig_close(&r);
    CHECK_EQ(list_files(dir, "wal-", names, 8), 1);
    snprintf(seg, sizeof(seg), "%s/%s", dir, names[0]);
    size_t n;
    uint8_t *b = slurp(seg, &n);
    struct wal_rec rec;
    long span = wal_rec_decode(b + WAL_FHDR_SIZE, n - WAL_FHDR_SIZE, &rec);
    CHECK(span > 0);
    b[WAL_FHDR_SIZE + (size_t)span + WAL_REC_HDR] ^= 0x5a; /* 2nd record */
    spit(seg, b, n);
    free(b);
    snprintf(cmd, sizeof(cmd), "printf 'n\\n' | %s --truncate %s 2>&1", argv[1], dir);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    size_t k = fread(out, 1, sizeof(out) - 1, p);
    out[k] = 0;
    int st = pclose(p);
    fprintf(stderr, "%s", out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK(strstr(out, "nothing changed") != NULL);
    CHECK(strstr(out, "LeakSanitizer") == NULL);
    rm_rf(dir);
    return 0;
}
