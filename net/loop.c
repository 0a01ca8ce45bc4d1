/*
 * loop.c — io_uring workers: accept, receive, send, cross-thread
 * completions, idle limits and shutdown (see loop.h for the contract).
 *
 * Per worker, one ring carries: a multishot accept on the worker's own
 * SO_REUSEPORT listening socket, one multishot recv per connection reading
 * into a provided-buffer ring (frames are parsed in place in the provided
 * buffer; only the tail of a frame split across reads is copied into the
 * connection's input buffer), at most one send per connection in flight
 * (everything answered during a loop turn goes out in that one send), a
 * read on the worker's eventfd (the wake of the inbox), and a 1 s timeout
 * for idle checks. Every SQE's user_data is {op, slot, generation}.
 */
#include "loop_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "acl.h"
#include "mailbox.h"
#include "pending.h"
#include "waiter.h"

#define RING_ENTRIES 1024
#define CQ_ENTRIES 16384
#define BUF_COUNT 256        /* provided buffers per worker (power of 2) */
#define BUF_SIZE 16384
#define BGID 1
#define BUF_SHRINK (256u << 10) /* per-connection buffers above this are freed when empty */

uint64_t loop_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void loop_log(struct loop *l, enum loop_log_level lvl, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l->cfg.log)
        l->cfg.log(l->cfg.log_ctx, lvl, msg);
    else
        fprintf(stderr, "%s\n", msg);
}

/* --- stats ------------------------------------------------------------------ */

static unsigned bucket_of(uint64_t us)
{
    if (us < 16)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us);
    unsigned b = 16 + (e - 4) * 4 + (unsigned)((us >> (e - 2)) & 3);
    return b < OPS_BUCKETS ? b : OPS_BUCKETS - 1;
}

static uint64_t bucket_value(unsigned b)
{
    if (b < 16)
        return b;
    unsigned e = (b - 16) / 4 + 4, s = (b - 16) % 4;
    return ((uint64_t)4 + s) << (e - 2);
}

void stats_record(struct worker *w, uint8_t op, uint64_t t0)
{
    uint64_t d = mono_us() - t0;
    struct op_stats *s = &w->ops[op];
    /* Relaxed: independent counters, read only for STAT. */
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->hist[bucket_of(d)], 1, memory_order_relaxed);
}

uint64_t stats_percentile(struct loop *l, uint8_t op, double q, uint64_t *count)
{
    uint64_t h[OPS_BUCKETS] = {0}, n = 0;
    for (unsigned i = 0; i < l->nw; i++)
        for (unsigned b = 0; b < OPS_BUCKETS; b++) {
            uint64_t v = atomic_load_explicit(&l->w[i].ops[op].hist[b], memory_order_relaxed);
            h[b] += v;
            n += v;
        }
    if (count)
        *count = n;
    if (n == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)n + 0.5), acc = 0;
    if (want == 0)
        want = 1;
    for (unsigned b = 0; b < OPS_BUCKETS; b++) {
        acc += h[b];
        if (acc >= want)
            return bucket_value(b);
    }
    return bucket_value(OPS_BUCKETS - 1);
}

uint64_t loop_mono_us(void);
uint64_t loop_mono_us(void) { return mono_us(); }

/* --- inbox: lock-free MPSC stack -------------------------------------------------- */

void post_msg(struct loop *l, struct msg *m)
{
    struct worker *w = &l->w[m->worker];
    struct msg *head = atomic_load_explicit(&w->inbox, memory_order_relaxed);
    do {
        m->next = head;
        /* Release: the worker's acquire exchange sees the message's fields. */
    } while (!atomic_compare_exchange_weak_explicit(&w->inbox, &head, m, memory_order_release,
                                                    memory_order_relaxed));
    /* Only the first poster since the worker last drained writes the
     * eventfd (acq_rel: orders the push above before the flag, and pairs
     * with the worker's release clear). */
    if (atomic_exchange_explicit(&w->wake_pending, 1, memory_order_acq_rel) == 0) {
        uint64_t one = 1;
        ssize_t r = write(w->efd, &one, sizeof one);
        (void)r;
    }
}

struct msg *msg_new(struct conn *c, struct pend *pe, size_t extra)
{
    struct msg *m = calloc(1, sizeof *m + extra);
    if (!m)
        return NULL;
    m->type = MSG_DONE;
    m->worker = c->w->id;
    m->slot = c->slot;
    m->gen = c->gen;
    m->seq = pe ? pe->seq : 0;
    m->loop = c->w->l;
    return m;
}

void store_done_cb(void *arg, int status, uint64_t lsn)
{
    struct msg *m = arg;
    m->status = status;
    m->lsn = lsn;
    if (m->result_to) {
        /* MAP_CONFIRM: the requesting tpsp learns the outcome once durable. */
        if (status == 0)
            raise_map_result(m->loop, m->result_to, m->result_to_len, m->reqid, WIRE_S_OK, lsn,
                             m->result_dev, m->result_dev_len);
        else {
            const char *why = "confirm failed";
            raise_map_result(m->loop, m->result_to, m->result_to_len, m->reqid,
                             WIRE_S_INTERNAL, 0, why, strlen(why));
        }
    }
    post_msg(m->loop, m);
}

/* --- connections ------------------------------------------------------------- */

static struct conn *conn_get(struct worker *w, uint32_t slot, uint32_t gen)
{
    if (slot >= w->nslots)
        return NULL;
    struct conn *c = w->conns[slot];
    if (!c || (c->gen & 0xffffffu) != (gen & 0xffffffu))
        return NULL;
    return c;
}

struct buf *conn_sink(struct conn *c)
{
    return c->pt ? &c->pt->tail : &c->out;
}

void conn_mark_dirty(struct conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = c->w->dirty;
        c->w->dirty = c;
    }
}

struct pend *conn_pend_new(struct conn *c, const struct wire_frame *f, uint64_t t0)
{
    struct pend *pe = calloc(1, sizeof *pe);
    if (!pe)
        return NULL;
    pe->seq = ++c->next_seq;
    pe->opcode = f->opcode;
    pe->opaque = f->opaque;
    pe->t0 = t0;
    if (c->pt)
        c->pt->next = pe;
    else
        c->ph = pe;
    c->pt = pe;
    c->npend++;
    return pe;
}

static void pend_free(struct pend *pe)
{
    buf_free(&pe->resp);
    buf_free(&pe->tail);
    free(pe);
}

/* Moves finished head entries (their response, then what queued behind
 * them) to the output, in order. */
