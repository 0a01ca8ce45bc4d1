/*
 * loop_int.h — what loop.c (rings, connections, completion paths) and
 * handlers.c (one function per opcode) share. Not a public contract: the
 * daemon uses loop.h only.
 *
 * Ownership: a worker owns its ring, its connections and everything in
 * them; nothing here is touched by another thread except the worker's
 * inbox (lock-free MPSC stack, see post_msg) and the stats counters
 * (relaxed atomics, read by STAT on any worker).
 */
#ifndef ICS_NET_LOOP_INT_H
#define ICS_NET_LOOP_INT_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "buf.h"
#include "loop.h"
#include "tls.h"
#include "principal.h"
#include "wire.h"

/* user_data of every SQE: {op:8, generation:24, slot:32}. */
enum uop { U_ACCEPT = 1, U_RECV, U_SEND, U_WAKE, U_TIMER };
static inline uint64_t ud_make(unsigned op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffffu) << 32 | slot;
}
static inline unsigned ud_op(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32) & 0xffffffu; }
static inline uint32_t ud_slot(uint64_t ud) { return (uint32_t)ud; }

/* A message from another thread to a worker (store done, auth result,
 * event frame). Allocated by the producer, freed by the worker. */
enum msg_type { MSG_DONE = 1, MSG_EVENT, MSG_AUTH };
/* One MAP_PENDING / MAP_RESULT raised to n watching connections: the
 * raiser and each posted copy hold a count; whoever settles last puts the
 * frame into the recipient's mailbox when no copy reached a live
 * connection (it closed after the event was posted), so at-least-once
 * delivery survives a WATCH connection going away. */
struct ev_share {
    atomic_uint left;             /* counts not settled yet (raiser + copies) */
    atomic_int taken;             /* some copy was queued on a live conn */
    uint16_t name_len;
    uint8_t name[];               /* the recipient principal */
};

struct msg {
    struct msg *next;
    uint8_t type;
    uint32_t worker, slot, gen;
    uint64_t seq;                 /* response entry it completes (MSG_DONE/AUTH) */
    int status;
    uint64_t lsn;
    struct principal *principal;  /* MSG_AUTH: the authenticated principal (ref) */
    /* MAP_CONFIRM: the MAP_RESULT to raise once durable */
    uint8_t *result_to; uint16_t result_to_len;
    uint8_t reqid[WIRE_REQID_LEN];
    uint8_t *result_dev; uint16_t result_dev_len;
    struct loop *loop;
    struct ev_share *share;       /* MSG_EVENT kept if undelivered, else NULL */
    size_t len;                   /* MSG_EVENT: the frame */
    uint8_t data[];
};

/* A response waiting for an asynchronous result (a change being made
 * durable, a SASL check). Responses of later requests wait in its tail so
 * the connection answers in request order. */
struct pend {
    struct pend *next;
    uint64_t seq;
    uint8_t opcode, done;
    uint32_t opaque;
    uint32_t count;               /* DEMAP_DEVICE / DEMAP_SERVICE rows removed */
    uint64_t t0;                  /* for the latency histogram */
    struct buf resp, tail;
};

struct conn {
    int fd;
    uint32_t slot, gen;
    struct worker *w;
    uint8_t recv_armed, send_inflight, closing, close_after_flush;
    uint8_t blocked;              /* SASL in flight: later input waits */
    uint8_t dirty, loopback, stop_input;
    struct conn *dirty_next;
    struct buf in;                /* bytes of an incomplete frame */
    struct buf out, sending;      /* sending: owned by the kernel while in flight */
    size_t sent;
    struct pend *ph, *pt;
    uint64_t next_seq;
    uint32_t npend;
    struct principal *p;          /* authenticated principal (ref) or NULL */
    uint32_t watch_mask;
    uint64_t last_in_us, send_since_us;
    uint64_t answered_us;         /* when the last answer was sent; 0: none since input */
    uint32_t turn_us;             /* EWMA of answer -> next input; UINT32_MAX: unknown */
    struct tls_conn *tls;         /* NULL: plaintext */
    uint8_t tls_ready;
    uint64_t hs_start_us;
};

#define OPS_BUCKETS 128
struct op_stats {
    _Atomic uint64_t count;
    _Atomic uint64_t hist[OPS_BUCKETS];
};

