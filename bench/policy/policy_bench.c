/*
 * policy_bench.c — what the identity authority and PII policy cost
 * (bench/README.md, section "Identity authority").
 *
 *  1. history: an inquiry as the server makes it for a tpsp (engine lookup,
 *     acl_row_via per row) with vs without recording it, 1 and 2
 *     threads, on a pre-filled engine. Target: on >= 0.9x off. "history"
 *     records each returned row from inside the row callback
 *     (history_record_row: no second lookup, the server's path);
 *     "hist-lookup" records after the inquiry with history_record_inquiry
 *     (a second device lookup: the server's path before issue 7's change).
 *     --uri sets the rows' service URI: the default makes a 39-byte entry
 *     (principal + URI + UTI), inline in the engine's ring cell; a longer
 *     one (as ics-loadgen's, 49 bytes) takes the cell's overflow buffer.
 *  2. prefs: the same inquiry on an engine where every device has a PREFS
 *     blob (allow, deny, a window; prefs_allows per row) vs one with none.
 *     Target: >= 0.9x. Also prefs-eval: the same prefs engine both sides,
 *     prefs_allows skipped vs evaluated, which isolates this module's cost
 *     from the engine's (its records with prefs are laid out differently).
 *  3. KEY_ISSUE: signed batches of 1000 keys per second (and KEY_VALIDATE).
 *  4. PBKDF2: one principal_verify_secret at the production 100,000
 *     iterations.
 * Each A/B pair alternates A and B five times and keeps the best of each,
 * so a noisy neighbour on a shared machine hurts both sides alike.
 *
 * usage: policy_bench [--smoke] [--devices N] [--seconds S] [--history-len N]
 *                     [--uri URI] [--profile off|on|lookup|prefs]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl.h"
#include "buf.h"
#include "engine.h"
#include "history.h"
#include "keys.h"
#include "prefs.h"
#include "principal.h"

static size_t ndev = 200000;
static uint32_t hlen = 16;   /* --history-len, the server's default */
static const char *profile; /* --profile off|on|prefs: run only that case (for perf) */
static double seconds = 0.5;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t unix_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void devname(char *out, size_t i)
{
    snprintf(out, 48, "dev-%08x-0000-4000-8000-000000000000", (unsigned)i);
}

static const char *svc_uri = "https://svc.example/app"; /* under tpsp's scope */

static engine_t *fill(int with_prefs, uint32_t history_len)
{
    engine_t *e;
    struct engine_config cfg = {.initial_devices = ndev, .history_len = history_len};
    if (engine_create(&e, &cfg) < 0)
        abort();
    struct buf prefs = BUF_INIT;
    /* A typical user's preferences: one allowed service, one denied
     * sub-path, one window covering the whole week (so nothing is refused
     * and the cost measured is the full evaluation). */
    buf_put_u32(&prefs, 86400 * 30);
    buf_put_u16(&prefs, 1);
    buf_put_str16(&prefs, "https://svc.example/", 20);
    buf_put_u16(&prefs, 1);
    buf_put_str16(&prefs, "https://svc.example/ads/", 24);
    buf_put_u16(&prefs, 1);
    buf_put_u8(&prefs, 0x7f);
    buf_put_u16(&prefs, 0);
    buf_put_u16(&prefs, 1440);
    uint64_t lsn = 1;
    for (size_t i = 0; i < ndev; i++) {
        char dev[48], uti[48];
        devname(dev, i);
        snprintf(uti, sizeof(uti), "uti-%08zx", i);
        struct engine_map_req rq = {
            .dev = dev, .dev_len = 40, .uri = svc_uri, .uri_len = strlen(svc_uri),
            .uti = uti, .uti_len = strlen(uti), .owner = "acme", .owner_len = 4,
        };
        if (engine_map(e, &rq, lsn++, NULL) != 0)
            abort();
        if (with_prefs && engine_set_prefs(e, dev, 40, prefs.p, prefs.len, lsn++) != 0)
            abort();
    }
    buf_free(&prefs);
    return e;
}

