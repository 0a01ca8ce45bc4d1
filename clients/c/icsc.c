/*
 * icsc.c — the C client's connection: transport (TCP, optionally TLS via
 * BoringSSL on the same non-blocking socket), request/response matching,
 * events, reconnect, timeouts, and the typed calls of icsc.h.
 *
 * The socket is always non-blocking and every wait goes through poll() with
 * a deadline, so one mechanism gives every call its timeout, plaintext or TLS.
 */
#include "icsc.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define EVQ_MAX 4096 /* events kept for icsc_poll_event; older are dropped */

struct icsc {
    char *host, *user, *secret, *ca, *cert, *key, *sni;
    uint16_t port;
    int timeout_ms;
    int no_reconnect;
    int fd;
    int ever_connected;
    SSL_CTX *ctx;
    SSL *ssl;
    uint8_t *rbuf;
    size_t rpos, rlen, rcap;
    uint32_t next_opaque;
    uint64_t lsn;
    char msg[256];
    uint32_t watch_mask;
    icsc_event_cb cb;
    void *cb_arg;
    icsc_event *evq;
    size_t evq_head, evq_n;
    unsigned reconnects;
    uint8_t *pw;          /* icsc_pipe_*: requests not yet written */
    size_t pw_pos, pw_len, pw_cap;
    size_t pipe_n;        /* requests in flight */
};

/* ---- small helpers ------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_in(int timeout_ms) { return timeout_ms < 0 ? -1 : now_ms() + timeout_ms; }

static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t r = deadline - now_ms();
    return r < 0 ? 0 : (int)r;
}

static char *dupz(const char *s) { return s ? strdup(s) : NULL; }

static char *dupn(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* A growable byte buffer for building request values. */
typedef struct wb { uint8_t *p; size_t n, cap; int err; } wb;

static void wb_put(wb *b, const void *p, size_t n)
{
    if (b->err)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->err = -ENOMEM;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void wb_u8(wb *b, uint8_t v) { wb_put(b, &v, 1); }
static void wb_u16(wb *b, uint16_t v) { uint8_t t[2]; put16(t, v); wb_put(b, t, 2); }
static void wb_u32(wb *b, uint32_t v) { uint8_t t[4]; put32(t, v); wb_put(b, t, 4); }
static void wb_str16(wb *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > 0xffff) {
        b->err = -EMSGSIZE;
        return;
    }
    wb_u16(b, (uint16_t)n);
    wb_put(b, s, n);
}

/* Which opcodes change state: never re-sent once written. */
static int op_is_change(uint8_t op)
{
    switch (op) {
    case ICSC_OP_MAP: case ICSC_OP_MAP_REQUEST: case ICSC_OP_MAP_CONFIRM:
    case ICSC_OP_MAP_REJECT: case ICSC_OP_DEMAP: case ICSC_OP_DEMAP_DEVICE:
    case ICSC_OP_DEMAP_BINDING: case ICSC_OP_DEMAP_SERVICE: case ICSC_OP_SNAPSHOT:
    case ICSC_OP_PREFS_SET: case ICSC_OP_PRINCIPAL_SET: case ICSC_OP_PRINCIPAL_DEL:
    case ICSC_OP_KEY_ISSUE: case ICSC_OP_QUIT: case ICSC_OP_QUITQ:
        return 1;
    default:
        return 0;
    }
}

/* ---- transport ----------------------------------------------------------- */

static void tx_close(icsc *c)
{
    c->pw_pos = c->pw_len = 0;
    c->pipe_n = 0;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->rpos = c->rlen = 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, remaining(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* Maps an SSL result to: 1 retry after waiting (events in *ev), or an error. */
static int ssl_want(icsc *c, int r, short *ev)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        *ev = POLLIN;
        return 1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        *ev = POLLOUT;
        return 1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return -ECONNRESET;
    if (e == SSL_ERROR_SYSCALL)
        return errno ? -errno : -ECONNRESET;
    ERR_clear_error();
    return -ECONNRESET;
}

static int tls_setup(icsc *c, int64_t deadline)
{
    if (!c->ctx) {
        c->ctx = SSL_CTX_new(TLS_method());
        if (!c->ctx)
            return -ENOMEM;
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_load_verify_locations(c->ctx, c->ca, NULL) != 1 ||
            (c->cert && SSL_CTX_use_certificate_chain_file(c->ctx, c->cert) != 1) ||
            (c->key && SSL_CTX_use_PrivateKey_file(c->ctx, c->key, SSL_FILETYPE_PEM) != 1)) {
            ERR_clear_error();
            SSL_CTX_free(c->ctx);
            c->ctx = NULL;
            return -EKEYREJECTED;
        }
        SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl)
        return -ENOMEM;
    SSL_set_fd(c->ssl, c->fd);
    const char *name = c->sni ? c->sni : c->host;
    X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
    struct in6_addr a6;
    struct in_addr a4;
    /* The peer must prove the name we asked for: an IP is checked against
     * the certificate's IP SANs, a name against its DNS names/CN. */
    if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(param, name);
    } else {
        SSL_set_tlsext_host_name(c->ssl, name);
        X509_VERIFY_PARAM_set1_host(param, name, strlen(name));
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return 0;
        short ev;
        int w = ssl_want(c, r, &ev);
        if (w < 0)
            return -EKEYREJECTED;
        int rc = wait_fd(c->fd, ev, deadline);
        if (rc)
            return rc;
    }
}

static int tx_connect(icsc *c, int64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", c->port);
    int g = getaddrinfo(c->host, port, &hints, &res);
    if (g)
        return -ENOENT;
    int rc = -ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            rc = -errno;
            close(fd);
            continue;
        }
        rc = wait_fd(fd, POLLOUT, deadline);
        int err = 0;
        socklen_t el = sizeof err;
        if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err)
            rc = -err;
        if (rc) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd = fd;
        break;
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return rc;
    if (c->ca && (rc = tls_setup(c, deadline)) != 0) {
        tx_close(c);
        return rc;
    }
    return 0;
}

/* Writes what it can of p[0..n) before the deadline; *done counts bytes
 * accepted by the kernel (or TLS), so a caller knows whether any left. */