void conn_settle(struct conn *c)
{
    while (c->ph && c->ph->done) {
        struct pend *pe = c->ph;
        if (buf_append(&c->out, pe->resp.p, pe->resp.len) < 0 ||
            buf_append(&c->out, pe->tail.p, pe->tail.len) < 0)
            c->close_after_flush = 1;
        c->ph = pe->next;
        if (!c->ph)
            c->pt = NULL;
        c->npend--;
        pend_free(pe);
    }
    conn_mark_dirty(c);
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    watch_unregister(c);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->sending);
    while (c->ph) {
        struct pend *pe = c->ph;
        c->ph = pe->next;
        pend_free(pe);
    }
    principal_put(c->p);
    if (c->tls) {
        if (!c->tls_ready)
            w->handshakes--;
        tls_conn_free(c->tls);
    }
    w->conns[c->slot] = NULL;
    w->gens[c->slot]++;
    w->free_slots[w->nfree++] = c->slot;
    w->nlive--;
    /* Relaxed: a gauge for STAT and the max-conns check. */
    atomic_fetch_sub_explicit(&w->l->curr_conns, 1, memory_order_relaxed);
    free(c);
}

static void conn_maybe_free(struct conn *c)
{
    if (c->closing && !c->recv_armed && !c->send_inflight && !c->dirty)
        conn_free(c);
}

/* Starts closing: the shutdown makes the armed recv and any send complete,
 * and the connection is freed when the kernel holds none of its buffers. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    /* From now on events for this principal go to other watchers or the
     * mailbox, not into a buffer that will never be sent. */
    watch_unregister(c);
    c->watch_mask = 0;
    shutdown(c->fd, SHUT_RDWR);
    conn_mark_dirty(c);
}

static struct io_uring_sqe *get_sqe(struct worker *w);

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, ud_make(U_RECV, c->slot, c->gen));
    c->recv_armed = 1;
}

/* The SQ is flushed to the kernel when full; that cannot fail for long
 * (the CQ is large and the kernel keeps overflowing completions), and a
 * NULL SQE here would be a bug, not a load condition. */
static struct io_uring_sqe *get_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe;
    for (int tries = 0; !(sqe = io_uring_get_sqe(&w->ring)); tries++) {
        io_uring_submit(&w->ring);
        if (tries > 1000) {
            loop_log(w->l, LOOP_LOG_ERROR, "worker %u: submission queue stuck", w->id);
            abort();
        }
    }
    return sqe;
}

/* Adaptive polling. A client in a tight loop with us (one connection,
 * pipelined or not) sends its next request within microseconds of our
 * answer; sleeping in io_uring_enter and being woken for it costs that
 * wake-up's latency on every round trip (on this VM most of a round trip).
 * Each connection keeps an average of the time from an answer to its next
 * input, and the worker the share of its inputs that come from the same
 * connection as the one before. When one connection has the worker to
 * itself (3/4 of inputs in a row from it) and turns around within the
 * bound, the worker polls its ring (no sleep) for up to twice that average
 * after answering it. With many active connections inputs interleave, a
 * sleep is shared by the requests of all of them, and polling would only
 * burn CPU (measured without this rule: CPU per inquiry at the same offered
 * load with 16 connections went from 0.70-0.82x memcached's to 0.93-0.96x),
 * so the loop sleeps as before; a client that stops costs at most one bound
 * of polling before its average rises past it. */
#define SAME_IN_POLL 768 /* of 1024 */
static void poll_note_answer(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    uint32_t bound = w->l->cfg.busy_poll_us;
    if (!bound)
        return; /* off (the default): nothing to keep per request */
    c->answered_us = now;
    if (c->turn_us <= bound && w->same_in >= SAME_IN_POLL) {
        uint32_t want = c->turn_us * 2 + 1;
        if (want > bound)
            want = bound;
        if (now + want > w->poll_until)
            w->poll_until = now + want;
    }
}

static void poll_note_input(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    if (!w->l->cfg.busy_poll_us)
        return;
    if (w->last_in == c)
        w->same_in += (1024 - w->same_in) >> 3;
    else
        w->same_in -= w->same_in >> 3;
    w->last_in = c;
    if (!c->answered_us)
        return;
    uint64_t d = now - c->answered_us;
    if (d > 1000000)
        d = 1000000;
    c->turn_us = c->turn_us == UINT32_MAX ? (uint32_t)d : (uint32_t)((3 * (uint64_t)c->turn_us + d) / 4);
    c->answered_us = 0;
}

/* Instead of sleeping: poll for completions until w->poll_until. Returns 1
 * if some arrived (the turn goes on without a sleep; the deadline stays, so
 * the completion of our own send does not end the polling). Also submits
 * what the turn queued and runs the deferred task work that posts
 * completions (DEFER_TASKRUN), without waiting. */
static int poll_wait(struct worker *w)
{
    if (!w->poll_until)
        return 0;
    while (mono_us() < w->poll_until) {
        if (io_uring_submit_and_get_events(&w->ring) < 0)
            break;
        if (io_uring_cq_ready(&w->ring)) {
            /* relaxed, both: statistics */
            atomic_fetch_add_explicit(&w->poll_hits, 1, memory_order_relaxed);
            return 1;
        }
    }
    atomic_fetch_add_explicit(&w->poll_timeouts, 1, memory_order_relaxed);
    w->poll_until = 0;
    return 0;
}

static void conn_send(struct conn *c)
{
    if (c->tls) {
        /* Every queued piece in one submission: a pipelined burst answered
         * in one turn may fill several 32 KiB pieces. The msghdr and the
         * pieces stay put until consumed (tls.h), so the kernel may read
         * them while more ciphertext is queued behind. A single piece goes
         * as a plain send, which spares the kernel the msghdr import. */
        const struct msghdr *m = tls_conn_out_msg(c->tls);
        if (!m)
            return; /* nothing queued: the callers check, this keeps it so */
        struct io_uring_sqe *sqe = get_sqe(c->w);
        if (m->msg_iovlen == 1)
            io_uring_prep_send(sqe, c->fd, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len,
                               MSG_NOSIGNAL);
        else
            io_uring_prep_sendmsg(sqe, c->fd, m, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud_make(U_SEND, c->slot, c->gen));
        c->send_inflight = 1;
        uint64_t now = mono_us();
        if (!c->send_since_us)
            c->send_since_us = now;
        poll_note_answer(c, now);
        return;
    }
    struct io_uring_sqe *sqe = get_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, c->sending.p + c->sent, c->sending.len - c->sent,
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(U_SEND, c->slot, c->gen));
    c->send_inflight = 1;
    uint64_t now = mono_us();
    if (!c->send_since_us)
        c->send_since_us = now;
    poll_note_answer(c, now);
}

/* End of a loop turn: one send per connection covering everything it
 * answered in this turn. */