static struct principal *tpsp;

struct vis {
    engine_t *e;
    uint64_t now;
    int skip_prefs;
    int record_row;
    const uint8_t *uri, *uti;
    uint16_t uri_len, uti_len;
    int n;
};

/* The server's row filter for a tpsp: scope, then preferences. */
static int row_cb(void *arg, const struct engine_row *row)
{
    struct vis *v = arg;
    if (v->skip_prefs ? !acl_uri_in_scope(tpsp, row->uri, row->uri_len)
                      : acl_row_via(tpsp, row, v->now) == ACL_VIA_NONE)
        return 0;
    if (v->record_row)
        history_record_row(v->e, row, tpsp->name, tpsp->name_len, v->now);
    v->uri = row->uri;
    v->uri_len = row->uri_len;
    v->uti = row->uti;
    v->uti_len = row->uti_len;
    v->n++;
    return 0;
}

struct run {
    engine_t *e;
    int record; /* 1: history_record_inquiry; 2: skip prefs_allows; 3: history_record_row */
    double secs;
    uint64_t ops;
    int tid;
};

static atomic_int go;

static void *inquirer(void *arg)
{
    struct run *r = arg;
    engine_thread_online(r->e);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(r->tid + 1), ops = 0;
    uint64_t ts = unix_us();
    while (!atomic_load_explicit(&go, memory_order_acquire))
        ;
    double end = now_s() + r->secs;
    char dev[48];
    while (1) {
        for (int k = 0; k < 256; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            devname(dev, (size_t)(x % ndev));
            struct vis v = {.e = r->e, .now = ts, .skip_prefs = r->record == 2,
                            .record_row = r->record == 3};
            engine_inquire_device_ex(r->e, dev, 40, row_cb, &v, NULL,
                                     r->record == 3 ? ENGINE_INQ_RECORD : 0);
            if (v.n == 0)
                abort(); /* every device has one visible, allowed row */
            if (r->record == 1)
                history_record_inquiry(r->e, dev, 40, tpsp->name, tpsp->name_len, v.uri,
                                       v.uri_len, v.uti, v.uti_len, ts);
            ops++;
        }
        if (now_s() >= end)
            break;
    }
    engine_thread_offline(r->e);
    r->ops = ops;
    return NULL;
}

static double measure(engine_t *e, int record, int threads)
{
    pthread_t t[8];
    struct run r[8];
    atomic_store(&go, 0);
    for (int i = 0; i < threads; i++) {
        r[i] = (struct run){e, record, seconds, 0, i};
        pthread_create(&t[i], NULL, inquirer, &r[i]);
    }
    double t0 = now_s();
    atomic_store_explicit(&go, 1, memory_order_release);
    uint64_t ops = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ops += r[i].ops;
    }
    return (double)ops / (now_s() - t0);
}

