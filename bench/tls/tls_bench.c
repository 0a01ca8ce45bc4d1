/*
 * tls_bench.c — in-process cost of net/tls on one core: full and resumed
 * mutual-TLS 1.3 handshakes (ECDSA P-256) against a BoringSSL client, and
 * the record layer (encrypt through tls_conn_write, decrypt through
 * tls_conn_feed + tls_conn_read) at 64 B, 1 KiB and 16 KiB writes.
 * Only the CPU time spent inside tls_conn_* calls is counted as server time,
 * so "per core" means per core of the server, the client's cost excluded;
 * "both sides" counts client and server CPU time together.
 * Usage: tls_bench CERTDIR [seconds per measurement, default 2] [hs|resumed|rec|mem|burst]
 * CERTDIR is made by scripts/mkcerts.sh CERTDIR alice.
 * Prints "name value unit" lines.
 */
#include "tls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static const char *dir;
static double secs = 2.0;

/* CPU time of this thread, not wall time: the machine is shared, and a
 * preempted handshake must not count as a slow one. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "tls_bench: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static const char *path(const char *name)
{
    static char b[4][512];
    static int k;
    char *p = b[k++ & 3];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static SSL_SESSION *last_session;

static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
    SSL_SESSION_free(last_session);
    last_session = s;
    return 1;
}

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *c = SSL_CTX_new(TLS_method());
    if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
        SSL_CTX_use_certificate_chain_file(c, path("alice.pem")) != 1 ||
        SSL_CTX_use_PrivateKey_file(c, path("alice.key"), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(c, path("ca.pem"), NULL) != 1)
        die("client context");
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(c, new_session_cb);
    return c;
}

struct pair {
    SSL *ssl;
    BIO *rb, *wb;
    struct tls_conn *c;
    double server_s;                   /* time inside tls_conn_* */
    long spans;                        /* clock pairs summed in server_s */
};

/* The thread CPU clock is a system call here (no vDSO for it), and each
 * timed span includes part of one: an empty span's length, measured once,
 * is taken off every span of a handshake (see bench_handshakes). */
static double clock_span_s;

static void calibrate_clock(void)
{
    double best = 1;
    for (int r = 0; r < 5; r++) {
        double sum = 0;
        for (int i = 0; i < 2000; i++) {
            double t = now();
            sum += now() - t;
        }
        if (sum / 2000 < best)
            best = sum / 2000;
    }
    clock_span_s = best;
}

static void pair_open(struct pair *p, SSL_CTX *cctx, struct tls_ctx *sctx, SSL_SESSION *resume)
{
    p->ssl = SSL_new(cctx);
    p->rb = BIO_new(BIO_s_mem());
    p->wb = BIO_new(BIO_s_mem());
    if (!p->ssl || !p->rb || !p->wb)
        die("client");
    SSL_set_bio(p->ssl, p->rb, p->wb);
    SSL_set_connect_state(p->ssl);
    if (resume)
        SSL_set_session(p->ssl, resume);
    double t = now();
    p->c = tls_conn_new(sctx);
    p->server_s = now() - t;
    p->spans = 1;
    if (!p->c)
        die("tls_conn_new");
}

static void pump(struct pair *p)
{
    const uint8_t *b;
    size_t n;
    BIO_mem_contents(p->wb, &b, &n);
    double t = now();
    if (n && tls_conn_feed(p->c, b, n) != 0)
        die(tls_conn_error(p->c));
    p->server_s += now() - t;
    p->spans++;
    BIO_reset(p->wb);
    for (;;) {
        t = now();
        n = tls_conn_out(p->c, &b);
        p->server_s += now() - t;
        p->spans++;
        if (!n)
            break;
        BIO_write(p->rb, b, (int)n);
        t = now();
        tls_conn_out_consume(p->c, n);
        p->server_s += now() - t;
        p->spans++;
    }
}

static void pair_handshake(struct pair *p)
{
    for (int i = 0; i < 10; i++) {
        int r = SSL_do_handshake(p->ssl);
        pump(p);
        if (r == 1 && tls_conn_ready(p->c))
            return;
    }
    die("handshake did not complete");
}

static void pair_close(struct pair *p)
{
    double t = now();
    tls_conn_free(p->c);
    p->server_s += now() - t;
    p->spans++;
    SSL_free(p->ssl);
}