static void flush_dirty(struct worker *w)
{
    size_t limit = w->l->cfg.max_conn_buffer;
    while (w->dirty) {
        struct conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->dirty = 0;
        if (c->closing) {
            conn_maybe_free(c);
            continue;
        }
        if (c->tls) {
            if (c->out.len && c->tls_ready) {
                if (tls_conn_write(c->tls, c->out.p, c->out.len) < 0) {
                    conn_close(c);
                    conn_maybe_free(c);
                    continue;
                }
                c->out.len = 0;
            }
            size_t pend = tls_conn_out_pending(c->tls);
            if (pend > limit) {
                atomic_fetch_add_explicit(&w->l->closed_overflow, 1, memory_order_relaxed);
                conn_close(c);
                conn_maybe_free(c);
                continue;
            }
            if (!c->send_inflight && pend)
                conn_send(c);
            else if (!c->send_inflight && c->close_after_flush && !c->ph) {
                conn_close(c);
                conn_maybe_free(c);
            }
            continue;
        }
        if (c->out.len + c->sending.len > limit) {
            /* A client that does not read what it asked for. */
            atomic_fetch_add_explicit(&w->l->closed_overflow, 1, memory_order_relaxed);
            loop_log(w->l, LOOP_LOG_INFO, "closing connection %u: %zu bytes of output queued",
                     c->slot, c->out.len + c->sending.len);
            conn_close(c);
            conn_maybe_free(c);
            continue;
        }
        if (!c->send_inflight && c->out.len) {
            struct buf t = c->sending;
            c->sending = c->out;
            c->out = t;
            c->out.len = 0;
            c->sent = 0;
            conn_send(c);
        } else if (!c->send_inflight && c->close_after_flush && !c->ph) {
            conn_close(c);
            conn_maybe_free(c);
        }
    }
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe, int is_tls)
{
    struct loop *l = w->l;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        if (is_tls)
            w->taccept_armed = 0;
        else
            w->accept_armed = 0;
    }
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED && !w->stopping)
            loop_log(l, LOOP_LOG_WARN, "accept: %s", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res;
    if (w->stopping) {
        close(fd);
        return;
    }
    uint32_t cur = atomic_fetch_add_explicit(&l->curr_conns, 1, memory_order_relaxed);
    if (cur >= l->cfg.max_conns || w->nfree == 0) {
        atomic_fetch_sub_explicit(&l->curr_conns, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&l->rejected_conns, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c && is_tls) {
        /* Handshakes cost CPU before anyone is authenticated: bounded. */
        if (w->handshakes >= l->cfg.max_handshakes || !(c->tls = tls_conn_new(l->d.tls))) {
            free(c);
            c = NULL;
            atomic_fetch_add_explicit(&l->rejected_conns, 1, memory_order_relaxed);
        } else {
            w->handshakes++;
            c->hs_start_us = mono_us();
        }
    }
    if (!c) {
        atomic_fetch_sub_explicit(&l->curr_conns, 1, memory_order_relaxed);
        close(fd);
        return;
    }
    atomic_fetch_add_explicit(&l->total_conns, 1, memory_order_relaxed);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    c->loopback = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            c->loopback = (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
        else if (ss.ss_family == AF_INET6) {
            struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
            c->loopback = IN6_IS_ADDR_LOOPBACK(a) ||
                          (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
        }
    }
    c->fd = fd;
    c->turn_us = UINT32_MAX; /* unknown: no polling until measured */
    c->w = w;
    c->slot = w->free_slots[--w->nfree];
    c->gen = w->gens[c->slot] & 0xffffffu;
    c->last_in_us = mono_us();
    w->conns[c->slot] = c;
    w->nlive++;
    arm_recv(c);
}

static void recycle_buf(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * w->bufsz, w->bufsz, (unsigned short)bid,
                          io_uring_buf_ring_mask(w->nbufs), 0);
    io_uring_buf_ring_advance(w->br, 1);
}

/* Feeds bytes to the parser: in place when nothing is buffered, else
 * through the connection's input buffer. */
static void conn_input(struct conn *c, const uint8_t *p, size_t n)
{
    if (c->stop_input)
        return;
    if (c->in.len == 0 && !c->blocked) {
        size_t used = handle_input(c, p, n);
        if (used < n && !c->stop_input && buf_append(&c->in, p + used, n - used) < 0)
            conn_close(c);
        return;
    }
    if (buf_append(&c->in, p, n) < 0) {
        conn_close(c);
        return;
    }
    if (c->blocked)
        return;
    size_t used = handle_input(c, c->in.p, c->in.len);
    buf_consume(&c->in, used);
    /* A 1 MiB frame must not pin 1 MiB per idle connection afterwards. */
    if (c->in.len == 0 && c->in.cap > BUF_SHRINK)
        buf_free(&c->in);
}

/* The handshake just completed: a client certificate naming a principal
 * (whose fingerprint pin, if any, matches) authenticates the connection. */
static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static void tls_authenticate(struct worker *w, struct conn *c)
{
    c->tls_ready = 1;
    w->handshakes--;
    const char *name = tls_conn_principal(c->tls);
    const char *hex = tls_conn_fingerprint_hex(c->tls);
    if (!name)
        return;
    struct principal *p = principal_get(w->l->d.reg, name, strlen(name));
    uint8_t fp[PRINCIPAL_FP_LEN];
    int ok = p && hex && strlen(hex) == 2 * PRINCIPAL_FP_LEN;
    for (unsigned i = 0; ok && i < PRINCIPAL_FP_LEN; i++) {
        /* Two hex digits exactly: sscanf's %x would also take a sign or blank. */
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            ok = 0;
        else
            fp[i] = (uint8_t)(hi << 4 | lo);
    }
    if (ok && principal_fp_matches(p, fp)) {
        c->p = p;
        loop_log(w->l, LOOP_LOG_DEBUG, "TLS connection %u authenticated as %s", c->slot, name);
    } else {
        loop_log(w->l, LOOP_LOG_INFO, "TLS client certificate for '%s' refused (%s)", name,
                 p ? "fingerprint pin mismatch" : "no such principal");
        principal_put(p);
    }
}

/* Ciphertext in: advance the handshake, then parse what decrypts. */
static void tls_input(struct worker *w, struct conn *c, const uint8_t *p, size_t n)
{
    /* Lent, not copied: the receive buffer is recycled only after this
     * returns, and tls_conn_feed_end keeps what the reads left. */
    int rc = tls_conn_feed_lent(c->tls, p, n);
    if (rc < 0) {
        tls_conn_feed_end(c->tls);
        loop_log(w->l, LOOP_LOG_INFO, "TLS connection %u: %s", c->slot, tls_conn_error(c->tls));
        c->stop_input = 1;
        c->close_after_flush = 1; /* send the alert, then close */
        conn_mark_dirty(c);
        return;
    }
    if (!c->tls_ready && tls_conn_ready(c->tls))
        tls_authenticate(w, c);
    for (;;) {
        ssize_t r = tls_conn_read(c->tls, w->plain, BUF_SIZE);
        if (r > 0) {
            conn_input(c, w->plain, (size_t)r);
            continue;
        }
        if (r < 0) {
            c->stop_input = 1;
            c->close_after_flush = 1;
        }
        break;
    }
    if (tls_conn_feed_end(c->tls) < 0) {
        c->stop_input = 1;
        c->close_after_flush = 1;
    }
    conn_mark_dirty(c);
}

static void on_recv(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more)
        c->recv_armed = 0;
    if (cqe->res == -ENOBUFS) {
        atomic_fetch_add_explicit(&w->l->recv_nobufs, 1, memory_order_relaxed);
        /* All provided buffers in use within this turn: they come back
         * as soon as this batch is parsed, so just ask again. */
        if (!more && !c->closing)
            arm_recv(c);
        if (c->closing)
            conn_maybe_free(c);
        return;
    }
    if (cqe->res <= 0) {
        if (cqe->flags & IORING_CQE_F_BUFFER)
            recycle_buf(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (!c->closing) {
        c->last_in_us = mono_us();
        poll_note_input(c, c->last_in_us);
        if (c->tls)
            tls_input(w, c, w->bufs + (size_t)bid * w->bufsz, (size_t)cqe->res);
        else
            conn_input(c, w->bufs + (size_t)bid * w->bufsz, (size_t)cqe->res);
    }
    recycle_buf(w, bid);
    if (!more && !c->closing)
        arm_recv(c);
    if (c->closing)
        conn_maybe_free(c);
}

static void on_send(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    c->send_inflight = 0;
    if (cqe->res < 0) {
        conn_close(c);
        conn_maybe_free(c);
        return;
    }
    c->send_since_us = 0;
    if (c->tls) {
        tls_conn_out_consume(c->tls, (size_t)cqe->res);
        if (c->closing)
            conn_maybe_free(c);
        else
            conn_mark_dirty(c);
        return;
    }
    c->sent += (size_t)cqe->res;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (c->sent < c->sending.len) {
        conn_send(c);
        return;
    }
    c->sending.len = 0;
    c->sent = 0;
    if (c->sending.cap > BUF_SHRINK) /* after a big EXPORT, say */
        buf_free(&c->sending);
    conn_mark_dirty(c); /* more may have queued meanwhile */
}

static void ev_settle(struct loop *l, struct ev_share *sh, int taken, int may_keep,
                      const uint8_t *frame, size_t flen);

static void on_msg(struct worker *w, struct msg *m)
{
    struct conn *c = conn_get(w, m->slot, m->gen);
    if (m->type == MSG_EVENT) {
        int taken = 0;
        if (c && !c->closing) {
            if (buf_append(&c->out, m->data, m->len) < 0)
                conn_close(c);
            else
                taken = 1;
            conn_mark_dirty(c);
        }
        ev_settle(w->l, m->share, taken, 1, m->data, m->len);
        return;
    }
    if (!c) {
        if (m->type == MSG_AUTH)
            principal_put(m->principal);
        return;
    }
    struct pend *pe = c->ph;
    while (pe && pe->seq != m->seq)
        pe = pe->next;
    if (!pe) {
        if (m->type == MSG_AUTH)
            principal_put(m->principal);
        return;
    }
    handle_done(c, pe, m);
    if (m->type == MSG_AUTH) {
        c->blocked = 0;
        conn_settle(c);
        if (c->in.len && !c->closing) {
            size_t used = handle_input(c, c->in.p, c->in.len);
            buf_consume(&c->in, used);
        }
    }
    conn_settle(c);
}

static void drain_inbox(struct worker *w)
{
    /* Release clear first: a post after this point wakes us again. */
    atomic_store_explicit(&w->wake_pending, 0, memory_order_release);
    /* Acquire: pairs with the posters' release CAS. */
    struct msg *m = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
    struct msg *rev = NULL;
    while (m) { /* the stack is newest first: reverse to keep post order */
        struct msg *n = m->next;
        m->next = rev;
        rev = m;
        m = n;
    }
    while (rev) {
        struct msg *n = rev->next;
        on_msg(w, rev);
        free(rev->result_to);
        free(rev->result_dev);
        free(rev);
        rev = n;
    }
}

static void arm_wake(struct worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_read(sqe, w->efd, &w->efd_val, sizeof w->efd_val, 0);
    io_uring_sqe_set_data64(sqe, ud_make(U_WAKE, 0, 0));
}

static void arm_timer(struct worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    w->tick.tv_sec = 0;
    w->tick.tv_nsec = 250 * 1000 * 1000;
    io_uring_prep_timeout(sqe, &w->tick, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(U_TIMER, 0, 0));
    w->timer_armed = 1;
}

static void arm_accept(struct worker *w, int is_tls)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_multishot_accept(sqe, is_tls ? w->tlfd : w->lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, ud_make(U_ACCEPT, (uint32_t)is_tls, 0));
    if (is_tls)
        w->taccept_armed = 1;
    else
        w->accept_armed = 1;
}

static void pending_expired(void *arg, const uint8_t id[PENDING_ID_LEN],
                            const struct pending_req *req)
{
    struct loop *l = arg;
    const char *why = "map request expired";
    raise_map_result(l, req->tpsp, req->tpsp_len, id, WIRE_S_NOT_FOUND, 0, why, strlen(why));
}

static void on_tick(struct worker *w)
{
    struct loop *l = w->l;
    uint64_t now = mono_us(), idle = (uint64_t)l->cfg.idle_timeout_s * 1000000u;
    for (uint32_t i = 0; i < w->nslots; i++) {
        struct conn *c = w->conns[i];
        if (!c || c->closing)
            continue;
        /* An incomplete frame and then silence, or output the peer does
         * not take: both hold memory for nothing. */
        int stale_in = c->in.len > 0 && !c->blocked && now - c->last_in_us > idle;
        int stale_out = c->send_inflight && c->send_since_us && now - c->send_since_us > idle;
        if (c->tls && !c->tls_ready &&
            now - c->hs_start_us > (uint64_t)l->cfg.handshake_timeout_s * 1000000u) {
            loop_log(l, LOOP_LOG_INFO, "TLS handshake timeout on connection %u", i);
            conn_close(c);
            conn_maybe_free(c);
            continue;
        }
        /* Quiet since the last tick: give back the TLS buffers a busy
         * connection keeps from burst to burst (tls.h). */
        if (c->tls && !c->send_inflight && now - c->last_in_us > 250000u)
            tls_conn_trim(c->tls);
        if (stale_in || stale_out) {
            atomic_fetch_add_explicit(&l->closed_idle, 1, memory_order_relaxed);
            loop_log(l, LOOP_LOG_INFO, "closing idle connection %u (%s)", i,
                     stale_in ? "incomplete frame" : "peer not reading");
            conn_close(c);
            conn_maybe_free(c);
        }
    }
    if (w->id == 0 && l->d.pending)
        pending_expire(l->d.pending, loop_now_us(), pending_expired, l);
}

static void begin_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->stop_deadline_us = mono_us() + 5000000u;
    /* Cancel the multishot accept; the listening socket closes with the
     * loop (other workers' sockets keep the port until then). */
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_cancel64(sqe, ud_make(U_ACCEPT, 0, 0), 0);
    io_uring_sqe_set_data64(sqe, 0);
    if (w->taccept_armed) {
        sqe = get_sqe(w);
        io_uring_prep_cancel64(sqe, ud_make(U_ACCEPT, 1, 0), 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
}

/* During shutdown: once a connection has no change in flight and nothing
 * left to send, close it. */
static void stop_step(struct worker *w)
{
    uint64_t now = mono_us();
    for (uint32_t i = 0; i < w->nslots; i++) {
        struct conn *c = w->conns[i];
        if (!c || c->closing)
            continue;
        if ((!c->ph && !c->send_inflight && !c->out.len) || now > w->stop_deadline_us) {
            conn_close(c);
            conn_maybe_free(c);
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct loop *l = w->l;
    engine_thread_online(l->d.engine);
    if (w->disabled) {
        /* liburing 2.3 declares io_uring_enable_rings but does not export
         * it: the raw register call. */
        long rc = syscall(__NR_io_uring_register, w->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS,
                          NULL, 0);
        if (rc < 0)
            loop_log(l, LOOP_LOG_ERROR, "worker %u: enabling its ring: %s", w->id,
                     strerror(errno));
        w->disabled = 0;
    }
    /* A registered ring fd spares every io_uring_enter the file table
     * lookup of the ring itself (per task: so here, on the issuing
     * thread). Optional: without it the loop works the same. */
    if (io_uring_register_ring_fd(&w->ring) < 0)
        loop_log(l, LOOP_LOG_DEBUG, "worker %u: ring fd not registered", w->id);
    arm_wake(w);
    arm_timer(w);
    arm_accept(w, 0);
    if (w->tlfd >= 0)
        arm_accept(w, 1);
    for (;;) {
        if (w->stopping && w->nlive == 0 && !w->accept_armed && !w->taccept_armed)
            break;
        /* The engine's loop mode (engine.h): each iteration's handlers
         * read with no RCU work of their own inside one read section,
         * closed here, before the ring may block (and while it polls),
         * which is also this thread's quiescent point. */
        engine_thread_loop_end(l->d.engine);
        int src = poll_wait(w) ? 0 : io_uring_submit_and_wait(&w->ring, 1);
        if (src < 0 && src != -EINTR && src != -EAGAIN && src != -EBUSY && src != -ETIME) {
            loop_log(l, LOOP_LOG_ERROR, "worker %u: io_uring_enter: %s", w->id, strerror(-src));
            usleep(1000);
        }
        engine_thread_loop_begin(l->d.engine);
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            n++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            unsigned op = ud_op(ud);
            struct conn *c;
            switch (op) {
            case U_ACCEPT:
                on_accept(w, cqe, ud_slot(ud) == 1);
                break;
            case U_RECV:
                if ((c = conn_get(w, ud_slot(ud), ud_gen(ud))))
                    on_recv(w, c, cqe);
                else if (cqe->flags & IORING_CQE_F_BUFFER)
                    recycle_buf(w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                break;
            case U_SEND:
                if ((c = conn_get(w, ud_slot(ud), ud_gen(ud))))
                    on_send(w, c, cqe);
                break;
            case U_WAKE:
                drain_inbox(w);
                if (atomic_load_explicit(&l->stopping, memory_order_acquire))
                    begin_stop(w);
                arm_wake(w);
                break;
            case U_TIMER:
                w->timer_armed = 0;
                on_tick(w);
                arm_timer(w);
                break;
            }
        }
        io_uring_cq_advance(&w->ring, n);
        if (w->stopping)
            stop_step(w);
        flush_dirty(w);
    }
    engine_thread_loop_end(l->d.engine);
    drain_inbox(w);
    engine_thread_offline(l->d.engine);
    return NULL;
}

/* --- watchers and events ---------------------------------------------------------- */

void watch_register(struct conn *c)
{
    struct loop *l = c->w->l;
    pthread_mutex_lock(&l->wmu);
    struct watcher *x;
    for (x = l->watchers; x; x = x->next)
        if (x->worker == c->w->id && x->slot == c->slot && x->gen == c->gen)
            break;
    if (!x && c->p) {
        x = calloc(1, sizeof *x);
        if (x) {
            x->worker = c->w->id, x->slot = c->slot, x->gen = c->gen;
            x->next = l->watchers;
            l->watchers = x;
        }
    }
    if (x) {
        principal_put(x->p);
        x->p = principal_ref(c->p);
        x->mask = c->watch_mask;
    }
    pthread_mutex_unlock(&l->wmu);
}

void watch_unregister(struct conn *c)
{
    if (!c->watch_mask)
        return;
    struct loop *l = c->w->l;
    pthread_mutex_lock(&l->wmu);
    for (struct watcher **pp = &l->watchers; *pp; pp = &(*pp)->next) {
        struct watcher *x = *pp;
        if (x->worker == c->w->id && x->slot == c->slot && x->gen == c->gen) {
            *pp = x->next;
            principal_put(x->p);
            free(x);
            break;
        }
    }
    pthread_mutex_unlock(&l->wmu);
}

/* Returns 0, or -ENOMEM when the copy could not be made (the caller then
 * settles that copy itself). */
static int post_event(struct loop *l, const struct watcher *x, const uint8_t *frame,
                      size_t flen, struct ev_share *share)
{
    struct msg *m = calloc(1, sizeof *m + flen);
    if (!m)
        return -ENOMEM;
    m->type = MSG_EVENT;
    m->worker = x->worker, m->slot = x->slot, m->gen = x->gen;
    m->loop = l;
    m->share = share;
    m->len = flen;
    memcpy(m->data, frame, flen);
    post_msg(l, m);
    return 0;
}

static void keep_in_mailbox(struct loop *l, const void *name, size_t nlen,
                            const uint8_t *frame, size_t flen)
{
    if (!l->d.mailbox)
        return;
    int rc = mailbox_push(l->d.mailbox, name, nlen, frame, flen);
    if (rc < 0)
        loop_log(l, LOOP_LOG_WARN, "event for %.*s dropped: mailbox: %s", (int)nlen,
                 (const char *)name, strerror(-rc));
}

/* Settles one copy of a kept event (m->share); the last copy to settle
 * keeps the frame in the mailbox if no copy was taken by a live
 * connection. A copy is "taken" once it is queued on a connection that is
 * not closing: bytes the kernel accepted but a peer never read are beyond
 * what a server can know (the client's next WATCH sees what followed). */
static void ev_settle(struct loop *l, struct ev_share *sh, int taken, int may_keep,
                      const uint8_t *frame, size_t flen)
{
    if (!sh)
        return;
    /* Relaxed store: the acq_rel decrement below orders it before the last
     * settler's load (release sequence on left). */
    if (taken)
        atomic_store_explicit(&sh->taken, 1, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&sh->left, 1, memory_order_acq_rel) != 1)
        return;
    if (may_keep && !atomic_load_explicit(&sh->taken, memory_order_relaxed))
        keep_in_mailbox(l, sh->name, sh->name_len, frame, flen);
    free(sh);
}

static int watcher_is(const struct watcher *x, uint32_t bit, const void *name, size_t nlen)
{
    return (x->mask & bit) && x->p && x->p->name_len == nlen &&
           memcmp(x->p->name, name, nlen) == 0 && !principal_revoked(x->p);
}

void event_raise_to(struct loop *l, const void *name, size_t nlen, uint32_t bit,
                    const uint8_t *frame, size_t flen, int keep)
{
    struct ev_share *sh = NULL;
    if (keep && nlen <= UINT16_MAX && (sh = malloc(sizeof *sh + nlen)) != NULL) {
        /* The raiser holds one count until every copy is posted, so no
         * settler can reach zero early, however many copies there are. */
        atomic_init(&sh->left, 1);
        atomic_init(&sh->taken, 0);
        sh->name_len = (uint16_t)nlen;
        memcpy(sh->name, name, nlen);
    }
    unsigned posted = 0;
    pthread_mutex_lock(&l->wmu);
    for (struct watcher *x = l->watchers; x; x = x->next) {
        if (!watcher_is(x, bit, name, nlen))
            continue;
        /* relaxed: the raiser's own count keeps sh alive here; the
         * settlers' acq_rel decrements order the rest. */
        if (sh)
            atomic_fetch_add_explicit(&sh->left, 1, memory_order_relaxed);
        if (post_event(l, x, frame, flen, sh) == 0)
            posted++;
        else if (sh) /* this copy never left; the raiser's count keeps it >= 1 */
            atomic_fetch_sub_explicit(&sh->left, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&l->wmu);
    if (sh)
        ev_settle(l, sh, 0, 1, frame, flen); /* the raiser's count: the last
                                                settle keeps the frame if no
                                                copy was taken (or none sent) */
    else if (!posted && keep)
        keep_in_mailbox(l, name, nlen, frame, flen);
}

void loop_store_listener(void *arg, const struct store_change *ch)
{
    struct loop *l = arg;
    if (ch->replay || (ch->type != STORE_C_DEMAP && ch->type != STORE_C_EXPIRE))
        return;
    const struct engine_row *r = ch->row;
    struct buf b = BUF_INIT;
    if (wire_put(&b, WIRE_MAGIC_EVT, WIRE_EV_DEMAPPED, 0, 0, ch->lsn, NULL, 0, r->device,
                 r->device_len, NULL, 0) < 0 ||
        buf_put_str16(&b, r->uri, r->uri_len) < 0 || buf_put_str16(&b, r->uti, r->uti_len) < 0) {
        buf_free(&b);
        return;
    }
    buf_be32(b.p + 8, (uint32_t)(b.len - WIRE_HDR_LEN));
    /* DEMAPPED: to every watcher who may see the row (acl_row_via: admin,
     * the owner iot_sp, a tpsp whose scope covers the URI unless the
     * device's preferences hide the row from it), on their watching
     * connections only (no mailbox: wire-v1 keeps only MAP_PENDING and
     * MAP_RESULT). */
    uint64_t now = loop_now_us();
    pthread_mutex_lock(&l->wmu);
    for (struct watcher *x = l->watchers; x; x = x->next) {
        if (!(x->mask & WIRE_W_DEMAPPED) || !x->p || principal_revoked(x->p))
            continue;
        if (acl_row_via(x->p, r, now) != ACL_VIA_NONE)
            (void)post_event(l, x, b.p, b.len, NULL);
    }
    pthread_mutex_unlock(&l->wmu);
    buf_free(&b);
}

/* --- slow jobs (PBKDF2) off the loop ---------------------------------------------- */

int job_submit(struct loop *l, struct job *j)
{
    pthread_mutex_lock(&l->jmu);
    j->next = NULL;
    if (l->jt)
        l->jt->next = j;
    else
        l->jh = j;
    l->jt = j;
    pthread_cond_signal(&l->jcv);
    pthread_mutex_unlock(&l->jmu);
    return 0;
}

/* PRINCIPAL_SET/DEL wait on the job thread until the store has the change
 * durable, keeping its LSN for the response's CAS (wire-v1 3.3). rc is the
 * submission's result: wait only if it was accepted. */
static int job_wait(struct store_waiter *w, int rc, struct msg *m)
{
    if (rc == 0) {
        rc = store_waiter_wait(w);
        m->lsn = w->lsn;
    }
    return rc;
}

static void run_job(struct loop *l, struct job *j)
{
    struct msg *m = j->m;
    if (j->kind == JOB_SASL) {
        const uint8_t *zid = j->data, *cid = zid + j->authzid_len, *sec = cid + j->authcid_len;
        struct principal *p = principal_get(l->d.reg, cid, j->authcid_len);
        int rc = -EPERM;
        if (!p || !p->has_secret) {
            /* Spend the same time as a real check, so the answer's delay
             * does not tell which names exist (or have no secret). */
            static const uint8_t salt[PRINCIPAL_SALT_LEN];
            uint8_t out[PRINCIPAL_HASH_LEN];
            PKCS5_PBKDF2_HMAC((const char *)sec, j->secret_len, salt, sizeof salt,
                              p && p->iterations ? p->iterations : PRINCIPAL_DEFAULT_ITERATIONS,
                              EVP_sha256(), sizeof out, out);
        } else if (j->authzid_len && (j->authzid_len != j->authcid_len ||
                                      memcmp(zid, cid, j->authcid_len) != 0)) {
            rc = -EPERM; /* acting as another principal is not offered */
            principal_verify_secret(p, sec, j->secret_len); /* same time */
        } else if (principal_verify_secret(p, sec, j->secret_len) == 0) {
            rc = 0;
        }
        if (rc < 0) {
            principal_put(p);
            p = NULL;
        }
        m->type = MSG_AUTH;
        m->status = rc;
        m->principal = p;
    } else if (j->kind == JOB_PSET) {
        struct principal_def def;
        const char *why = NULL;
        int rc = principal_decode_set(j->data, j->authcid_len, j->data + j->authcid_len,
                                      j->len - j->authcid_len, &def, &why);
        struct store_waiter w = STORE_WAITER_INIT;
        if (rc == 0)
            rc = job_wait(&w, principal_set(l->d.reg, l->d.store, &def, store_waiter_done, &w), m);
        m->status = rc;
    } else if (j->kind == JOB_PDEL) {
        struct store_waiter w = STORE_WAITER_INIT;
        m->status = job_wait(&w, principal_del(l->d.reg, l->d.store, j->data, j->len,
                                               store_waiter_done, &w), m);
        if (m->status == 0 && l->d.mailbox)
            mailbox_clear(l->d.mailbox, j->data, j->len);
    }
    /* Secrets never outlive the job. */
    explicit_bzero(j->data, j->len);
    free(j);
    post_msg(l, m);
}

static void *job_main(void *arg)
{
    struct loop *l = arg;
    pthread_mutex_lock(&l->jmu);
    for (;;) {
        while (!l->jh && !l->jstop)
            pthread_cond_wait(&l->jcv, &l->jmu);
        if (!l->jh)
            break;
        struct job *j = l->jh;
        l->jh = j->next;
        if (!l->jh)
            l->jt = NULL;
        pthread_mutex_unlock(&l->jmu);
        run_job(l, j);
        pthread_mutex_lock(&l->jmu);
    }
    pthread_mutex_unlock(&l->jmu);
    return NULL;
}

/* --- setup --------------------------------------------------------------------------- */

/* A host that looks numeric (digits and dots, or with a colon) but is no
 * IPv4 or IPv6 address: a typo to name as such, not to resolve. */
static int bad_numeric_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1)
        return 0;
    return !*host || strspn(host, "0123456789.") == strlen(host) || strchr(host, ':') != NULL;
}

static int is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return strcmp(host, "localhost") == 0;
}

/* A TCP socket for ai, with SO_REUSEADDR (a port left in TIME_WAIT is
 * taken) and, if reuseport, SO_REUSEPORT. Its fd, or -errno. */
static int tcp_socket(const struct addrinfo *ai, int reuseport)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    return fd;
}