struct worker {
    struct loop *l;
    unsigned id;
    pthread_t th;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned nbufs, bufsz;
    int lfd, tlfd, efd;         /* plaintext and TLS listening sockets */
    uint64_t efd_val;
    uint8_t accept_armed, taccept_armed, timer_armed, stopping, disabled;
    uint32_t handshakes;          /* TLS handshakes in progress */
    uint8_t *plain;               /* TLS: decrypted bytes scratch */
    uint64_t stop_deadline_us;
    struct __kernel_timespec tick;
    _Atomic(struct msg *) inbox;
    atomic_int wake_pending;
    struct conn **conns;
    uint32_t *gens;
    uint32_t nslots, nlive;
    uint32_t *free_slots, nfree;
    struct conn *dirty;
    uint64_t poll_until;          /* mono us: poll, not sleep, until then (poll_wait) */
    const struct conn *last_in;   /* the connection of the last input (compared, never read) */
    uint32_t same_in;             /* EWMA, of 1024: inputs from the same connection as the last */
    struct principal *anon;
    struct op_stats *ops;         /* [256] */
    _Atomic uint64_t batched;     /* inquiries answered through a batched lookup */
    _Atomic uint64_t poll_hits;   /* polls that found completions (a sleep saved) */
    _Atomic uint64_t poll_timeouts; /* polls that ended in a sleep after all */
};

struct watcher {
    struct watcher *next;
    struct principal *p;          /* ref */
    uint32_t worker, slot, gen, mask;
};

struct job {
    struct job *next;
    int kind;                     /* JOB_SASL, JOB_PSET, JOB_PDEL */
    struct msg *m;                /* the completion to post */
    uint16_t authzid_len, authcid_len, secret_len;
    size_t len;
    uint8_t data[];               /* authzid, authcid, secret | name+value */
};
enum { JOB_SASL = 1, JOB_PSET, JOB_PDEL };

struct loop {
    struct loop_config cfg;
    struct loop_deps d;
    struct worker *w;
    unsigned nw;
    uint16_t port, tls_port;
    int loopback;                 /* the listen address is loopback */
    atomic_int stopping;
    _Atomic uint32_t curr_conns;
    _Atomic uint64_t total_conns, rejected_conns, closed_idle, closed_overflow;
    _Atomic uint64_t recv_nobufs;  /* receives that found the buffer ring empty */
    uint64_t start_us;
    pthread_mutex_t wmu;          /* watchers (rare: WATCH start/close, events) */
    struct watcher *watchers;
    pthread_mutex_t jmu;          /* slow jobs: SASL PBKDF2, principal changes */
    pthread_cond_t jcv;
    struct job *jh, *jt;
    int jstop;
    pthread_t *jth;
    unsigned njth;
};

/* Time. */
uint64_t loop_now_us(void);
void loop_log(struct loop *l, enum loop_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* loop.c services for handlers. */
struct buf *conn_sink(struct conn *c);            /* where a sync response goes */
void conn_mark_dirty(struct conn *c);
/* Moves finished response entries at the head to the output, in order. */
void conn_settle(struct conn *c);
struct pend *conn_pend_new(struct conn *c, const struct wire_frame *f, uint64_t t0);
struct msg *msg_new(struct conn *c, struct pend *pe, size_t extra);
void post_msg(struct loop *l, struct msg *m);     /* any thread */
void store_done_cb(void *arg, int status, uint64_t lsn);
int job_submit(struct loop *l, struct job *j);
void watch_register(struct conn *c);
void watch_unregister(struct conn *c);
/* Events: to every watching connection of principal name whose mask has
 * bit; if none and keep, into its mailbox. */
void event_raise_to(struct loop *l, const void *name, size_t nlen, uint32_t bit,
                    const uint8_t *frame, size_t flen, int keep);
void stats_record(struct worker *w, uint8_t op, uint64_t t0);
uint64_t stats_percentile(struct loop *l, uint8_t op, double q, uint64_t *count);

/* handlers.c */
/* Processes every whole frame in p[0..n); returns bytes consumed. */
size_t handle_input(struct conn *c, const uint8_t *p, size_t n);
void handle_done(struct conn *c, struct pend *pe, const struct msg *m);
void raise_map_result(struct loop *l, const uint8_t *to, size_t tolen,
                      const uint8_t reqid[WIRE_REQID_LEN], uint16_t status, uint64_t lsn,
                      const void *val, size_t vlen);

#endif /* ICS_NET_LOOP_INT_H */
