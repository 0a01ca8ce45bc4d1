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
 *   --rows R                       with --preload: R rows (URIs) per device,
 *                                  so each inquiry answers R rows (icsd)
 *   --tls --cert F --key F --ca F  TLS 1.3 with a client certificate (icsd's
 *                                  TLS port; the certificate names the
 *                                  principal, so no --user); every
 *                                  connection, the preload's too, does one
 *                                  full handshake before the clock starts
 * One thread, one ring: pin it with taskset (bench/net/run.sh does).
 *
 * TLS runs BoringSSL over a BIO of our own per connection, so the io_uring
 * loop moves ciphertext exactly as it moves plaintext without TLS: a recv
 * completion is read by the BIO where it landed and decrypted, with no
 * SSL_read beyond the last whole record (net/tls does the same on the
 * server); requests are encrypted
 * once per burst (one SSL_write for everything a completion made room
 * for, as a pipelining client would) straight into the send queue. The
 * client's own crypto runs on its core, not the server's.
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

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
    int tls;
    const char *cert, *key, *ca;
    uint32_t rows;
    double rate;           /* requests/s over all connections; 0 = as fast as answered */
    unsigned ring_flags;   /* --ring: how the kernel tells this generator of a response */
} o = {"127.0.0.1", 11311, 1, 1, 5, 95, 0, 0, 10000, 0, OP_INQUIRE, 0, NULL, NULL, 0, "",
       0, NULL, NULL, NULL, 1, 0, 0};

static SSL_CTX *tls_ctx; /* client context, when --tls */

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

/* Row r of device k (r > 0 only with --rows). */
static void row_value(struct buf *v, uint32_t k, uint32_t r)
{
    char uri[64], uti[32];
    int ul = r ? snprintf(uri, sizeof uri, "https://svc%u.example.com/api/%u", k % 100, r)
               : snprintf(uri, sizeof uri, "https://svc%u.example.com/api", k % 100);
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

/* --- channels: one socket, with or without TLS --------------------------------------------- */
struct chan {
    int fd;
    SSL *ssl;             /* NULL: plaintext */
    /* The BIO under ssl (bio_read / bio_write below): ciphertext received
     * waits in inq from inoff on; ciphertext BoringSSL writes is appended
     * to *wout, the caller's send queue (own during setup). */
    struct buf inq, own;
    size_t inoff;
    struct buf *wout;
    /* A receive buffer lent for one take_input when inq is empty: the BIO
     * reads it in place, and only bytes left unread are copied to inq. */
    const uint8_t *lent;
    size_t lent_len, lent_off;
    /* BoringSSL holds no part of a record (its last SSL_read returned
     * data and left none): the next input byte starts a record header. */
    int at_boundary;
};

static void die_tls(const char *what)
{
    fprintf(stderr, "loadgen: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* A BIO over struct chan instead of BoringSSL's memory BIO: that one moves
 * its remaining bytes down on every read and copies itself on every growth
 * (its realloc is malloc + copy), which at 50 KB bursts cost the client
 * more than the crypto. Here reads advance an offset, and the queue is
 * emptied only once drained. */
static int bio_read(BIO *b, char *out, int len)
{
    struct chan *ch = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (ch->lent_off < ch->lent_len) {
        size_t n = ch->lent_len - ch->lent_off;
        n = (size_t)len < n ? (size_t)len : n;
        memcpy(out, ch->lent + ch->lent_off, n);
        ch->lent_off += n;
        return (int)n;
    }
    size_t avail = ch->inq.len - ch->inoff;
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < avail ? (size_t)len : avail;
    memcpy(out, ch->inq.p + ch->inoff, n);
    ch->inoff += n;
    if (ch->inoff == ch->inq.len) {
        buf_reset(&ch->inq);
        ch->inoff = 0;
    }
    return (int)n;
}

static int bio_write(BIO *b, const char *in, int len)
{
    struct chan *ch = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len > 0 && buf_append(ch->wout, in, (size_t)len) < 0)
        return -1;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH; /* writes are queued at once */
}

static BIO_METHOD *bio_method;

static void tls_init(void)
{
    if (!o.cert || !o.key || !o.ca) {
        fprintf(stderr, "loadgen: --tls needs --cert, --key and --ca\n");
        exit(2);
    }
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "loadgen");
    if (!bio_method)
        die_tls("BIO_meth_new failed");
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    tls_ctx = SSL_CTX_new(TLS_method());
    if (!tls_ctx)
        die_tls("SSL_CTX_new failed");
    if (!SSL_CTX_set_min_proto_version(tls_ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(tls_ctx, TLS1_3_VERSION))
        die_tls("TLS 1.3 not available");
    if (SSL_CTX_use_certificate_chain_file(tls_ctx, o.cert) != 1)
        die_tls(o.cert);
    if (SSL_CTX_use_PrivateKey_file(tls_ctx, o.key, SSL_FILETYPE_PEM) != 1)
        die_tls(o.key);
    if (SSL_CTX_load_verify_locations(tls_ctx, o.ca, NULL) != 1)
        die_tls(o.ca);
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    /* Throughput, not handshakes, is measured: every connection does one
     * full handshake and the tickets the server sends are dropped. */
    SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
}

/* Ciphertext received from the socket, for SSL_read / the handshake. */
static void tls_take(struct chan *ch, const uint8_t *p, size_t n)
{
    if (buf_append(&ch->inq, p, n) < 0) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "loadgen: send: %s\n", strerror(errno));
            exit(1);
        }
        p += r;
        n -= (size_t)r;
    }
}