static int tx_write_some(icsc *c, const uint8_t *p, size_t n, size_t *done)
{
    if (c->ssl) {
        int r = SSL_write(c->ssl, p, n > 1 << 30 ? 1 << 30 : (int)n);
        if (r > 0) {
            *done += (size_t)r;
            return 0;
        }
        short ev;
        int w = ssl_want(c, r, &ev);
        return w < 0 ? w : -EAGAIN;
    }
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) {
        *done += (size_t)r;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return -EAGAIN;
    return -errno;
}

static int tx_write(icsc *c, const uint8_t *p, size_t n, int64_t deadline, size_t *done)
{
    *done = 0;
    while (*done < n) {
        int rc = tx_write_some(c, p + *done, n - *done, done);
        if (rc == -EAGAIN)
            rc = wait_fd(c->fd, POLLOUT | POLLIN, deadline);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads whatever is available into rbuf: > 0 bytes, -EAGAIN, or an error
 * (-ECONNRESET on EOF). */
static int tx_read_some(icsc *c)
{
    if (c->rpos && c->rpos == c->rlen)
        c->rpos = c->rlen = 0;
    if (c->rcap - c->rlen < 16384) {
        if (c->rpos) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        if (c->rcap - c->rlen < 16384) {
            size_t cap = c->rcap ? c->rcap * 2 : 65536;
            uint8_t *q = realloc(c->rbuf, cap);
            if (!q)
                return -ENOMEM;
            c->rbuf = q;
            c->rcap = cap;
        }
    }
    size_t room = c->rcap - c->rlen;
    if (c->ssl) {
        int r = SSL_read(c->ssl, c->rbuf + c->rlen, room > 1 << 30 ? 1 << 30 : (int)room);
        if (r > 0) {
            c->rlen += (size_t)r;
            return r;
        }
        short ev;
        int w = ssl_want(c, r, &ev);
        return w < 0 ? w : -EAGAIN;
    }
    ssize_t r = recv(c->fd, c->rbuf + c->rlen, room, 0);
    if (r > 0) {
        c->rlen += (size_t)r;
        return (int)r;
    }
    if (r == 0)
        return -ECONNRESET;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return -EAGAIN;
    return -errno;
}

/* True when the peer closed the idle connection (server restart): checked
 * before sending, so a change is not written into a dead socket. */
static int peer_closed(icsc *c)
{
    if (c->fd < 0)
        return 1;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & (POLLERR | POLLHUP))
        return 1;
    uint8_t b;
    ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---- events -------------------------------------------------------------- */

void icsc_event_clear(icsc_event *e)
{
    free(e->a);
    free(e->b);
    free(e->c);
    memset(e, 0, sizeof *e);
}

static int event_from_frame(const icsc_frame *f, icsc_event *e)
{
    memset(e, 0, sizeof *e);
    if (icsc_validate_value(f->opcode, 1, f->value, f->value_len))
        return -EPROTO;
    e->code = f->opcode;
    e->status = f->status;
    e->lsn = f->cas;
    e->key_len = f->key_len > sizeof e->key ? sizeof e->key : f->key_len;
    memcpy(e->key, f->key, e->key_len);
    icsc_rd r;
    icsc_rd_init(&r, f->value, f->value_len);
    char **out[3] = {&e->a, &e->b, &e->c};
    int n = f->opcode == ICSC_EV_MAP_PENDING ? 3 : f->opcode == ICSC_EV_DEMAPPED ? 2 : 1;
    for (int i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len;
        icsc_rd_str16(&r, &p, &len);
        *out[i] = dupn(p, len);
        if (!*out[i]) {
            icsc_event_clear(e);
            return -ENOMEM;
        }
    }
    return 0;
}

static int handle_event(icsc *c, const icsc_frame *f)
{
    icsc_event e;
    int rc = event_from_frame(f, &e);
    if (rc)
        return rc == -ENOMEM ? rc : 0; /* an event we cannot parse is dropped */
    if (c->cb) {
        c->cb(c->cb_arg, &e);
        icsc_event_clear(&e);
        return 0;
    }
    if (!c->evq && !(c->evq = calloc(EVQ_MAX, sizeof *c->evq))) {
        icsc_event_clear(&e);
        return -ENOMEM;
    }
    if (c->evq_n == EVQ_MAX) { /* full: drop the oldest (delivery is at least once) */
        icsc_event_clear(&c->evq[c->evq_head]);
        c->evq_head = (c->evq_head + 1) % EVQ_MAX;
        c->evq_n--;
    }
    c->evq[(c->evq_head + c->evq_n) % EVQ_MAX] = e;
    c->evq_n++;
    return 0;
}

/* Next response frame (events are handled on the way). The frame points
 * into rbuf and stays valid until the next read. */
static int next_response(icsc *c, icsc_frame *f, int64_t deadline)
{
    for (;;) {
        while (c->rpos < c->rlen) {
            int n = icsc_decode_frame(c->rbuf + c->rpos, c->rlen - c->rpos, ICSC_MAX_BODY * 16, f);
            if (n < 0)
                return n;
            if (n == 0)
                break;
            c->rpos += (size_t)n;
            if (f->magic == ICSC_MAGIC_EVT) {
                int rc = handle_event(c, f);
                if (rc)
                    return rc;
                continue;
            }
            return 0;
        }
        int r = tx_read_some(c);
        if (r == -EAGAIN) {
            if (c->ssl && SSL_pending(c->ssl))
                continue;
            r = wait_fd(c->fd, POLLIN, deadline);
            if (r)
                return r;
        } else if (r < 0) {
            return r;
        }
    }
}

/* ---- connect / authenticate ---------------------------------------------- */

static int exchange(icsc *c, uint8_t op, const void *ex, size_t exl, const void *key, size_t kl,
                    const void *val, size_t vl, uint64_t cas, icsc_frame *f, int64_t deadline,
                    size_t *sent);

static int open_session(icsc *c)
{
    int64_t deadline = deadline_in(c->timeout_ms);
    int rc = tx_connect(c, deadline);
    if (rc)
        return rc;
    icsc_frame f;
    size_t sent;
    if (c->user) {
        wb v = {0};
        wb_put(&v, "", 1); /* empty authzid, NUL */
        wb_put(&v, c->user, strlen(c->user) + 1);
        wb_put(&v, c->secret ? c->secret : "", c->secret ? strlen(c->secret) : 0);
        rc = v.err ? v.err : exchange(c, ICSC_OP_SASL_AUTH, NULL, 0, "PLAIN", 5, v.p, v.n, 0, &f, deadline, &sent);
        free(v.p);
        if (rc == 0 && f.status)
            rc = f.status;
        if (rc)
            goto fail;
    }
    if (c->watch_mask) {
        uint8_t ex[4];
        put32(ex, c->watch_mask);
        rc = exchange(c, ICSC_OP_WATCH, ex, 4, NULL, 0, NULL, 0, 0, &f, deadline, &sent);
        if (rc == 0 && f.status)
            rc = f.status;
        if (rc)
            goto fail;
    }
    if (c->ever_connected)
        c->reconnects++;
    c->ever_connected = 1;
    return 0;
fail:
    tx_close(c);
    return rc;
}

/* Makes sure a usable connection exists before a request is written. */
static int ensure_open(icsc *c)
{
    if (c->fd >= 0 && !peer_closed(c))
        return 0;
    if (c->fd >= 0)
        tx_close(c);
    if (c->ever_connected && c->no_reconnect)
        return -ENOTCONN;
    return open_session(c);
}

int icsc_connect(icsc **out, const icsc_opts *o)
{
    *out = NULL;
    icsc *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = -1;
    c->host = strdup(o->host ? o->host : "127.0.0.1");
    c->port = o->port ? o->port : 11311;
    c->user = dupz(o->user);
    c->secret = dupz(o->secret);
    c->ca = dupz(o->tls_ca);
    c->cert = dupz(o->tls_cert);
    c->key = dupz(o->tls_key);
    c->sni = dupz(o->tls_server_name);
    c->timeout_ms = o->timeout_ms == 0 ? 5000 : o->timeout_ms;
    c->no_reconnect = o->no_reconnect;
    c->next_opaque = 1;
    int rc = open_session(c);
    if (rc) {
        icsc_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void icsc_close(icsc *c)
{
    if (!c)
        return;
    if (c->ssl && c->fd >= 0)
        SSL_shutdown(c->ssl); /* best effort close_notify; never waits (non-blocking) */
    tx_close(c);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->evq) {
        for (size_t i = 0; i < c->evq_n; i++)
            icsc_event_clear(&c->evq[(c->evq_head + i) % EVQ_MAX]);
        free(c->evq);
    }
    free(c->rbuf);
    free(c->pw);
    free(c->host);
    free(c->user);
    free(c->secret);
    free(c->ca);
    free(c->cert);
    free(c->key);
    free(c->sni);
    free(c);
}

const char *icsc_last_message(const icsc *c) { return c->msg; }
uint64_t icsc_last_lsn(const icsc *c) { return c->lsn; }
void icsc_set_timeout(icsc *c, int timeout_ms) { c->timeout_ms = timeout_ms; }
unsigned icsc_reconnects(const icsc *c) { return c->reconnects; }
void icsc_set_event_cb(icsc *c, icsc_event_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
}

/* ---- one request / response ---------------------------------------------- */

static int encode_request(wb *out, uint8_t op, const void *ex, size_t exl, const void *key,
                          size_t kl, const void *val, size_t vl, uint64_t cas, uint32_t opaque)
{
    if (exl > 255 || kl > 0xffff || exl + kl + vl > ICSC_MAX_BODY)
        return -EMSGSIZE;
    uint8_t h[ICSC_HDR_LEN];
    icsc_encode_header(h, ICSC_MAGIC_REQ, op, (uint16_t)kl, (uint8_t)exl, 0,
                       (uint32_t)(exl + kl + vl), opaque, cas);
    wb_put(out, h, sizeof h);
    wb_put(out, ex, exl);
    wb_put(out, key, kl);
    wb_put(out, val, vl);
    return out->err;
}

static void note_response(icsc *c, const icsc_frame *f)
{
    c->lsn = f->cas;
    c->msg[0] = 0;
    if (f->status) {
        size_t n = f->value_len < sizeof c->msg - 1 ? f->value_len : sizeof c->msg - 1;
        memcpy(c->msg, f->value, n);
        c->msg[n] = 0;
    }
}

/* Sends one request and reads its response into *f (valid until the next
 * read). Transport errors close the connection; *sent says how far it got. */
static int exchange(icsc *c, uint8_t op, const void *ex, size_t exl, const void *key, size_t kl,
                    const void *val, size_t vl, uint64_t cas, icsc_frame *f, int64_t deadline,
                    size_t *sent)
{
    wb req = {0};
    uint32_t opaque = c->next_opaque++;
    *sent = 0;
    int rc = encode_request(&req, op, ex, exl, key, kl, val, vl, cas, opaque);
    if (!rc)
        rc = tx_write(c, req.p, req.n, deadline, sent);
    free(req.p);
    if (rc)
        goto broken;
    for (;;) {
        rc = next_response(c, f, deadline);
        if (rc)
            goto broken;
        if (f->opaque == opaque)
            break;
        /* A late answer to an earlier request (quiet opcodes): skip it. */
        if ((int32_t)(f->opaque - opaque) > 0) {
            rc = -EPROTO;
            goto broken;
        }
    }
    note_response(c, f);
    return 0;
broken:
    if (rc != -EMSGSIZE && rc != -ENOMEM)
        tx_close(c);
    return rc;
}

/* The call loop: reopen when needed, send, and retry a read once on a
 * fresh connection; a change that was written is never re-sent. */
static int call_frame(icsc *c, uint8_t op, const void *ex, size_t exl, const void *key, size_t kl,
                      const void *val, size_t vl, uint64_t cas, icsc_frame *f)
{
    int change = op_is_change(op);
    int rc = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = ensure_open(c);
        if (rc)
            return rc;
        size_t sent;
        rc = exchange(c, op, ex, exl, key, kl, val, vl, cas, f, deadline_in(c->timeout_ms), &sent);
        if (rc == 0)
            return f->status;
        if (rc == -EMSGSIZE || rc == -ENOMEM)
            return rc;
        if (change && sent > 0)
            return ICSC_E_UNKNOWN_OUTCOME;
        if (rc == -ETIMEDOUT || c->no_reconnect)
            return rc;
    }
    return rc;
}

int icsc_call(icsc *c, uint8_t opcode, const void *extras, size_t extras_len, const void *key,
              size_t key_len, const void *val, size_t val_len, uint64_t cas, uint8_t **value,
              size_t *value_len)
{
    icsc_frame f;
    int rc = call_frame(c, opcode, extras, extras_len, key, key_len, val, val_len, cas, &f);
    if (rc < 0)
        return rc;
    if (value) {
        *value = (uint8_t *)dupn(f.value, f.value_len);
        if (!*value)
            return -ENOMEM;
        if (value_len)
            *value_len = f.value_len;
    }
    return rc;
}

/* Runs a call and validates an OK response's value before use. */
static int call_checked(icsc *c, uint8_t op, const void *ex, size_t exl, const void *key,
                        size_t kl, const void *val, size_t vl, uint64_t cas, icsc_frame *f)
{
    int rc = call_frame(c, op, ex, exl, key, kl, val, vl, cas, f);
    if (rc == 0 && icsc_validate_value(op, 0, f->value, f->value_len)) {
        tx_close(c); /* a malformed answer means the stream cannot be trusted */
        return -EPROTO;
    }
    return rc;
}

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

/* ---- typed calls --------------------------------------------------------- */

int icsc_noop(icsc *c)
{
    icsc_frame f;
    return call_frame(c, ICSC_OP_NOOP, NULL, 0, NULL, 0, NULL, 0, 0, &f);
}

int icsc_version(icsc *c, char **version)
{
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_VERSION, NULL, 0, NULL, 0, NULL, 0, 0, &f);
    if (rc == 0 && !(*version = dupn(f.value, f.value_len)))
        return -ENOMEM;
    return rc;
}

int icsc_sasl_plain(icsc *c, const char *user, const char *secret)
{
    free(c->user);
    free(c->secret);
    c->user = dupz(user);
    c->secret = dupz(secret);
    wb v = {0};
    wb_put(&v, "", 1);
    wb_put(&v, user, strlen(user) + 1);
    wb_put(&v, secret, slen(secret));
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_SASL_AUTH, NULL, 0, "PLAIN", 5, v.p, v.n, 0, &f);
    free(v.p);
    return rc;
}