/* Handshakes per second of server time; also per second of both sides. */
static void bench_handshakes(struct tls_ctx *sctx, SSL_CTX *cctx, int resumed)
{
    SSL_SESSION *s = NULL;
    if (resumed) {
        struct pair p;
        pair_open(&p, cctx, sctx, NULL);
        pair_handshake(&p);
        uint8_t x;
        SSL_read(p.ssl, &x, 1);        /* takes in the tickets */
        ERR_clear_error();
        pair_close(&p);
        s = last_session;
        last_session = NULL;
        if (!s)
            die("no ticket");
    }
    long n = 0, reused = 0, spans = 0;
    double server = 0, t0 = now();
    while (now() - t0 < secs) {
        struct pair p;
        pair_open(&p, cctx, sctx, s);
        pair_handshake(&p);
        reused += tls_conn_resumed(p.c);
        pair_close(&p);
        server += p.server_s;
        spans += p.spans;
        n++;
    }
    double wall = now() - t0;
    const char *kind = resumed ? "resumed" : "full";
    printf("tls.%s_handshakes_per_s_server_core %.0f hs/s\n", kind, (double)n / server);
    /* The same less the clock's own share: ~1 us per span on this VM,
     * ~10 spans per handshake, the same for full and resumed, so it
     * lowers the resumed/full ratio more than the full figure. */
    double net = server - (double)spans * clock_span_s;
    printf("tls.%s_handshakes_per_s_server_core_less_clock %.0f hs/s (%.1f spans of %.2f us each per handshake taken off)\n",
           kind, (double)n / net, (double)spans / n, clock_span_s * 1e6);
    printf("tls.%s_handshakes_per_s_both_sides %.0f hs/s\n", kind, (double)n / wall);
    if (resumed && reused != n)
        die("a resumed handshake was not resumed");
    if (!resumed && reused)
        die("a full handshake was resumed");
    SSL_SESSION_free(s);
}

/* Record layer: bytes/s through tls_conn in writes of `size` bytes. */
static void bench_records(struct tls_ctx *sctx, SSL_CTX *cctx, size_t size)
{
    struct pair p;
    pair_open(&p, cctx, sctx, NULL);
    pair_handshake(&p);
    uint8_t x;
    SSL_read(p.ssl, &x, 1);
    ERR_clear_error();
    static uint8_t plain[16384], out[16384 + 64];
    memset(plain, 0xa5, sizeof plain);

    /* Encrypt: tls_conn_write, then hand the ciphertext "to the socket". */
    size_t total = 0;
    double t0 = now();
    while (now() - t0 < secs / 2) {
        for (int i = 0; i < 256; i++) {
            if (tls_conn_write(p.c, plain, size) != 0)
                die("write");
            const uint8_t *b;
            size_t n;
            while ((n = tls_conn_out(p.c, &b)) > 0)
                tls_conn_out_consume(p.c, n);
            total += size;
        }
    }
    double enc = (double)total / (now() - t0);

    /* Decrypt: the client seals `size`-byte records ahead of time (not
     * timed), the server is fed them 64 KiB at a time, as from recv. */
    size_t want = (size_t)(enc * secs / 2);
    if (want > (64u << 20))            /* the client buffers it all */
        want = 64u << 20;
    want -= want % size;
    for (size_t done = 0; done < want; done += size)
        if (SSL_write(p.ssl, plain, (int)size) != (int)size)
            die("client write");
    const uint8_t *cb;
    size_t clen;
    BIO_mem_contents(p.wb, &cb, &clen);
    size_t got = 0;
    t0 = now();
    for (size_t off = 0; off < clen;) {
        size_t k = clen - off < 65536 ? clen - off : 65536;
        if (tls_conn_feed(p.c, cb + off, k) != 0)
            die("feed");
        off += k;
        ssize_t r;
        while ((r = tls_conn_read(p.c, out, sizeof out)) > 0)
            got += (size_t)r;
        if (r < 0)
            die("read");
    }
    double dt = now() - t0;
    if (got != want)
        die("decrypted byte count");
    double dec = (double)got / dt;
    printf("tls.encrypt_%zu_B_writes %.1f MB/s\n", size, enc / 1e6);
    printf("tls.decrypt_%zu_B_records %.1f MB/s\n", size, dec / 1e6);
    printf("tls.encrypt_plus_decrypt_%zu_B %.1f MB/s\n", size, 1.0 / (1.0 / enc + 1.0 / dec) / 1e6);
    BIO_reset(p.wb);
    pair_close(&p);
}

/* A pipelined burst as icsd sees it at depth 16 over one connection: the
 * client's 16 requests arrive as one record (one recv), the server
 * decrypts them (lent feed, read until no record waits, end), answers all 16
 * with one tls_conn_write and sends the queue (out, consume). The client
 * seals every burst ahead of time (not timed); one clock pair brackets the
 * whole server loop, so no per-call clock read (a syscall for thread CPU
 * time) inflates the figure. Reported as server CPU per burst. */