/* Setup only (wout == &own): sends what BoringSSL queued. */
static void chan_flush(struct chan *ch)
{
    if (!ch->ssl || !ch->own.len)
        return;
    send_all(ch->fd, ch->own.p, ch->own.len);
    buf_reset(&ch->own);
}

/* Blocking, for setup (SASL, preload): every byte, encrypted with TLS. */
static void chan_send(struct chan *ch, const void *p, size_t n)
{
    if (!ch->ssl) {
        send_all(ch->fd, p, n);
        return;
    }
    if (n && SSL_write(ch->ssl, p, (int)n) != (int)n)
        die_tls("SSL_write failed");
    chan_flush(ch);
}

/* Blocking, for setup: > 0 plaintext bytes, or -1 (closed or failed). */
static ssize_t chan_recv(struct chan *ch, void *out, size_t cap)
{
    if (!ch->ssl)
        return recv(ch->fd, out, cap, 0);
    uint8_t tmp[16384];
    ch->at_boundary = 0; /* not tracked here (setup only) */
    for (;;) {
        int r = SSL_read(ch->ssl, out, cap > 1u << 30 ? 1 << 30 : (int)cap);
        if (r > 0)
            return r;
        if (SSL_get_error(ch->ssl, r) != SSL_ERROR_WANT_READ) {
            ERR_print_errors_fp(stderr);
            return -1;
        }
        chan_flush(ch); /* whatever the read owes the peer (a KeyUpdate answer) */
        ssize_t k = recv(ch->fd, tmp, sizeof tmp, 0);
        if (k <= 0)
            return -1;
        tls_take(ch, tmp, (size_t)k);
    }
}

static void tls_handshake(struct chan *ch)
{
    ch->ssl = SSL_new(tls_ctx);
    BIO *bio = BIO_new(bio_method);
    if (!ch->ssl || !bio)
        die_tls("out of memory");
    BIO_set_data(bio, ch);
    BIO_set_init(bio, 1);
    ch->wout = &ch->own;
    SSL_set_bio(ch->ssl, bio, bio); /* one reference, used both ways */
    SSL_set_connect_state(ch->ssl);
    /* The server certificate must name what we dial (mkcerts.sh puts
     * localhost, 127.0.0.1 and ::1 in it). */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ch->ssl);
    if (!X509_VERIFY_PARAM_set1_ip_asc(vp, o.host) &&
        !X509_VERIFY_PARAM_set1_host(vp, o.host, strlen(o.host)))
        die_tls("cannot set the expected server name");
    for (;;) {
        int r = SSL_do_handshake(ch->ssl);
        chan_flush(ch);
        if (r == 1)
            return;
        if (SSL_get_error(ch->ssl, r) != SSL_ERROR_WANT_READ)
            die_tls("TLS handshake failed");
        uint8_t tmp[16384];
        ssize_t k = recv(ch->fd, tmp, sizeof tmp, 0);
        if (k <= 0) {
            fprintf(stderr, "loadgen: connection closed during the TLS handshake\n");
            exit(1);
        }
        tls_take(ch, tmp, (size_t)k);
    }
}

