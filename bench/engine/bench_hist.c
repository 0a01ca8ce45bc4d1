/*
 * bench_hist — what a device's history ring costs (issues 2 and 7), through
 * engine.h only, so that the same source builds against an older engine for
 * a before/after in one run (bench/engine/hist.sh does that).
 *
 * One process, one engine with history_len H (--history-len, default 16),
 * N devices (--devices, default 500,000), one row each ("device-%08d",
 * https://shop.example/orders, "uti-%08d"), then E entries per device
 * (--entries, default 1: every odd device gets a second one, so 1-2
 * entries per device). Every entry is an inquiry as the server records it:
 * principal "bench-tp", the row's URI and UTI, 47 bytes. Reports:
 *   rss_B_per_dev     resident bytes per device (process RSS after the
 *                     fill minus before creating the engine, / N)
 *   eng_B_per_dev     engine_stats bytes / N (what mem_limit counts)
 *   fill_ns_per_dev   the fill's time per device: its map and its 1-2
 *                     entries (an engine that allocates whole rings pays
 *                     their memory here, a growing one as entries come)
 *   inquire_ns        engine_inquire_device of a random device
 *   record_young_ns   the same with ENGINE_INQ_RECORD and
 *                     engine_history_add_row from the row callback (the
 *                     server's path), rings holding 1-2 entries (and
 *                     growing as they are recorded into)
 *   record_full_ns    the same once every ring is full (steady state)
 *   rss_full_B_per_dev resident bytes per device with every ring full
 * Latencies: single thread, random devices, best of 3 passes of M ops
 * (--ops, default 1,000,000). --serve: fill, then answer commands on
 * stdin (see serve()), for hist.sh's pass-by-pass alternation.
 */
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
        res = 0;
    fclose(f);
    return res * sysconf(_SC_PAGESIZE);
}

static engine_t *E;
static const char *URI = "https://shop.example/orders";

struct rec_ctx {
    int record;
    uint64_t micros;
    uint64_t sink;
};