static void bench_bursts(struct tls_ctx *sctx, SSL_CTX *cctx, size_t req, size_t resp, int depth)
{
    struct pair p;
    pair_open(&p, cctx, sctx, NULL);
    pair_handshake(&p);
    uint8_t x;
    SSL_read(p.ssl, &x, 1);
    ERR_clear_error();
    const uint8_t *b;
    size_t n;
    while ((n = tls_conn_out(p.c, &b)) > 0)
        tls_conn_out_consume(p.c, n);
    BIO_reset(p.rb);
    static uint8_t plain[16384], out[16384 + 64];
    memset(plain, 0x5a, sizeof plain);
    size_t in_len = req * (size_t)depth, out_len = resp * (size_t)depth;
    int bursts = (int)(20000 * secs);
    /* Each burst's ciphertext length, to feed them one at a time. */
    size_t *lens = malloc((size_t)bursts * sizeof *lens);
    if (!lens)
        die("malloc");
    size_t prev = 0;
    for (int i = 0; i < bursts; i++) {
        if (SSL_write(p.ssl, plain, (int)in_len) != (int)in_len)
            die("client write");
        size_t tot;
        BIO_mem_contents(p.wb, &b, &tot);
        lens[i] = tot - prev;
        prev = tot;
    }
    const uint8_t *cb;
    size_t clen;
    BIO_mem_contents(p.wb, &cb, &clen);
    size_t off = 0, got = 0, sent = 0;
    double t0 = now();
    for (int i = 0; i < bursts; i++) {
        /* As icsd's loop does: lent, read in place, then ended. */
        if (tls_conn_feed_lent(p.c, cb + off, lens[i]) != 0)
            die("feed");
        off += lens[i];
        ssize_t r;
        while ((r = tls_conn_read(p.c, out, sizeof out)) > 0)
            got += (size_t)r;
        if (r < 0 || tls_conn_feed_end(p.c) != 0)
            die("read");
        if (tls_conn_write(p.c, plain, out_len) != 0)
            die("write");
        const struct msghdr *m = tls_conn_out_msg(p.c);
        size_t k = 0;
        for (size_t j = 0; m && j < m->msg_iovlen; j++)
            k += m->msg_iov[j].iov_len;
        sent += k;
        tls_conn_out_consume(p.c, k);
    }
    double dt = now() - t0;
    if (got != in_len * (size_t)bursts || tls_conn_out_pending(p.c) != 0)
        die("burst byte count");
    printf("tls.burst_d%d_%zuB_in_%zuB_out %.3f us server CPU per burst (%.1f B ciphertext out)\n",
           depth, in_len, out_len, dt * 1e6 / bursts, (double)sent / bursts);
    free(lens);
    BIO_reset(p.wb);
    pair_close(&p);
}

static long rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    if (f)
        fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Memory of established, idle connections: N handshakes kept open, the
 * process RSS growth divided by N (the client side is freed first). */
static void bench_idle_memory(struct tls_ctx *sctx, SSL_CTX *cctx, int n)
{
    struct tls_conn **conns = calloc((size_t)n, sizeof *conns);
    if (!conns)
        die("calloc");
    long before = rss_kib();
    for (int i = 0; i < n; i++) {
        struct pair p;
        pair_open(&p, cctx, sctx, NULL);
        pair_handshake(&p);
        SSL_free(p.ssl);               /* keep only the server side */
        tls_conn_trim(p.c);            /* what icsd's tick does when quiet */
        conns[i] = p.c;
    }
    long after = rss_kib();
    printf("tls.idle_conn_memory %.1f KiB per established connection (%d conns)\n",
           (double)(after - before) / n, n);
    for (int i = 0; i < n; i++)
        tls_conn_free(conns[i]);
    free(conns);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tls_bench CERTDIR [seconds]\n");
        return 2;
    }
    dir = argv[1];
    if (argc > 2)
        secs = atof(argv[2]);
    struct tls_cfg cfg = {
        .cert_file = path("server.pem"), .key_file = path("server.key"),
        .ca_file = path("ca.pem"),
    };
    struct tls_ctx *sctx;
    char err[256];
    if (tls_ctx_create(&sctx, &cfg, err, sizeof err) != 0)
        die(err);
    SSL_CTX *cctx = client_ctx();
    calibrate_clock();
    /* "hs", "resumed" (one full handshake for the ticket, then resumed
     * ones only), "rec" or "mem", for profiling one part under perf. */
    const char *only = argc > 3 ? argv[3] : "";
    if (strcmp(only, "resumed") == 0) {
        double s = secs;
        secs = 0.01;
        bench_handshakes(sctx, cctx, 0);
        secs = s;
        bench_handshakes(sctx, cctx, 1);
        only = "hs";
    } else if (strcmp(only, "burst") == 0) {
        /* INQUIRE_DEVICE at depth 16 and 1 as bench/tls/vs_plain.sh sends
         * it: ~64 B requests, ~160 B one-row answers. */
        bench_bursts(sctx, cctx, 64, 160, 16);
        bench_bursts(sctx, cctx, 64, 160, 1);
        only = "hs";
    } else if (strcmp(only, "rec") != 0 && strcmp(only, "mem") != 0) {
        bench_handshakes(sctx, cctx, 0);
        bench_handshakes(sctx, cctx, 1);
    }
    if (strcmp(only, "mem") == 0 || !only[0])
        bench_idle_memory(sctx, cctx, secs < 1 ? 200 : 2000);
    if (strcmp(only, "hs") != 0 && strcmp(only, "mem") != 0) {
        bench_records(sctx, cctx, 64);
        bench_records(sctx, cctx, 1024);
        bench_records(sctx, cctx, 16384);
    }
    SSL_CTX_free(cctx);
    tls_ctx_destroy(sctx);
    return 0;
}
