/* test_icsd_durability.c — nothing acknowledged is lost: SIGTERM in the
 * middle of a pipelined write load (clean shutdown finishes in-flight
 * changes, answers them, exits 0), then SIGKILL in the middle of another;
 * after each restart every MAP that was answered OK is there. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

#define NCONN 3
#define BATCH 200

static struct itest_srv srv;
static struct itest_resp r;
static char acked[100000];
static int nacked;

static void load_and_signal(int round, int sig)
{
    int fds[NCONN];
    for (int c = 0; c < NCONN; c++)
        fds[c] = itest_login(&srv, NULL, NULL);
    struct buf b = BUF_INIT, v = BUF_INIT;
    /* A few full batches acknowledged before the signal... */
    for (int batch = 0; batch < 4; batch++) {
        for (int c = 0; c < NCONN; c++) {
            buf_reset(&b);
            for (int i = 0; i < BATCH; i++) {
                uint32_t id = (uint32_t)(round * 40000 + batch * 5000 + c * 1000 + i);
                char dev[32], uri[64];
                snprintf(dev, sizeof dev, "dur-%u", id);
                snprintf(uri, sizeof uri, "https://dur.example/%u", id);
                buf_reset(&v);
                itest_s16(&v, uri);
                itest_s16(&v, "uti");
                wire_put_request(&b, WIRE_OP_MAP, id, 0, NULL, 0, dev, (uint16_t)strlen(dev), v.p,
                                 (uint32_t)v.len);
            }
            CHECK_EQ(itest_send(fds[c], b.p, b.len), 0);
        }
        /* ...and during the last batch the signal arrives. */
        if (batch == 3)
            kill(srv.pid, sig);
        for (int c = 0; c < NCONN; c++) {
            for (int i = 0; i < BATCH; i++) {
                if (itest_read(fds[c], &r) < 0)
                    break;
                CHECK_EQ(r.magic, WIRE_MAGIC_RES);
                if (r.status == 0) {
                    CHECK(r.opaque < sizeof acked);
                    acked[r.opaque] = 1;
                    nacked++;
                }
            }
        }
    }
    for (int c = 0; c < NCONN; c++)
        close(fds[c]);
    buf_free(&b);
    buf_free(&v);
}

static void verify(void)
{
    int fd = itest_login(&srv, NULL, NULL);
    int checked = 0;
    for (uint32_t id = 0; id < sizeof acked; id++) {
        if (!acked[id])
            continue;
        char dev[32];
        snprintf(dev, sizeof dev, "dur-%u", id);
        int st = itest_call(fd, &r, WIRE_OP_INQUIRE_DEVICE, 0, NULL, 0, dev,
                            (uint16_t)strlen(dev), NULL, 0);
        if (st != 0)
            fprintf(stderr, "acknowledged %s lost (status %d)\n", dev, st);
        CHECK_EQ(st, 0);
        checked++;
    }
    CHECK_EQ(checked, nacked);
    close(fd);
}

int main(void)
{
    itest_start(&srv, NULL);
    load_and_signal(0, SIGTERM);
    int st = itest_stop(&srv); /* already stopping: waits for the exit */
    CHECK_EQ(st, 0);
    CHECK(nacked >= 3 * NCONN * BATCH);
    itest_restart(&srv, NULL);
    verify();

    int before = nacked;
    load_and_signal(1, SIGKILL);
    itest_kill(&srv); /* reaps it */
    CHECK(nacked > before);
    itest_restart(&srv, NULL);
    verify();
    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    itest_resp_free(&r);
    fprintf(stderr, "%d acknowledged changes verified after SIGTERM and SIGKILL\n", nacked);
    return 0;
}