/* One worker's listening socket. The workers share the port through
 * SO_REUSEPORT, which would also let this bind succeed beside any other
 * process's socket that set it (a second icsd on the same port would get
 * half the connections): so for the first socket of a fixed port (first)
 * a socket without it binds the port once, and a port in use is refused. */
static int listen_socket(struct loop *l, const char *host, uint16_t port, int first,
                         uint16_t *bound)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc != 0) {
        loop_log(l, LOOP_LOG_ERROR, "listen %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    if (first && port) {
        int probe = tcp_socket(ai, 0);
        rc = probe < 0 ? probe : bind(probe, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
        if (probe >= 0)
            close(probe);
        if (rc < 0) {
            loop_log(l, LOOP_LOG_ERROR, "listen %s:%u: %s%s", host, port, strerror(-rc),
                     rc == -EADDRINUSE ? " (another process listens there)" : "");
            freeaddrinfo(ai);
            return rc;
        }
    }
    int fd = tcp_socket(ai, 1);
    if (fd < 0) {
        freeaddrinfo(ai);
        return fd;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        rc = -errno;
        loop_log(l, LOOP_LOG_ERROR, "listen %s:%u: %s", host, port, strerror(-rc));
        close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        rc = -errno;
        loop_log(l, LOOP_LOG_ERROR, "getsockname %s:%u: %s", host, port, strerror(-rc));
        close(fd);
        return rc;
    }
    /* The port sits at the same offset in sockaddr_in and sockaddr_in6. */
    _Static_assert(offsetof(struct sockaddr_in, sin_port) ==
                       offsetof(struct sockaddr_in6, sin6_port), "port offsets differ");
    uint16_t nport;
    memcpy(&nport, (const char *)&ss + offsetof(struct sockaddr_in, sin_port), sizeof nport);
    *bound = ntohs(nport);
    return fd;
}

static int worker_init(struct loop *l, struct worker *w)
{
    struct io_uring_params p = {0};
    /* Made here on the control thread but used only by the worker: start
     * it disabled, so SINGLE_ISSUER binds it to the worker when the worker
     * enables it, and DEFER_TASKRUN runs completions' task work only when
     * the worker waits (fewer interruptions per request). Older kernels:
     * fall back to a plain ring. */
    /* A large CQ: every connection's multishot recv may complete in one
     * turn (thousands of connections), and the sends and wakes with them. */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
              IORING_SETUP_CQSIZE;
    p.cq_entries = CQ_ENTRIES;
    int rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
    w->disabled = rc == 0;
    if (rc < 0) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
    }
    if (rc < 0) {
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
    }
    if (rc < 0)
        return rc;
    w->nbufs = BUF_COUNT;
    w->bufsz = BUF_SIZE;
    size_t rsz = w->nbufs * sizeof(struct io_uring_buf);
    void *rmem = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (rmem == MAP_FAILED)
        return -ENOMEM;
    w->br = rmem;
    io_uring_buf_ring_init(w->br);
    /* liburing 2.3 has no io_uring_setup_buf_ring: register by hand. */
    struct io_uring_buf_reg reg = {0};
    reg.ring_addr = (uint64_t)(uintptr_t)rmem;
    reg.ring_entries = w->nbufs;
    reg.bgid = BGID;
    if ((rc = io_uring_register_buf_ring(&w->ring, &reg, 0)) < 0)
        return rc;
    w->bufs = malloc((size_t)w->nbufs * w->bufsz);
    if (!w->bufs)
        return -ENOMEM;
    for (unsigned i = 0; i < w->nbufs; i++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * w->bufsz, w->bufsz,
                              (unsigned short)i, io_uring_buf_ring_mask(w->nbufs), (int)i);
    io_uring_buf_ring_advance(w->br, (int)w->nbufs);
    w->efd = eventfd(0, EFD_CLOEXEC);
    if (w->efd < 0)
        return -errno;
    w->nslots = l->cfg.max_conns / l->nw + 16;
    w->conns = calloc(w->nslots, sizeof *w->conns);
    w->gens = calloc(w->nslots, sizeof *w->gens);
    w->free_slots = calloc(w->nslots, sizeof *w->free_slots);
    w->ops = calloc(256, sizeof *w->ops);
    if (!w->conns || !w->gens || !w->free_slots || !w->ops)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nslots; i++)
        w->free_slots[i] = w->nslots - 1 - i;
    w->nfree = w->nslots;
    return 0;
}

