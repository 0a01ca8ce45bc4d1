/*
 * bench_icsc.c — icsc-bench: the C client library's pipelined throughput
 * (icsc_batch_*) against icsd, on the same keys as bench/net/ics-loadgen
 * (devices dev-%08u, rows preloaded by `ics-loadgen --preload N`), so the
 * two figures compare the client library's overhead with the raw generator.
 *
 *   icsc-bench --port P --user U --secret S [--depth D] [--duration S]
 *              [--keys N] [--op inquire|binding] [--mode stream|batch]
 * --mode stream (default): icsc_pipe_* keeps D requests in flight, as the
 * generator does; --mode batch: icsc_batch_* sends D, collects D, repeats.
 * Prints: ops_per_s=... in the loadgen's format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "icsc.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    icsc_opts o = {.host = "127.0.0.1", .port = 11311, .timeout_ms = 10000};
    int depth = 64, duration = 5, binding = 0, batch_mode = 0;
    unsigned keys = 10000;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) o.port = (uint16_t)atoi(v);
        else if (!strcmp(a, "--user")) o.user = v;
        else if (!strcmp(a, "--secret")) o.secret = v;
        else if (!strcmp(a, "--depth")) depth = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atoi(v);
        else if (!strcmp(a, "--keys")) keys = (unsigned)atoi(v);
        else if (!strcmp(a, "--op")) binding = !strcmp(v, "binding");
        else if (!strcmp(a, "--mode")) batch_mode = !strcmp(v, "batch");
        else {
            fprintf(stderr, "usage: icsc-bench [--host H] [--port P] [--user U --secret S] "
                            "[--depth D] [--duration S] [--keys N] [--op inquire|binding]\n");
            return 2;
        }
    }
    icsc *c;
    int rc = icsc_connect(&c, &o);
    if (rc) {
        fprintf(stderr, "icsc-bench: connect: %s\n", icsc_strerror(rc));
        return 3;
    }
    icsc_batch *b = icsc_batch_new(c);
    uint64_t rng = 88172645463325252ull, ops = 0, errors = 0;
    double t0 = now_s(), end = t0 + duration;
    char key[64], uti[32];
    uint8_t v[64];
    while (!batch_mode) {
        /* Top the window up to depth, then take one answer. */
        while (icsc_pipe_in_flight(c) < (size_t)depth) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            unsigned k = (unsigned)(rng % keys);
            if (binding) {
                int kl = snprintf(key, sizeof key, "https://svc%u.example.com/api", k % 100);
                int tl = snprintf(uti, sizeof uti, "uti-%08u", k);
                v[0] = 0;
                v[1] = (uint8_t)tl;
                memcpy(v + 2, uti, (size_t)tl);
                rc = icsc_pipe_send(c, ICSC_OP_INQUIRE_BINDING, NULL, 0, key, (size_t)kl, v, (size_t)tl + 2, 0);
            } else {
                int kl = snprintf(key, sizeof key, "dev-%08u", k);
                rc = icsc_pipe_send(c, ICSC_OP_INQUIRE_DEVICE, NULL, 0, key, (size_t)kl, NULL, 0, 0);
            }
            if (rc) {
                fprintf(stderr, "icsc-bench: %s\n", icsc_strerror(rc));
                return 3;
            }
        }
        icsc_frame f;
        if ((rc = icsc_pipe_recv(c, &f, -1)) != 0) {
            fprintf(stderr, "icsc-bench: %s\n", icsc_strerror(rc));
            return 3;
        }
        errors += f.status != 0;
        ops++;
        if ((ops & 1023) == 0 && now_s() >= end)
            break;
    }
    while (!batch_mode && icsc_pipe_in_flight(c)) {
        icsc_frame f;
        if (icsc_pipe_recv(c, &f, -1) != 0)
            break;
    }
    while (batch_mode && now_s() < end) {
        icsc_batch_reset(b);
        for (int i = 0; i < depth; i++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            unsigned k = (unsigned)(rng % keys);
            if (binding) {
                snprintf(key, sizeof key, "https://svc%u.example.com/api", k % 100);
                snprintf(uti, sizeof uti, "uti-%08u", k);
                icsc_batch_add_inquire_binding(b, key, uti);
            } else {
                snprintf(key, sizeof key, "dev-%08u", k);
                icsc_batch_add_inquire_device(b, key);
            }
        }
        if ((rc = icsc_batch_flush(b)) != 0) {
            fprintf(stderr, "icsc-bench: %s\n", icsc_strerror(rc));
            return 3;
        }
        for (int i = 0; i < depth; i++)
            errors += icsc_batch_status(b, (size_t)i) != 0;
        ops += (uint64_t)depth;
    }
    double secs = now_s() - t0;
    printf("icsc-%s ops=%llu errors=%llu secs=%.2f ops_per_s=%.0f\n", batch_mode ? "batch" : "stream", (unsigned long long)ops,
           (unsigned long long)errors, secs, (double)ops / secs);
    icsc_batch_free(b);
    icsc_close(c);
    return 0;
}