static struct chan *dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(o.port);
    if (fd < 0 || inet_pton(AF_INET, o.host, &a.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address (%s)\n", o.host);
        exit(1);
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "loadgen: connect %s:%u: %s\n", o.host, o.port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct chan *ch = calloc(1, sizeof *ch); /* the BIO points at it: it must not move */
    if (!ch)
        exit(1);
    ch->fd = fd;
    if (o.tls)
        tls_handshake(ch);
    return ch;
}

static void chan_close(struct chan *ch)
{
    SSL_free(ch->ssl); /* and its BIO */
    close(ch->fd);
    buf_free(&ch->inq);
    buf_free(&ch->own);
    free(ch);
}

static int read_frame(struct chan *ch, struct buf *in, struct wire_frame *f)
{
    for (;;) {
        int rc = wire_parse(in->p, in->len, 1u << 1, f);
        if (rc > 0)
            return rc;
        if (rc < 0)
            return -1;
        if (buf_reserve(in, 65536) < 0)
            return -1;
        ssize_t r = chan_recv(ch, in->p + in->len, 65536);
        if (r <= 0)
            return -1;
        in->len += (size_t)r;
    }
}

static void sasl(struct chan *ch)
{
    if (!o.user)
        return;
    struct buf b = BUF_INIT, in = BUF_INIT;
    char v[512];
    int n = snprintf(v, sizeof v, "%c%s%c%s", 0, o.user, 0, o.secret ? o.secret : "");
    wire_put_request(&b, WIRE_OP_SASL_AUTH, 0, 0, NULL, 0, "PLAIN", 5, v, (uint32_t)n);
    chan_send(ch, b.p, b.len);
    struct wire_frame f;
    if (read_frame(ch, &in, &f) < 0 || f.status != 0) {
        fprintf(stderr, "loadgen: SASL as %s failed\n", o.user);
        exit(1);
    }
    buf_free(&b);
    buf_free(&in);
}

static void preload(void)
{
    struct chan *ch = dial();
    sasl(ch);
    struct buf b = BUF_INIT, in = BUF_INIT, v = BUF_INIT;
    const uint32_t window = 256;
    uint32_t sent = 0, got = 0, total = o.preload * o.rows;
    uint64_t t0 = now_ns();
    while (got < total) {
        buf_reset(&b);
        while (sent < total && sent - got < window) {
            char dev[32];
            uint32_t k = sent / o.rows, r = sent % o.rows;
            int dl = snprintf(dev, sizeof dev, "dev-%08u", k);
            buf_reset(&v);
            if (o.memcached) {
                /* value = the encoded rows icsd's GET returns */
                buf_put_u32(&v, 1);
                row_value(&v, k, 0);
                buf_put_u32(&v, 0);
                uint8_t ext[8] = {0};
                wire_put_request(&b, WIRE_OP_SET, sent, 0, ext, 8, dev, (uint16_t)dl, v.p,
                                 (uint32_t)v.len);
            } else {
                row_value(&v, k, r);
                wire_put_request(&b, WIRE_OP_MAP, sent, 0, NULL, 0, dev, (uint16_t)dl, v.p,
                                 (uint32_t)v.len);
            }
            sent++;
        }
        if (b.len)
            chan_send(ch, b.p, b.len);
        struct wire_frame f;
        int rc = read_frame(ch, &in, &f);
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
    fprintf(stderr, "loadgen: preloaded %u rows in %.2f s\n", total,
            (double)(now_ns() - t0) / 1e9);
    chan_close(ch);
    buf_free(&b);
    buf_free(&in);
    buf_free(&v);
}

/* --- the run ------------------------------------------------------------------------ */
struct lconn {
    struct chan *ch;
    /* out: bytes queued to send (ciphertext with TLS); tx: the bytes of the
     * send in flight, never touched until it completes, so that queueing
     * more (which may move out's memory) cannot pull them from under the
     * kernel. plain: requests staged for one SSL_write (TLS only). */
    struct buf out, tx, in, plain;
    size_t txoff;
    uint8_t rbuf[65536];
    uint64_t *sent_at;     /* ring of depth send times, in order */
    unsigned head, inflight;
    int sending;
    unsigned owed;         /* --rate: requests answered, not yet sent again */
    int recv_idle;         /* no receive armed (nothing in flight) */
};

/* --rate: how many of want requests the schedule allows at time t (ns since
 * the run began), so that both servers of a comparison get the same offered
 * load rather than each as much as it answers. */
static uint64_t rate_issued;
static unsigned rate_allow(uint64_t since, unsigned want)
{
    if (o.rate <= 0)
        return want;
    uint64_t allowed = (uint64_t)((double)since * o.rate / 1e9) + 1;
    uint64_t left = allowed > rate_issued ? allowed - rate_issued : 0;
    unsigned k = want < left ? want : (unsigned)left;
    rate_issued += k;
    return k;
}

static struct io_uring ring;
static uint32_t next_opaque;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) { /* full: hand the batch to the kernel, then there is room */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    if (!sqe) {
        fprintf(stderr, "loadgen: no submission queue entry\n");
        exit(1);
    }
    return sqe;
}

/* Queues k new requests sent at time t (one SSL_write for all with TLS). */
static void queue_requests(struct lconn *c, unsigned k, uint64_t t)
{
    struct buf *dst = o.tls ? &c->plain : &c->out;
    for (unsigned j = 0; j < k; j++) {
        int w = o.op == OP_MIX && (int)(xr() % 100) >= o.read_pct;
        put_request(dst, w, next_opaque++);
        c->sent_at[(c->head + c->inflight) % (unsigned)o.depth] = t;
        c->inflight++;
    }
    if (o.tls && c->plain.len) {
        if (SSL_write(c->ch->ssl, c->plain.p, (int)c->plain.len) != (int)c->plain.len)
            die_tls("SSL_write failed");
        buf_reset(&c->plain); /* the records went straight to c->out (wout) */
    }
}

static void send_more(struct lconn *c, int i)
{
    if (c->sending)
        return;
    if (c->txoff == c->tx.len) {
        if (!c->out.len)
            return;
        struct buf t = c->tx;
        c->tx = c->out;
        c->out = t;
        buf_reset(&c->out);
        c->txoff = 0;
    }
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->ch->fd, c->tx.p + c->txoff, c->tx.len - c->txoff, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)i << 1);
    c->sending = 1;
}