int loop_create(loop_t **out, const struct loop_config *cfg, const struct loop_deps *deps)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    l->d = *deps;
    if (!l->cfg.host)
        l->cfg.host = "127.0.0.1";
    if (!l->cfg.max_conns)
        l->cfg.max_conns = 4096;
    if (!l->cfg.max_conn_buffer)
        l->cfg.max_conn_buffer = 8u << 20;
    if (!l->cfg.idle_timeout_s)
        l->cfg.idle_timeout_s = 60;
    if (!l->cfg.version)
        l->cfg.version = "1.0.0";
    if (!l->cfg.auth_threads)
        l->cfg.auth_threads = 1;
    if (!l->cfg.max_handshakes)
        l->cfg.max_handshakes = 256;
    if (!l->cfg.handshake_timeout_s)
        l->cfg.handshake_timeout_s = 10;
    if (!l->cfg.tls_host)
        l->cfg.tls_host = l->cfg.host;
    l->nw = l->cfg.threads ? l->cfg.threads : (unsigned)get_nprocs();
    if (l->nw == 0)
        l->nw = 1;
    l->loopback = is_loopback_host(l->cfg.host);
    l->start_us = loop_now_us();
    pthread_mutex_init(&l->wmu, NULL);
    pthread_mutex_init(&l->jmu, NULL);
    pthread_cond_init(&l->jcv, NULL);
    *out = l;
    if (bad_numeric_host(l->cfg.host)) {
        loop_log(l, LOOP_LOG_ERROR, "listen address '%s' is not an IPv4 or IPv6 address",
                 l->cfg.host);
        return -EINVAL;
    }
    if (!l->loopback) {
        if (!l->cfg.allow_plaintext_remote) {
            loop_log(l, LOOP_LOG_ERROR,
                     "refusing plaintext on non-loopback address %s without TLS "
                     "(use --allow-plaintext-remote to force)", l->cfg.host);
            return -EINVAL;
        }
        loop_log(l, LOOP_LOG_WARN, "WARNING: plaintext listener on non-loopback address %s",
                 l->cfg.host);
    }
    if (l->cfg.anonymous && !l->loopback) {
        if (!l->cfg.allow_anonymous_remote) {
            loop_log(l, LOOP_LOG_ERROR,
                     "--anonymous is only allowed on loopback listeners "
                     "(use --allow-anonymous-remote to force)");
            return -EINVAL;
        }
        loop_log(l, LOOP_LOG_WARN, "WARNING: anonymous principal %s on a remote listener",
                 l->cfg.anonymous);
    }
    if (l->cfg.anonymous) {
        struct principal *ap = principal_get(l->d.reg, l->cfg.anonymous,
                                             strlen(l->cfg.anonymous));
        if (ap)
            loop_log(l, LOOP_LOG_WARN, "unauthenticated connections act as principal '%s'",
                     l->cfg.anonymous);
        else
            loop_log(l, LOOP_LOG_WARN,
                     "--anonymous %s: no such principal yet; unauthenticated connections get "
                     "AUTH_ERROR until it is created, then act as it",
                     l->cfg.anonymous);
        principal_put(ap);
    }
    l->w = calloc(l->nw, sizeof *l->w);
    if (!l->w)
        return -ENOMEM;
    uint16_t port = l->cfg.port;
    for (unsigned i = 0; i < l->nw; i++) {
        struct worker *w = &l->w[i];
        w->l = l;
        w->id = i;
        w->lfd = w->tlfd = w->efd = -1;
        int rc = worker_init(l, w);
        if (rc < 0) {
            loop_log(l, LOOP_LOG_ERROR, "worker %u: io_uring setup: %s", i, strerror(-rc));
            return rc;
        }
        uint16_t bound = 0;
        /* Worker 0 binds the port (maybe 0 = any); the others join it. */
        int fd = listen_socket(l, l->cfg.host, port, i == 0, &bound);
        if (fd < 0)
            return fd;
        w->lfd = fd;
        port = bound;
    }
    l->port = port;
    if (l->d.tls) {
        uint16_t tport = l->cfg.tls_port;
        for (unsigned i = 0; i < l->nw; i++) {
            uint16_t bound = 0;
            int fd = listen_socket(l, l->cfg.tls_host, tport, i == 0, &bound);
            if (fd < 0)
                return fd;
            l->w[i].tlfd = fd;
            tport = bound;
            if (!(l->w[i].plain = malloc(BUF_SIZE)))
                return -ENOMEM;
        }
        l->tls_port = tport;
    }
    return 0;
}