static int row_cb(void *arg, const struct engine_row *row)
{
    struct rec_ctx *c = arg;
    c->sink += row->uti_len;
    if (c->record) {
        struct engine_hist h = {.micros = c->micros, .event = ENGINE_H_INQUIRY,
                                .principal = (const uint8_t *)"bench-tp", .principal_len = 8,
                                .uri = row->uri, .uri_len = row->uri_len,
                                .uti = row->uti, .uti_len = row->uti_len};
        if (engine_history_add_row(E, row, &h) != 0)
            abort();
    }
    return 0;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xs(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* ns per inquiry of a random device, best of reps passes of ops each. */
static double pass_n(size_t ndev, size_t ops, int record, int reps)
{
    double best = 1e30;
    struct rec_ctx c = {record, 1, 0};
    for (int p = 0; p < reps; p++) {
        double t0 = now_s();
        for (size_t i = 0; i < ops; i++) {
            char d[32];
            int dl = snprintf(d, sizeof d, "device-%08zu", (size_t)(xs() % ndev));
            c.micros++;
            if (engine_inquire_device_ex(E, d, (size_t)dl, row_cb, &c, NULL,
                                         record ? ENGINE_INQ_RECORD : 0) != 1)
                abort();
        }
        double ns = (now_s() - t0) * 1e9 / (double)ops;
        if (ns < best)
            best = ns;
    }
    if (c.sink == 0)
        abort();
    return best;
}
static double pass(size_t ndev, size_t ops, int record)
{
    return pass_n(ndev, ops, record, 3);
}

/* Every ring full (history_len entries added to every device). */
static int fill_rings(size_t ndev, unsigned hlen)
{
    struct rec_ctx c = {1, 1, 0};
    for (size_t i = 0; i < ndev; i++) {
        char d[32];
        int dl = snprintf(d, sizeof d, "device-%08zu", i);
        for (unsigned k = 0; k < hlen; k++)
            if (engine_inquire_device_ex(E, d, (size_t)dl, row_cb, &c, NULL, 0) != 1)
                return -1;
    }
    return 0;
}

/* --serve: after the fill, one command per stdin line, one answer line
 * each, so that a driver (hist.sh) alternates two builds' processes pass by
 * pass and drift on a shared machine hits both alike:
 *   inquire N | record N  -> "<ns per inquiry>" (one pass of N ops)
 *   full                  -> "ok" once every ring is full
 *   quit */
static int serve(size_t ndev, unsigned hlen)
{
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = 0;
        if (sscanf(line, "inquire %zu", &n) == 1 && n)
            printf("%.2f\n", pass_n(ndev, n, 0, 1));
        else if (sscanf(line, "record %zu", &n) == 1 && n)
            printf("%.2f\n", pass_n(ndev, n, 1, 1));
        else if (!strncmp(line, "full", 4))
            printf(fill_rings(ndev, hlen) ? "error\n" : "ok\n");
        else
            break;
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t ndev = 500000, ops = 1000000;
    unsigned hlen = 16, entries = 1;
    int serving = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--serve"))
            serving = 1;
        else if (!strcmp(argv[i], "--devices") && i + 1 < argc)
            ndev = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
            ops = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--history-len") && i + 1 < argc)
            hlen = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--entries") && i + 1 < argc)
            entries = (unsigned)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--devices N] [--ops M] [--history-len H] "
                            "[--entries E] [--serve]\n", argv[0]);
            return 2;
        }
    }
    if (!ndev || !ops)
        return 2;
    long rss0 = rss_bytes();
    struct engine_config cfg = {.initial_devices = ndev, .history_len = hlen, .hash_seed = 42};
    if (engine_create(&E, &cfg) != 0)
        return 1;
    engine_thread_online(E);
    struct rec_ctx c = {1, 1, 0};
    double t0 = now_s();
    for (size_t i = 0; i < ndev; i++) {
        char d[32], t[32];
        int dl = snprintf(d, sizeof d, "device-%08zu", i);
        int tl = snprintf(t, sizeof t, "uti-%08zu", i);
        struct engine_map_req rq = {.dev = d, .dev_len = (size_t)dl, .uri = URI,
                                    .uri_len = strlen(URI), .uti = t, .uti_len = (size_t)tl};
        if (engine_map(E, &rq, i + 1, NULL) != 0)
            return 1;
        /* entries per device, one more on every odd device (1-2 by default) */
        unsigned n = entries + (hlen && (i & 1));
        for (unsigned k = 0; k < n && hlen; k++)
            if (engine_inquire_device_ex(E, d, (size_t)dl, row_cb, &c, NULL, 0) != 1)
                return 1;
    }
    double fill = (now_s() - t0) * 1e9 / (double)ndev;
    long rss1 = rss_bytes();
    struct engine_stats st;
    engine_stats(E, &st);
    printf("devices %zu history_len %u entries %u-%u\n", ndev, hlen, hlen ? entries : 0,
           hlen ? entries + 1 : 0);
    printf("rss_B_per_dev %.0f\n", (double)(rss1 - rss0) / (double)ndev);
    printf("eng_B_per_dev %.0f\n", (double)st.bytes / (double)ndev);
    printf("fill_ns_per_dev %.1f\n", fill);
    if (serving) {
        printf("ready\n");
        fflush(stdout);
        serve(ndev, hlen);
        engine_thread_offline(E);
        engine_destroy(E);
        return 0;
    }
    printf("inquire_ns %.1f\n", pass(ndev, ops, 0));
    if (hlen) {
        /* Young rings: measured on a copy of the fill's state each pass
         * would cost a refill; instead the first pass's ops are spread over
         * N devices, so most still hold few entries. */
        printf("record_young_ns %.1f\n", pass(ndev, ops < ndev ? ops : ndev, 1));
        if (fill_rings(ndev, hlen) != 0)
            return 1;
        printf("record_full_ns %.1f\n", pass(ndev, ops, 1));
        printf("rss_full_B_per_dev %.0f\n", (double)(rss_bytes() - rss0) / (double)ndev);
    }
    engine_thread_offline(E);
    engine_destroy(E);
    return 0;
}