static void arm_recv(struct lconn *c, int i)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, c->ch->fd, c->rbuf, sizeof c->rbuf, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)i << 1 | 1);
}

/* At a record boundary: do the unread input bytes hold a whole record?
 * (A length no record can have counts as yes: SSL_read reports it.) */
static int has_record(const struct chan *ch)
{
    int lent = ch->lent_off < ch->lent_len;
    size_t avail = lent ? ch->lent_len - ch->lent_off : ch->inq.len - ch->inoff;
    if (avail < 5)
        return 0;
    const uint8_t *p = lent ? ch->lent + ch->lent_off : ch->inq.p + ch->inoff;
    size_t len = (size_t)p[3] << 8 | p[4];
    return len > 16384 + 256 || avail >= 5 + len;
}

/* Received bytes in: plaintext to c->in (decrypted with TLS). The same
 * work per byte as the server's net/tls: the bytes are read where they
 * were received (lent to the BIO) unless a partial record waits in inq,
 * and no SSL_read is made that could only say WANT_READ. */
static void take_input(struct lconn *c, size_t n)
{
    if (!o.tls) {
        buf_append(&c->in, c->rbuf, n);
        return;
    }
    struct chan *ch = c->ch;
    if (ch->inq.len == ch->inoff) {
        ch->lent = c->rbuf;
        ch->lent_len = n;
        ch->lent_off = 0;
    } else {
        tls_take(ch, c->rbuf, n);
    }
    for (;;) {
        if (ch->at_boundary && !has_record(ch))
            break;
        if (buf_reserve(&c->in, 16384) < 0) {
            fprintf(stderr, "loadgen: out of memory\n");
            exit(1);
        }
        int r = SSL_read(ch->ssl, c->in.p + c->in.len, 16384);
        if (r > 0) {
            c->in.len += (size_t)r;
            ch->at_boundary = SSL_pending(ch->ssl) == 0;
            continue;
        }
        ch->at_boundary = 0;
        if (SSL_get_error(ch->ssl, r) != SSL_ERROR_WANT_READ)
            die_tls("TLS connection failed (certificate refused, or closed by the server)");
        break;
    } /* anything the reads owe the server (a KeyUpdate answer) is in c->out */
    if (ch->lent_off < ch->lent_len)   /* a partial record: keep it */
        tls_take(ch, ch->lent + ch->lent_off, ch->lent_len - ch->lent_off);
    ch->lent = NULL;
    ch->lent_len = ch->lent_off = 0;
}

