/*
 * crash_harness — kills a real writer process at random moments and checks
 * that recovery keeps every acknowledged change and half-applies nothing.
 *
 *   crash_harness WRITER_BINARY
 *
 * Each round starts crash_writer on the same data directory (recovery
 * first; every fourth round in STORE_RELAXED, whose acknowledged changes
 * are written and so must survive a killed process), lets it run 30-300 ms,
 * SIGKILLs it (every other round it also
 * runs with ICS_CRASH_POINTS (and ICS_CRASH_AT to pick one kind), so it may
 * abort() itself between write and fsync, around the snapshot rename, or
 * mid-snapshot), then opens
 * the directory in this process and checks, for every device ever touched:
 *   demap acknowledged            -> no rows
 *   demap issued, not acknowledged -> both rows or none (never one)
 *   map acknowledged              -> that row present
 *   never issued                  -> absent (any row found must be issued)
 * and every device's history (the writer keeps 16 entries a device, so a
 * demapped device stays as a record without rows; snapshots come every
 * 48 KiB of log and delete the segments before them) must be exactly what
 * its rows say happened, newest first, each entry once:
 *   rows /0 and /1 -> map /1, map /0;  row /0 only -> map /0;
 *   no rows        -> demap /1, demap /0, map /1, map /0, or nothing at all
 *                     (its first map never became durable).
 * At least 45 kills, bounded to ~60 s (ICS_CRASH_LONG=1: 300 kills, up to an
 * hour; scripts/test.sh's nightly mode runs it so, outside ctest, whose
 * timeout fits the short run). Prints a
 * report: kills, acknowledged changes checked, lost (must be 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "test.h"

enum { I0 = 1, A0 = 2, I1 = 4, A1 = 8, ID = 16, AD = 32 };
struct dev { char name[40]; uint8_t f; };
static struct dev *devs;
static size_t ndevs, cap = 1u << 16;
static uint32_t *slots; /* open addressing: index + 1 */

