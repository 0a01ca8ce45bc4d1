/*
 * engine_demo — shows the engine working without the daemon: loads N rows
 * (UUID-like device IDs and UTIs, 1,000 service URIs, 1-4 rows per device),
 * runs inquiries by device and by binding, and prints a short summary.
 *   engine_demo [--rows N]     (default 1,000,000)
 */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* 36-byte UUID-shaped string derived from (kind, n). */
static void uuid(char out[37], uint64_t kind, uint64_t n)
{
    uint64_t a = mix(n * 2 + kind), b = mix(a + n);
    snprintf(out, 37, "%08x-%04x-4%03x-a%03x-%012" PRIx64, (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(b >> 52) & 0xfff, (uint64_t)(b & 0xffffffffffffULL));
}

static void uri_of(char out[64], uint64_t k)
{
    snprintf(out, 64, "https://svc%04u.example.com/api", (unsigned)(k % 1000));
}

static int count_row(void *arg, const struct engine_row *r)
{
    (void)r;
    ++*(uint64_t *)arg;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t rows = 1000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            rows = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--rows N]\n", argv[0]);
            return 2;
        }
    }
    if (rows == 0) {
        fprintf(stderr, "%s: --rows must be at least 1\n", argv[0]);
        return 2;
    }
    engine_t *e;
    struct engine_config cfg = {.initial_devices = 0};
    if (engine_create(&e, &cfg) != 0)
        return 1;
    engine_thread_online(e);

    double t0 = now_s();
    uint64_t dev = 0, made = 0, lsn = 0;
    char d[37], u[64], t[37];
    while (made < rows) {
        unsigned per = 1 + (unsigned)(mix(dev) % 4);
        uuid(d, 0, dev);
        for (unsigned k = 0; k < per && made < rows; k++, made++) {
            uri_of(u, mix(made));
            uuid(t, 1, made);
            struct engine_map_req rq = {.dev = d, .dev_len = 36,
                                        .uri = u, .uri_len = strlen(u),
                                        .uti = t, .uti_len = 36};
            int rc = engine_map(e, &rq, ++lsn, NULL);
            if (rc != 0) {
                fprintf(stderr, "map failed: %d\n", rc);
                return 1;
            }
        }
        dev++;
    }
    double t1 = now_s();
    if (dev == 0) /* rows >= 1 makes at least one device; says so to the analyzers */
        return 1;

    uint64_t seen = 0, nq = rows < 2000000 ? 2000000 : rows;
    for (uint64_t i = 0; i < nq; i++) {
        uuid(d, 0, mix(i) % dev);
        if (engine_inquire_device(e, d, 36, count_row, &seen, NULL) < 0)
            return 1;
    }
    double t2 = now_s();
    for (uint64_t i = 0; i < nq; i++) {
        uint64_t r = mix(i + 7) % rows;
        uri_of(u, mix(r));
        uuid(t, 1, r);
        if (engine_inquire_binding(e, u, strlen(u), t, 36, count_row, &seen,
                                   NULL) != 1)
            return 1;
    }
    double t3 = now_s();

    struct engine_stats st;
    engine_stats(e, &st);
    printf("engine_demo: %" PRIu64 " rows, %" PRIu64 " devices, %" PRIu64
           " URIs, %" PRIu64 " resizes\n", st.rows, st.devices, st.uris,
           st.resizes);
    printf("  load      %.0f maps/s\n", (double)rows / (t1 - t0));
    printf("  memory    %.1f bytes/row (%" PRIu64 " bytes held)\n",
           (double)st.bytes / (double)st.rows, st.bytes);
    printf("  by device %.0f lookups/s (1 thread)\n", (double)nq / (t2 - t1));
    printf("  by binding %.0f lookups/s (1 thread)\n", (double)nq / (t3 - t2));
    engine_thread_offline(e);
    engine_destroy(e);
    return 0;
}