/* The server's user and system CPU ticks (/proc/PID/stat), apart: on a
 * loopback benchmark most of a server's time per request is the kernel's
 * (receive, send, and the wake-up of whoever the response is for), and
 * that part is the floor under any server's CPU per request. */
static void cpu_ticks(uint64_t t[2])
{
    t[0] = t[1] = 0;
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
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
        t[0] = ut;
        t[1] = st;
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ics-loadgen [--host H] [--port P] [--conns N] [--depth D] [--duration S]\n"
            "  [--op inquire|binding|get|mix] [--read-pct P] [--keys N] [--zipf]\n"
            "  [--memcached] [--user U --secret S] [--preload N [--rows R]] [--preload-only]\n"
            "  [--tls --cert FILE --key FILE --ca FILE]\n"
            "  [--server-pid PID] [--label TEXT] [--rate R (requests/s in all)]\n"
            "  [--ring plain|coop (how the kernel signals this generator's ring)]\n");
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
        else if (ARG("--rate")) o.rate = atof(v);
        else if (ARG("--read-pct")) o.read_pct = atoi(v);
        else if (ARG("--keys")) o.keys = (uint32_t)atoi(v);
        else if (ARG("--preload")) o.preload = (uint32_t)atoi(v);
        else if (ARG("--rows")) o.rows = (uint32_t)atoi(v);
        else if (ARG("--user")) o.user = v;
        else if (ARG("--secret")) o.secret = v;
        else if (ARG("--server-pid")) o.server_pid = atoi(v);
        else if (ARG("--label")) o.label = v;
        else if (ARG("--cert")) o.cert = v;
        else if (ARG("--key")) o.key = v;
        else if (ARG("--ca")) o.ca = v;
        else if (ARG("--op")) {
            if (!strcmp(v, "inquire")) o.op = OP_INQUIRE;
            else if (!strcmp(v, "binding")) o.op = OP_BINDING;
            else if (!strcmp(v, "get")) o.op = OP_GET;
            else if (!strcmp(v, "mix")) o.op = OP_MIX;
            else usage();
        } else if (ARG("--ring")) {
            /* plain: a completion for this thread while it runs interrupts
             * it (an IPI from the server's CPU, paid in the server's send);
             * coop: it waits for this thread's next io_uring_enter. Both
             * servers are measured with the same; the ratio depends on it. */
            if (!strcmp(v, "plain")) o.ring_flags = 0;
            else if (!strcmp(v, "coop"))
                o.ring_flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER;
            else usage();
        } else if (!strcmp(a, "--zipf")) o.zipf = 1;
        else if (!strcmp(a, "--memcached")) o.memcached = 1;
        else if (!strcmp(a, "--preload-only")) o.preload_only = 1;
        else if (!strcmp(a, "--tls")) o.tls = 1;
        else usage();
