/*
 * loadgen.c — ics-loadgen: a network load generator over io_uring for icsd
 * and, for comparison, memcached (binary protocol).
 *
 * N connections each keep `depth` requests in flight (depth 1 = the
 * latency of one request at a time); every response's latency goes into a
 * log-linear histogram (1/64 of a power of two resolution). At the end:
 * ops/s, p50/p99/p99.9 in microseconds and, with --server-pid, the
 * server's CPU time per operation from /proc/PID/stat (utime + stime).
 *
 *   --op inquire|binding|get|mix   INQUIRE_DEVICE, INQUIRE_BINDING, memcached
 *                                  GET (icsd or memcached), or --read-pct
 *                                  inquiries and the rest durable MAPs
 *   --preload N                    first MAP N rows (icsd) or SET them
 *                                  (memcached, values = the encoded rows)
 * One thread, one ring: pin it with taskset (bench/net/run.sh does).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "wire.h"

enum op { OP_INQUIRE, OP_BINDING, OP_GET, OP_MIX };

static struct {
    const char *host;
    uint16_t port;
    int conns, depth, duration_s, read_pct, zipf, preload_only;
    uint32_t keys, preload;
    enum op op;
    int memcached;
    const char *user, *secret;
    int server_pid;
    const char *label;
} o = {"127.0.0.1", 11311, 1, 1, 5, 95, 0, 0, 10000, 0, OP_INQUIRE, 0, NULL, NULL, 0, ""};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- histogram (ns) ------------------------------------------------------------- */
#define SUB 64
#define HB (64 * SUB)
static uint64_t hist[HB], hcount;

static unsigned hbucket(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned sub = (unsigned)(v >> (e - 6)) & (SUB - 1);
    return (e - 5) * SUB + sub;
}

static double hvalue(unsigned b)
{
    if (b < SUB)
        return b;
    unsigned e = b / SUB + 5, sub = b % SUB;
    return (double)((uint64_t)(SUB + sub) << (e - 6));
}

static double hpct(double q)
{
    uint64_t want = (uint64_t)ceil(q * (double)hcount), acc = 0;
    for (unsigned b = 0; b < HB; b++) {
        acc += hist[b];
        if (acc >= want && want)
            return hvalue(b);
    }
    return 0;
}

/* --- keys --------------------------------------------------------------------------- */
static double *zcdf;
static uint64_t rng = 88172645463325252ull;