int icsc_stat(icsc *c, const char *group, void (*cb)(void *, const char *, const char *),
              void *arg)
{
    icsc_frame f;
    int rc = ensure_open(c);
    if (rc)
        return rc;
    size_t sent;
    int64_t deadline = deadline_in(c->timeout_ms);
    rc = exchange(c, ICSC_OP_STAT, NULL, 0, group, slen(group), NULL, 0, 0, &f, deadline, &sent);
    uint32_t opaque = c->next_opaque - 1;
    while (rc == 0) {
        if (f.status)
            return f.status;
        if (f.key_len == 0)
            return 0;
        char *k = dupn(f.key, f.key_len), *v = dupn(f.value, f.value_len);
        if (k && v && cb)
            cb(arg, k, v);
        free(k);
        free(v);
        do {
            rc = next_response(c, &f, deadline);
        } while (rc == 0 && f.opaque != opaque);
        if (rc)
            tx_close(c);
    }
    return rc;
}

static int rows_from(const uint8_t *v, size_t n, int with_device, icsc_rows *out)
{
    icsc_rd r;
    uint32_t cnt;
    memset(out, 0, sizeof *out);
    icsc_rd_init(&r, v, n);
    if (with_device)
        icsc_rd_u64(&r, &out->next_cursor);
    if (icsc_rd_u32(&r, &cnt))
        return -EPROTO;
    out->v = calloc(cnt ? cnt : 1, sizeof *out->v);
    if (!out->v)
        return -ENOMEM;
    for (uint32_t i = 0; i < cnt; i++) {
        const uint8_t *p[3];
        size_t l[3];
        icsc_row *row = &out->v[i];
        if (with_device)
            icsc_rd_str16(&r, &p[0], &l[0]);
        icsc_rd_str16(&r, &p[1], &l[1]);
        icsc_rd_str16(&r, &p[2], &l[2]);
        if (icsc_rd_u32(&r, &row->expires_at))
            break;
        out->n = i + 1;
        row->device = with_device ? dupn(p[0], l[0]) : NULL;
        row->uri = dupn(p[1], l[1]);
        row->uti = dupn(p[2], l[2]);
        if ((with_device && !row->device) || !row->uri || !row->uti) {
            icsc_rows_free(out);
            return -ENOMEM;
        }
    }
    if (r.err) {
        icsc_rows_free(out);
        return -EPROTO;
    }
    return 0;
}