#undef ARG
    }
    if (o.conns < 1 || o.depth < 1 || o.keys < 1 || o.rows < 1)
        usage();
    if (o.memcached && o.rows != 1) {
        fprintf(stderr, "loadgen: --rows is for icsd\n");
        return 2;
    }
    if (o.memcached && o.op != OP_GET) {
        fprintf(stderr, "loadgen: memcached speaks only --op get here\n");
        return 2;
    }
    if (o.memcached && o.tls) {
        fprintf(stderr, "loadgen: --tls is for icsd's TLS port only\n");
        return 2;
    }
    if (o.tls)
        tls_init();
    if (o.preload)
        preload();
    if (o.preload_only)
        return 0;
    if (o.zipf)
        zipf_init();

    struct io_uring_params rp = {.flags = o.ring_flags};
    if (io_uring_queue_init_params(256, &ring, &rp) < 0) {
        fprintf(stderr, "loadgen: io_uring_queue_init failed\n");
        return 1;
    }
    struct lconn *cs = calloc((size_t)o.conns, sizeof *cs);
    if (!cs)
        return 1;
    for (int i = 0; i < o.conns; i++) {
        cs[i].ch = dial();
        sasl(cs[i].ch);
        /* From now on BoringSSL writes straight into the send queue. Setup
         * left nothing unsent (chan_flush after every write). */
        cs[i].ch->wout = &cs[i].out;
        cs[i].sent_at = calloc((size_t)o.depth, sizeof(uint64_t));
    }
    uint64_t ops = 0, errors = 0, c0[2], c1[2];
    cpu_ticks(c0);
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)o.duration_s * 1000000000u;
    /* Fill every pipeline (with --rate, as the schedule allows, below). */
    for (int i = 0; i < o.conns; i++) {
        cs[i].owed = (unsigned)o.depth;
        cs[i].recv_idle = 1;
    }
    int done = 0;
    while (!done) {
        int owing = 0;
        uint64_t tn = now_ns();
        for (int i = 0; i < o.conns; i++) {
            struct lconn *c = &cs[i];
            unsigned k = c->owed ? rate_allow(tn - t0, c->owed) : 0;
            if (k) {
                queue_requests(c, k, tn);
                c->owed -= k;
                send_more(c, i);
                if (c->recv_idle) {
                    arm_recv(c, i);
                    c->recv_idle = 0;
                }
            }
            owing |= c->owed != 0;
        }
        struct io_uring_cqe *cqe;
        if (owing) {
            /* A request is due soon: wake for it even with nothing back. */
            struct __kernel_timespec ts = {0, 20000};
            io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        } else {
            io_uring_submit_and_wait(&ring, 1);
        }
        unsigned head, n = 0;
        uint64_t t = now_ns();
        if (t >= end)
            done = 1;
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            int i = (int)(ud >> 1);
            struct lconn *c = &cs[i];
            if (!(ud & 1)) { /* send */
                c->sending = 0;
                if (cqe->res < 0) {
                    fprintf(stderr, "loadgen: send: %s\n", strerror(-cqe->res));
                    return 1;
                }
                c->txoff += (size_t)cqe->res;
                send_more(c, i); /* the rest, or what queued meanwhile */
                continue;
            }
            if (cqe->res <= 0) {
                fprintf(stderr, "loadgen: connection closed by the server\n");
                return 1;
            }
            take_input(c, (size_t)cqe->res);
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
            if (!done && answered) {
                unsigned k = rate_allow(t - t0, answered);
                if (k)
                    queue_requests(c, k, t);
                c->owed += answered - k;
            }
            send_more(c, i);
            if (c->inflight)
                arm_recv(c, i);
            else
                c->recv_idle = 1;
        }
        io_uring_cq_advance(&ring, n);
    }
    uint64_t t1 = now_ns();
    cpu_ticks(c1);
    double secs = (double)(t1 - t0) / 1e9;
    double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
    double usr_us = o.server_pid ? (double)(c1[0] - c0[0]) * tick_us : 0;
    double sys_us = o.server_pid ? (double)(c1[1] - c0[1]) * tick_us : 0;
    printf("%s ops=%llu errors=%llu secs=%.2f ops_per_s=%.0f p50_us=%.1f p99_us=%.1f "
           "p999_us=%.1f server_cpu_us_per_op=%.3f server_user_us_per_op=%.3f "
           "server_sys_us_per_op=%.3f\n",
           o.label, (unsigned long long)ops, (unsigned long long)errors, secs,
           (double)ops / secs, hpct(0.50) / 1000.0, hpct(0.99) / 1000.0, hpct(0.999) / 1000.0,
           ops ? (usr_us + sys_us) / (double)ops : 0.0, ops ? usr_us / (double)ops : 0.0,
           ops ? sys_us / (double)ops : 0.0);
    for (int i = 0; i < o.conns; i++) {
        struct lconn *c = &cs[i];
        chan_close(c->ch);
        buf_free(&c->out);
        buf_free(&c->tx);
        buf_free(&c->in);
        buf_free(&c->plain);
        free(c->sent_at);
    }
    free(cs);
    free(zcdf);
    io_uring_queue_exit(&ring);
    SSL_CTX_free(tls_ctx);
    BIO_meth_free(bio_method);
    return errors && o.op != OP_MIX ? 3 : 0;
}