static uint64_t xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint32_t pick_key(void)
{
    if (!o.zipf)
        return (uint32_t)(xr() % o.keys);
    double u = (double)(xr() >> 11) / 9007199254740992.0;
    uint32_t lo = 0, hi = o.keys - 1;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (zcdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void zipf_init(void)
{
    zcdf = malloc(o.keys * sizeof *zcdf);
    double s = 0;
    for (uint32_t i = 0; i < o.keys; i++)
        s += 1.0 / pow(i + 1, 0.99);
    double acc = 0;
    for (uint32_t i = 0; i < o.keys; i++) {
        acc += 1.0 / pow(i + 1, 0.99) / s;
        zcdf[i] = acc;
    }
}

/* --- request encoding ------------------------------------------------------------------ */
static uint64_t write_seq;

static void row_value(struct buf *v, uint32_t k)
{
    char uri[64], uti[32];
    int ul = snprintf(uri, sizeof uri, "https://svc%u.example.com/api", k % 100);
    int tl = snprintf(uti, sizeof uti, "uti-%08u", k);
    buf_put_str16(v, uri, (size_t)ul);
    buf_put_str16(v, uti, (size_t)tl);
}

static void put_request(struct buf *b, int is_write, uint32_t opaque)
{
    uint32_t k = pick_key();
    char dev[32];
    int dl = snprintf(dev, sizeof dev, "dev-%08u", k);
    if (is_write) {
        struct buf v = BUF_INIT;
        char uri[64], uti[32];
        uint64_t w = ++write_seq;
        int ul = snprintf(uri, sizeof uri, "https://w.example.com/%llu", (unsigned long long)w);
        int tl = snprintf(uti, sizeof uti, "w-%08u", k);
        buf_put_str16(&v, uri, (size_t)ul);
        buf_put_str16(&v, uti, (size_t)tl);
        wire_put_request(b, WIRE_OP_MAP, opaque, 0, NULL, 0, dev, (uint16_t)dl, v.p, (uint32_t)v.len);
        buf_free(&v);
        return;
    }
    switch (o.op) {
    case OP_BINDING: {
        char uri[64], uti[32];
        int ul = snprintf(uri, sizeof uri, "https://svc%u.example.com/api", k % 100);
        int tl = snprintf(uti, sizeof uti, "uti-%08u", k);
        uint8_t v[64];
        buf_be16(v, (uint16_t)tl);
        memcpy(v + 2, uti, (size_t)tl);
        wire_put_request(b, WIRE_OP_INQUIRE_BINDING, opaque, 0, NULL, 0, uri, (uint16_t)ul, v,
                         (uint32_t)tl + 2);
        break;
    }
    case OP_GET:
        wire_put_request(b, WIRE_OP_GET, opaque, 0, NULL, 0, dev, (uint16_t)dl, NULL, 0);
        break;
    default:
        wire_put_request(b, WIRE_OP_INQUIRE_DEVICE, opaque, 0, NULL, 0, dev, (uint16_t)dl, NULL,
                         0);
    }
}

/* --- blocking helpers for setup ------------------------------------------------------------ */
static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(o.port);
    inet_pton(AF_INET, o.host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "loadgen: connect %s:%u: %s\n", o.host, o.port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int read_frame(int fd, struct buf *in, struct wire_frame *f)
{
    for (;;) {
        int rc = wire_parse(in->p, in->len, 1u << 1, f);
        if (rc > 0)
            return rc;
        if (rc < 0)
            return -1;
        if (buf_reserve(in, 65536) < 0)
            return -1;
        ssize_t r = recv(fd, in->p + in->len, 65536, 0);
        if (r <= 0)
            return -1;
        in->len += (size_t)r;
    }
}

static void sasl(int fd)
{
    if (!o.user)
        return;
    struct buf b = BUF_INIT, in = BUF_INIT;
    char v[512];
    int n = snprintf(v, sizeof v, "%c%s%c%s", 0, o.user, 0, o.secret ? o.secret : "");
    wire_put_request(&b, WIRE_OP_SASL_AUTH, 0, 0, NULL, 0, "PLAIN", 5, v, (uint32_t)n);
    if (send(fd, b.p, b.len, 0) < 0)
        exit(1);
    struct wire_frame f;
    if (read_frame(fd, &in, &f) < 0 || f.status != 0) {
        fprintf(stderr, "loadgen: SASL as %s failed\n", o.user);
        exit(1);
    }
    buf_free(&b);
    buf_free(&in);
}

static void preload(void)
{
    int fd = dial();
    sasl(fd);
    struct buf b = BUF_INIT, in = BUF_INIT, v = BUF_INIT;
    const uint32_t window = 256;
    uint32_t sent = 0, got = 0;
    uint64_t t0 = now_ns();
    while (got < o.preload) {
        buf_reset(&b);
        while (sent < o.preload && sent - got < window) {
            char dev[32];
            int dl = snprintf(dev, sizeof dev, "dev-%08u", sent);
            buf_reset(&v);
            if (o.memcached) {
                /* value = the encoded rows icsd's GET returns */
                buf_put_u32(&v, 1);
                row_value(&v, sent);
                buf_put_u32(&v, 0);
                uint8_t ext[8] = {0};
                wire_put_request(&b, WIRE_OP_SET, sent, 0, ext, 8, dev, (uint16_t)dl, v.p,
                                 (uint32_t)v.len);
            } else {
                row_value(&v, sent);
                wire_put_request(&b, WIRE_OP_MAP, sent, 0, NULL, 0, dev, (uint16_t)dl, v.p,
                                 (uint32_t)v.len);
            }
            sent++;
        }
        if (b.len && send(fd, b.p, b.len, MSG_NOSIGNAL) != (ssize_t)b.len)
            exit(1);
        struct wire_frame f;
        int rc = read_frame(fd, &in, &f);
        if (rc < 0) {
            fprintf(stderr, "loadgen: preload: connection lost\n");
            exit(1);
        }
        if (f.status != 0) {
            fprintf(stderr, "loadgen: preload key %u: status 0x%04x\n", f.opaque, f.status);
            exit(1);
        }
        buf_consume(&in, (size_t)rc);
        got++;
    }
    fprintf(stderr, "loadgen: preloaded %u rows in %.2f s\n", o.preload,
            (double)(now_ns() - t0) / 1e9);
    close(fd);
    buf_free(&b);
    buf_free(&in);
    buf_free(&v);
}

/* --- the run ------------------------------------------------------------------------ */
struct lconn {
    int fd;
    struct buf out, in;
    uint8_t rbuf[65536];
    uint64_t *sent_at;     /* ring of depth send times, in order */
    unsigned head, inflight;
    int sending, recving;
};

static void cpu_ticks(uint64_t *t)
{
    *t = 0;
    if (!o.server_pid)
        return;
    char path[64], s[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", o.server_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(s, 1, sizeof s - 1, f);
    fclose(f);
    s[n] = 0;
    char *p = strrchr(s, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ')': state(3) ... utime(14) stime(15) */
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        *t = ut + st;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ics-loadgen [--host H] [--port P] [--conns N] [--depth D] [--duration S]\n"
            "  [--op inquire|binding|get|mix] [--read-pct P] [--keys N] [--zipf]\n"
            "  [--memcached] [--user U --secret S] [--preload N] [--preload-only]\n"
            "  [--server-pid PID] [--label TEXT]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(n) (!strcmp(a, n) && v && (i++, 1))
        if (ARG("--host")) o.host = v;
        else if (ARG("--port")) o.port = (uint16_t)atoi(v);
        else if (ARG("--conns")) o.conns = atoi(v);
        else if (ARG("--depth")) o.depth = atoi(v);
        else if (ARG("--duration")) o.duration_s = atoi(v);
        else if (ARG("--read-pct")) o.read_pct = atoi(v);
        else if (ARG("--keys")) o.keys = (uint32_t)atoi(v);
        else if (ARG("--preload")) o.preload = (uint32_t)atoi(v);
        else if (ARG("--user")) o.user = v;
        else if (ARG("--secret")) o.secret = v;
        else if (ARG("--server-pid")) o.server_pid = atoi(v);
        else if (ARG("--label")) o.label = v;
        else if (ARG("--op")) {
            if (!strcmp(v, "inquire")) o.op = OP_INQUIRE;
            else if (!strcmp(v, "binding")) o.op = OP_BINDING;
            else if (!strcmp(v, "get")) o.op = OP_GET;
            else if (!strcmp(v, "mix")) o.op = OP_MIX;
            else usage();
        } else if (!strcmp(a, "--zipf")) o.zipf = 1;
        else if (!strcmp(a, "--memcached")) o.memcached = 1;
        else if (!strcmp(a, "--preload-only")) o.preload_only = 1;
        else usage();
#undef ARG
    }
    if (o.conns < 1 || o.depth < 1 || o.keys < 1)
        usage();
    if (o.memcached && o.op != OP_GET) {
        fprintf(stderr, "loadgen: memcached speaks only --op get here\n");
        return 2;
    }
    if (o.preload)
        preload();
    if (o.preload_only)
        return 0;
    if (o.zipf)
        zipf_init();

    struct io_uring ring;
    if (io_uring_queue_init(256, &ring, 0) < 0) {
        fprintf(stderr, "loadgen: io_uring_queue_init failed\n");
        return 1;
    }
    struct lconn *cs = calloc((size_t)o.conns, sizeof *cs);
    for (int i = 0; i < o.conns; i++) {
        cs[i].fd = dial();
        sasl(cs[i].fd);
        cs[i].sent_at = calloc((size_t)o.depth, sizeof(uint64_t));
    }
    uint64_t ops = 0, errors = 0, c0, c1;
    uint32_t opaque = 0;
    cpu_ticks(&c0);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)o.duration_s * 1000000000u;
    /* Fill every pipeline and arm the receives. */
    for (int i = 0; i < o.conns; i++) {
        struct lconn *c = &cs[i];
        uint64_t t = now_ns();
        for (int d = 0; d < o.depth; d++) {
            int w = o.op == OP_MIX && (int)(xr() % 100) >= o.read_pct;
            put_request(&c->out, w, opaque++);
            c->sent_at[(c->head + c->inflight) % (unsigned)o.depth] = t;
            c->inflight++;
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_send(sqe, c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, (uint64_t)i << 1);
        c->sending = 1;
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof c->rbuf, 0);
        io_uring_sqe_set_data64(sqe, (uint64_t)i << 1 | 1);
        c->recving = 1;
    }
    int done = 0;
    while (!done) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        uint64_t t = now_ns();
        if (t >= end)
            done = 1;
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            struct lconn *c = &cs[ud >> 1];
            if (!(ud & 1)) { /* send */
                c->sending = 0;
                if (cqe->res < 0) {
                    fprintf(stderr, "loadgen: send: %s\n", strerror(-cqe->res));
                    return 1;
                }
                buf_consume(&c->out, (size_t)cqe->res);
                continue;
            }
            c->recving = 0;
            if (cqe->res <= 0) {
                fprintf(stderr, "loadgen: connection closed by the server\n");
                return 1;
            }
            buf_append(&c->in, c->rbuf, (size_t)cqe->res);
            size_t off = 0;
            unsigned answered = 0;
            for (;;) {
                struct wire_frame f;
                int rc = wire_parse(c->in.p + off, c->in.len - off, 1u << 1, &f);
                if (rc <= 0)
                    break;
                off += (size_t)rc;
                uint64_t lat = t - c->sent_at[c->head];
                c->head = (c->head + 1) % (unsigned)o.depth;
                c->inflight--;
                hist[hbucket(lat)]++;
                hcount++;
                ops++;
                if (f.status != 0)
                    errors++;
                answered++;
            }
            buf_consume(&c->in, off);
            if (!done) {
                for (unsigned k = 0; k < answered; k++) {
                    int w = o.op == OP_MIX && (int)(xr() % 100) >= o.read_pct;
                    put_request(&c->out, w, opaque++);
                    c->sent_at[(c->head + c->inflight) % (unsigned)o.depth] = t;
                    c->inflight++;
                }
            }
            if (!c->sending && c->out.len) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_send(sqe, c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
                io_uring_sqe_set_data64(sqe, ud & ~1ull);
                c->sending = 1;
            }
            if (c->inflight) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_recv(sqe, c->fd, c->rbuf, sizeof c->rbuf, 0);
                io_uring_sqe_set_data64(sqe, ud);
                c->recving = 1;
            }
        }
        io_uring_cq_advance(&ring, n);
    }
    uint64_t t1 = now_ns();
    cpu_ticks(&c1);
    double secs = (double)(t1 - t0) / 1e9;
    double cpu_us = o.server_pid ? (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) : 0;
    printf("%s ops=%llu errors=%llu secs=%.2f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f "
           "p999_us=%.1f server_cpu_us_per_op=%.3f\n",
           o.label, (unsigned long long)ops, (unsigned long long)errors, secs,
           (double)ops / secs, hpct(0.50) / 1000.0, hpct(0.99) / 1000.0, hpct(0.999) / 1000.0,
           ops ? cpu_us / (double)ops : 0.0);
    for (int i = 0; i < o.conns; i++)
        close(cs[i].fd);
    io_uring_queue_exit(&ring);
    return errors && o.op != OP_MIX ? 3 : 0;
}