void icsc_rows_free(icsc_rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].device);
        free(r->v[i].uri);
        free(r->v[i].uti);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

int icsc_get(icsc *c, const char *device, icsc_rows *rows)
{
    icsc_frame f;
    memset(rows, 0, sizeof *rows);
    int rc = call_checked(c, ICSC_OP_GET, NULL, 0, device, slen(device), NULL, 0, 0, &f);
    if (rc)
        return rc;
    rc = rows_from(f.value, f.value_len, 0, rows);
    rows->lsn = f.cas;
    return rc;
}

int icsc_inquire_device(icsc *c, const char *device, icsc_rows *rows)
{
    icsc_frame f;
    memset(rows, 0, sizeof *rows);
    int rc = call_checked(c, ICSC_OP_INQUIRE_DEVICE, NULL, 0, device, slen(device), NULL, 0, 0, &f);
    if (rc)
        return rc;
    rc = rows_from(f.value, f.value_len, 0, rows);
    rows->lsn = f.cas;
    return rc;
}

int icsc_export(icsc *c, uint64_t cursor, uint32_t max_rows, icsc_rows *rows)
{
    icsc_frame f;
    uint8_t key[8], ex[4];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(cursor >> (56 - 8 * i));
    put32(ex, max_rows);
    memset(rows, 0, sizeof *rows);
    int rc = call_checked(c, ICSC_OP_EXPORT, ex, 4, key, 8, NULL, 0, 0, &f);
    if (rc)
        return rc;
    rc = rows_from(f.value, f.value_len, 1, rows);
    rows->lsn = f.cas;
    return rc;
}

