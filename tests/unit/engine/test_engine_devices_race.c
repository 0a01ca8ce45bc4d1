/*
 * test_engine_devices_race.c — what a snapshot reads while the server runs
 * (label concurrency, also under TSan): one thread visits every device
 * record with engine_iterate_devices and copies each ring with
 * engine_device_history, while the writer maps, demaps (logged entries with
 * their keys, as the store adds them) and an inquiry thread records
 * unlogged entries on the same devices. Each copy must be consistent: at
 * most history_len entries, logged entries in key order, and the key never
 * behind the newest logged entry copied (which is what makes a replay over
 * the image add nothing twice).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "test.h"

#define NDEV 64
#define HLEN 8

static engine_t *E;
static int stop;
static uint64_t visits, entries_seen;

static void dev_name(char *out, int i) { snprintf(out, 16, "dev%02d", i); }

/* The logged entries carry their key in micros (lsn * 16 + part), so a
 * copy can check them against the ring's key. */
struct copy { uint64_t last; int n, bad; };
static int hist_cb(void *arg, const struct engine_hist *h)
{
    struct copy *c = arg;
    c->n++;
    if (h->event == ENGINE_H_INQUIRY)
        return 0;
    if (h->micros <= c->last)
        c->bad = 1; /* logged entries out of order, or one twice */
    c->last = h->micros;
    return 0;
}
static int dev_cb(void *arg, const struct engine_device *d)
{
    struct copy c = {0, 0, 0};
    uint64_t lsn;
    uint32_t part;
    int n = engine_device_history(E, d, hist_cb, &c, &lsn, &part);
    CHECK(n >= 0 && n <= HLEN && n == c.n);
    CHECK(!c.bad);
    /* The key covers every logged entry copied with it. */
    CHECK(c.last <= lsn * 16 + part);
    __atomic_fetch_add(&entries_seen, (uint64_t)n, __ATOMIC_RELAXED);
    return 0;
}

static void *snapshotter(void *arg)
{
    engine_thread_online(E);
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        uint64_t cur = 0;
        do
            CHECK(engine_iterate_devices(E, &cur, 16, dev_cb, NULL, NULL) >= 0);
        while (cur != 0);
        __atomic_fetch_add(&visits, 1, __ATOMIC_RELAXED);
    }
    engine_thread_offline(E);
    return NULL;
}

static void *inquirer(void *arg)
{
    engine_thread_online(E);
    char dev[16];
    uint64_t k = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        dev_name(dev, (int)(k++ % NDEV));
        struct engine_hist h = {.micros = k, .event = ENGINE_H_INQUIRY,
                                .principal = (const uint8_t *)"tpsp", .principal_len = 4};
        int r = engine_history_add(E, dev, strlen(dev), &h);
        CHECK(r == 0 || r == -ENOENT);
    }
    engine_thread_offline(E);
    return NULL;
}

static void logged(const char *dev, uint8_t ev, const char *uti, uint64_t lsn, uint32_t part)
{
    struct engine_hist h = {.micros = lsn * 16 + part, .event = ev,
                            .principal = (const uint8_t *)"admin", .principal_len = 5,
                            .uri = (const uint8_t *)"https://u", .uri_len = 9,
                            .uti = (const uint8_t *)uti, .uti_len = (uint16_t)strlen(uti),
                            .lsn = lsn, .part = part};
    CHECK_EQ(engine_history_add(E, dev, strlen(dev), &h), 0);
}

int main(void)
{
    struct engine_config c = {.initial_devices = 16, .history_len = HLEN};
    CHECK_EQ(engine_create(&E, &c), 0);
    engine_thread_online(E);
    pthread_t a, b;
    CHECK_EQ(pthread_create(&a, NULL, snapshotter, NULL), 0);
    CHECK_EQ(pthread_create(&b, NULL, inquirer, NULL), 0);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t lsn = 0;
    char dev[16], uti[16];
    for (uint64_t round = 0;; round++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
        if (el > 1.5 && round > 2000)
            break;
        int i = (int)(round % NDEV);
        dev_name(dev, i);
        snprintf(uti, sizeof(uti), "u%llu", (unsigned long long)round);
        struct engine_map_req rq = {dev, strlen(dev), "https://u", 9, uti, strlen(uti),
                                    "owner", 5, 0, 0};
        CHECK_EQ(engine_map(E, &rq, ++lsn, NULL), 0);
        logged(dev, ENGINE_H_MAP, uti, lsn, 0);
        if (round % 3 == 2) {
            /* the whole device: one change, one entry per row */
            int n = engine_demap_device(E, dev, strlen(dev), ++lsn, NULL, NULL);
            CHECK(n >= 1);
            for (int k = 0; k < n; k++)
                logged(dev, ENGINE_H_DEMAP, "gone", lsn, (uint32_t)k);
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK(__atomic_load_n(&visits, __ATOMIC_RELAXED) > 0);
    printf("test_engine_devices_race: ok (%llu full visits, %llu entries copied, LSN %llu)\n",
           (unsigned long long)visits, (unsigned long long)entries_seen,
           (unsigned long long)lsn);
    engine_thread_offline(E);
    engine_destroy(E);
    return 0;
}