uint16_t loop_port(const loop_t *l) { return l->port; }
uint16_t loop_tls_port(const loop_t *l) { return l->tls_port; }

int loop_start(loop_t *l)
{
    l->jth = calloc(l->cfg.auth_threads, sizeof *l->jth);
    if (!l->jth)
        return -ENOMEM;
    for (unsigned i = 0; i < l->cfg.auth_threads; i++) {
        if (pthread_create(&l->jth[i], NULL, job_main, l) != 0)
            return -EAGAIN;
        l->njth++;
    }
    for (unsigned i = 0; i < l->nw; i++) {
        if (pthread_create(&l->w[i].th, NULL, worker_main, &l->w[i]) != 0)
            return -EAGAIN;
    }
    loop_log(l, LOOP_LOG_INFO, "listening on %s:%u (%u workers)", l->cfg.host, l->port, l->nw);
    if (l->tls_port)
        loop_log(l, LOOP_LOG_INFO, "listening for TLS on %s:%u", l->cfg.tls_host, l->tls_port);
    return 0;
}

void loop_stop(loop_t *l)
{
    if (!l || !l->w)
        return;
    atomic_store_explicit(&l->stopping, 1, memory_order_release);
    for (unsigned i = 0; i < l->nw; i++) {
        if (!l->w[i].th)
            continue;
        uint64_t one = 1;
        ssize_t r = write(l->w[i].efd, &one, sizeof one);
        (void)r;
    }
    for (unsigned i = 0; i < l->nw; i++)
        if (l->w[i].th) {
            pthread_join(l->w[i].th, NULL);
            l->w[i].th = 0;
        }
    pthread_mutex_lock(&l->jmu);
    l->jstop = 1;
    pthread_cond_broadcast(&l->jcv);
    pthread_mutex_unlock(&l->jmu);
    for (unsigned i = 0; i < l->njth; i++)
        pthread_join(l->jth[i], NULL);
    l->njth = 0;
}