static void set_lsn(uint64_t *lsn, const icsc_frame *f)
{
    if (lsn)
        *lsn = f->cas;
}

int icsc_map(icsc *c, const char *device, const char *uri, const char *uti, uint32_t ttl_s,
             const char *owner, uint64_t cas, uint64_t *lsn)
{
    wb v = {0};
    uint8_t ex[4];
    put32(ex, ttl_s);
    wb_str16(&v, uri);
    wb_str16(&v, uti);
    if (owner)
        wb_str16(&v, owner);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_MAP, ex, ttl_s ? 4 : 0, device, slen(device), v.p, v.n, cas, &f);
    free(v.p);
    if (rc == 0)
        set_lsn(lsn, &f);
    return rc;
}

int icsc_map_request(icsc *c, const char *serial, const char *uri, const char *uti,
                     uint32_t ttl_s, uint8_t request_id[16])
{
    wb v = {0};
    uint8_t ex[4];
    put32(ex, ttl_s);
    wb_str16(&v, uri);
    wb_str16(&v, uti);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_checked(c, ICSC_OP_MAP_REQUEST, ex, ttl_s ? 4 : 0, serial, slen(serial), v.p,
                          v.n, 0, &f);
    free(v.p);
    if (rc == 0)
        memcpy(request_id, f.value, 16);
    return rc;
}

int icsc_map_confirm(icsc *c, const uint8_t request_id[16], const char *device, uint64_t *lsn)
{
    wb v = {0};
    wb_str16(&v, device);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_MAP_CONFIRM, NULL, 0, request_id, 16, v.p, v.n, 0, &f);
    free(v.p);
    if (rc == 0)
        set_lsn(lsn, &f);
    return rc;
}

int icsc_map_reject(icsc *c, const uint8_t request_id[16], const char *reason)
{
    wb v = {0};
    wb_str16(&v, reason);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_MAP_REJECT, NULL, 0, request_id, 16, v.p, v.n, 0, &f);
    free(v.p);
    return rc;
}

int icsc_demap(icsc *c, const char *device, const char *uri, const char *uti, uint64_t cas,
               uint64_t *lsn)
{
    wb v = {0};
    wb_str16(&v, uri);
    wb_str16(&v, uti);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_DEMAP, NULL, 0, device, slen(device), v.p, v.n, cas, &f);
    free(v.p);
    if (rc == 0)
        set_lsn(lsn, &f);
    return rc;
}

static int call_u32(icsc *c, uint8_t op, const char *key, uint32_t *out)
{
    icsc_frame f;
    int rc = call_checked(c, op, NULL, 0, key, slen(key), NULL, 0, 0, &f);
    if (rc == 0 && out) {
        icsc_rd r;
        icsc_rd_init(&r, f.value, f.value_len);
        icsc_rd_u32(&r, out);
    }
    return rc;
}

int icsc_demap_device(icsc *c, const char *device, uint32_t *removed)
{
    return call_u32(c, ICSC_OP_DEMAP_DEVICE, device, removed);
}

int icsc_demap_service(icsc *c, const char *uri, uint32_t *removed)
{
    return call_u32(c, ICSC_OP_DEMAP_SERVICE, uri, removed);
}

int icsc_demap_binding(icsc *c, const char *uri, const char *uti)
{
    wb v = {0};
    wb_str16(&v, uti);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_DEMAP_BINDING, NULL, 0, uri, slen(uri), v.p, v.n, 0, &f);
    free(v.p);
    return rc;
}

int icsc_inquire_binding(icsc *c, const char *uri, const char *uti, char **device)
{
    wb v = {0};
    wb_str16(&v, uti);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_INQUIRE_BINDING, NULL, 0, uri, slen(uri), v.p, v.n, 0, &f);
    free(v.p);
    if (rc == 0 && !(*device = dupn(f.value, f.value_len)))
        return -ENOMEM;
    return rc;
}

int icsc_key_issue(icsc *c, uint16_t count, uint8_t **batch, size_t *batch_len)
{
    uint8_t ex[2];
    put16(ex, count);
    icsc_frame f;
    int rc = call_checked(c, ICSC_OP_KEY_ISSUE, ex, 2, NULL, 0, NULL, 0, 0, &f);
    if (rc)
        return rc;
    if (!(*batch = (uint8_t *)dupn(f.value, f.value_len)))
        return -ENOMEM;
    *batch_len = f.value_len;
    return 0;
}

int icsc_key_validate(icsc *c, const uint8_t *batch, size_t batch_len)
{
    icsc_frame f;
    return call_frame(c, ICSC_OP_KEY_VALIDATE, NULL, 0, NULL, 0, batch, batch_len, 0, &f);
}

int icsc_history(icsc *c, const char *device, uint32_t max, icsc_hist *h)
{
    uint8_t ex[4];
    put32(ex, max);
    icsc_frame f;
    memset(h, 0, sizeof *h);
    int rc = call_checked(c, ICSC_OP_HISTORY, ex, 4, device, slen(device), NULL, 0, 0, &f);
    if (rc)
        return rc;
    icsc_rd r;
    uint32_t cnt;
    icsc_rd_init(&r, f.value, f.value_len);
    icsc_rd_u32(&r, &cnt);
    h->v = calloc(cnt ? cnt : 1, sizeof *h->v);
    if (!h->v)
        return -ENOMEM;
    for (uint32_t i = 0; i < cnt; i++) {
        icsc_hist_entry *e = &h->v[i];
        const uint8_t *p[3];
        size_t l[3];
        icsc_rd_u64(&r, &e->micros);
        icsc_rd_u8(&r, &e->event);
        for (int k = 0; k < 3; k++)
            icsc_rd_str16(&r, &p[k], &l[k]);
        h->n = i + 1;
        e->principal = dupn(p[0], l[0]);
        e->uri = dupn(p[1], l[1]);
        e->uti = dupn(p[2], l[2]);
        if (!e->principal || !e->uri || !e->uti) {
            icsc_history_free(h);
            return -ENOMEM;
        }
    }
    return 0;
}

