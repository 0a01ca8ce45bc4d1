/*
 * test_policy_concurrency.c — the mutex-guarded policy tables under
 * concurrent use (label concurrency: TSan runs it):
 *  - mailbox: two producers push while a consumer drains, sometimes
 *    stopping part way; every frame arrives exactly once and each
 *    producer's frames in order.
 *  - keys: two threads issue and validate while a third rotates; a batch
 *    validates as OK or KEY_ROTATED, never BAD_SIGNATURE.
 *  - pending: two threads create and take while a third expires; every
 *    request is taken or expired exactly once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "keys.h"
#include "mailbox.h"
#include "pending.h"
#include "test.h"

#define PER_PRODUCER 4000

static mailbox_t *mb;
static atomic_int producers_done;

static void *producer(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        uint8_t f[5] = {(uint8_t)id, (uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8),
                        (uint8_t)i};
        CHECK_EQ(mailbox_push(mb, "w", 1, f, sizeof(f)), 0);
    }
    atomic_fetch_add(&producers_done, 1);
    return NULL;
}

struct consumer {
    int next[2];
    unsigned calls;
};

static int take(void *arg, const uint8_t *f, size_t n)
{
    struct consumer *c = arg;
    CHECK_EQ(n, 5);
    if (++c->calls % 97 == 0)
        return 1; /* refuse this one: it must come again, first */
    int id = f[0];
    int seq = f[1] << 24 | f[2] << 16 | f[3] << 8 | f[4];
    CHECK(id == 0 || id == 1);
    CHECK_EQ(seq, c->next[id]);
    c->next[id]++;
    return 0;
}

static void test_mailbox(void)
{
    struct mailbox_config cfg = {.max_frames = 2 * PER_PRODUCER};
    CHECK_EQ(mailbox_create(&mb, &cfg), 0);
    pthread_t t[2];
    for (intptr_t i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, producer, (void *)i), 0);
    struct consumer c = {{0, 0}, 0};
    while (atomic_load(&producers_done) < 2)
        mailbox_drain(mb, "w", 1, take, &c);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    while (mailbox_pending(mb, "w", 1))
        mailbox_drain(mb, "w", 1, take, &c);
    CHECK_EQ(c.next[0], PER_PRODUCER);
    CHECK_EQ(c.next[1], PER_PRODUCER);
    struct mailbox_stats st;
    mailbox_stats(mb, &st);
    CHECK_EQ(st.pushed, 2 * PER_PRODUCER);
    CHECK_EQ(st.delivered, 2 * PER_PRODUCER);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.refused, 0);
    mailbox_destroy(mb);
}

static keys_t *keys;
static atomic_int rotating;

static void *issuer(void *arg)
{
    (void)arg;
    struct buf b = BUF_INIT;
    int stale = 0, ok = 0;
    while (atomic_load(&rotating)) {
        buf_reset(&b);
        CHECK_EQ(keys_issue(keys, 8, 1, &b), 0);
        int rc = keys_validate(keys, b.p, b.len);
        CHECK(rc == 0 || rc == -ESTALE);
        if (rc)
            stale++;
        else
            ok++;
    }
    CHECK(ok > 0);
    buf_free(&b);
    return NULL;
}

static void test_keys(void)
{
    /* Remember every retired key: the test rotates 200 times and ids do
     * not wrap, so a batch can only be OK or rotated. */
    struct keys_config cfg = {.retired_max = 250};
    CHECK_EQ(keys_create(&keys, &cfg), 0);
    CHECK_EQ(keys_rotate(keys, NULL, 1, NULL, NULL), 0);
    atomic_store(&rotating, 1);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, issuer, NULL), 0);
    for (int i = 0; i < 200; i++) {
        CHECK_EQ(keys_rotate(keys, NULL, 2, NULL, NULL), 0);
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&rotating, 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(keys_current_id(keys), 201);
    keys_destroy(keys);
}

#define REQS 3000
static pending_t *pt;
static atomic_int taken, expired;

static void on_expire(void *arg, const uint8_t id[16], const struct pending_req *r)
{
    (void)arg;
    (void)id;
    CHECK_EQ(r->iot_sp_len, 3);
    atomic_fetch_add(&expired, 1);
}

static void *requester(void *arg)
{
    int me = (int)(intptr_t)arg;
    struct pending_req r;
    memset(&r, 0, sizeof(r));
    r.tpsp[0] = (uint8_t)('a' + me);
    r.tpsp_len = 1;
    memcpy(r.iot_sp, "iot", 3);
    r.iot_sp_len = 3;
    r.serial[0] = 'S';
    r.serial_len = 1;
    r.uri[0] = 'u';
    r.uri_len = 1;
    r.uti[0] = 't';
    r.uti_len = 1;
    for (int i = 0; i < REQS; i++) {
        uint8_t id[16];
        r.created_us = (uint64_t)i; /* odd ones expire at once (see below) */
        int rc;
        while ((rc = pending_create(pt, &r, id)) == -EAGAIN)
            ;
        CHECK_EQ(rc, 0);
        if (i % 2 == 0) {
            rc = pending_take(pt, id, "iot", 3, 0, NULL);
            CHECK(rc == 0 || rc == -ENOENT); /* the expirer may have won */
            if (rc == 0)
                atomic_fetch_add(&taken, 1);
        }
    }
    return NULL;
}

static void test_pending(void)
{
    struct pending_config cfg = {.ttl_s = 1, .max_per_principal = 64};
    CHECK_EQ(pending_create_table(&pt, &cfg), 0);
    pthread_t t[2];
    for (intptr_t i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, requester, (void *)i), 0);
    /* Everything created is already past its expiry at this "now". */
    int done_threads = 0;
    while (done_threads < 2) {
        pending_expire(pt, 10000000, on_expire, NULL);
        done_threads = 0;
        for (int i = 0; i < 2; i++)
            if (t[i] == 0 || pthread_tryjoin_np(t[i], NULL) == 0) {
                t[i] = 0;
                done_threads++;
            }
    }
    pending_expire(pt, 10000000, on_expire, NULL);
    CHECK_EQ(pending_count(pt), 0);
    CHECK_EQ(atomic_load(&taken) + atomic_load(&expired), 2 * REQS);
    pending_destroy_table(pt);
}

int main(void)
{
    test_mailbox();
    test_keys();
    test_pending();
    return 0;
}