static uint32_t h32(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (uint8_t)*s++) * 16777619u;
    return h;
}
static void grow(void);
static struct dev *find(const char *name, int make)
{
    uint32_t i = h32(name) & (uint32_t)(cap * 2 - 1);
    while (slots[i]) {
        struct dev *d = &devs[slots[i] - 1];
        if (!strcmp(d->name, name))
            return d;
        i = (i + 1) & (uint32_t)(cap * 2 - 1);
    }
    if (!make)
        return NULL;
    if (ndevs + 1 >= cap) {
        grow();
        return find(name, 1);
    }
    struct dev *d = &devs[ndevs];
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->f = 0;
    slots[i] = (uint32_t)++ndevs;
    return d;
}
static void grow(void)
{
    cap *= 2;
    devs = realloc(devs, cap * sizeof(*devs));
    free(slots);
    slots = calloc(cap * 2, sizeof(*slots));
    CHECK(devs && slots);
    size_t n = ndevs;
    ndevs = 0;
    for (size_t k = 0; k < n; k++) {
        struct dev tmp = devs[k];
        find(tmp.name, 1)->f = tmp.f;
    }
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t acked_total;

static void parse_line(char *line)
{
    char kind, op, name[64], row[8];
    unsigned long long lsn;
    if (sscanf(line, "%c %c %63s %7s %llu", &kind, &op, name, row, &lsn) != 5 || kind == 'S')
        return;
    struct dev *d = find(name, 1);
    uint8_t bit = op == 'D' ? ID : row[0] == '0' ? I0 : I1;
    if (kind == 'A') {
        bit <<= 1;
        acked_total++;
    }
    d->f |= bit;
}

/* --- verification through a real store ------------------------------------ */
struct seen { uint8_t rows; };
static int row_cb(void *arg, const struct engine_row *r)
{
    int *mask = arg;
    if (r->uti_len >= 2 && r->uti[r->uti_len - 2] == '/')
        *mask |= r->uti[r->uti_len - 1] == '0' ? 1 : 2;
    return 0;
}
/* A device's history as "M0 M1 D0 ...", newest first. */
struct hctx { char s[64]; size_t n; };
static int hist_cb(void *arg, const struct engine_hist *h)
{
    struct hctx *c = arg;
    char k = h->uti_len >= 2 && h->uti[h->uti_len - 2] == '/' ? (char)h->uti[h->uti_len - 1]
                                                               : '?';
    char ev = h->event == ENGINE_H_MAP ? 'M' : h->event == ENGINE_H_DEMAP ? 'D' : '?';
    if (h->principal_len != 5 || memcmp(h->principal, "crash", 5))
        ev = '?';
    if (c->n + 4 < sizeof(c->s))
        c->n += (size_t)snprintf(c->s + c->n, sizeof(c->s) - c->n, "%s%c%c", c->n ? " " : "",
                                 ev, k);
    return 0;
}
static int history_ok(const char *hist, int mask)
{
    if (mask == 3)
        return !strcmp(hist, "M1 M0");
    if (mask == 1)
        return !strcmp(hist, "M0");
    if (mask == 0)
        return !strcmp(hist, "D1 D0 M1 M0") || !strcmp(hist, "");
    return 0;
}
struct orphan_ctx { uint64_t rows, orphans; };
static int all_cb(void *arg, const struct engine_row *r)
{
    struct orphan_ctx *c = arg;
    char name[64];
    c->rows++;
    snprintf(name, sizeof(name), "%.*s", r->device_len, r->device);
    struct dev *d = find(name, 0);
    int k = r->uti[r->uti_len - 1] == '0' ? 0 : 1;
    if (!d || !(d->f & (k ? I1 : I0)) || (d->f & AD))
        c->orphans++;
    return 0;
}

static void verify(const char *dir, uint64_t *checked, uint64_t *lost, uint64_t *half,
                   uint64_t *orphans, uint64_t *hchecked, uint64_t *hbad)
{
    engine_t *e;
    /* initial_devices: see tests/unit/persist/ptest.h; history_len as the
     * writer's. */
    struct engine_config ec = {.initial_devices = 16, .history_len = 16};
    CHECK(engine_create(&e, &ec) == 0);
    store_t *s;
    char err[512];
    struct store_config cfg = {.dir = dir};
    if (store_open(&s, e, &cfg, err, sizeof(err)) < 0 ||
        store_recover(s, err, sizeof(err)) < 0) {
        fprintf(stderr, "crash_harness: recovery failed: %s\n", err);
        exit(1);
    }
    engine_thread_online(e);
    for (size_t i = 0; i < ndevs; i++) {
        struct dev *d = &devs[i];
        int mask = 0;
        engine_inquire_device(e, d->name, strlen(d->name), row_cb, &mask, NULL);
        struct hctx hc = {.n = 0};
        hc.s[0] = 0;
        engine_history_get(e, d->name, strlen(d->name), 16, hist_cb, &hc);
        ++*hchecked;
        if (!history_ok(hc.s, mask)) {
            ++*hbad;
            fprintf(stderr, "HISTORY: %s (rows %d) has \"%s\"\n", d->name, mask, hc.s);
        }
        if ((d->f & AD) && !hc.n) {
            ++*hbad; /* an acknowledged demap's record and entries are durable */
            fprintf(stderr, "HISTORY: %s: acknowledged demap, no history\n", d->name);
        }
        if (d->f & AD) {
            ++*checked;
            if (mask) {
                ++*lost;
                fprintf(stderr, "LOST: acknowledged demap of %s, rows %d still there\n",
                        d->name, mask);
            }
        } else if (d->f & ID) {
            if (mask != 0 && mask != 3) {
                ++*half;
                fprintf(stderr, "HALF: demap of %s half applied (rows %d)\n", d->name, mask);
            }
        } else {
            if (d->f & A0) {
                ++*checked;
                if (!(mask & 1)) {
                    ++*lost;
                    fprintf(stderr, "LOST: acknowledged map %s/0 missing\n", d->name);
                }
            }
            if (d->f & A1) {
                ++*checked;
                if (!(mask & 2)) {
                    ++*lost;
                    fprintf(stderr, "LOST: acknowledged map %s/1 missing\n", d->name);
                }
            }
        }
    }
    struct orphan_ctx oc = {0};
    uint64_t cur = 0;
    do
        engine_iterate(e, &cur, 1024, all_cb, &oc);
    while (cur != 0);
    *orphans += oc.orphans;
    engine_thread_offline(e);
    store_close(s);
    engine_destroy(e);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: crash_harness WRITER_BINARY\n");
        return 2;
    }
    devs = calloc(cap, sizeof(*devs));
    slots = calloc(cap * 2, sizeof(*slots));
    int longrun = getenv("ICS_CRASH_LONG") && atoi(getenv("ICS_CRASH_LONG")) > 0;
    int min_kills = longrun ? 300 : 45;
    uint64_t budget_ms = longrun ? 3600000u : 60000u;
    char dir[256];
    snprintf(dir, sizeof(dir), "%s/icscrash-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(dir));
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    uint64_t t0 = mono_ms(), kills = 0, aborts = 0, checked = 0, lost = 0, half = 0,
             orphans = 0, rounds = 0, hchecked = 0, hbad = 0;
    for (int round = 0;; round++) {
        if (mono_ms() - t0 > budget_ms && round >= 1)
            break;
        int p[2];
        CHECK(pipe(p) == 0);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            struct rlimit rl = {0, 0};
            setrlimit(RLIMIT_CORE, &rl);
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            /* Odd rounds arm the store's crash points, in turn all of
             * them, only the snapshot rename ones, only mid-snapshot. */
            static const char *const at[] = {NULL, "rename", "mid-snapshot"};
            if (round % 2) {
                const char *only = at[(round / 2) % 3];
                setenv("ICS_CRASH_POINTS", only ? "2" : "15", 1);
                if (only)
                    setenv("ICS_CRASH_AT", only, 1);
            }
            char g[16];
            snprintf(g, sizeof(g), "%d", round);
            /* Every fourth round in STORE_RELAXED: its acknowledgements
             * must survive a killed process too (they are written). */
            execl(argv[1], argv[1], dir, g, "16", round % 4 == 3 ? "relaxed" : "sync",
                  (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        uint64_t run_ms = 30 + (uint64_t)(rand() % 270), start = mono_ms();
        int started = 0, killed = 0;
        char buf[1 << 16];
        size_t have = 0;
        for (;;) {
            uint64_t now = mono_ms();
            if (!killed && started && now - start >= run_ms) {
                kill(pid, SIGKILL);
                killed = 1;
            }
            if (!killed && now - start > 20000) { /* recovery must not take this long */
                kill(pid, SIGKILL);
                fprintf(stderr, "crash_harness: writer did not start in 20 s\n");
                return 1;
            }
            struct pollfd pf = {p[0], POLLIN, 0};
            int pr = poll(&pf, 1, killed ? 1000 : 5);
            if (pr <= 0)
                continue;
            ssize_t n = read(p[0], buf + have, sizeof(buf) - have - 1);
            if (n <= 0)
                break; /* EOF: the writer is gone and the pipe drained */
            have += (size_t)n;
            buf[have] = 0;
            char *line = buf, *nl;
            while ((nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
                *nl = 0;
                if (line[0] == 'S') {
                    started = 1;
                    start = mono_ms();
                }
                parse_line(line);
                line = nl + 1;
            }
            have -= (size_t)(line - buf);
            memmove(buf, line, have);
        }
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
            kills++;
        else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT)
            aborts++;
        else {
            fprintf(stderr, "crash_harness: writer ended unexpectedly (status 0x%x)\n", st);
            return 1;
        }
        verify(dir, &checked, &lost, &half, &orphans, &hchecked, &hbad);
        rounds++;
        if (kills + aborts >= (uint64_t)min_kills)
            break;
    }
    printf("crash report: %llu rounds, %llu SIGKILLs, %llu crash-point aborts, "
           "%llu acknowledged changes issued, %llu acknowledged states checked, "
           "lost %llu, half-applied %llu, rows never issued %llu, %llu devices, %llu ms, "
           "%llu histories checked, %llu wrong\n",
           (unsigned long long)rounds, (unsigned long long)kills, (unsigned long long)aborts,
           (unsigned long long)acked_total, (unsigned long long)checked,
           (unsigned long long)lost, (unsigned long long)half, (unsigned long long)orphans,
           (unsigned long long)ndevs, (unsigned long long)(mono_ms() - t0),
           (unsigned long long)hchecked, (unsigned long long)hbad);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (lost || half || orphans || hbad) {
        fprintf(stderr, "crash_harness: FAILED, data directory kept: %s\n", dir);
        return 1;
    }
    CHECK(kills + aborts >= (uint64_t)min_kills);
    CHECK(checked > 0);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