void icsc_history_free(icsc_hist *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].principal);
        free(h->v[i].uri);
        free(h->v[i].uti);
    }
    free(h->v);
    memset(h, 0, sizeof *h);
}

int icsc_snapshot(icsc *c, uint64_t *lsn)
{
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_SNAPSHOT, NULL, 0, NULL, 0, NULL, 0, 0, &f);
    if (rc == 0)
        set_lsn(lsn, &f);
    return rc;
}

int icsc_whoami(icsc *c, char **principal, char **role)
{
    icsc_frame f;
    int rc = call_checked(c, ICSC_OP_WHOAMI, NULL, 0, NULL, 0, NULL, 0, 0, &f);
    if (rc)
        return rc;
    icsc_rd r;
    const uint8_t *p[2];
    size_t l[2];
    icsc_rd_init(&r, f.value, f.value_len);
    icsc_rd_str16(&r, &p[0], &l[0]);
    icsc_rd_str16(&r, &p[1], &l[1]);
    *principal = dupn(p[0], l[0]);
    *role = dupn(p[1], l[1]);
    if (!*principal || !*role) {
        free(*principal);
        free(*role);
        return -ENOMEM;
    }
    return 0;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int icsc_prefs_set(icsc *c, const char *device, const icsc_prefs *p)
{
    wb v = {0};
    wb_u32(&v, p->retention_s);
    wb_u16(&v, (uint16_t)p->nallow);
    for (size_t i = 0; i < p->nallow; i++)
        wb_str16(&v, p->allow[i]);
    wb_u16(&v, (uint16_t)p->ndeny);
    for (size_t i = 0; i < p->ndeny; i++)
        wb_str16(&v, p->deny[i]);
    wb_u16(&v, (uint16_t)p->nwindows);
    for (size_t i = 0; i < p->nwindows; i++) {
        wb_u8(&v, p->windows[i].weekdays);
        wb_u16(&v, p->windows[i].start_min);
        wb_u16(&v, p->windows[i].end_min);
    }
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_PREFS_SET, NULL, 0, device, slen(device), v.p, v.n, 0, &f);
    free(v.p);
    return rc;
}

static int read_strv(icsc_rd *r, char ***out, size_t *n)
{
    uint16_t cnt;
    *out = NULL;
    *n = 0;
    if (icsc_rd_u16(r, &cnt))
        return -EPROTO;
    *out = calloc(cnt ? cnt : 1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    for (uint16_t i = 0; i < cnt; i++) {
        const uint8_t *p;
        size_t l;
        if (icsc_rd_str16(r, &p, &l))
            return -EPROTO;
        *n = i + 1u;
        if (!((*out)[i] = dupn(p, l)))
            return -ENOMEM;
    }
    return 0;
}

int icsc_prefs_get(icsc *c, const char *device, icsc_prefs *p)
{
    icsc_frame f;
    memset(p, 0, sizeof *p);
    int rc = call_checked(c, ICSC_OP_PREFS_GET, NULL, 0, device, slen(device), NULL, 0, 0, &f);
    if (rc)
        return rc;
    icsc_rd r;
    uint16_t w;
    icsc_rd_init(&r, f.value, f.value_len);
    icsc_rd_u32(&r, &p->retention_s);
    if ((rc = read_strv(&r, &p->allow, &p->nallow)) || (rc = read_strv(&r, &p->deny, &p->ndeny)))
        goto fail;
    icsc_rd_u16(&r, &w);
    p->windows = calloc(w ? w : 1, sizeof *p->windows);
    if (!p->windows) {
        rc = -ENOMEM;
        goto fail;
    }
    p->nwindows = w;
    for (uint16_t i = 0; i < w; i++) {
        icsc_rd_u8(&r, &p->windows[i].weekdays);
        icsc_rd_u16(&r, &p->windows[i].start_min);
        icsc_rd_u16(&r, &p->windows[i].end_min);
    }
    return 0;
fail:
    icsc_prefs_free(p);
    return rc;
}

void icsc_prefs_free(icsc_prefs *p)
{
    free_strv(p->allow, p->nallow);
    free_strv(p->deny, p->ndeny);
    free(p->windows);
    memset(p, 0, sizeof *p);
}

int icsc_principal_set(icsc *c, const char *name, uint8_t roles, const char *secret,
                       const char *fingerprint, const char *const *scopes, size_t nscopes)
{
    wb v = {0};
    wb_u8(&v, roles);
    wb_str16(&v, secret);
    wb_str16(&v, fingerprint);
    wb_u16(&v, (uint16_t)nscopes);
    for (size_t i = 0; i < nscopes; i++)
        wb_str16(&v, scopes[i]);
    if (v.err)
        return v.err;
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_PRINCIPAL_SET, NULL, 0, name, slen(name), v.p, v.n, 0, &f);
    free(v.p);
    return rc;
}

int icsc_principal_del(icsc *c, const char *name)
{
    icsc_frame f;
    return call_frame(c, ICSC_OP_PRINCIPAL_DEL, NULL, 0, name, slen(name), NULL, 0, 0, &f);
}

int icsc_principal_list(icsc *c, icsc_principals *out)
{
    icsc_frame f;
    memset(out, 0, sizeof *out);
    int rc = call_checked(c, ICSC_OP_PRINCIPAL_LIST, NULL, 0, NULL, 0, NULL, 0, 0, &f);
    if (rc)
        return rc;
    icsc_rd r;
    uint32_t cnt;
    icsc_rd_init(&r, f.value, f.value_len);
    icsc_rd_u32(&r, &cnt);
    out->v = calloc(cnt ? cnt : 1, sizeof *out->v);
    if (!out->v)
        return -ENOMEM;
    for (uint32_t i = 0; i < cnt; i++) {
        icsc_principal *p = &out->v[i];
        const uint8_t *s;
        size_t l;
        icsc_rd_str16(&r, &s, &l);
        out->n = i + 1;
        if (!(p->name = dupn(s, l)))
            goto oom;
        icsc_rd_u8(&r, &p->roles);
        if (read_strv(&r, &p->scopes, &p->nscopes))
            goto oom;
    }
    return 0;
oom:
    icsc_principals_free(out);
    return -ENOMEM;
}

