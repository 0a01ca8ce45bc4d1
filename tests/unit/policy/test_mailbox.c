/*
 * test_mailbox.c — per-principal bounded FIFO: order, bound (refuse new,
 * keep old), partial drains keep the rest in order, clear, stats.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mailbox.h"
#include "test.h"

struct sink {
    int n, stop_after;
    char got[64][16];
};

static int take(void *arg, const uint8_t *f, size_t n)
{
    struct sink *s = arg;
    if (s->stop_after >= 0 && s->n == s->stop_after)
        return -7;
    CHECK(n < 16);
    memcpy(s->got[s->n], f, n);
    s->got[s->n][n] = 0;
    s->n++;
    return 0;
}

static int logged;
static void logf_(void *ctx, enum store_log_level lvl, const char *msg)
{
    (void)ctx;
    CHECK_EQ(lvl, STORE_LOG_WARN);
    CHECK(strstr(msg, "full"));
    logged++;
}

int main(void)
{
    mailbox_t *mb;
    struct mailbox_config cfg = {.max_frames = 4, .log = logf_};
    CHECK_EQ(mailbox_create(&mb, &cfg), 0);
    char f[16];
    for (int i = 0; i < 4; i++) {
        snprintf(f, sizeof(f), "f%d", i);
        CHECK_EQ(mailbox_push(mb, "alice", 5, f, strlen(f)), 0);
    }
    /* Full: the new frame is refused, the old ones kept (at-least-once). */
    CHECK_EQ(mailbox_push(mb, "alice", 5, "f4", 2), -ENOSPC);
    CHECK_EQ(logged, 1);
    /* Another principal has its own box. */
    CHECK_EQ(mailbox_push(mb, "bob", 3, "b0", 2), 0);
    CHECK_EQ(mailbox_pending(mb, "alice", 5), 4);
    CHECK_EQ(mailbox_pending(mb, "bob", 3), 1);
    CHECK_EQ(mailbox_pending(mb, "carol", 5), 0);
    CHECK_EQ(mailbox_push(mb, "", 0, "x", 1), -EINVAL);
    CHECK_EQ(mailbox_push(mb, "alice", 5, "x", 0), -EINVAL);

    /* A drain that stops after two keeps the rest, first in line. */
    struct sink s = {0, 2, {{0}}};
    CHECK_EQ(mailbox_drain(mb, "alice", 5, take, &s), -7);
    CHECK_EQ(s.n, 2);
    CHECK(strcmp(s.got[0], "f0") == 0 && strcmp(s.got[1], "f1") == 0);
    CHECK_EQ(mailbox_pending(mb, "alice", 5), 2);
    CHECK_EQ(mailbox_push(mb, "alice", 5, "f5", 2), 0);

    struct sink all = {0, -1, {{0}}};
    CHECK_EQ(mailbox_drain(mb, "alice", 5, take, &all), 3);
    CHECK(strcmp(all.got[0], "f2") == 0);
    CHECK(strcmp(all.got[1], "f3") == 0);
    CHECK(strcmp(all.got[2], "f5") == 0);
    CHECK_EQ(mailbox_pending(mb, "alice", 5), 0);
    CHECK_EQ(mailbox_drain(mb, "alice", 5, take, &all), 0);

    struct mailbox_stats st;
    mailbox_stats(mb, &st);
    CHECK_EQ(st.pushed, 6);
    CHECK_EQ(st.refused, 1);
    CHECK_EQ(st.delivered, 5);
    CHECK_EQ(st.queued, 1);

    CHECK_EQ(mailbox_clear(mb, "bob", 3), 1);
    CHECK_EQ(mailbox_clear(mb, "bob", 3), 0);
    mailbox_stats(mb, &st);
    CHECK_EQ(st.queued, 0);

    /* The default bound is 1024 and order holds over many frames. */
    mailbox_destroy(mb);
    CHECK_EQ(mailbox_create(&mb, NULL), 0);
    for (int i = 0; i < 1024; i++) {
        snprintf(f, sizeof(f), "%d", i);
        CHECK_EQ(mailbox_push(mb, "w", 1, f, strlen(f)), 0);
    }
    CHECK_EQ(mailbox_push(mb, "w", 1, "x", 1), -ENOSPC);
    for (int round = 0; round < 16; round++) {
        struct sink k = {0, 64, {{0}}};
        int rc = mailbox_drain(mb, "w", 1, take, &k);
        CHECK_EQ(k.n, 64);
        CHECK_EQ(rc, round == 15 ? 64 : -7);
        for (int i = 0; i < 64; i++) {
            snprintf(f, sizeof(f), "%d", round * 64 + i);
            CHECK(strcmp(k.got[i], f) == 0);
        }
    }
    CHECK_EQ(mailbox_pending(mb, "w", 1), 0);
    /* Frames still queued at destroy are freed (ASan checks). */
    CHECK_EQ(mailbox_push(mb, "w", 1, "left", 4), 0);
    mailbox_destroy(mb);
    return 0;
}
