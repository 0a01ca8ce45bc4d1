/*
 * crash_writer — the child the crash harness kills: maps and demaps through
 * a real store under load and prints every change it issues ("I") and every
 * acknowledgement it gets ("A", with the LSN) on stdout, one write(2) per
 * line so a line is never torn. Tiny segments and snapshot thresholds make
 * rotations and background snapshots happen all the time.
 *
 *   crash_writer DIR GENERATION [THREADS [relaxed]]
 *
 * Thread t of generation g works on devices g<g>t<t>n<n>: maps row /0,
 * maps row /1 (each waited for), and for odd n demaps the whole previous
 * device. ICS_CRASH_POINTS (read by the store) adds abort()s.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static store_t *s;
static int gen;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void say(char kind, char op, const char *dev, const char *row, uint64_t lsn)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "%c %c %s %s %llu\n", kind, op, dev, row,
                     (unsigned long long)lsn);
    pthread_mutex_lock(&out_mu);
    if (write(1, line, (size_t)n) != n)
        _exit(3); /* the harness went away */
    pthread_mutex_unlock(&out_mu);
}

struct one { pthread_mutex_t mu; pthread_cond_t cv; int done, status; uint64_t lsn; };
static void one_done(void *arg, int status, uint64_t lsn)
{
    struct one *o = arg;
    pthread_mutex_lock(&o->mu);
    o->done = 1;
    o->status = status;
    o->lsn = lsn;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}
static int one_wait(struct one *o)
{
    pthread_mutex_lock(&o->mu);
    while (!o->done)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    o->done = 0;
    return o->status;
}

static void *writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    struct one o;
    pthread_mutex_init(&o.mu, NULL);
    pthread_cond_init(&o.cv, NULL);
    o.done = 0;
    char dev[64], prev[64], uti[80], uri[64];
    for (long n = 0;; n++) {
        snprintf(dev, sizeof(dev), "g%dt%dn%ld", gen, t, n);
        snprintf(uri, sizeof(uri), "https://svc%ld.example", n % 4);
        for (int k = 0; k < 2; k++) {
            snprintf(uti, sizeof(uti), "%s/%d", dev, k);
            struct engine_map_req rq = {dev, strlen(dev), uri, strlen(uri), uti, strlen(uti),
                                        "owner", 5, 0, 0};
            say('I', 'M', dev, k ? "1" : "0", 0);
            int r = store_map(s, &rq, "crash", 5, one_done, &o);
            if (r != 0) {
                fprintf(stderr, "crash_writer: map %s: %d\n", dev, r);
                exit(4);
            }
            if (one_wait(&o) != 0) {
                fprintf(stderr, "crash_writer: map %s not durable: %d\n", dev, o.status);
                exit(4);
            }
            say('A', 'M', dev, k ? "1" : "0", o.lsn);
        }
        if (n % 2 == 1) {
            snprintf(prev, sizeof(prev), "g%dt%dn%ld", gen, t, n - 1);
            say('I', 'D', prev, "-", 0);
            int r = store_demap_device(s, prev, strlen(prev), "crash", 5, one_done, &o);
            if (r != 2) {
                fprintf(stderr, "crash_writer: demap %s: %d\n", prev, r);
                exit(4);
            }
            if (one_wait(&o) != 0)
                exit(4);
            say('A', 'D', prev, "-", o.lsn);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: crash_writer DIR GENERATION [THREADS]\n");
        return 2;
    }
    gen = atoi(argv[2]);
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    engine_t *e;
    /* Presized, as a deployment would be: shrinks and regrowth happen here. */
    /* History kept, as the server does by default: a demapped device stays
     * as a record without rows, which snapshots must carry. */
    struct engine_config ec = {.initial_devices = 4096, .history_len = 16};
    if (engine_create(&e, &ec) < 0)
        return 5;
    /* relaxed: acknowledged once written, so a killed process (not a lost
     * machine) still keeps every acknowledged change. */
    int relaxed = argc > 4 && !strcmp(argv[4], "relaxed");
    struct store_config cfg = {.dir = argv[1], .segment_bytes = 16 << 10,
                               .snapshot_log_bytes = 48 << 10,
                               .durability = relaxed ? STORE_RELAXED : STORE_SYNC};
    char err[512];
    if (store_open(&s, e, &cfg, err, sizeof(err)) < 0 || store_recover(s, err, sizeof(err)) < 0) {
        fprintf(stderr, "crash_writer: %s\n", err);
        return 5;
    }
    if (store_start(s) < 0)
        return 5;
    say('S', '-', "start", "-", 0);
    pthread_t th[64];
    for (int i = 0; i < threads && i < 64; i++)
        pthread_create(&th[i], NULL, writer, (void *)(intptr_t)i);
    for (int i = 0; i < threads && i < 64; i++)
        pthread_join(th[i], NULL); /* never returns: the harness kills us */
    return 0;
}