void loop_destroy(loop_t *l)
{
    if (!l)
        return;
    while (l->jh) { /* jobs never run: their messages go nowhere */
        struct job *j = l->jh;
        l->jh = j->next;
        free(j->m);
        explicit_bzero(j->data, j->len);
        free(j);
    }
    for (unsigned i = 0; l->w && i < l->nw; i++) {
        struct worker *w = &l->w[i];
        for (uint32_t s = 0; w->conns && s < w->nslots; s++)
            if (w->conns[s]) {
                w->conns[s]->closing = 1;
                conn_free(w->conns[s]);
            }
        if (w->ring.ring_fd > 0)
            io_uring_queue_exit(&w->ring);
        if (w->br)
            munmap(w->br, w->nbufs * sizeof(struct io_uring_buf));
        free(w->bufs);
        if (w->lfd >= 0)
            close(w->lfd);
        if (w->tlfd >= 0)
            close(w->tlfd);
        free(w->plain);
        if (w->efd >= 0)
            close(w->efd);
        /* Messages posted after the worker's last drain. */
        struct msg *m = atomic_exchange_explicit(&w->inbox, NULL, memory_order_acquire);
        while (m) {
            struct msg *n = m->next;
            if (m->type == MSG_AUTH)
                principal_put(m->principal);
            if (m->type == MSG_EVENT)
                ev_settle(l, m->share, 0, 0, m->data, m->len); /* mailboxes die with the server */
            free(m->result_to);
            free(m->result_dev);
            free(m);
            m = n;
        }
        principal_put(w->anon);
        free(w->conns);
        free(w->gens);
        free(w->free_slots);
        free(w->ops);
    }
    while (l->watchers) {
        struct watcher *x = l->watchers;
        l->watchers = x->next;
        principal_put(x->p);
        free(x);
    }
    free(l->w);
    free(l->jth);
    pthread_mutex_destroy(&l->wmu);
    pthread_mutex_destroy(&l->jmu);
    pthread_cond_destroy(&l->jcv);
    free(l);
}