void icsc_principals_free(icsc_principals *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free_strv(p->v[i].scopes, p->v[i].nscopes);
    }
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* ---- WATCH --------------------------------------------------------------- */

int icsc_watch(icsc *c, uint32_t mask)
{
    uint8_t ex[4];
    put32(ex, mask);
    icsc_frame f;
    int rc = call_frame(c, ICSC_OP_WATCH, ex, 4, NULL, 0, NULL, 0, 0, &f);
    if (rc == 0)
        c->watch_mask = mask;
    return rc;
}

int icsc_poll_event(icsc *c, icsc_event *ev, int timeout_ms)
{
    int64_t deadline = deadline_in(timeout_ms < 0 ? c->timeout_ms : timeout_ms);
    memset(ev, 0, sizeof *ev);
    for (;;) {
        if (c->evq_n) {
            *ev = c->evq[c->evq_head];
            memset(&c->evq[c->evq_head], 0, sizeof *ev);
            c->evq_head = (c->evq_head + 1) % EVQ_MAX;
            c->evq_n--;
            return 0;
        }
        int rc = ensure_open(c);
        if (rc)
            return rc;
        /* Only events may arrive on an idle connection; decode what we have. */
        icsc_frame f;
        int n = 0;
        while (c->rpos < c->rlen &&
               (n = icsc_decode_frame(c->rbuf + c->rpos, c->rlen - c->rpos, ICSC_MAX_BODY * 16, &f)) > 0) {
            c->rpos += (size_t)n;
            if (f.magic == ICSC_MAGIC_EVT && (rc = handle_event(c, &f)) != 0)
                return rc;
        }
        if (n < 0) {
            tx_close(c);
            return n;
        }
        if (c->evq_n || (c->cb && n > 0))
            continue;
        rc = tx_read_some(c);
        if (rc == -EAGAIN) {
            if (c->ssl && SSL_pending(c->ssl))
                continue;
            rc = wait_fd(c->fd, POLLIN, deadline);
            if (rc)
                return rc;
        } else if (rc < 0) {
            tx_close(c); /* next round reopens and re-arms WATCH */
            if (c->no_reconnect)
                return rc;
        }
        if (c->cb && remaining(deadline) == 0)
            return -ETIMEDOUT;
    }
}

/* ---- pipelining ---------------------------------------------------------- */

typedef struct breq { uint32_t opaque; uint8_t op; uint8_t change; size_t off; } breq;
typedef struct bres { int status; uint64_t lsn; size_t off, len; } bres;

struct icsc_batch {
    icsc *c;
    wb out;          /* encoded requests */
    breq *req;
    bres *res;
    size_t n, cap;
    wb vals;         /* concatenated response values */
};

icsc_batch *icsc_batch_new(icsc *c)
{
    icsc_batch *b = calloc(1, sizeof *b);
    if (b)
        b->c = c;
    return b;
}

void icsc_batch_reset(icsc_batch *b)
{
    b->out.n = 0;
    b->out.err = 0;
    b->vals.n = 0;
    b->vals.err = 0;
    b->n = 0;
}

void icsc_batch_free(icsc_batch *b)
{
    if (!b)
        return;
    free(b->out.p);
    free(b->vals.p);
    free(b->req);
    free(b->res);
    free(b);
}

int icsc_batch_add(icsc_batch *b, uint8_t opcode, const void *extras, size_t extras_len,
                   const void *key, size_t key_len, const void *val, size_t val_len, uint64_t cas)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        breq *rq = realloc(b->req, cap * sizeof *rq);
        if (!rq)
            return -ENOMEM;
        b->req = rq;
        bres *rs = realloc(b->res, cap * sizeof *rs);
        if (!rs)
            return -ENOMEM;
        b->res = rs;
        b->cap = cap;
    }
    uint32_t opaque = b->c->next_opaque++;
    size_t mark = b->out.n;
    int rc = encode_request(&b->out, opcode, extras, extras_len, key, key_len, val, val_len, cas,
                            opaque);
    if (rc) {
        b->out.n = mark;
        b->out.err = 0;
        return rc;
    }
    b->req[b->n] = (breq){.opaque = opaque, .op = opcode, .change = (uint8_t)op_is_change(opcode), .off = mark};
    return (int)b->n++;
}

static int batch_add_kv(icsc_batch *b, uint8_t op, const char *key, const char *s1,
                        const char *s2, uint32_t ttl)
{
    wb v = {0};
    uint8_t ex[4];
    put32(ex, ttl);
    if (s1)
        wb_str16(&v, s1);
    if (s2)
        wb_str16(&v, s2);
    int rc = v.err ? v.err : icsc_batch_add(b, op, ex, ttl ? 4 : 0, key, slen(key), v.p, v.n, 0);
    free(v.p);
    return rc;
}

int icsc_batch_add_map(icsc_batch *b, const char *device, const char *uri, const char *uti,
                       uint32_t ttl_s)
{
    return batch_add_kv(b, ICSC_OP_MAP, device, uri, uti, ttl_s);
}

int icsc_batch_add_inquire_device(icsc_batch *b, const char *device)
{
    return batch_add_kv(b, ICSC_OP_INQUIRE_DEVICE, device, NULL, NULL, 0);
}

int icsc_batch_add_inquire_binding(icsc_batch *b, const char *uri, const char *uti)
{
    return batch_add_kv(b, ICSC_OP_INQUIRE_BINDING, uri, uti, NULL, 0);
}

int icsc_batch_add_demap(icsc_batch *b, const char *device, const char *uri, const char *uti)
{
    return batch_add_kv(b, ICSC_OP_DEMAP, device, uri, uti, 0);
}

static int is_quiet(uint8_t op) { return op == ICSC_OP_GETQ || op == ICSC_OP_GETKQ; }