static void ab(const char *what, engine_t *ea, int reca, engine_t *eb, int recb, int threads,
               const char *la, const char *lb)
{
    double a = 0, b = 0;
    for (int i = 0; i < 5; i++) {
        double x = measure(ea, reca, threads);
        double y = measure(eb, recb, threads);
        if (x > a)
            a = x;
        if (y > b)
            b = y;
    }
    printf("%-11s threads=%d  %s %.0f inq/s  %s %.0f inq/s  ratio %.3f\n", what, threads, la, a,
           lb, b, b / a);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) {
            ndev = 20000;
            seconds = 0.1;
        } else if (!strcmp(argv[i], "--devices") && i + 1 < argc) {
            ndev = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--history-len") && i + 1 < argc) {
            hlen = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--profile") && i + 1 < argc) {
            profile = argv[++i];
        } else if (!strcmp(argv[i], "--uri") && i + 1 < argc &&
                   !strncmp(argv[i + 1], "https://svc.example/", 20)) {
            svc_uri = argv[++i];
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--smoke] [--devices N] [--seconds S] [--history-len N] [--uri https://svc.example/...] [--profile off|on|lookup|prefs]\n", argv[0]);
            return 2;
        }
    }
    if (ndev == 0)
        ndev = 1;
    tpsp = calloc(1, sizeof(*tpsp) + sizeof(tpsp->scopes[0]));
    tpsp->roles = PRINCIPAL_TPSP;
    memcpy(tpsp->name, "shop", 4);
    tpsp->name_len = 4;
    tpsp->nscopes = 1;
    tpsp->scopes[0].p = (const uint8_t *)"https://svc.example/";
    tpsp->scopes[0].len = 20;

    printf("policy_bench: %zu devices, %.2f s per measurement, best of 5, history entry %zu "
           "bytes (principal + URI + UTI)\n", ndev, seconds, 4 + strlen(svc_uri) + 12);
    fflush(stdout);
    engine_t *plain = fill(profile && !strcmp(profile, "prefs"), hlen);
    if (profile) {
        printf("profile %s: %.0f inq/s\n", profile,
               measure(plain, !strcmp(profile, "on") ? 3 : !strcmp(profile, "lookup"), 1));
        engine_destroy(plain);
        free(tpsp);
        return 0;
    }
    engine_t *withp = fill(1, hlen);
    for (int th = 1; th <= 2; th++)
        ab("history", plain, 0, plain, 3, th, "off", "on");
    for (int th = 1; th <= 2; th++)
        ab("hist-lookup", plain, 0, plain, 1, th, "off", "on");
    for (int th = 1; th <= 2; th++)
        ab("prefs", plain, 0, withp, 0, th, "none", "every-device");
    /* The same engine both sides: only prefs_allows differs. */
    for (int th = 1; th <= 2; th++)
        ab("prefs-eval", withp, 2, withp, 0, th, "skipped", "evaluated");
    engine_destroy(plain);
    engine_destroy(withp);

    keys_t *k;
    if (keys_create(&k, NULL) < 0 || keys_rotate(k, NULL, 1, NULL, NULL) < 0)
        abort();
    struct buf b = BUF_INIT;
    uint64_t n = 0;
    double t0 = now_s(), end = t0 + seconds;
    do {
        buf_reset(&b);
        if (keys_issue(k, 1000, 1700000000, &b) != 0)
            abort();
        n++;
    } while (now_s() < end);
    double issue = (double)n / (now_s() - t0);
    n = 0;
    t0 = now_s();
    end = t0 + seconds;
    do {
        if (keys_validate(k, b.p, b.len) != 0)
            abort();
        n++;
    } while (now_s() < end);
    double validate = (double)n / (now_s() - t0);
    printf("keys     KEY_ISSUE(1000) %.0f batches/s (%.0f keys/s)  KEY_VALIDATE(1000) %.0f batches/s\n",
           issue, issue * 1000, validate);
    buf_free(&b);
    keys_destroy(k);

    principal_reg_t *reg;
    struct principal_config pc = {.iterations = PRINCIPAL_DEFAULT_ITERATIONS};
    if (principal_reg_create(&reg, &pc) < 0)
        abort();
    static struct principal_def d;
    d.name.p = (const uint8_t *)"admin";
    d.name.len = 5;
    d.roles = PRINCIPAL_ADMIN;
    d.secret.p = (const uint8_t *)"correct horse battery staple";
    d.secret.len = 28;
    if (principal_set(reg, NULL, &d, NULL, NULL) != 0)
        abort();
    struct principal *p = principal_get(reg, "admin", 5);
    int reps = seconds < 0.5 ? 2 : 5;
    t0 = now_s();
    for (int i = 0; i < reps; i++)
        if (principal_verify_secret(p, "correct horse battery staple", 28) != 0)
            abort();
    printf("pbkdf2   verify at %u iterations: %.1f ms\n", PRINCIPAL_DEFAULT_ITERATIONS,
           (now_s() - t0) * 1000.0 / reps);
    principal_put(p);
    principal_reg_destroy(reg);
    free(tpsp);
    return 0;
}
