/*
 * test_engine_loop.c — the engine's loop mode (engine.h; label concurrency,
 * also under TSan). A reader in loop mode keeps its read section open
 * across calls: records replaced meanwhile must stay allocated until it
 * passes a quiescent point, and be freed after it. A writer in loop mode
 * and engine_destroy called in loop mode must not wait for themselves.
 * engine_stats().bytes drops only when retired memory is really freed, so
 * it is the observable here.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "test.h"

#define NDEV 2000

static engine_t *E;
static atomic_int phase; /* 0 start, 1 reader in loop mode, 2 quiesce, 3 quiesced, 4 stop */

static void dev_name(char *out, int i) { snprintf(out, 24, "loop-dev-%04d", i); }

static int on_row(void *arg, const struct engine_row *r)
{
    ++*(int *)arg;
    return r->uti_len ? 0 : 1;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t bytes(void)
{
    struct engine_stats st;
    engine_stats(E, &st);
    return st.bytes;
}

static void map_all(uint64_t *lsn, const char *uti_tag)
{
    char d[24], t[32];
    for (int i = 0; i < NDEV; i++) {
        dev_name(d, i);
        snprintf(t, sizeof t, "%s-%04d", uti_tag, i);
        struct engine_map_req rq = {.dev = d, .dev_len = strlen(d),
                                    .uri = "https://svc.example/api", .uri_len = 23,
                                    .uti = t, .uti_len = strlen(t)};
        CHECK_EQ(engine_map(E, &rq, ++*lsn, NULL), 0);
    }
}

static void *reader_main(void *arg)
{
    (void)arg;
    char d[24];
    int n = 0;
    engine_thread_online(E);
    engine_thread_loop_begin(E);
    dev_name(d, 7);
    CHECK_EQ(engine_inquire_device(E, d, strlen(d), on_row, &n, NULL), 1);
    CHECK_EQ(n, 1);
    atomic_store(&phase, 1);
    /* Holds its section (sleeping in loop mode is what the contract tells
     * a real loop not to do: here it is the point) until told. */
    for (int i = 0; i < 20000 && atomic_load(&phase) < 2; i++)
        nap_ms(1);
    engine_thread_quiescent(E);
    atomic_store(&phase, 3);
    /* Reads and quiescent points, as a loop does, until stopped. */
    for (int i = 0; i < 200000 && atomic_load(&phase) < 4; i++) {
        n = 0;
        dev_name(d, i % NDEV);
        int rc = engine_inquire_device(E, d, strlen(d), on_row, &n, NULL);
        CHECK(rc >= 1 && rc <= 2 && n == rc);
        if ((i & 15) == 15)
            engine_thread_quiescent(E);
    }
    CHECK(engine_thread_loop_end(E));
    CHECK(!engine_thread_loop_end(E)); /* only once */
    engine_thread_offline(E);
    return NULL;
}

/* Polls (bounded) until the engine's bytes fall to at most want. */
static uint64_t wait_bytes_at_most(uint64_t want, int quiesce)
{
    uint64_t b = bytes();
    for (int i = 0; i < 5000 && b > want; i++) {
        if (quiesce)
            engine_thread_quiescent(E);
        nap_ms(1);
        b = bytes();
    }
    return b;
}

static void test_reader_holds_then_releases(void)
{
    struct engine_config cfg = {0};
    uint64_t lsn = 0;
    CHECK_EQ(engine_create(&E, &cfg), 0);
    engine_thread_online(E);
    map_all(&lsn, "first");
    /* Let what the load retired (grown tables) be freed: bytes unchanged
     * for 200 ms with no reader about. (urcu_memb_barrier would say it
     * exactly, but hands its completion between liburcu's threads in a
     * way TSan cannot follow.) */
    uint64_t base = bytes();
    for (int i = 0, same = 0; i < 200 && same < 4; i++) {
        nap_ms(50);
        uint64_t b = bytes();
        same = b == base ? same + 1 : 0;
        base = b;
    }

    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, reader_main, NULL), 0);
    for (int i = 0; i < 20000 && atomic_load(&phase) < 1; i++)
        nap_ms(1);
    CHECK_EQ(atomic_load(&phase), 1);

    /* Every device gets a second row: each record is replaced by a longer
     * version, and every old version is retired. */
    map_all(&lsn, "second");
    uint64_t held = bytes();
    CHECK(held > base);
    nap_ms(300); /* liburcu's callback thread had every chance meanwhile */
    uint64_t still = bytes();
    /* Nothing retired after the reader opened its section was freed: the
     * old versions (at least ~NDEV * 40 bytes) are all still counted. */
    CHECK_EQ(still, held);

    atomic_store(&phase, 2);
    for (int i = 0; i < 20000 && atomic_load(&phase) < 3; i++)
        nap_ms(1);
    CHECK_EQ(atomic_load(&phase), 3);
    /* After its quiescent point they go: the live set is what a table built
     * with both rows holds, so at least NDEV small records fewer bytes. */
    uint64_t after = wait_bytes_at_most(held - (uint64_t)NDEV * 32, 0);
    CHECK(after <= held - (uint64_t)NDEV * 32);

    atomic_store(&phase, 4);
    CHECK_EQ(pthread_join(th, NULL), 0);
    engine_thread_offline(E);
    engine_destroy(E);
    printf("loop mode: %llu bytes held while the reader's section stayed open, "
           "%llu after its quiescent point (base %llu)\n",
           (unsigned long long)still, (unsigned long long)after,
           (unsigned long long)base);
}

/* The writer itself in loop mode: its retired versions are freed once it
 * passes its own quiescent points, and engine_destroy, called in loop
 * mode, waits for its grace periods without waiting for its caller. */
static void test_writer_in_loop_mode(void)
{
    struct engine_config cfg = {0};
    uint64_t lsn = 0;
    CHECK_EQ(engine_create(&E, &cfg), 0);
    engine_thread_online(E);
    CHECK(!engine_thread_loop_end(E)); /* not in loop mode yet */
    engine_thread_loop_begin(E);
    engine_thread_loop_begin(E); /* idempotent */
    map_all(&lsn, "first");
    uint64_t held;
    map_all(&lsn, "second");
    held = bytes();
    uint64_t after = wait_bytes_at_most(held - (uint64_t)NDEV * 32, 1);
    CHECK(after <= held - (uint64_t)NDEV * 32);
    char d[24];
    int n = 0;
    dev_name(d, 3);
    CHECK_EQ(engine_inquire_device(E, d, strlen(d), on_row, &n, NULL), 2);
    CHECK_EQ(n, 2);
    /* Leaves records to retire in destroy's own batch. */
    CHECK_EQ(engine_demap_device(E, d, strlen(d), ++lsn, NULL, NULL), 2);
    engine_destroy(E);
    CHECK(!engine_thread_loop_end(E)); /* destroy ended it (E unused) */
    engine_thread_offline(E);
}

int main(void)
{
    test_reader_holds_then_releases();
    test_writer_in_loop_mode();
    printf("test_engine_loop: ok\n");
    return 0;
}