int icsc_batch_flush(icsc_batch *b)
{
    icsc *c = b->c;
    size_t wdone = 0, got = 0;
    int rc = ensure_open(c);
    if (rc)
        goto fail;
    /* Write and read together: with thousands of requests in flight the
     * server's answers fill our receive buffer while we still send, and a
     * write-then-read loop would deadlock both sides. The deadline restarts
     * on every progress, so the timeout bounds a stall, not the batch. */
    int64_t deadline = deadline_in(c->timeout_ms);
    while (got < b->n) {
        int progress = 0;
        if (wdone < b->out.n) {
            size_t before = wdone;
            rc = tx_write_some(c, b->out.p + wdone, b->out.n - wdone, &wdone);
            if (rc && rc != -EAGAIN)
                goto fail;
            progress |= wdone > before;
        }
        rc = tx_read_some(c);
        if (rc < 0 && rc != -EAGAIN)
            goto fail;
        progress |= rc > 0;
        icsc_frame f;
        int n;
        while (got < b->n && c->rpos < c->rlen &&
               (n = icsc_decode_frame(c->rbuf + c->rpos, c->rlen - c->rpos, ICSC_MAX_BODY * 16, &f)) != 0) {
            if (n < 0) {
                rc = n;
                goto fail;
            }
            c->rpos += (size_t)n;
            if (f.magic == ICSC_MAGIC_EVT) {
                if ((rc = handle_event(c, &f)) != 0)
                    goto fail;
                continue;
            }
            /* Quiet requests that got no answer were NOT_FOUND. */
            while (got < b->n && b->req[got].opaque != f.opaque && is_quiet(b->req[got].op))
                b->res[got++] = (bres){.status = ICSC_S_NOT_FOUND};
            if (got == b->n || b->req[got].opaque != f.opaque) {
                rc = -EPROTO;
                goto fail;
            }
            b->res[got] = (bres){.status = f.status, .lsn = f.cas, .off = b->vals.n, .len = f.value_len};
            wb_put(&b->vals, f.value, f.value_len);
            if (b->vals.err) {
                rc = b->vals.err;
                goto fail;
            }
            note_response(c, &f);
            got++;
        }
        if (got == b->n)
            break;
        if (progress) {
            deadline = deadline_in(c->timeout_ms);
            continue;
        }
        if (c->ssl && SSL_pending(c->ssl))
            continue;
        short ev = POLLIN | (wdone < b->out.n ? POLLOUT : 0);
        rc = wait_fd(c->fd, ev, deadline);
        if (rc)
            goto fail;
    }
    return 0;
fail:
    tx_close(c);
    for (size_t i = got; i < b->n; i++) {
        int st = rc;
        if (b->req[i].change && wdone > b->req[i].off)
            st = ICSC_E_UNKNOWN_OUTCOME;
        b->res[i] = (bres){.status = st};
    }
    return rc;
}

size_t icsc_batch_count(const icsc_batch *b) { return b->n; }
int icsc_batch_status(const icsc_batch *b, size_t i) { return i < b->n ? b->res[i].status : -EINVAL; }
uint64_t icsc_batch_lsn(const icsc_batch *b, size_t i) { return i < b->n ? b->res[i].lsn : 0; }
const uint8_t *icsc_batch_value(const icsc_batch *b, size_t i, size_t *len)
{
    if (i >= b->n) {
        *len = 0;
        return NULL;
    }
    *len = b->res[i].len;
    return b->vals.p ? b->vals.p + b->res[i].off : (const uint8_t *)"";
}

/* ---- streaming pipeline ---------------------------------------------------- */

static int pipe_write(icsc *c)
{
    while (c->pw_pos < c->pw_len) {
        size_t done = 0;
        int rc = tx_write_some(c, c->pw + c->pw_pos, c->pw_len - c->pw_pos, &done);
        c->pw_pos += done;
        if (rc == -EAGAIN)
            return 0;
        if (rc)
            return rc;
    }
    c->pw_pos = c->pw_len = 0;
    return 0;
}

int icsc_pipe_send(icsc *c, uint8_t opcode, const void *extras, size_t extras_len,
                   const void *key, size_t key_len, const void *val, size_t val_len, uint64_t cas)
{
    if (c->pipe_n == 0) {
        int rc = ensure_open(c);
        if (rc)
            return rc;
    } else if (c->fd < 0) {
        return -ENOTCONN;
    }
    uint32_t opaque = c->next_opaque++;
    if (opaque == 0)
        opaque = c->next_opaque++;
    wb w = {.p = c->pw, .n = c->pw_len, .cap = c->pw_cap};
    int rc = encode_request(&w, opcode, extras, extras_len, key, key_len, val, val_len, cas, opaque);
    c->pw = w.p;
    c->pw_cap = w.cap;
    if (rc) {
        return rc; /* c->pw_len unchanged: the partial request is dropped */
    }
    c->pw_len = w.n;
    c->pipe_n++;
    /* Write once the queue is worth a syscall; icsc_pipe_recv writes the rest. */
    if (c->pw_len - c->pw_pos >= 16384 && (rc = pipe_write(c)) != 0) {
        tx_close(c);
        return rc;
    }
    return 0;
}

int icsc_pipe_recv(icsc *c, icsc_frame *f, int timeout_ms)
{
    if (c->pipe_n == 0)
        return -ENOENT;
    int64_t deadline = deadline_in(timeout_ms < 0 ? c->timeout_ms : timeout_ms);
    int rc;
    for (;;) {
        /* Answers already read come first; queued requests are written only
         * before we would wait, so a burst of answers costs one send. */
        while (c->rpos < c->rlen) {
            int n = icsc_decode_frame(c->rbuf + c->rpos, c->rlen - c->rpos, ICSC_MAX_BODY * 16, f);
            if (n < 0) {
                rc = n;
                goto fail;
            }
            if (n == 0)
                break;
            c->rpos += (size_t)n;
            if (f->magic == ICSC_MAGIC_EVT) {
                if ((rc = handle_event(c, f)) != 0)
                    goto fail;
                continue;
            }
            c->pipe_n--;
            note_response(c, f);
            return 0;
        }
        if ((rc = pipe_write(c)) != 0)
            goto fail;
        rc = tx_read_some(c);
        if (rc > 0)
            continue;
        if (rc != -EAGAIN)
            goto fail;
        if (c->ssl && SSL_pending(c->ssl))
            continue;
        rc = wait_fd(c->fd, POLLIN | (c->pw_pos < c->pw_len ? POLLOUT : 0), deadline);
        if (rc)
            goto fail;
    }
fail:
    tx_close(c);
    return rc;
}

size_t icsc_pipe_in_flight(const icsc *c) { return c->pipe_n; }
