/*
 * engine.c — the dual-index identity table (engine.h is the contract,
 * docs/engine.md the design).
 *
 * Shape in one paragraph: every device is one immutable record (owner,
 * prefs, history, device ID and its rows inline). A change never edits a
 * record a reader can see: the writer builds a new version, publishes it
 * with a release store into the index slots that point at it, and hands the
 * old version to liburcu for reclamation after a grace period. Two
 * open-addressed linear-probing tables of 16-byte slots {64-bit hash tag,
 * record pointer} index the records: by device ID, and by XXH3(URI || UTI).
 * Slots go empty -> live -> tombstone -> live ... and never back to empty,
 * so a reader probing for a key that stays present always finds it. A
 * growing (or tombstone-purging) table is rebuilt incrementally: the old
 * table stays authoritative and complete while the writer copies a few
 * slots per operation into the new one (mirroring every change to an
 * already-copied slot), then publishes the new table in one release store.
 */
#include "engine.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define ICS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ICS_TSAN 1
#endif
#endif

/* Inline the read-side fast path (a per-thread counter store and a compiler
 * barrier). Under TSan we call the library instead: its membarrier-based
 * ordering is invisible to TSan, and we annotate the grace period ourselves
 * (tsan_release/tsan_acquire below). */
#ifndef ICS_TSAN
#define _LGPL_SOURCE
#endif
#include <urcu/urcu-memb.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#ifdef ICS_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define tsan_acquire(p) __tsan_acquire((void *)(p))
#define tsan_release(p) __tsan_release((void *)(p))
#else
#define tsan_acquire(p) ((void)(p))
#define tsan_release(p) ((void)(p))
#endif

/* The read path's helpers, inlined into each reader: a call's register
 * saves and restores were a tenth of a lookup's instructions. */
#define ENGINE_HOT inline __attribute__((always_inline))

/* Always-on check for detected corruption (STYLE: serverPanic). */
#define ENGINE_PANIC_IF(cond)                                                \
    do {                                                                     \
        if (__builtin_expect(!!(cond), 0))                                   \
            engine_panic(__FILE__, __LINE__, #cond);                         \
    } while (0)

__attribute__((noreturn, cold)) static void engine_panic(const char *f, int l,
                                                        const char *what)
{
    fprintf(stderr, "engine: corruption detected at %s:%d: %s\n", f, l, what);
    abort();
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */

/* Interned string (service URI or principal name). Immutable after
 * creation except refs, which only the writer touches. */
struct name {
    uint64_t hash;
    uint32_t refs;
    uint16_t len;
    uint8_t b[];
};

/* Writer-private open-addressed set of interned names. */
struct ntab {
    struct name **v;
    size_t cap, n;
};

/* A device's preferences as a reader sees them: bytes inside its record. */
struct pfv {
    const uint8_t *p;    /* NULL: none (or empty) */
    uint32_t len;
    const uint8_t *rows; /* the record's first row, right after them */
};

/* History ring (issues 2 and 7: a ring must cost little memory and an
 * inquiry's record little time). A ring is a small header (struct ext)
 * shared by every version of its device's record, and its cells, which
 * come in segments allocated as entries need them: segment 0 holds cells
 * 0-1, segment k > 0 cells [2^k, 2^(k+1)), the last one cut at history_len
 * (16: 2 + 2 + 4 + 8 cells). A device with one or two entries holds two
 * cells, not history_len. Cell i of the ring is entry seq with
 * i = seq % history_len, so the ring wraps once every segment exists.
 * Segments are never moved nor freed before the engine is destroyed: a
 * ring grows by one allocation under its lock and a release store of the
 * segment's pointer, with no copy of entries and no reclamation, and a
 * reader never meets a cell that moved.
 *
 * An adder rewrites a cell in place: no allocation, no RCU free, only
 * stores to the cell's lines. Cells use a seqlock: readers copy the words
 * out and keep the copy only if the cell's version did not move meanwhile;
 * every shared word is accessed atomically, so a reader racing a rewrite
 * reads torn values, never a data race, and discards them. Cell words
 * (HC_W = 12: 96 bytes, two lines or three, so that a typical inquiry
 * entry, principal + URI + UTI of 40 to 64 bytes, fits inline):
 *   c[0] version: 2 * seq + 2 when stable, odd while being rewritten
 *   c[1] unix micros
 *   c[2] event | plen << 8 | ulen << 24 | tlen << 40
 *   c[3..10] principal, URI, UTI bytes when they fit (HC_INLINE), else in
 *          the cell's overflow buffer:
 *   c[11] struct hbuf * (NULL: none), kept for reuse and replaced (freed by
 *          call_rcu) only when a longer entry needs more room. */
#define HC_W 12u                          /* words per cell: 96 bytes */
#define HC_OV (HC_W - 1u)                 /* the overflow pointer's word */
#define HC_INLINE ((HC_W - 4u) * 8u)      /* inline entry bytes: 64 */
#define HE_MAX (ENGINE_NAME_MAX + ENGINE_URI_MAX + ENGINE_ID_MAX)
#define HE_MAX_W ((HE_MAX + 7u) / 8u)

struct hbuf {
    struct rcu_head rcu;
    engine_t *e;
    uint32_t nw;    /* words in w[] */
    uint32_t pad;
    uint64_t w[];
};

/* A device's history ring header, shared by all versions of its record.
 * Allocated with the device when history_len > 0, never replaced: 32
 * bytes and one pointer per segment (64 bytes, one line, at 16). */
struct ext {
    uint32_t lock;      /* tiny spinlock among concurrent history adders */
    uint32_t pad0;
    uint64_t head;      /* entries ever added; cell (head-1) % hlen newest */
    uint64_t klsn;      /* key (lsn, part) of the newest logged entry given */
    uint32_t kpart;     /* (both under lock: see engine_hist.lsn) */
    uint32_t pad1;
    uint64_t *seg[];    /* NULL until needed; set once (release), under lock */
};

/* The segment of cell i, its first cell. */
static inline uint32_t seg_of(uint64_t i)
{
    return i < 2 ? 0u : (uint32_t)(63 - __builtin_clzll(i));
}
static inline uint64_t seg_base(uint32_t k)
{
    return k ? UINT64_C(1) << k : 0;
}

/* Cell i's words, or NULL if its segment does not exist yet. acquire:
 * pairs with the release that published the segment, so its zeroed words
 * are visible (lock holders could load it relaxed; one form for all). */
static inline uint64_t *ring_cell(struct ext *hs, uint64_t i)
{
    uint32_t k = seg_of(i);
    uint64_t *sp = __atomic_load_n(&hs->seg[k], __ATOMIC_ACQUIRE);
    return sp ? sp + (i - seg_base(k)) * HC_W : NULL;
}

/* Warms a cell an adder is about to rewrite (a hint: it never faults). */
static inline void cell_prefetch(const uint64_t *cell)
{
    const char *c = (const char *)cell;
    if (!c)
        return;
    __builtin_prefetch(c, 1, 3); /* a cell spans 2 or 3 lines */
    __builtin_prefetch(c + 64, 1, 3);
    __builtin_prefetch(c + HC_W * 8 - 1, 1, 3);
}

/* One row, stored inline in its device record, packed (no padding: x86
 * loads unaligned words at full speed) and variable-sized (UTI inline).
 * off leads from a row back to its record: the binding index points at
 * rows, not records. */
struct __attribute__((packed)) row {
    const struct name *uri;
    uint64_t lsn;
    uint32_t exp;
    uint32_t off;    /* bytes from the record's start to this row */
    uint8_t uti_len; /* 1..128 */
    uint8_t uti[];
};
#define ROW_SZ(l) (offsetof(struct row, uti) + (size_t)(l))

/* One device: a single allocation holding the device ID, its preferences
 * (if any) and its rows. The prefs live inline, right after the ID, so a
 * row read that evaluates them touches no other block (issue 7: a separate
 * block cost one cache miss per inquiry); a device without prefs pays
 * nothing for them, not even a length: bit 0 of ext says they are there. */
struct rec {
    struct name *owner;   /* interned, NULL: none */
    uintptr_t ext;        /* struct ext * (history; NULL: none) | REC_PREFS */
    uint32_t nrows;
    uint8_t dev_len;      /* 1..128 */
    uint8_t dev[];        /* then, if REC_PREFS, u32 len + len bytes of
                             prefs (unaligned), then the rows */
};
#define REC_PREFS ((uintptr_t)1)
#define REC_HDR(dl) (offsetof(struct rec, dev) + (size_t)(dl))
#define PF_SZ(l) (sizeof(uint32_t) + (size_t)(l))

/* Bytes of the inline prefs (0 or PF_SZ(len)). A record version never
 * changes them: set_prefs publishes a new version. */
static inline size_t rec_pf_bytes(const struct rec *r)
{
    if (!(r->ext & REC_PREFS))
        return 0;
    uint32_t l;
    memcpy(&l, r->dev + r->dev_len, sizeof l);
    return PF_SZ(l);
}
static inline struct row *rec_rows(const struct rec *r)
{
    return (struct row *)((uint8_t *)r + REC_HDR(r->dev_len) + rec_pf_bytes(r));
}
static inline struct row *row_next(const struct row *w)
{
    return (struct row *)((uint8_t *)w + ROW_SZ(w->uti_len));
}
static inline struct rec *rec_of(const struct row *w)
{
    return (struct rec *)((uint8_t *)w - w->off);
}

/* Index slot: one 64-bit word, so a slot changes in one atomic store.
 * Bits 0..47 hold the pointer (a record in the device index, a row in the
 * binding index; x86-64 user addresses fit in 47 bits); bits 48..50 the
 * span: how many cache lines past the pointer's own the object reaches
 * (saturating at 7), so a reader prefetches all of it the moment it has
 * the slot instead of finding each next row's line only after the last
 * one arrived (a record's rows are variable-sized: their addresses are a
 * chain of loads); bits 51..63 the low 13 bits of the key's hash, which
 * filter probes without a load of the record (a stray match: 1 in 8192).
 * 0 = empty, 1 = tombstone. The slot's home is the top bits of the hash,
 * recomputed from the record when a table is rebuilt. */
#define SLOT_EMPTY 0u
#define SLOT_TOMB 1u
#define PTR_MASK ((UINT64_C(1) << 48) - 1)
#define SPAN_SHIFT 48
#define SPAN_MAX 7u
#define TAG_SHIFT 51
#define TAG_MASK ((UINT64_C(1) << (64 - TAG_SHIFT)) - 1)

struct tab {
    size_t cap;     /* power of two */
    unsigned shift; /* home = hash >> shift: the top bits, so home order is
                       hash order (engine_iterate relies on it) */
    uint64_t s[];
};

struct idx {
    /* a slot's key hash, recomputed from what the slot points at */
    uint64_t (*rehash)(const engine_t *e, const void *p);
    /* the slot's 3-bit line hint for what it points at (slot_of) */
    unsigned (*lines)(const void *p);
    struct tab *cur;   /* readers: acquire load; writer: owner */
    struct tab *next;  /* writer only: the table being filled */
    size_t mig;        /* writer only: slots of cur copied into next */
    size_t live, used; /* cur: live keys, non-empty slots */
    size_t nlive, nused;
    size_t floor;      /* writer only: no shrink below (engine_reserve) */
};

/* Objects retired by the writer, freed together after one grace period. */
#define RETIRE_N 126
struct retire {
    struct rcu_head rcu;
    engine_t *e;
    uint32_t n;
    struct {
        void *p;
        size_t size;
    } v[RETIRE_N];
};

struct engine {
    struct idx dix, bix;         /* device index, binding index */
    struct ntab uris, owners;    /* writer-private intern tables */
    struct engine_alloc a;
    size_t limit;
    uint32_t hlen;
    struct retire *rb;           /* writer only */
    size_t rb_bytes;
    /* Shared counters: written by the writer (or adders for bytes) and read
     * by anyone with relaxed loads: stats are a snapshot, not a barrier. */
    uint64_t bytes, rows, devices, resizes, nuris;
    uint64_t last_lsn;           /* release-stored after each change */
    uint64_t exp_state;          /* (generation << 32) | lower bound of expiries */
    uint64_t inflight;           /* call_rcu callbacks not yet run */
    uint64_t exp_pos;            /* slot where the last expiry scan stopped */
    uint64_t seed;               /* of every hash (see dev_hash) */
    uint8_t secret[XXH3_SECRET_DEFAULT_SIZE]; /* dev_hash's, from seed */
    size_t min_cap;              /* index floor, from initial_devices */
    int tsan_grace;              /* TSan: models the grace period */
};

/* ------------------------------------------------------------------------ */
/* Thread registration                                                       */

/* RCU registration is per thread by nature, so these are the one piece of
 * process-wide state: a nesting count and a key whose destructor
 * unregisters a thread the engine registered on its own; and loop mode
 * (engine_thread_loop_begin), in which the thread keeps one urcu-memb read
 * section open across calls, so that a read does no RCU work at all: the
 * thread ends and reopens it at engine_thread_quiescent(), between its
 * loop's iterations. That is QSBR's bargain (docs/engine.md) on the memb
 * flavour: every other thread keeps memb's fence-free read sections per
 * call, where QSBR would make each of their calls pay two fenced
 * transitions (2.5x slower lookups, measured). A device lookup in loop
 * mode runs ~28 fewer of its ~315 instructions (callgrind). */
static __thread int tls_online;
static __thread bool tls_loop; /* in loop mode: a read section open */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_dtor(void *p)
{
    (void)p;
    if (tls_loop) { /* exited in loop mode: unregistering needs it closed */
        tls_loop = false;
        urcu_memb_read_unlock();
    }
    if (tls_online > 0) {
        tls_online = 0;
        urcu_memb_unregister_thread();
    }
}
static void tls_init(void)
{
    ENGINE_PANIC_IF(pthread_key_create(&tls_key, tls_dtor) != 0);
}
static void online_slow(void)
{
    pthread_once(&tls_once, tls_init);
    urcu_memb_register_thread();
    tls_online = 1;
    pthread_setspecific(tls_key, (void *)1);
}
/* A thread that forgot engine_thread_online() is registered on its first
 * call, and unregistered at its exit; explicit calls stay cheaper to reason
 * about and are what the contract asks for. */
static inline void ensure_online(void)
{
    if (__builtin_expect(tls_online == 0, 0))
        online_slow();
}

void engine_thread_online(engine_t *e)
{
    (void)e;
    if (tls_online++ == 0) {
        tls_online = 0;
        online_slow();
    }
}

void engine_thread_offline(engine_t *e)
{
    if (tls_online == 1)
        engine_thread_loop_end(e);
    if (tls_online > 0 && --tls_online == 0) {
        urcu_memb_unregister_thread();
        pthread_setspecific(tls_key, NULL);
    }
}

void engine_thread_loop_begin(engine_t *e)
{
    (void)e;
    ensure_online();
    if (!tls_loop) {
        /* From a row callback the loop's section would nest in the call's,
         * whose unlock would then be skipped: no grace period could end. */
        ENGINE_PANIC_IF(urcu_memb_read_ongoing());
        urcu_memb_read_lock();
        tls_loop = true;
    }
}

bool engine_thread_loop_end(engine_t *e)
{
    if (!tls_loop)
        return false;
    /* TSan: this thread's reads so far precede the next reclamation (as
     * in rd_unlock). */
    tsan_release(&e->tsan_grace);
    tls_loop = false;
    urcu_memb_read_unlock();
    return true;
}

/* Closing the section lets a waiting grace period end (and wakes its
 * writer if it sleeps); the new one starts in the current period. Counter
 * stores, no fence: sys_membarrier orders them for the writer, as for
 * every memb read section. Reopening through loop_begin also catches a
 * call from a row callback (the call's own section would still be open). */
void engine_thread_quiescent(engine_t *e)
{
    if (engine_thread_loop_end(e))
        engine_thread_loop_begin(e);
}

static inline void rd_lock(void)
{
    if (__builtin_expect(!tls_loop, 0)) {
        ensure_online();
        urcu_memb_read_lock();
    }
}
static inline void rd_unlock(engine_t *e)
{
    /* TSan: every read section "releases" into one sync object that the
     * reclaimer "acquires" after its grace period, which is the
     * happens-before edge urcu-memb provides with sys_membarrier. */
    tsan_release(&e->tsan_grace);
    if (__builtin_expect(!tls_loop, 0))
        urcu_memb_read_unlock();
}

/* Waits for a grace period (writers only, holding no engine pointer). A
 * memb grace period waits for every open read section, the caller's own
 * too: in loop mode it closes its section for the wait. */
static void wait_grace(engine_t *e)
{
    bool loop = engine_thread_loop_end(e);
    urcu_memb_synchronize_rcu();
    if (loop)
        engine_thread_loop_begin(e);
    tsan_acquire(&e->tsan_grace);
}

/* ------------------------------------------------------------------------ */
/* Allocation seam and accounting                                            */

static void *eng_alloc(engine_t *e, size_t size, bool checked)
{
    if (checked && e->limit) {
        /* relaxed: the limit is a budget, not a synchronization point;
         * concurrent history adders may overshoot it by one entry each. */
        uint64_t cur = __atomic_load_n(&e->bytes, __ATOMIC_RELAXED);
        if (cur + size > e->limit)
            return NULL;
    }
    void *p = e->a.alloc ? e->a.alloc(e->a.ctx, size) : malloc(size);
    if (p)
        __atomic_fetch_add(&e->bytes, size, __ATOMIC_RELAXED); /* counter only */
    return p;
}

static void eng_free(engine_t *e, void *p, size_t size)
{
    if (!p)
        return;
    if (e->a.free)
        e->a.free(e->a.ctx, p, size);
    else
        free(p);
    __atomic_fetch_sub(&e->bytes, size, __ATOMIC_RELAXED); /* counter only */
}

static void retire_cb(struct rcu_head *h)
{
    struct retire *rb = caa_container_of(h, struct retire, rcu);
    tsan_acquire(rb);
    engine_t *e = rb->e;
    tsan_acquire(&e->tsan_grace);
    for (uint32_t i = 0; i < rb->n; i++)
        eng_free(e, rb->v[i].p, rb->v[i].size);
    eng_free(e, rb, sizeof *rb);
    /* release: engine_destroy's acquire load of 0 sees these frees done. */
    __atomic_fetch_sub(&e->inflight, 1, __ATOMIC_RELEASE);
}

/* Detaches the batch being filled (NULL: none), counted in inflight:
 * retire_cb frees it after a grace period and takes it off the count. */
static struct retire *retire_take(engine_t *e)
{
    struct retire *rb = e->rb;
    if (!rb)
        return NULL;
    tsan_release(rb); /* the batch's contents, written by this thread */
    /* relaxed: a count; it is raised before the callback can run, so the
     * callback's decrement cannot come first. */
    __atomic_fetch_add(&e->inflight, 1, __ATOMIC_RELAXED);
    e->rb = NULL;
    e->rb_bytes = 0;
    return rb;
}

static void retire_flush(engine_t *e)
{
    struct retire *rb = retire_take(e);
    if (rb)
        urcu_memb_call_rcu(&rb->rcu, retire_cb);
}

/* Frees p once no reader can hold it. Never fails: if no batch can be
 * allocated, wait for a grace period here (the writer blocks, readers
 * never do) and free at once. */
static void retire(engine_t *e, void *p, size_t size)
{
    if (!p)
        return;
    if (!e->rb) {
        e->rb = eng_alloc(e, sizeof *e->rb, false);
        if (!e->rb) {
            wait_grace(e);
            eng_free(e, p, size);
            return;
        }
        e->rb->e = e;
        e->rb->n = 0;
    }
    e->rb->v[e->rb->n].p = p;
    e->rb->v[e->rb->n].size = size;
    e->rb_bytes += size;
    if (++e->rb->n == RETIRE_N || e->rb_bytes >= (64u << 10))
        retire_flush(e);
}

/* ------------------------------------------------------------------------ */
/* Short byte strings: IDs, UTIs, URIs                                       */

static inline uint64_t ld8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v); /* one unaligned load */
    return v;
}

/* IDs are short (1..128 bytes, typically a 36-byte UUID), URIs little
 * longer (typically 20-60): compared inline 16 bytes at a time (SSE2, every
 * x86-64 has it; other targets get two words from the compiler), the last
 * block overlapping, differences OR-ed without a branch per block: a
 * 36-byte ID is three XORs and a test, where word-wise it was a loop of
 * five. memcmp is a call through the PLT and decides the order, which no
 * caller here needs. */
typedef uint8_t v16 __attribute__((vector_size(16)));
static inline v16 ld16(const uint8_t *p)
{
    v16 v;
    memcpy(&v, p, sizeof v); /* one unaligned load */
    return v;
}
static inline bool id_eq(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;
    if (n < 16) {
        if (n < 8)
            return memcmp(x, y, n) == 0;
        return ((ld8(x) ^ ld8(y)) | (ld8(x + n - 8) ^ ld8(y + n - 8))) == 0;
    }
    v16 d = ld16(x + n - 16) ^ ld16(y + n - 16);
    for (size_t i = 0; i + 16 < n; i += 16)
        d |= ld16(x + i) ^ ld16(y + i);
    uint64_t w[2];
    memcpy(w, &d, sizeof w);
    return (w[0] | w[1]) == 0;
}

/* Copies n bytes the same way, 16 at a time, the last block overlapping:
 * for the binding key, where two memcpy calls through the PLT cost more
 * than the hash of the bytes they copy. */
static inline void copy_short(uint8_t *d, const uint8_t *s, size_t n)
{
    if (n < 16) {
        memcpy(d, s, n);
        return;
    }
    for (size_t i = 0; i + 16 < n; i += 16)
        memcpy(d + i, s + i, 16); /* one unaligned load and store each */
    memcpy(d + n - 16, s + n - 16, 16);
}

/* ------------------------------------------------------------------------ */
/* Hashing                                                                   */

/* Every hash is seeded per engine (engine_config.hash_seed, else a value
 * drawn at creation), so that keys crafted to share home buckets against
 * one process do not against another: a defence against hash flooding by a
 * provider who chooses device IDs or UTIs. The two index hashes use the
 * 192-byte secret XXH3 derives from that seed (as it does itself for long
 * inputs): for short keys withSeed adds and subtracts the seed on every
 * word of its built-in secret instead, about 10 instructions more per
 * device lookup (callgrind). */
static inline uint64_t dev_hash(const engine_t *e, const void *d, size_t n)
{
    return XXH3_64bits_withSecret(d, n, e->secret, sizeof e->secret);
}
static inline uint64_t name_hash(const engine_t *e, const void *p, size_t n)
{
    return XXH3_64bits_withSeed(p, n, e->seed ^ 0x9e3779b97f4a7c15ULL);
}
static uint64_t bind_hash(const engine_t *e, const void *u, size_t ul,
                          const void *t, size_t tl)
{
    uint8_t buf[ENGINE_URI_MAX + ENGINE_ID_MAX];
    copy_short(buf, u, ul);
    copy_short(buf + ul, t, tl);
    return XXH3_64bits_withSecret(buf, ul + tl, e->secret, sizeof e->secret);
}

static uint64_t rec_hash(const engine_t *e, const void *p)
{
    const struct rec *r = p;
    return dev_hash(e, r->dev, r->dev_len);
}
static uint64_t row_hash(const engine_t *e, const void *p)
{
    const struct row *w = p;
    return bind_hash(e, w->uri->b, w->uri->len, w->uti, w->uti_len);
}

/* ------------------------------------------------------------------------ */
/* Intern tables (writer only)                                               */

static struct name *ntab_find(const struct ntab *t, uint64_t h, const void *p,
                              size_t n)
{
    if (!t->cap)
        return NULL;
    size_t m = t->cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m) {
        struct name *x = t->v[i];
        if (!x)
            return NULL;
        if (x->hash == h && x->len == n && memcmp(x->b, p, n) == 0)
            return x;
    }
}

static void ntab_put(struct ntab *t, struct name *x)
{
    size_t m = t->cap - 1, i = x->hash & m;
    while (t->v[i])
        i = (i + 1) & m;
    t->v[i] = x;
    t->n++;
}

/* Makes room for one more name; the only step that can fail. */
static int ntab_reserve(engine_t *e, struct ntab *t)
{
    if ((t->n + 1) * 4 <= t->cap * 3)
        return 0;
    size_t ncap = t->cap ? t->cap * 2 : 16;
    struct name **v = eng_alloc(e, ncap * sizeof *v, true);
    if (!v)
        return -ENOMEM;
    memset(v, 0, ncap * sizeof *v);
    struct ntab nt = {v, ncap, 0};
    for (size_t i = 0; i < t->cap; i++)
        if (t->v[i])
            ntab_put(&nt, t->v[i]);
    eng_free(e, t->v, t->cap * sizeof *t->v);
    *t = nt;
    return 0;
}

/* Backward-shift deletion: no reader ever sees this table. */
static void ntab_del(struct ntab *t, struct name *x)
{
    size_t m = t->cap - 1, i = x->hash & m;
    while (t->v[i] != x) {
        ENGINE_PANIC_IF(!t->v[i]);
        i = (i + 1) & m;
    }
    t->v[i] = NULL;
    t->n--;
    for (size_t j = (i + 1) & m; t->v[j]; j = (j + 1) & m) {
        size_t home = t->v[j]->hash & m;
        /* move v[j] back to the hole if its home is not in (i, j] */
        if (((j - home) & m) >= ((j - i) & m)) {
            t->v[i] = t->v[j];
            t->v[j] = NULL;
            i = j;
        }
    }
}

static size_t name_size(size_t n) { return offsetof(struct name, b) + n; }

static struct name *name_new(engine_t *e, uint64_t h, const void *p, size_t n)
{
    struct name *x = eng_alloc(e, name_size(n), true);
    if (!x)
        return NULL;
    x->hash = h;
    x->refs = 0;
    x->len = (uint16_t)n;
    memcpy(x->b, p, n);
    return x;
}

static void name_unref(engine_t *e, struct ntab *t, struct name *x)
{
    if (!x)
        return;
    ENGINE_PANIC_IF(x->refs == 0);
    if (--x->refs == 0) {
        ntab_del(t, x);
        retire(e, x, name_size(x->len));
    }
}

/* ------------------------------------------------------------------------ */
/* Index tables                                                              */

#define MIN_CAP 16u
#define MIG_STEP 16u /* slots copied per write: a 2x grow starting at 80%
                        load ends before 80% + 1/16, under the 90% cap */

static size_t tab_bytes(size_t cap)
{
    return sizeof(struct tab) + cap * sizeof(uint64_t);
}

static struct tab *tab_new(engine_t *e, size_t cap, bool checked)
{
    struct tab *t = eng_alloc(e, tab_bytes(cap), checked);
    if (!t)
        return NULL;
    memset(t, 0, tab_bytes(cap));
    t->cap = cap;
    t->shift = 64u - (unsigned)__builtin_ctzll(cap);
    return t;
}

static size_t cap_for(size_t live)
{
    size_t cap = MIN_CAP;
    while (cap < live * 2) /* load after a rebuild <= 1/2: a grow doubles */
        cap <<= 1;
    return cap;
}

static inline size_t home_of(const struct tab *t, uint64_t h)
{
    return (size_t)(h >> t->shift);
}
/* A slot word: tag, the 3-bit line hint (capped) and the pointer. The hint
 * is a prefetch hint only: a device slot's is the record's span (lines past
 * its first), a binding slot's the lines from the record's first line to
 * the row's (rec_lines, row_lines). */
static inline uint64_t slot_of(uint64_t h, const void *p, unsigned lines)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    ENGINE_PANIC_IF(v > PTR_MASK || v <= SLOT_TOMB);
    if (lines > SPAN_MAX)
        lines = SPAN_MAX;
    return (h << TAG_SHIFT) | ((uint64_t)lines << SPAN_SHIFT) | v;
}
static inline bool tag_is(uint64_t w, uint64_t h)
{
    return (w >> TAG_SHIFT) == (h & TAG_MASK) && w > SLOT_TOMB;
}
static inline void *ptr_of(uint64_t w)
{
    return (void *)(uintptr_t)(w & PTR_MASK);
}
/* Prefetches every line of what slot word w points at (a hint: prefetches
 * never fault, and a stale word only wastes them). */
static inline void slot_prefetch(uint64_t w)
{
    const char *p = (const char *)((uintptr_t)ptr_of(w) & ~(uintptr_t)63);
    unsigned span = (unsigned)(w >> SPAN_SHIFT) & SPAN_MAX;
    /* Four lines always, clamped to the last (a repeat merges with the
     * miss already in flight): a loop to the span would branch on it, and
     * spans vary from record to record, so the branch mispredicts. In
     * ascending order: the same lines issued first, last, then the middle
     * two (half the instructions) cut the batch from 1.7x absl's one-by-one
     * lookups to 1.2x on this machine (bef81b1, measured and reverted). */
    for (unsigned i = 0; i < 4; i++)
        __builtin_prefetch(p + 64 * (i < span ? i : span));
    for (unsigned i = 4; i <= span; i++)
        __builtin_prefetch(p + 64 * i);
}

/* The single lookup's cheaper form: the line the caller reads next is
 * already a demand miss, so only the lines after it, three always (a line
 * past the record's end costs bandwidth, not a miss the caller waits on),
 * and two more only for a record that long. A stream of single lookups
 * runs as fast as the core can keep several in flight, and its window
 * holds instructions, not misses: every instruction a lookup saves lets
 * the next one's misses start sooner (bench/README.md, "instructions are
 * the limit": 90 extra per lookup cost absl 60-80% more time). The clamped
 * form above costs 14 instructions more per lookup (callgrind). */
static inline void slot_prefetch_tail(uint64_t w)
{
    const char *p = (const char *)((uintptr_t)ptr_of(w) & ~(uintptr_t)63);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(p + 128);
    __builtin_prefetch(p + 192);
    if (__builtin_expect((w >> SPAN_SHIFT & SPAN_MAX) > 3, 0)) {
        __builtin_prefetch(p + 256);
        __builtin_prefetch(p + 320);
    }
}

/* A binding hit reads its row (which may straddle two lines) and then the
 * record's header through the row's back offset: the device ID it answers
 * with. The slot says how many lines back that header starts, so both are
 * requested at once, one miss deep instead of two. */
static inline void bind_prefetch(uint64_t w)
{
    const char *p = (const char *)((uintptr_t)ptr_of(w) & ~(uintptr_t)63);
    const char *r = p - 64 * ((w >> SPAN_SHIFT) & SPAN_MAX);
    __builtin_prefetch(p + 64);
    __builtin_prefetch(r);
    __builtin_prefetch(r + 64); /* a 36-byte ID may end in the next line */
}

static inline uint64_t ld_slot(const uint64_t *s)
{
    /* acquire (consume would do: the record is reached through the loaded
     * pointer): pairs with the release in st_slot, so the record or row a
     * reader reaches was fully written before it was published — what
     * rcu_dereference promises. */
    return __atomic_load_n(s, __ATOMIC_ACQUIRE);
}
static inline void st_slot(uint64_t *s, uint64_t w)
{
    /* release: the record is fully built before any reader can load it. */
    __atomic_store_n(s, w, __ATOMIC_RELEASE);
}
static inline uint64_t wr_slot(const uint64_t *s)
{
    /* relaxed: only the writer stores slots; it reads its own stores. */
    return __atomic_load_n(s, __ATOMIC_RELAXED);
}

/* Writer: first empty or tombstone slot for h (the key is known absent). */
static size_t tab_put(struct tab *t, uint64_t h, uint64_t w, bool *was_empty)
{
    size_t m = t->cap - 1, i = home_of(t, h), n = 0;
    while (wr_slot(&t->s[i]) > SLOT_TOMB) {
        ENGINE_PANIC_IF(++n == t->cap); /* callers keep tables under 90% */
        i = (i + 1) & m;
    }
    *was_empty = wr_slot(&t->s[i]) == SLOT_EMPTY;
    st_slot(&t->s[i], w);
    return i;
}

/* Writer: the slot holding exactly (h, p). It must exist. */
static size_t tab_find_ptr(const struct tab *t, uint64_t h, const void *p)
{
    size_t m = t->cap - 1, i = home_of(t, h);
    for (size_t n = 0; n < t->cap; n++, i = (i + 1) & m) {
        uint64_t w = wr_slot(&t->s[i]);
        ENGINE_PANIC_IF(w == SLOT_EMPTY);
        if (w > SLOT_TOMB && ptr_of(w) == p)
            return i;
    }
    engine_panic(__FILE__, __LINE__, "index slot not found");
}

static void ix_insert(struct idx *x, uint64_t h, const void *p)
{
    bool empty;
    uint64_t w = slot_of(h, p, x->lines(p));
    size_t i = tab_put(x->cur, h, w, &empty);
    x->live++;
    x->used += empty;
    if (x->next && i < x->mig) { /* already copied: mirror */
        tab_put(x->next, h, w, &empty);
        x->nlive++;
        x->nused += empty;
    }
}

/* Repoints slot i of the current table (key hash h) to p. */
static void ix_set(struct idx *x, size_t i, uint64_t h, const void *p)
{
    uint64_t old = wr_slot(&x->cur->s[i]), w = slot_of(h, p, x->lines(p));
    st_slot(&x->cur->s[i], w); /* release: publishes p */
    if (x->next && i < x->mig) {
        size_t j = tab_find_ptr(x->next, h, ptr_of(old));
        st_slot(&x->next->s[j], w);
    }
}

static void ix_del(struct idx *x, size_t i, uint64_t h)
{
    uint64_t old = wr_slot(&x->cur->s[i]);
    /* release is not needed for a tombstone (it publishes nothing), but
     * st_slot keeps one store path; x86 pays nothing for it. */
    st_slot(&x->cur->s[i], SLOT_TOMB);
    x->live--;
    if (x->next && i < x->mig) {
        st_slot(&x->next->s[tab_find_ptr(x->next, h, ptr_of(old))], SLOT_TOMB);
        x->nlive--;
    }
}

static void ix_repoint(struct idx *x, uint64_t h, const void *old, const void *p)
{
    ix_set(x, tab_find_ptr(x->cur, h, old), h, p);
}
static void ix_remove(struct idx *x, uint64_t h, const void *old)
{
    ix_del(x, tab_find_ptr(x->cur, h, old), h);
}

static int ix_start(engine_t *e, struct idx *x, size_t live, bool checked)
{
    size_t cap = cap_for(live);
    if (cap < e->min_cap)
        cap = e->min_cap; /* the initial_devices hint is a floor */
    if (cap < x->floor)
        cap = x->floor;   /* and so is a reservation */
    struct tab *t = tab_new(e, cap, checked);
    if (!t)
        return -ENOMEM;
    x->next = t;
    x->mig = 0;
    x->nlive = x->nused = 0;
    return 0;
}

/* Copies up to k slots into the next table; publishes it when complete.
 * Called only at the start of a write, before any slot index is held. */
static void ix_step(engine_t *e, struct idx *x, size_t k)
{
    if (!x->next)
        return;
    struct tab *c = x->cur;
    while (k-- && x->mig < c->cap) {
        uint64_t w = wr_slot(&c->s[x->mig++]);
        if (w > SLOT_TOMB) {
            bool empty;
            /* the word moves as it is: same key, same object */
            tab_put(x->next, x->rehash(e, ptr_of(w)), w, &empty);
            x->nlive++;
            x->nused += empty;
        }
    }
    if (x->mig < c->cap)
        return;
    ENGINE_PANIC_IF(x->nlive != x->live);
    /* release: a reader that acquires the new table pointer sees every slot
     * copied into it (slot stores are ordered before this store). */
    __atomic_store_n(&x->cur, x->next, __ATOMIC_RELEASE);
    x->live = x->nlive;
    x->used = x->nused;
    x->next = NULL;
    x->mig = 0;
    retire(e, c, tab_bytes(c->cap));
    /* relaxed: statistics counter, one writer. */
    __atomic_store_n(&e->resizes, e->resizes + 1, __ATOMIC_RELAXED);
}

/* Before inserting add keys: maybe start a rebuild. -ENOMEM only if the
 * table is too full to take the keys without one. Never moves slots. */
static int ix_reserve(engine_t *e, struct idx *x, size_t add)
{
    size_t cap = x->cur->cap;
    /* Every live key ends up in next: if inserts since it was sized (say,
     * after a shrink began) would fill it past 80%, drop it and size anew.
     * It was never published, so it can be freed at once. */
    if (x->next && (x->live + add) * 5 > x->next->cap * 4) {
        eng_free(e, x->next, tab_bytes(x->next->cap));
        x->next = NULL;
        x->mig = 0;
    }
    if (!x->next && (x->used + add) * 5 > cap * 4) /* above 80% */
        ix_start(e, x, x->live + add, true); /* failure tolerated below */
    if ((x->used + add) * 10 > cap * 9) {
        /* In a small table inserts and tombstones can outrun a rebuild's
         * pace (MIG_STEP slots per write): finish one under way now, as
         * it has room for every live key (see above), rather than refuse
         * a change that memory allows. Callers hold no slot index of this
         * table across ix_reserve, so publishing the new table here is
         * safe. (fuzz_engine_ops found it: -ENOMEM with no limit.) */
        if (!x->next)
            return -ENOMEM; /* ix_start failed: out of memory */
        ix_step(e, x, cap);
        if ((x->used + add) * 10 > x->cur->cap * 9)
            return -ENOMEM;
    }
    return 0;
}

/* After removals: shrink a mostly empty table (best effort). */
static void ix_maybe_shrink(engine_t *e, struct idx *x)
{
    /* Never below the capacity the caller asked for: a table filling up
     * from empty is not a table to shrink. */
    if (!x->next && x->cur->cap > e->min_cap && x->cur->cap > x->floor &&
        x->live * 8 < x->cur->cap &&
        cap_for(x->live) < x->cur->cap)
        ix_start(e, x, x->live, false);
}

/* ------------------------------------------------------------------------ */
/* Lookups                                                                   */

static inline bool row_is(const struct row *w, const void *u, size_t ul,
                          const void *t, size_t tl)
{
    return w->uti_len == tl && w->uri->len == ul &&
           id_eq(w->uti, t, tl) && id_eq(w->uri->b, u, ul);
}

static const struct row *rec_find_row(const struct rec *r, const void *u,
                                      size_t ul, const void *t, size_t tl)
{
    const struct row *w = rec_rows(r);
    for (uint32_t i = 0; i < r->nrows; i++, w = row_next(w))
        if (row_is(w, u, ul, t, tl))
            return w;
    return NULL;
}

/* Reader or writer: the device record, or NULL. Returns the slot index in
 * *slot_i when not NULL. */
static ENGINE_HOT struct rec *dev_find(const struct tab *t, uint64_t h,
                                       const void *d, size_t n, size_t *slot_i)
{
    size_t m = t->cap - 1, i = home_of(t, h);
    for (;;) {
        uint64_t w = ld_slot(&t->s[i]);
        if (w == SLOT_EMPTY)
            return NULL;
        if (tag_is(w, h)) {
            struct rec *r = ptr_of(w);
            slot_prefetch_tail(w); /* the rows behind the ID */
            if (r->dev_len == n && id_eq(r->dev, d, n)) {
                if (slot_i)
                    *slot_i = i;
                return r;
            }
        }
        i = (i + 1) & m;
    }
}

/* Reader or writer: the row bound to (URI, UTI), or NULL. */
static struct row *bind_find(const struct tab *t, uint64_t h, const void *u,
                             size_t ul, const void *ut, size_t tl)
{
    size_t m = t->cap - 1, i = home_of(t, h);
    for (;;) {
        uint64_t w = ld_slot(&t->s[i]);
        if (w == SLOT_EMPTY)
            return NULL;
        if (tag_is(w, h)) {
            struct row *r = ptr_of(w);
            bind_prefetch(w);
            if (row_is(r, u, ul, ut, tl))
                return r;
        }
        i = (i + 1) & m;
    }
}

static inline struct tab *cur_tab(const struct idx *x)
{
    /* consume: the table's slots were written before its publication. */
    return __atomic_load_n(&x->cur, __ATOMIC_CONSUME);
}

/* Both are plain loads: a record version is immutable once published (the
 * release store of its index slot orders its bytes before readers). */
static inline struct ext *rec_ext(const struct rec *r)
{
    return (struct ext *)(r->ext & ~REC_PREFS);
}
static inline struct pfv rec_prefs(const struct rec *r)
{
    const uint8_t *q = r->dev + r->dev_len;
    struct pfv v = {NULL, 0, q};
    if (r->ext & REC_PREFS) {
        memcpy(&v.len, q, sizeof v.len);
        v.rows = q + PF_SZ(v.len);
        if (v.len)
            v.p = q + sizeof v.len;
    }
    return v;
}

/* A row's view is the device's part, the same for all its rows, and the
 * row's own: a visit fills the first once. Each loads what it needs before
 * it stores: a store to the view could alias the record as far as the
 * compiler knows, and would make it load again. */
static inline const struct row *view_device(struct engine_row *v,
                                            const struct rec *r)
{
    const struct name *o = r->owner;
    const struct pfv pf = rec_prefs(r);
    v->device = r->dev;
    v->device_len = r->dev_len;
    v->owner = o ? o->b : NULL;
    v->owner_len = o ? o->len : 0;
    v->prefs = pf.p;
    v->prefs_len = pf.len;
    return (const struct row *)pf.rows; /* rec_rows(r) */
}
static inline void view_row(struct engine_row *v, const struct row *w)
{
    const struct name *u = w->uri;
    const uint8_t tl = w->uti_len;
    const uint32_t exp = w->exp;
    const uint64_t lsn = w->lsn;
    v->uri = u->b;
    v->uri_len = u->len;
    v->uti = w->uti;
    v->uti_len = tl;
    v->expires_at = exp;
    v->lsn = lsn;
}
static void row_view(struct engine_row *v, const struct rec *r,
                     const struct row *w)
{
    view_device(v, r);
    if (w) {
        view_row(v, w);
    } else {
        v->uri = v->uti = NULL;
        v->uri_len = v->uti_len = 0;
        v->expires_at = 0;
        v->lsn = 0;
    }
}


/* The hot loop of every case-1 answer, written for few instructions (see
 * slot_prefetch_tail): the row count and the row's UTI length live in
 * registers (fn may write anywhere, so they would be loaded again). */
static ENGINE_HOT int visit_rows(const struct rec *r, engine_row_fn fn,
                                 void *arg)
{
    const uint32_t n = r->nrows;
    if (!fn || !n)
        return (int)n;
    struct engine_row v;
    const struct row *w = view_device(&v, r);
    for (uint32_t i = 0;;) {
        const uint8_t tl = w->uti_len;
        view_row(&v, w);
        int rc = fn(arg, &v);
        if (rc)
            return rc;
        if (++i == n)
            return (int)n;
        w = (const struct row *)(w->uti + tl);
    }
}

static inline bool bad_id(size_t n) { return n == 0 || n > ENGINE_ID_MAX; }
static inline bool bad_uri(const void *u, size_t n)
{
    return n == 0 || n > ENGINE_URI_MAX || !u || memchr(u, 0, n) != NULL;
}

static inline uint64_t ld_lsn(engine_t *e)
{
    /* acquire: pairs with the writer's release after applying a change, so
     * the state read afterwards is at least as new as this LSN. */
    return __atomic_load_n(&e->last_lsn, __ATOMIC_ACQUIRE);
}

/* flatten, both entry points: the server's inquiries come through this
 * one, the benchmarks' through the next, and inlining everything they call
 * (XXH3's length dispatch, which the compiler leaves a call, and for the
 * plain one this whole body) saves 20 of a hit's 335 instructions and 20 of
 * a miss's 173 (callgrind). */
__attribute__((flatten))
int engine_inquire_device_ex(engine_t *e, const void *dev, size_t dev_len,
                             engine_row_fn fn, void *arg, uint64_t *lsn,
                             unsigned flags)
{
    if (!dev || bad_id(dev_len))
        return -EINVAL;
    uint64_t h = dev_hash(e, dev, dev_len);
    rd_lock();
    if (lsn)
        *lsn = ld_lsn(e);
    const struct rec *r = dev_find(cur_tab(&e->dix), h, dev, dev_len, NULL);
    int rc = -ENOENT;
    if (r && r->nrows) {
        /* The history ring's head line is a cache miss the caller's
         * engine_history_add_row would wait for: start it now, for write,
         * so it overlaps the row visit. */
        if (flags & ENGINE_INQ_RECORD) {
            const struct ext *x = rec_ext(r);
            if (x)
                __builtin_prefetch(x, 1, 3);
        }
        rc = visit_rows(r, fn, arg);
    }
    rd_unlock(e);
    return rc;
}

__attribute__((flatten))
int engine_inquire_device(engine_t *e, const void *dev, size_t dev_len,
                          engine_row_fn fn, void *arg, uint64_t *lsn)
{
    return engine_inquire_device_ex(e, dev, dev_len, fn, arg, lsn, 0);
}

/* flatten, as the device lookups: XXH3's length dispatch and the probe
 * inline into one body. */
__attribute__((flatten))
int engine_inquire_binding(engine_t *e, const void *uri, size_t uri_len,
                           const void *uti, size_t uti_len, engine_row_fn fn,
                           void *arg, uint64_t *lsn)
{
    if (bad_uri(uri, uri_len) || !uti || bad_id(uti_len))
        return -EINVAL;
    uint64_t h = bind_hash(e, uri, uri_len, uti, uti_len);
    rd_lock();
    if (lsn)
        *lsn = ld_lsn(e);
    const struct row *w =
        bind_find(cur_tab(&e->bix), h, uri, uri_len, uti, uti_len);
    int rc = -ENOENT;
    if (w) {
        rc = 1;
        if (fn) {
            const struct rec *r = rec_of(w);
            struct engine_row v;
            row_view(&v, r, w);
            int x = fn(arg, &v);
            if (x)
                rc = x;
        }
    }
    rd_unlock(e);
    return rc;
}

/* Batched lookups are a software pipeline. Each key goes through dependent
 * steps, each a likely cache miss on the line the step before found: its
 * bytes, its home slot, its record, (recording) the ring head, the ring
 * cell, and finally the visit. Key i takes step s at pass i + s * LAG, so
 * when a step loads a line it was prefetched LAG keys' worth of work
 * earlier, and the misses of several keys are in flight at once. A longer
 * LAG waits less per key but lengthens the ramp of each batch, where only
 * prefetching happens. At 1M rows LAG 3 to 16 were within noise of each
 * other (16 is the stage-at-a-time order this replaced): the gain over
 * that loop (128-137 vs 172-186 ns per key, bench/README.md) came from
 * prefetching the keys' bytes and whole records (the slot's span). Keys
 * are hashed before the pipeline, all at once: a hash's only miss is the
 * key itself, whose address needs no load (its bytes are prefetched
 * first). */
#define BATCH 16
#define LAG 6

/* One key's state in the pipeline. */
struct bkey {
    uint64_t h;            /* 0: invalid key */
    const struct rec *r;   /* the home slot's record if its tag matched */
    struct ext *x;         /* its history ring (recording only) */
};

/* Step 2: the home slot (prefetched by the hashing pass) -> prefetch the
 * record, every line of it (the slot's span). */
static inline void bstep_slot(const struct tab *t, struct bkey *b)
{
    b->r = NULL;
    if (!b->h)
        return;
    uint64_t w = ld_slot(&t->s[home_of(t, b->h)]);
    if (!tag_is(w, b->h))
        return;
    slot_prefetch(w);
    b->r = ptr_of(w);
}

/* Steps 3 and 4 when recording (ENGINE_INQ_RECORD): the history add the
 * callback will make waits on the ring's head line, then on the cell lines
 * it rewrites. These are hints: a record, head or segment that changed
 * since only costs a wasted prefetch (nothing is freed before a grace
 * period and we are inside the read section; a prefetch never faults). An
 * entry over a cell's 64 inline bytes also rewrites its overflow buffer,
 * not prefetched: rare. */
static inline void bstep_ring(struct bkey *b)
{
    b->x = b->r ? rec_ext(b->r) : NULL;
    if (b->x)
        __builtin_prefetch(b->x, 1, 3);
}
static inline void bstep_cell(const engine_t *e, const struct bkey *b)
{
    if (!b->x)
        return;
    /* relaxed head: a hint, hist_put reads it again under the ring's lock
     * (the segment pointer: see ring_cell). NULL (the add makes a
     * segment): nothing to warm. */
    uint64_t seq = __atomic_load_n(&b->x->head, __ATOMIC_RELAXED);
    cell_prefetch(ring_cell(b->x, seq % e->hlen));
}

void engine_inquire_device_batch_ex(engine_t *e, const struct engine_key *keys,
                                    size_t n, engine_row_fn fn, void *arg,
                                    int *results, unsigned flags)
{
    const bool rec = (flags & ENGINE_INQ_RECORD) && e->hlen;
    const size_t visit_at = (rec ? 3 : 1) * LAG; /* the visit's lag */
    rd_lock();
    const struct tab *t = cur_tab(&e->dix);
    for (size_t base = 0; base < n; base += BATCH) {
        size_t k = n - base < BATCH ? n - base : BATCH;
        const struct engine_key *q = keys + base;
        struct bkey b[BATCH];
        /* The keys' bytes (a caller's keys may be cold), then each key's
         * hash and home slot. */
        for (size_t i = 0; i < k; i++)
            if (q[i].p && q[i].len) {
                __builtin_prefetch(q[i].p);
                __builtin_prefetch((const char *)q[i].p + q[i].len - 1);
            }
        for (size_t i = 0; i < k; i++) {
            b[i].h = 0;
            if (!q[i].p || bad_id(q[i].len))
                continue;
            b[i].h = dev_hash(e, q[i].p, q[i].len);
            __builtin_prefetch(&t->s[home_of(t, b[i].h)]);
        }
        for (size_t j = 0; j < k + visit_at; j++) {
            if (j < k)
                bstep_slot(t, &b[j]);
            if (rec && j >= LAG && j - LAG < k)
                bstep_ring(&b[j - LAG]);
            if (rec && j >= 2 * LAG && j - 2 * LAG < k)
                bstep_cell(e, &b[j - 2 * LAG]);
            if (j < visit_at)
                continue;
            size_t i = j - visit_at;
            if (!b[i].h) {
                results[base + i] = -EINVAL;
                continue;
            }
            const struct rec *r = dev_find(t, b[i].h, q[i].p, q[i].len, NULL);
            results[base + i] = (r && r->nrows) ? visit_rows(r, fn, arg)
                                                : -ENOENT;
        }
    }
    rd_unlock(e);
}

void engine_inquire_device_batch(engine_t *e, const struct engine_key *keys,
                                 size_t n, engine_row_fn fn, void *arg,
                                 int *results)
{
    engine_inquire_device_batch_ex(e, keys, n, fn, arg, results, 0);
}

int engine_device_info(engine_t *e, const void *dev, size_t dev_len,
                       engine_row_fn fn, void *arg)
{
    if (!dev || bad_id(dev_len))
        return -EINVAL;
    uint64_t h = dev_hash(e, dev, dev_len);
    rd_lock();
    const struct rec *r = dev_find(cur_tab(&e->dix), h, dev, dev_len, NULL);
    int rc = -ENOENT;
    if (r) {
        rc = 0;
        if (fn) {
            struct engine_row v;
            row_view(&v, r, NULL);
            rc = fn(arg, &v);
        }
    }
    rd_unlock(e);
    return rc;
}

/* --- iteration in hash order -------------------------------------------- */

struct cand {
    uint64_t tag;
    const struct rec *r;
};

/* The iteration order key: the device hash, never 0 (cursor 0 = done). */
static inline uint64_t iter_key(const engine_t *e, const struct rec *r)
{
    uint64_t h = rec_hash(e, r);
    return h ? h : 1;
}

/* Collects the live records whose home lies in [a, a+w) and whose key is
 * >= from, sorted by key. Returns the count, or -1 if more than cap. */
static long gather(const engine_t *e, const struct tab *t, size_t a,
                   size_t w, uint64_t from, struct cand *c, size_t cap,
                   bool all)
{
    size_t m = t->cap - 1, n = 0;
    size_t last = a + w - 1; /* home index of the window's last bucket */
    /* Entries with home h sit in the run of non-empty slots starting at h,
     * so scanning from a until the first empty slot at or after last finds
     * every entry whose home is in the window (wrapping at the end). */
    for (size_t k = 0; k < t->cap; k++) {
        size_t i = (a + k) & m;
        uint64_t sw = ld_slot(&t->s[i]);
        if (sw == SLOT_EMPTY && a + k >= last)
            break;
        if (sw <= SLOT_TOMB)
            continue;
        const struct rec *r = ptr_of(sw);
        if (!r->nrows && !all)
            continue;
        uint64_t g = iter_key(e, r);
        size_t hm = home_of(t, g);
        if (hm < a || hm > last || g < from)
            continue;
        if (n == cap)
            return -1;
        size_t j = n++;
        while (j > 0 && c[j - 1].tag > g) { /* insertion sort: windows are small */
            c[j] = c[j - 1];
            j--;
        }
        c[j].tag = g;
        c[j].r = r;
    }
    return (long)n;
}

static void dev_view(struct engine_device *v, const struct rec *r)
{
    struct pfv pf = rec_prefs(r);
    v->device = r->dev;
    v->device_len = r->dev_len;
    v->owner = r->owner ? r->owner->b : NULL;
    v->owner_len = r->owner ? r->owner->len : 0;
    v->prefs = pf.p;
    v->prefs_len = pf.len;
    v->rows = r->nrows;
    v->rec = r;
}

/* engine_iterate and engine_iterate_devices: all = visit records without
 * rows too (each counts as one row against max). */
static int iterate(engine_t *e, uint64_t *cursor, size_t max,
                   engine_device_fn dfn, engine_row_fn fn, void *arg, bool all)
{
    struct cand stack_c[256];
    struct cand *c = stack_c;
    size_t ccap = 256, cbytes = 0;
    uint64_t from = *cursor;
    int visited = 0;

    if (max == 0)
        return 0;
    rd_lock();
    const struct tab *t = cur_tab(&e->dix);
    size_t a = home_of(t, from);
    size_t w = 64;
    while (a < t->cap) {
        if (w > t->cap - a)
            w = t->cap - a;
        long n = gather(e, t, a, w, from, c, ccap, all);
        if (n < 0) {
            if (w > 1) {
                w /= 2;
                continue;
            }
            /* One bucket with more than 256 keys: only under a hash flood. */
            if (c != stack_c)
                eng_free(e, c, cbytes);
            cbytes = t->cap * sizeof *c;
            c = eng_alloc(e, cbytes, false);
            if (!c) {
                rd_unlock(e);
                return -ENOMEM;
            }
            ccap = t->cap;
            continue;
        }
        for (long i = 0; i < n;) {
            /* Equal tags (a 64-bit collision) are never split across calls:
             * the cursor is a tag. */
            long j = i;
            size_t rows = 0;
            while (j < n && c[j].tag == c[i].tag) {
                uint32_t nr = c[j++].r->nrows;
                rows += nr ? nr : all;
            }
            if (visited > 0 && (size_t)visited + rows > max) {
                *cursor = c[i].tag;
                goto out;
            }
            for (; i < j; i++) {
                const struct rec *r = c[i].r;
                if (dfn) {
                    struct engine_device dv;
                    dev_view(&dv, r);
                    int rc = dfn(arg, &dv);
                    if (rc) { /* stopped: resume at this group */
                        *cursor = c[i].tag;
                        visited = rc;
                        goto out;
                    }
                }
                if (all && !r->nrows)
                    visited++;
                struct engine_row v; /* the device's part once per record */
                const struct row *rw = view_device(&v, r);
                for (uint32_t k = 0; k < r->nrows; k++, rw = row_next(rw)) {
                    if (fn) {
                        view_row(&v, rw);
                        int rc = fn(arg, &v);
                        if (rc) { /* stopped: resume at this group */
                            *cursor = c[i].tag;
                            visited = rc;
                            goto out;
                        }
                    }
                    visited++;
                }
            }
        }
        a += w;
        if (a >= t->cap) {
            *cursor = 0; /* done */
            goto out;
        }
        from = (uint64_t)a << t->shift;
        *cursor = from;
        if ((size_t)visited >= max)
            goto out;
        if (w < 64)
            w *= 2;
    }
    *cursor = 0;
out:
    rd_unlock(e);
    if (c != stack_c)
        eng_free(e, c, cbytes);
    return visited;
}

int engine_iterate(engine_t *e, uint64_t *cursor, size_t max, engine_row_fn fn,
                   void *arg)
{
    return iterate(e, cursor, max, NULL, fn, arg, false);
}

int engine_iterate_devices(engine_t *e, uint64_t *cursor, size_t max,
                           engine_device_fn dev_fn, engine_row_fn row_fn,
                           void *arg)
{
    return iterate(e, cursor, max, dev_fn, row_fn, arg, true);
}

/* --- expiry --------------------------------------------------------------- */

#define EXP_NONE UINT32_MAX

static void exp_lower(engine_t *e, uint32_t exp)
{
    if (!exp)
        return;
    /* relaxed load, then CAS with relaxed orders: exp_state orders nothing
     * else; the generation bump tells a concurrent collector its scan may
     * have missed this row, so it must not raise the bound. */
    uint64_t s = __atomic_load_n(&e->exp_state, __ATOMIC_RELAXED), ns;
    do {
        uint32_t lo = (uint32_t)s;
        ns = (((s >> 32) + 1) << 32) | (exp < lo ? exp : lo);
    } while (!__atomic_compare_exchange_n(&e->exp_state, &s, ns, true,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

int engine_collect_expired(engine_t *e, uint32_t now, size_t max,
                           engine_row_fn fn, void *arg)
{
    uint64_t s0 = __atomic_load_n(&e->exp_state, __ATOMIC_RELAXED);
    if ((uint32_t)s0 > now || max == 0)
        return 0; /* nothing can have expired yet */
    int visited = 0;
    uint32_t lo = EXP_NONE;
    bool complete = true;
    rd_lock();
    const struct tab *t = cur_tab(&e->dix);
    /* Start where the previous collection stopped: the sweeper removes what
     * it was given and calls again, so the next call goes on from there
     * instead of rescanning the rows it just cleaned. A pass still covers
     * every slot once (wrapping), so nothing is missed. relaxed: a hint. */
    size_t m = t->cap - 1;
    size_t start = (size_t)__atomic_load_n(&e->exp_pos, __ATOMIC_RELAXED) & m;
    for (size_t n = 0, i = start; n < t->cap; n++, i = (i + 1) & m) {
        uint64_t sw = ld_slot(&t->s[i]);
        if (sw <= SLOT_TOMB)
            continue;
        const struct rec *r = ptr_of(sw);
        const struct row *w = rec_rows(r);
        for (uint32_t k = 0; k < r->nrows; k++, w = row_next(w)) {
            if (!w->exp)
                continue;
            if (w->exp < lo)
                lo = w->exp;
            if (w->exp > now)
                continue;
            if ((size_t)visited == max) {
                complete = false;
                /* relaxed: a hint (see above); resume at this device */
                __atomic_store_n(&e->exp_pos, (uint64_t)i, __ATOMIC_RELAXED);
                goto out;
            }
            if (fn) {
                struct engine_row v;
                row_view(&v, r, w);
                int rc = fn(arg, &v);
                if (rc) {
                    visited = rc;
                    complete = false;
                    goto out;
                }
            }
            visited++;
        }
    }
out:
    rd_unlock(e);
    if (complete) {
        /* Raise the bound only if no map happened since s0 (same
         * generation): relaxed, as in exp_lower. */
        uint64_t ns = (s0 & ~(uint64_t)UINT32_MAX) | lo;
        __atomic_compare_exchange_n(&e->exp_state, &s0, ns, false,
                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
    return visited;
}

void engine_stats(engine_t *e, struct engine_stats *st)
{
    memset(st, 0, sizeof *st);
    /* relaxed everywhere: a snapshot of counters, not of one state. */
    st->rows = __atomic_load_n(&e->rows, __ATOMIC_RELAXED);
    st->devices = __atomic_load_n(&e->devices, __ATOMIC_RELAXED);
    st->bytes = __atomic_load_n(&e->bytes, __ATOMIC_RELAXED);
    st->resizes = __atomic_load_n(&e->resizes, __ATOMIC_RELAXED);
    st->last_lsn = ld_lsn(e);
    rd_lock();
    st->device_slots = cur_tab(&e->dix)->cap;
    st->binding_slots = cur_tab(&e->bix)->cap;
    rd_unlock(e);
    /* The intern table is writer-private: its count is mirrored in nuris. */
    st->uris = __atomic_load_n(&e->nuris, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------ */
/* Writers                                                                   */

static inline void set_counter(uint64_t *c, uint64_t v)
{
    __atomic_store_n(c, v, __ATOMIC_RELAXED); /* statistics, one writer */
}

static void publish_lsn(engine_t *e, uint64_t lsn)
{
    set_counter(&e->nuris, e->uris.n);
    if (lsn > e->last_lsn)
        /* release: every slot store of this change precedes it (ld_lsn). */
        __atomic_store_n(&e->last_lsn, lsn, __ATOMIC_RELEASE);
}

static void write_begin(engine_t *e)
{
    ensure_online(); /* call_rcu wants a registered thread */
    ix_step(e, &e->dix, MIG_STEP);
    ix_step(e, &e->bix, MIG_STEP);
}

/* bytes: the inline prefs and the rows */
static size_t rec_size(size_t dev_len, size_t bytes)
{
    return REC_HDR(dev_len) + bytes;
}

/* Not stored, to keep the header small: the writer walks the rows. */
static size_t rows_bytes(const struct rec *r)
{
    size_t n = 0;
    const struct row *w = rec_rows(r);
    for (uint32_t i = 0; i < r->nrows; i++, w = row_next(w))
        n += ROW_SZ(w->uti_len);
    return n;
}
static size_t rec_bytes(const struct rec *r)
{
    return rec_size(r->dev_len, rec_pf_bytes(r) + rows_bytes(r));
}
static unsigned rec_lines(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    return (unsigned)(((v + rec_bytes(p) - 1) >> 6) - (v >> 6));
}
static unsigned row_lines(const void *p)
{
    uintptr_t v = (uintptr_t)p;
    return (unsigned)((v >> 6) - ((uintptr_t)rec_of(p) >> 6));
}

static size_t hbuf_size(uint32_t nw)
{
    return sizeof(struct hbuf) + (size_t)nw * sizeof(uint64_t);
}

/* Segments of a ring of hlen cells, and the cells of segment k. */
static uint32_t ring_nseg(uint32_t hlen)
{
    return hlen ? seg_of(hlen - 1) + 1 : 0;
}
static uint32_t seg_cells(uint32_t hlen, uint32_t k)
{
    uint64_t b = seg_base(k), end = k ? 2 * b : 2;
    return (uint32_t)((end < hlen ? end : hlen) - b);
}
static size_t seg_size(uint32_t hlen, uint32_t k)
{
    return (size_t)seg_cells(hlen, k) * HC_W * sizeof(uint64_t);
}
static size_t ext_size(uint32_t hlen)
{
    return sizeof(struct ext) + ring_nseg(hlen) * sizeof(uint64_t *);
}

/* A device's history ring header, zeroed; its segments come as entries
 * need them (ring_room). */
static struct ext *ext_new(engine_t *e)
{
    struct ext *hs = eng_alloc(e, ext_size(e->hlen), true);
    if (hs)
        memset(hs, 0, ext_size(e->hlen));
    return hs;
}

/* A ring no reader can reach (destroy, or a failed change's new ring):
 * its segments and the overflow buffers their cells point at. */
static void ext_free(engine_t *e, struct ext *hs)
{
    if (!hs)
        return;
    for (uint32_t k = 0; k < ring_nseg(e->hlen); k++) {
        uint64_t *sp = hs->seg[k];
        if (!sp)
            continue;
        for (uint32_t c = 0; c < seg_cells(e->hlen, k); c++) {
            struct hbuf *ob = (struct hbuf *)(uintptr_t)sp[(size_t)c * HC_W + HC_OV];
            if (ob)
                eng_free(e, ob, hbuf_size(ob->nw));
        }
        eng_free(e, sp, seg_size(e->hlen, k));
    }
    eng_free(e, hs, ext_size(e->hlen));
}

/* Gives ring hs the segments of its first n cells (n is capped at
 * history_len). Caller holds the ring's lock, or owns a ring no one else
 * sees. -ENOMEM leaves the segments made so far: room, no entries. */
static int ring_room(engine_t *e, struct ext *hs, uint64_t n)
{
    if (n > e->hlen)
        n = e->hlen;
    for (uint32_t k = 0; n && k <= seg_of(n - 1); k++) {
        if (hs->seg[k]) /* plain: only lock holders store it */
            continue;
        size_t sz = seg_size(e->hlen, k);
        ENGINE_PANIC_IF(sz == 0); /* k <= seg_of(n - 1) and n <= hlen: never empty */
        uint64_t *sp = eng_alloc(e, sz, true);
        if (!sp)
            return -ENOMEM;
        /* A cell not yet written needs only its version and overflow
         * pointer zeroed (no reader reads a cell at or past head, and an
         * entry's first write fills the rest): fresh memory is costly to
         * touch (page faults), so touch no more of it than needed. */
        for (uint32_t c = 0; c < seg_cells(e->hlen, k); c++) {
            sp[(size_t)c * HC_W] = 0;
            sp[(size_t)c * HC_W + HC_OV] = 0;
        }
        /* release: a reader that loads the pointer sees those zeros. */
        __atomic_store_n(&hs->seg[k], sp, __ATOMIC_RELEASE);
    }
    return 0;
}

static struct rec *rec_alloc(engine_t *e, size_t dev_len, size_t rbytes,
                             bool checked)
{
    size_t sz = rec_size(dev_len, rbytes);
    if (sz > UINT32_MAX)
        return NULL;
    return eng_alloc(e, sz, checked);
}

/* Copies the header, the ID and the inline prefs. */
static void rec_header_from(struct rec *n, const struct rec *o)
{
    n->owner = o->owner;
    n->ext = o->ext;
    n->dev_len = o->dev_len;
    memcpy(n->dev, o->dev, o->dev_len + rec_pf_bytes(o));
}

/* Copies a row into a new record at dst, fixing its back offset. */
static struct row *row_copy(struct rec *nr, uint8_t *dst, const struct row *w)
{
    struct row *n = (struct row *)dst;
    memcpy(n, w, ROW_SZ(w->uti_len));
    n->off = (uint32_t)(dst - (uint8_t *)nr);
    return n;
}

int engine_map(engine_t *e, const struct engine_map_req *rq, uint64_t lsn,
               uint64_t *row_lsn)
{
    if (!rq || !rq->dev || bad_id(rq->dev_len) ||
        bad_uri(rq->uri, rq->uri_len) || !rq->uti || bad_id(rq->uti_len) ||
        rq->owner_len > ENGINE_NAME_MAX || (rq->owner_len && !rq->owner))
        return -EINVAL;
    write_begin(e);

    uint64_t bh = bind_hash(e, rq->uri, rq->uri_len, rq->uti, rq->uti_len);
    const struct row *bw = bind_find(e->bix.cur, bh, rq->uri, rq->uri_len,
                                     rq->uti, rq->uti_len);
    if (bw) {
        const struct rec *br = rec_of(bw);
        if (br->dev_len != rq->dev_len ||
            memcmp(br->dev, rq->dev, rq->dev_len) != 0)
            return -EEXIST; /* bound to another device */
        if (rq->cas && rq->cas != bw->lsn)
            return -EEXIST;
        if (row_lsn)
            *row_lsn = bw->lsn;
        return 1;
    }
    if (rq->cas)
        return -EEXIST; /* no row can have that LSN */

    uint64_t dh = dev_hash(e, rq->dev, rq->dev_len);
    size_t di = 0;
    struct rec *old = dev_find(e->dix.cur, dh, rq->dev, rq->dev_len, &di);
    if (old && old->nrows == UINT32_MAX)
        return -ENOMEM;

    /* Phase 1: everything that can fail. */
    if (ix_reserve(e, &e->bix, 1) < 0)
        return -ENOMEM;
    if (!old && ix_reserve(e, &e->dix, 1) < 0)
        return -ENOMEM;
    uint64_t uh = name_hash(e, rq->uri, rq->uri_len);
    struct name *u = ntab_find(&e->uris, uh, rq->uri, rq->uri_len);
    struct name *nu = NULL, *no = NULL;
    struct ext *hs = NULL;
    struct name *ow = old ? old->owner : NULL;
    if (!u) {
        if (ntab_reserve(e, &e->uris) < 0 ||
            !(nu = name_new(e, uh, rq->uri, rq->uri_len)))
            return -ENOMEM;
        u = nu;
    }
    if (rq->owner_len) {
        uint64_t oh = name_hash(e, rq->owner, rq->owner_len);
        ow = ntab_find(&e->owners, oh, rq->owner, rq->owner_len);
        if (!ow) {
            if (ntab_reserve(e, &e->owners) < 0 ||
                !(no = name_new(e, oh, rq->owner, rq->owner_len)))
                goto nomem;
            ow = no;
        }
    }
    if (!old && e->hlen && !(hs = ext_new(e)))
        goto nomem;
    size_t ob = old ? rows_bytes(old) : 0;
    size_t pfb = old ? rec_pf_bytes(old) : 0;
    struct rec *nr = rec_alloc(e, rq->dev_len, pfb + ob + ROW_SZ(rq->uti_len),
                               true);
    if (!nr)
        goto nomem;

    /* Phase 2: build and publish; nothing below fails. */
    if (old) {
        rec_header_from(nr, old);
        nr->nrows = old->nrows + 1;
    } else {
        nr->ext = (uintptr_t)hs;
        nr->dev_len = (uint8_t)rq->dev_len;
        memcpy(nr->dev, rq->dev, rq->dev_len);
        nr->nrows = 1;
    }
    struct name *prev_owner = old ? old->owner : NULL;
    nr->owner = ow;
    uint8_t *dst = (uint8_t *)rec_rows(nr);
    if (old) {
        const struct row *w = rec_rows(old);
        for (uint32_t k = 0; k < old->nrows; k++, w = row_next(w))
            dst += ROW_SZ(row_copy(nr, dst, w)->uti_len);
    }
    struct row *w = (struct row *)dst;
    w->uri = u;
    w->lsn = lsn;
    w->exp = rq->expires_at;
    w->off = (uint32_t)(dst - (uint8_t *)nr);
    w->uti_len = (uint8_t)rq->uti_len;
    memcpy(w->uti, rq->uti, rq->uti_len);

    if (nu)
        ntab_put(&e->uris, nu);
    u->refs++;
    if (no)
        ntab_put(&e->owners, no);
    if (ow != prev_owner && ow)
        ow->refs++;
    exp_lower(e, rq->expires_at);

    if (old) {
        ix_set(&e->dix, di, dh, nr); /* linearization point for device readers */
        /* Then the binding slots of the rows carried over. */
        const struct row *ow_ = rec_rows(old), *nw = rec_rows(nr);
        for (uint32_t k = 0; k < old->nrows;
             k++, ow_ = row_next(ow_), nw = row_next(nw))
            ix_repoint(&e->bix, row_hash(e, ow_), ow_, nw);
    } else {
        ix_insert(&e->dix, dh, nr);
        set_counter(&e->devices, e->devices + 1);
    }
    ix_insert(&e->bix, bh, w);
    set_counter(&e->rows, e->rows + 1);
    if (old) {
        if (ow != prev_owner)
            name_unref(e, &e->owners, prev_owner);
        retire(e, old, rec_size(old->dev_len, pfb + ob));
    }
    publish_lsn(e, lsn);
    if (row_lsn)
        *row_lsn = lsn;
    return 0;

nomem:
    if (nu)
        eng_free(e, nu, name_size(nu->len));
    if (no)
        eng_free(e, no, name_size(no->len));
    ext_free(e, hs);
    return -ENOMEM;
}

int engine_reserve(engine_t *e, size_t devices, size_t rows)
{
    write_begin(e);
    struct idx *xs[2] = {&e->dix, &e->bix};
    size_t add[2] = {devices, rows};
    bool grow[2] = {false, false};
    for (int k = 0; k < 2; k++) {
        struct idx *x = xs[k];
        if (add[k] > SIZE_MAX / 4 - x->live)
            return -ENOMEM;
        ix_step(e, x, x->cur->cap); /* finish a rebuild under way, if any */
        grow[k] = cap_for(x->live + add[k]) > x->cur->cap;
    }
    /* Both new tables first, so that a refusal changes nothing. */
    for (int k = 0; k < 2; k++) {
        if (grow[k] && ix_start(e, xs[k], xs[k]->live + add[k], true) < 0) {
            for (int j = 0; j < k; j++) {
                if (!grow[j])
                    continue;
                /* never published: free at once */
                eng_free(e, xs[j]->next, tab_bytes(xs[j]->next->cap));
                xs[j]->next = NULL;
            }
            return -ENOMEM;
        }
    }
    /* A reservation is a floor, as initial_devices is: the loads it is for
     * interleave engine_set_prefs, whose write end would otherwise shrink
     * the mostly empty new table back before the rows arrive. */
    for (int k = 0; k < 2; k++) {
        size_t want = cap_for(xs[k]->live + add[k]);
        if (want > xs[k]->floor)
            xs[k]->floor = want;
        if (grow[k])
            ix_step(e, xs[k], xs[k]->cur->cap); /* copy it all now and publish */
    }
    return 0;
}

void engine_map_prefetch(engine_t *e, const struct engine_map_req *rq)
{
    if (!rq || !rq->dev || bad_id(rq->dev_len) || !rq->uri || !rq->uri_len ||
        rq->uri_len > ENGINE_URI_MAX || !rq->uti || bad_id(rq->uti_len))
        return;
    /* The writer's own tables (plain loads: only the writer calls this). */
    const struct tab *b = e->bix.cur, *d = e->dix.cur;
    uint64_t bh = bind_hash(e, rq->uri, rq->uri_len, rq->uti, rq->uti_len);
    uint64_t dh = dev_hash(e, rq->dev, rq->dev_len);
    __builtin_prefetch(&b->s[home_of(b, bh)], 1, 3);
    __builtin_prefetch(&d->s[home_of(d, dh)], 1, 3);
}

#define RUN_MAX 64u

/* The fast path of engine_map_run; false: not taken, nothing changed. */
static bool map_run_fast(engine_t *e, const struct engine_map_req *rq,
                         const uint64_t *lsn, size_t n, int *res)
{
    if (n < 2 || n > RUN_MAX)
        return false;
    const struct engine_map_req *q0 = &rq[0];
    struct name *u[RUN_MAX];
    uint64_t bh[RUN_MAX];
    size_t rbytes = 0;
    const struct engine_map_req *own = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct engine_map_req *q = &rq[i];
        if (!q->dev || bad_id(q->dev_len) || q->dev_len != q0->dev_len ||
            memcmp(q->dev, q0->dev, q0->dev_len) != 0 || bad_uri(q->uri, q->uri_len) ||
            !q->uti || bad_id(q->uti_len) || q->owner_len > ENGINE_NAME_MAX ||
            (q->owner_len && !q->owner) || q->cas)
            return false;
        if (q->owner_len)
            own = q; /* the last owner given wins, as in order */
        u[i] = ntab_find(&e->uris, name_hash(e, q->uri, q->uri_len), q->uri, q->uri_len);
        if (!u[i])
            return false; /* a new URI: the plain path interns it */
        bh[i] = bind_hash(e, q->uri, q->uri_len, q->uti, q->uti_len);
        if (bind_find(e->bix.cur, bh[i], q->uri, q->uri_len, q->uti, q->uti_len))
            return false;
        for (size_t j = 0; j < i; j++)
            if (bh[j] == bh[i] && u[j] == u[i] && rq[j].uti_len == q->uti_len &&
                memcmp(rq[j].uti, q->uti, q->uti_len) == 0)
                return false; /* the same row twice */
        rbytes += ROW_SZ(q->uti_len);
    }
    uint64_t dh = dev_hash(e, q0->dev, q0->dev_len);
    if (dev_find(e->dix.cur, dh, q0->dev, q0->dev_len, NULL))
        return false;
    /* Phase 1: everything that can fail (as engine_map). */
    if (ix_reserve(e, &e->bix, n) < 0 || ix_reserve(e, &e->dix, 1) < 0)
        return false;
    /* A rebuild must keep pace with inserts (MIG_STEP slots per insert
     * keeps the old table under 90% until it is published): n rows, n
     * steps, taken after ix_reserve because that may have just begun it.
     * No slot index is held yet (the finds above kept pointers only). */
    ix_step(e, &e->bix, MIG_STEP * n);
    struct name *ow = NULL, *no = NULL;
    if (own) {
        uint64_t oh = name_hash(e, own->owner, own->owner_len);
        ow = ntab_find(&e->owners, oh, own->owner, own->owner_len);
        if (!ow) {
            if (ntab_reserve(e, &e->owners) < 0 ||
                !(no = name_new(e, oh, own->owner, own->owner_len)))
                return false;
            ow = no;
        }
    }
    struct ext *hs = NULL;
    if (e->hlen && !(hs = ext_new(e))) {
        if (no)
            eng_free(e, no, name_size(no->len));
        return false;
    }
    struct rec *nr = rec_alloc(e, q0->dev_len, rbytes, true);
    if (!nr) {
        if (no)
            eng_free(e, no, name_size(no->len));
        ext_free(e, hs);
        return false;
    }
    /* Phase 2: build and publish; nothing below fails. */
    nr->owner = ow;
    nr->ext = (uintptr_t)hs;
    nr->dev_len = (uint8_t)q0->dev_len;
    nr->nrows = (uint32_t)n;
    memcpy(nr->dev, q0->dev, q0->dev_len);
    if (no)
        ntab_put(&e->owners, no);
    if (ow)
        ow->refs++;
    uint8_t *dst = (uint8_t *)rec_rows(nr);
    uint64_t top = 0;
    for (size_t i = 0; i < n; i++) {
        struct row *w = (struct row *)dst;
        w->uri = u[i];
        w->lsn = lsn[i];
        w->exp = rq[i].expires_at;
        w->off = (uint32_t)(dst - (uint8_t *)nr);
        w->uti_len = (uint8_t)rq[i].uti_len;
        memcpy(w->uti, rq[i].uti, rq[i].uti_len);
        u[i]->refs++;
        exp_lower(e, rq[i].expires_at);
        dst += ROW_SZ(w->uti_len);
        if (lsn[i] > top)
            top = lsn[i];
    }
    ix_insert(&e->dix, dh, nr); /* linearization point for device readers */
    set_counter(&e->devices, e->devices + 1);
    const struct row *w = rec_rows(nr);
    for (size_t i = 0; i < n; i++, w = row_next(w)) {
        ix_insert(&e->bix, bh[i], w);
        res[i] = 0;
    }
    set_counter(&e->rows, e->rows + n);
    publish_lsn(e, top);
    return true;
}

void engine_map_run(engine_t *e, const struct engine_map_req *rq,
                    const uint64_t *lsn, size_t n, int *res)
{
    if (!rq || !lsn || !res)
        return;
    write_begin(e);
    if (map_run_fast(e, rq, lsn, n, res))
        return;
    for (size_t i = 0; i < n; i++)
        res[i] = engine_map(e, &rq[i], lsn[i], NULL);
}

/* Removes from the record in device slot di every row for which pick()
 * says so. Returns the number removed (maybe 0) or -ENOMEM (nothing
 * changed). The device disappears with its last row unless it keeps
 * history. */
typedef bool (*pick_fn)(const struct row *w, const void *ctx);

static int remove_rows(engine_t *e, size_t di, struct rec *old, pick_fn pick,
                       const void *ctx, engine_row_fn on_removed, void *arg)
{
    uint32_t k = 0;
    size_t keep_bytes = 0, old_bytes = 0;
    const struct row *w = rec_rows(old);
    for (uint32_t i = 0; i < old->nrows; i++, w = row_next(w)) {
        old_bytes += ROW_SZ(w->uti_len);
        if (pick(w, ctx))
            k++;
        else
            keep_bytes += ROW_SZ(w->uti_len);
    }
    if (!k)
        return 0;
    bool drop = (k == old->nrows && !e->hlen);
    struct rec *nr = NULL;
    if (!drop) {
        /* Unchecked: removing rows must work at the memory limit. */
        nr = rec_alloc(e, old->dev_len, rec_pf_bytes(old) + keep_bytes, false);
        if (!nr)
            return -ENOMEM;
        rec_header_from(nr, old);
        nr->nrows = old->nrows - k;
        uint8_t *dst = (uint8_t *)rec_rows(nr);
        w = rec_rows(old);
        for (uint32_t i = 0; i < old->nrows; i++, w = row_next(w))
            if (!pick(w, ctx))
                dst += ROW_SZ(row_copy(nr, dst, w)->uti_len);
    }
    /* Publish: binding slots first, so a binding reader never finds a row
     * after device readers stopped seeing it. */
    const struct row *nw = nr ? rec_rows(nr) : NULL;
    w = rec_rows(old);
    for (uint32_t i = 0; i < old->nrows; i++, w = row_next(w)) {
        uint64_t h = row_hash(e, w);
        if (pick(w, ctx)) {
            if (on_removed) {
                struct engine_row v;
                row_view(&v, old, w);
                on_removed(arg, &v);
            }
            ix_remove(&e->bix, h, w);
        } else {
            ix_repoint(&e->bix, h, w, nw);
            nw = row_next(nw);
        }
    }
    uint64_t dh = rec_hash(e, old);
    if (drop) {
        ix_del(&e->dix, di, dh);
        set_counter(&e->devices, e->devices - 1);
    } else {
        ix_set(&e->dix, di, dh, nr);
    }
    set_counter(&e->rows, e->rows - k);
    /* Drop references only after the row bytes were read above. */
    w = rec_rows(old);
    for (uint32_t i = 0; i < old->nrows; i++, w = row_next(w))
        if (pick(w, ctx))
            name_unref(e, &e->uris, (struct name *)w->uri);
    if (drop) /* no history: no ext; the prefs go with the record */
        name_unref(e, &e->owners, old->owner);
    retire(e, old, rec_size(old->dev_len, rec_pf_bytes(old) + old_bytes));
    return (int)k;
}

struct one_row {
    const void *u, *t;
    size_t ul, tl;
};
static bool pick_one(const struct row *w, const void *ctx)
{
    const struct one_row *o = ctx;
    return row_is(w, o->u, o->ul, o->t, o->tl);
}
static bool pick_all(const struct row *w, const void *ctx)
{
    (void)w;
    (void)ctx;
    return true;
}
static bool pick_uri(const struct row *w, const void *ctx)
{
    return w->uri == ctx;
}

static void write_end(engine_t *e, uint64_t lsn)
{
    ix_maybe_shrink(e, &e->dix);
    ix_maybe_shrink(e, &e->bix);
    publish_lsn(e, lsn);
}

int engine_demap(engine_t *e, const void *dev, size_t dev_len, const void *uri,
                 size_t uri_len, const void *uti, size_t uti_len, uint64_t cas,
                 uint64_t lsn, engine_row_fn on_removed, void *arg)
{
    if (!dev || bad_id(dev_len) || bad_uri(uri, uri_len) || !uti ||
        bad_id(uti_len))
        return -EINVAL;
    write_begin(e);
    size_t di;
    struct rec *r = dev_find(e->dix.cur, dev_hash(e, dev, dev_len), dev, dev_len,
                             &di);
    const struct row *w = r ? rec_find_row(r, uri, uri_len, uti, uti_len) : NULL;
    if (!w)
        return -ENOENT;
    if (cas && cas != w->lsn)
        return -EEXIST;
    struct one_row o = {uri, uti, uri_len, uti_len};
    int rc = remove_rows(e, di, r, pick_one, &o, on_removed, arg);
    if (rc < 0)
        return rc;
    write_end(e, lsn);
    return 0;
}

int engine_demap_device(engine_t *e, const void *dev, size_t dev_len,
                        uint64_t lsn, engine_row_fn on_removed, void *arg)
{
    if (!dev || bad_id(dev_len))
        return -EINVAL;
    write_begin(e);
    size_t di;
    struct rec *r = dev_find(e->dix.cur, dev_hash(e, dev, dev_len), dev, dev_len,
                             &di);
    if (!r || !r->nrows)
        return -ENOENT;
    int rc = remove_rows(e, di, r, pick_all, NULL, on_removed, arg);
    if (rc > 0)
        write_end(e, lsn);
    return rc;
}

int engine_demap_binding(engine_t *e, const void *uri, size_t uri_len,
                         const void *uti, size_t uti_len, uint64_t lsn,
                         engine_row_fn on_removed, void *arg)
{
    if (bad_uri(uri, uri_len) || !uti || bad_id(uti_len))
        return -EINVAL;
    write_begin(e);
    const struct row *w = bind_find(e->bix.cur,
                                    bind_hash(e, uri, uri_len, uti, uti_len), uri,
                                    uri_len, uti, uti_len);
    if (!w)
        return -ENOENT;
    struct rec *r = rec_of(w);
    size_t di;
    struct rec *r2 = dev_find(e->dix.cur, dev_hash(e, r->dev, r->dev_len), r->dev,
                              r->dev_len, &di);
    ENGINE_PANIC_IF(r2 != r);
    struct one_row o = {uri, uti, uri_len, uti_len};
    int rc = remove_rows(e, di, r, pick_one, &o, on_removed, arg);
    if (rc > 0)
        write_end(e, lsn);
    return rc;
}

/* Full scan of the device index (documented: DEMAP_SERVICE is rare), cut
 * short once the URI's reference count says every row was found. */
int engine_demap_service(engine_t *e, const void *uri, size_t uri_len,
                         uint64_t lsn, engine_row_fn on_removed, void *arg)
{
    return engine_demap_service_if(e, uri, uri_len, lsn, NULL, NULL, on_removed, arg);
}

int engine_demap_service_if(engine_t *e, const void *uri, size_t uri_len,
                            uint64_t lsn, engine_dev_pick_fn pick, void *pctx,
                            engine_row_fn on_removed, void *arg)
{
    if (bad_uri(uri, uri_len))
        return -EINVAL;
    write_begin(e);
    struct name *u = ntab_find(&e->uris, name_hash(e, uri, uri_len), uri,
                               uri_len);
    if (!u)
        return -ENOENT;
    uint32_t left = u->refs; /* u may be retired as its last row goes */
    int total = 0;
    struct tab *t = e->dix.cur;
    for (size_t i = 0; i < t->cap && left; i++) {
        uint64_t sw = wr_slot(&t->s[i]);
        if (sw <= SLOT_TOMB)
            continue;
        struct rec *r = ptr_of(sw);
        if (pick) {
            struct pfv pf = rec_prefs(r);
            if (!pick(pctx, pf.p, pf.len))
                continue; /* its rows of u stay, and so does u */
        }
        int rc = remove_rows(e, i, r, pick_uri, u, on_removed, arg);
        if (rc < 0) {
            /* Rows removed so far stay removed (each is a whole change);
             * the caller sees a partial count only through on_removed. */
            if (total)
                write_end(e, lsn);
            return rc;
        }
        total += rc;
        left -= (uint32_t)rc;
    }
    ENGINE_PANIC_IF(!pick && left != 0);
    if (!total)
        return -ENOENT; /* every device refused: nothing changed */
    write_end(e, lsn);
    return total;
}

int engine_set_prefs(engine_t *e, const void *dev, size_t dev_len,
                     const void *prefs, size_t len, uint64_t lsn)
{
    if (!dev || bad_id(dev_len) || (len && !prefs) || len > UINT32_MAX - 64)
        return -EINVAL;
    write_begin(e);
    size_t di;
    uint64_t dh = dev_hash(e, dev, dev_len);
    struct rec *old = dev_find(e->dix.cur, dh, dev, dev_len, &di);
    if (!old || !old->nrows)
        return -ENOENT;
    size_t opf = rec_pf_bytes(old);
    if (!len && !opf) {
        write_end(e, lsn);
        return 0; /* clearing what was never set */
    }
    /* A new version of the record with the new prefs inline, published like
     * a map: device slot first, then each row's binding slot. */
    size_t rb = rows_bytes(old);
    size_t npf = len ? PF_SZ(len) : 0;
    struct rec *nr = rec_alloc(e, old->dev_len, npf + rb, true);
    if (!nr)
        return -ENOMEM;
    nr->owner = old->owner;
    nr->ext = (old->ext & ~REC_PREFS) | (len ? REC_PREFS : 0);
    nr->nrows = old->nrows;
    nr->dev_len = old->dev_len;
    memcpy(nr->dev, old->dev, old->dev_len);
    if (len) {
        uint32_t l = (uint32_t)len;
        memcpy(nr->dev + nr->dev_len, &l, sizeof l);
        memcpy(nr->dev + nr->dev_len + sizeof l, prefs, len);
    }
    uint8_t *dst = (uint8_t *)rec_rows(nr);
    const struct row *w = rec_rows(old);
    for (uint32_t k = 0; k < old->nrows; k++, w = row_next(w))
        dst += ROW_SZ(row_copy(nr, dst, w)->uti_len);
    ix_set(&e->dix, di, dh, nr); /* linearization point for device readers */
    const struct row *ow_ = rec_rows(old), *nw = rec_rows(nr);
    for (uint32_t k = 0; k < old->nrows; k++, ow_ = row_next(ow_), nw = row_next(nw))
        ix_repoint(&e->bix, row_hash(e, ow_), ow_, nw);
    retire(e, old, rec_size(old->dev_len, opf + rb));
    write_end(e, lsn);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* History                                                                   */

static void hbuf_cb(struct rcu_head *h)
{
    struct hbuf *x = caa_container_of(h, struct hbuf, rcu);
    tsan_acquire(x);
    engine_t *e = x->e;
    tsan_acquire(&e->tsan_grace);
    eng_free(e, x, hbuf_size(x->nw));
    __atomic_fetch_sub(&e->inflight, 1, __ATOMIC_RELEASE); /* as retire_cb */
}

static bool hist_bad(const struct engine_hist *h)
{
    return !h || h->principal_len > ENGINE_NAME_MAX ||
           h->uri_len > ENGINE_URI_MAX || h->uti_len > ENGINE_ID_MAX ||
           (h->principal_len && !h->principal) || (h->uri_len && !h->uri) ||
           (h->uti_len && !h->uti);
}

/* Appends h to ring hs. Caller is inside a read-side critical section and
 * holds a record that points at hs (so hs outlives this call). */
/* The ring's tiny spinlock among adders (and the snapshot's reader).
 * acquire: pairs with the release in ring_unlock, so the previous holder's
 * cell and head stores are visible; the relaxed inner load only waits for
 * the lock to look free, the exchange is what takes it. */
static void ring_lock(struct ext *hs)
{
    while (__atomic_exchange_n(&hs->lock, 1u, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&hs->lock, __ATOMIC_RELAXED))
            __builtin_ia32_pause();
}
static void ring_unlock(struct ext *hs)
{
    __atomic_store_n(&hs->lock, 0u, __ATOMIC_RELEASE); /* release: our stores */
}

/* An entry as readers see it, from a cell's micros and lens words and its
 * bytes (principal, URI, UTI back to back) copied into v. */
static struct engine_hist hist_view(uint64_t micros, uint64_t lens, const uint64_t *v)
{
    const uint8_t *b = (const uint8_t *)v;
    uint16_t pl = (uint16_t)(lens >> 8), ul = (uint16_t)(lens >> 24),
             tl = (uint16_t)(lens >> 40);
    struct engine_hist hv = {
        .micros = micros, .event = (uint8_t)lens,
        .principal = b, .principal_len = pl,
        .uri = b + pl, .uri_len = ul,
        .uti = b + pl + ul, .uti_len = tl};
    return hv;
}

static int hist_put(engine_t *e, struct ext *hs, const struct engine_hist *h)
{
    /* Start the cell's lines on their way (for write) before building the
     * entry and taking the lock: the lock's exchange waits for every store
     * before it, and the cell's stores after it wait for their lines.
     * relaxed head: a hint, read again under the lock. */
    uint64_t pseq = __atomic_load_n(&hs->head, __ATOMIC_RELAXED);
    cell_prefetch(ring_cell(hs, pseq % e->hlen));
    /* The entry's bytes, built privately first, then stored word by word. */
    uint64_t v[HE_MAX_W];
    size_t nb = (size_t)h->principal_len + h->uri_len + h->uti_len;
    uint32_t nw = (uint32_t)((nb + 7) / 8);
    if (nw)
        v[nw - 1] = 0; /* the tail word's unused bytes */
    uint8_t *b = (uint8_t *)v;
    if (h->principal_len)
        memcpy(b, h->principal, h->principal_len);
    if (h->uri_len)
        memcpy(b + h->principal_len, h->uri, h->uri_len);
    if (h->uti_len)
        memcpy(b + h->principal_len + h->uri_len, h->uti, h->uti_len);
    uint64_t lens = (uint64_t)h->event | (uint64_t)h->principal_len << 8 |
                    (uint64_t)h->uri_len << 24 | (uint64_t)h->uti_len << 40;

    ring_lock(hs);
    if (h->lsn) {
        /* A logged entry the ring already has (log replayed over a
         * snapshot): keys only grow, so not above the newest means held. */
        if (h->lsn < hs->klsn || (h->lsn == hs->klsn && h->part <= hs->kpart)) {
            ring_unlock(hs);
            return 0;
        }
    }
    uint64_t seq = hs->head;
    uint64_t *c = ring_cell(hs, seq % e->hlen);
    if (!c) {
        /* Rare: the first entry of a segment (never after the ring
         * wrapped: every segment exists by then). */
        if (ring_room(e, hs, seq + 1) < 0) {
            ring_unlock(hs);
            return -ENOMEM;
        }
        c = ring_cell(hs, seq % e->hlen);
    }
    struct hbuf *ov = NULL, *nov = NULL;
    uint64_t *ovp = &c[HC_OV];
    /* Only an entry that does not fit inline reads anything of the cell: a
     * store-only rewrite does not wait for the cell's line to arrive.
     * relaxed: only lock holders store *ovp; the lock orders them. */
    if (nb > HC_INLINE)
        ov = (struct hbuf *)(uintptr_t)__atomic_load_n(ovp, __ATOMIC_RELAXED);
    if (nb > HC_INLINE && (!ov || ov->nw < nw)) {
        /* Rare: a longer entry than this cell ever held. Some slack, so
         * that later entries of the same kind fit. */
        uint32_t cap = (nw + 7u) & ~7u;
        if (cap > HE_MAX_W)
            cap = HE_MAX_W;
        nov = eng_alloc(e, hbuf_size(cap), true);
        if (!nov) {
            ring_unlock(hs); /* a segment made above stays: only room */
            return -ENOMEM;
        }
        nov->e = e;
        nov->nw = cap;
        nov->pad = 0;
        memcpy(nov->w, v, nw * sizeof(uint64_t));
    }
    /* relaxed + release fence: a reader that sees any word stored below
     * sees the odd version in its recheck (the seqlock writer protocol). */
    __atomic_store_n(&c[0], 2 * seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    /* relaxed: ordered by the fence above and the release below */
    __atomic_store_n(&c[1], h->micros, __ATOMIC_RELAXED);
    __atomic_store_n(&c[2], lens, __ATOMIC_RELAXED);
    if (nb <= HC_INLINE) {
        for (uint32_t i = 0; i < nw; i++)
            __atomic_store_n(&c[3 + i], v[i], __ATOMIC_RELAXED); /* as above */
    } else if (nov) {
        /* release: a reader that loads nov sees its words and size. */
        __atomic_store_n(ovp, (uint64_t)(uintptr_t)nov, __ATOMIC_RELEASE);
    } else {
        for (uint32_t i = 0; i < nw; i++)
            __atomic_store_n(&ov->w[i], v[i], __ATOMIC_RELAXED); /* as above */
    }
    /* release: a reader that loads this version sees the words. */
    __atomic_store_n(&c[0], 2 * seq + 2, __ATOMIC_RELEASE);
    /* release: a reader that sees the new head sees the entry (and the
     * segment it is in, published before). */
    __atomic_store_n(&hs->head, seq + 1, __ATOMIC_RELEASE);
    if (h->lsn) { /* plain: only lock holders read or write the key */
        hs->klsn = h->lsn;
        hs->kpart = h->part;
    }
    ring_unlock(hs);
    if (nov && ov) {
        tsan_release(ov);
        /* relaxed: a count, raised before call_rcu (as in retire_flush) */
        __atomic_fetch_add(&e->inflight, 1, __ATOMIC_RELAXED);
        urcu_memb_call_rcu(&ov->rcu, hbuf_cb);
    }
    return 0;
}

int engine_history_add(engine_t *e, const void *dev, size_t dev_len,
                       const struct engine_hist *h)
{
    if (!dev || bad_id(dev_len) || hist_bad(h))
        return -EINVAL;
    uint64_t dh = dev_hash(e, dev, dev_len);
    rd_lock();
    struct rec *r = dev_find(cur_tab(&e->dix), dh, dev, dev_len, NULL);
    int rc = -ENOENT;
    if (r) {
        struct ext *hs = e->hlen ? rec_ext(r) : NULL; /* set at creation */
        rc = hs ? hist_put(e, hs, h) : 0; /* history_len == 0: none kept */
    }
    rd_unlock(e);
    return rc;
}

int engine_history_add_row(engine_t *e, const struct engine_row *row,
                           const struct engine_hist *h)
{
    if (!row || !row->device || hist_bad(h))
        return -EINVAL;
    /* The caller is inside the read section that found this record: its
     * device pointer leads back to it, no lookup needed. */
    const struct rec *r = (const struct rec *)(const void *)(row->device -
                                                offsetof(struct rec, dev));
    struct ext *hs = e->hlen ? rec_ext(r) : NULL;
    return hs ? hist_put(e, hs, h) : 0;
}

int engine_history_get(engine_t *e, const void *dev, size_t dev_len,
                       size_t max, engine_hist_fn fn, void *arg)
{
    if (!dev || bad_id(dev_len))
        return -EINVAL;
    uint64_t dh = dev_hash(e, dev, dev_len);
    rd_lock();
    struct rec *r = dev_find(cur_tab(&e->dix), dh, dev, dev_len, NULL);
    if (!r) {
        rd_unlock(e);
        return -ENOENT;
    }
    int n = 0;
    struct ext *hs = e->hlen ? rec_ext(r) : NULL;
    if (hs) {
        uint64_t v[HE_MAX_W];
        /* acquire: pairs with the adder's release of head, which follows
         * the release of every segment the head's entries are in. */
        uint64_t head = __atomic_load_n(&hs->head, __ATOMIC_ACQUIRE);
        for (uint64_t i = 0; i < e->hlen && i < head && (size_t)n < max; i++) {
            uint64_t seq = head - 1 - i;
            const uint64_t *c = ring_cell(hs, seq % e->hlen);
            if (!c)
                break; /* cannot happen (see above); defensive */
            /* acquire: pairs with the adder's release of the version. */
            uint64_t ver = __atomic_load_n(&c[0], __ATOMIC_ACQUIRE);
            if (ver != 2 * seq + 2)
                break; /* overwritten by a newer add meanwhile: stop here */
            /* relaxed, all: validated by the version recheck below */
            uint64_t micros = __atomic_load_n(&c[1], __ATOMIC_RELAXED);
            uint64_t lens = __atomic_load_n(&c[2], __ATOMIC_RELAXED);
            uint16_t pl = (uint16_t)(lens >> 8), ul = (uint16_t)(lens >> 24),
                     tl = (uint16_t)(lens >> 40);
            size_t nb = (size_t)pl + ul + tl, nw = (nb + 7) / 8;
            if (nb > HE_MAX)
                break; /* torn: the recheck would fail */
            if (nb <= HC_INLINE) {
                for (size_t k = 0; k < nw; k++)
                    v[k] = __atomic_load_n(&c[3 + k], __ATOMIC_RELAXED);
            } else {
                /* acquire: pairs with the release that published it. */
                const struct hbuf *ob = (const struct hbuf *)(uintptr_t)
                    __atomic_load_n(&c[HC_OV], __ATOMIC_ACQUIRE);
                if (!ob || ob->nw < nw)
                    break; /* torn */
                for (size_t k = 0; k < nw; k++)
                    v[k] = __atomic_load_n(&ob->w[k], __ATOMIC_RELAXED);
            }
            /* acquire fence: the loads above happen before the recheck (the
             * seqlock reader protocol). */
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&c[0], __ATOMIC_RELAXED) != ver)
                break;
            if (fn) {
                struct engine_hist hv = hist_view(micros, lens, v);
                int rc = fn(arg, &hv);
                if (rc) {
                    n = rc;
                    break;
                }
            }
            n++;
        }
    }
    rd_unlock(e);
    return n;
}

/* --- whole records: snapshot and restore ----------------------------------- */

int engine_device_history(engine_t *e, const struct engine_device *d,
                          engine_hist_fn fn, void *arg, uint64_t *lsn,
                          uint32_t *part)
{
    if (lsn)
        *lsn = 0;
    if (part)
        *part = 0;
    if (!d || !d->rec)
        return -EINVAL;
    struct ext *hs = e->hlen ? rec_ext(d->rec) : NULL;
    if (!hs)
        return 0;
    /* Under the ring's lock, so that the key read matches the entries
     * read: an adder changes both only while holding it. Every cell is
     * then whole (no seqlock retry needed). */
    ring_lock(hs);
    int n = 0;
    /* relaxed, all loads below: the lock's acquire ordered them after the
     * last adder's stores, and no adder runs until we unlock. */
    uint64_t head = __atomic_load_n(&hs->head, __ATOMIC_RELAXED);
    uint64_t seq = head > e->hlen ? head - e->hlen : 0;
    uint64_t v[HE_MAX_W];
    for (; seq < head; seq++) {
        const uint64_t *c = ring_cell(hs, seq % e->hlen);
        ENGINE_PANIC_IF(!c); /* every entry below head has its segment */
        uint64_t micros = __atomic_load_n(&c[1], __ATOMIC_RELAXED);
        uint64_t lens = __atomic_load_n(&c[2], __ATOMIC_RELAXED);
        uint16_t pl = (uint16_t)(lens >> 8), ul = (uint16_t)(lens >> 24),
                 tl = (uint16_t)(lens >> 40);
        size_t nb = (size_t)pl + ul + tl, nw = (nb + 7) / 8;
        ENGINE_PANIC_IF(nb > HE_MAX);
        if (nb <= HC_INLINE) {
            for (size_t k = 0; k < nw; k++)
                v[k] = __atomic_load_n(&c[3 + k], __ATOMIC_RELAXED);
        } else {
            const struct hbuf *ob = (const struct hbuf *)(uintptr_t)
                __atomic_load_n(&c[HC_OV], __ATOMIC_RELAXED);
            ENGINE_PANIC_IF(!ob || ob->nw < nw);
            for (size_t k = 0; k < nw; k++)
                v[k] = __atomic_load_n(&ob->w[k], __ATOMIC_RELAXED);
        }
        if (fn) {
            struct engine_hist hv = hist_view(micros, lens, v);
            int rc = fn(arg, &hv);
            if (rc) {
                n = rc;
                break;
            }
        }
        n++;
    }
    if (lsn)
        *lsn = hs->klsn;
    if (part)
        *part = hs->kpart;
    ring_unlock(hs);
    return n;
}

int engine_device_restore(engine_t *e, const struct engine_device_load *d)
{
    if (!d || !d->dev || bad_id(d->dev_len) || d->owner_len > ENGINE_NAME_MAX ||
        (d->owner_len && !d->owner) || (d->prefs_len && !d->prefs) ||
        d->prefs_len > UINT32_MAX - 64 || (d->nhist && !d->hist))
        return -EINVAL;
    for (size_t i = 0; i < d->nhist; i++)
        if (hist_bad(&d->hist[i]) || d->hist[i].event < ENGINE_H_MAP ||
            d->hist[i].event > ENGINE_H_EXPIRY)
            return -EINVAL;
    if (!e->hlen)
        return 0; /* no rings, and no record outlives its rows */
    write_begin(e);
    uint64_t dh = dev_hash(e, d->dev, d->dev_len);
    size_t di = 0;
    struct rec *old = dev_find(e->dix.cur, dh, d->dev, d->dev_len, &di);
    /* The ring outlives record versions (a new version keeps the pointer),
     * so take it before publishing rather than through the new record. */
    struct ext *ring = old ? rec_ext(old) : NULL;
    if (ring && d->nhist) {
        /* Room for the entries first, so that a memory limit refuses the
         * restore before anything changed (entries then only fail on an
         * overflow buffer). Room without entries is harmless. */
        ring_lock(ring);
        int grc = ring_room(e, ring, ring->head + d->nhist);
        ring_unlock(ring);
        if (grc < 0)
            return grc;
    }
    if (!old || d->meta) {
        /* Phase 1: everything that can fail. */
        if (!old && ix_reserve(e, &e->dix, 1) < 0)
            return -ENOMEM;
        struct name *ow = old ? old->owner : NULL, *no = NULL;
        if (d->meta) {
            ow = NULL;
            if (d->owner_len) {
                uint64_t oh = name_hash(e, d->owner, d->owner_len);
                ow = ntab_find(&e->owners, oh, d->owner, d->owner_len);
                if (!ow) {
                    if (ntab_reserve(e, &e->owners) < 0 ||
                        !(no = name_new(e, oh, d->owner, d->owner_len)))
                        return -ENOMEM;
                    ow = no;
                }
            }
        }
        struct ext *hs = NULL;
        if (!old && (!(hs = ext_new(e)) || ring_room(e, hs, d->nhist) < 0)) {
            if (no)
                eng_free(e, no, name_size(no->len));
            ext_free(e, hs);
            return -ENOMEM;
        }
        size_t rb = old ? rows_bytes(old) : 0;
        size_t opf = old ? rec_pf_bytes(old) : 0;
        size_t npf = d->meta ? (d->prefs_len ? PF_SZ(d->prefs_len) : 0) : opf;
        struct rec *nr = rec_alloc(e, d->dev_len, npf + rb, true);
        if (!nr) {
            if (no)
                eng_free(e, no, name_size(no->len));
            ext_free(e, hs);
            return -ENOMEM;
        }
        /* Phase 2: build and publish (as engine_set_prefs); nothing fails. */
        nr->owner = ow;
        nr->nrows = old ? old->nrows : 0;
        nr->dev_len = (uint8_t)d->dev_len;
        memcpy(nr->dev, d->dev, d->dev_len);
        if (d->meta) {
            nr->ext = (old ? (old->ext & ~REC_PREFS) : (uintptr_t)hs) |
                      (d->prefs_len ? REC_PREFS : 0);
            if (d->prefs_len) {
                uint32_t l = (uint32_t)d->prefs_len;
                memcpy(nr->dev + nr->dev_len, &l, sizeof l);
                memcpy(nr->dev + nr->dev_len + sizeof l, d->prefs, d->prefs_len);
            }
        } else if (old) {
            rec_header_from(nr, old);
        } else {
            nr->ext = (uintptr_t)hs;
        }
        if (!old)
            ring = hs;
        if (no)
            ntab_put(&e->owners, no);
        struct name *prev_owner = old ? old->owner : NULL;
        if (ow != prev_owner && ow)
            ow->refs++;
        if (old) {
            uint8_t *dst = (uint8_t *)rec_rows(nr);
            const struct row *w = rec_rows(old);
            for (uint32_t k = 0; k < old->nrows; k++, w = row_next(w))
                dst += ROW_SZ(row_copy(nr, dst, w)->uti_len);
            ix_set(&e->dix, di, dh, nr);
            const struct row *ow_ = rec_rows(old), *nw = rec_rows(nr);
            for (uint32_t k = 0; k < old->nrows;
                 k++, ow_ = row_next(ow_), nw = row_next(nw))
                ix_repoint(&e->bix, row_hash(e, ow_), ow_, nw);
            if (ow != prev_owner)
                name_unref(e, &e->owners, prev_owner);
            retire(e, old, rec_size(old->dev_len, opf + rb));
        } else {
            ix_insert(&e->dix, dh, nr);
            /* The analyzer loses nr in the index, whose slots hold it as a
             * tagged integer (slot_of), and calls it leaked here; retire or
             * engine_destroy frees it. */
            // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
            set_counter(&e->devices, e->devices + 1);
        }
    }
    struct ext *hs = ring;
    ENGINE_PANIC_IF(!hs); /* every record has its ring when hlen > 0 */
    int rc = 0;
    rd_lock(); /* hist_put's contract; the writer keeps the ring alive anyway */
    for (size_t i = 0; i < d->nhist && rc == 0; i++) {
        struct engine_hist h = d->hist[i];
        h.lsn = 0; /* appended as given: the key is set below */
        h.part = 0;
        rc = hist_put(e, hs, &h);
    }
    if (rc == 0 && d->hist_lsn) {
        ring_lock(hs);
        if (d->hist_lsn > hs->klsn ||
            (d->hist_lsn == hs->klsn && d->hist_part > hs->kpart)) {
            hs->klsn = d->hist_lsn;
            hs->kpart = d->hist_part;
        }
        ring_unlock(hs);
    }
    rd_unlock(e);
    publish_lsn(e, 0); /* no LSN of its own: only the counters */
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */

int engine_create(engine_t **out, const struct engine_config *cfg)
{
    struct engine_config dflt = {0};
    if (!out)
        return -EINVAL;
    if (!cfg)
        cfg = &dflt;
    if ((cfg->alloc.alloc == NULL) != (cfg->alloc.free == NULL))
        return -EINVAL;
    struct engine tmp = {0};
    tmp.a = cfg->alloc;
    tmp.limit = cfg->mem_limit;
    tmp.hlen = cfg->history_len;
    tmp.seed = cfg->hash_seed;
    if (!tmp.seed) {
        /* No syscall needed: the clock and this process's randomized
         * addresses, mixed. Not secret-grade, but unknown to a remote
         * client, which is what matters against flooding. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t mix[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec,
                           (uint64_t)(uintptr_t)&ts, (uint64_t)(uintptr_t)cfg};
        tmp.seed = XXH3_64bits(mix, sizeof mix) | 1;
    }
    XXH3_generateSecret_fromSeed(tmp.secret, tmp.seed);
    engine_t *e = eng_alloc(&tmp, sizeof *e, true);
    if (!e)
        return -ENOMEM;
    *e = tmp;
    e->bytes = sizeof *e;
    e->exp_state = EXP_NONE;
    size_t cap = cap_for(cfg->initial_devices);
    e->min_cap = cap;
    e->dix.rehash = rec_hash;
    e->bix.rehash = row_hash;
    e->dix.lines = rec_lines;
    e->bix.lines = row_lines;
    e->dix.cur = tab_new(e, cap, true);
    e->bix.cur = tab_new(e, cap, true);
    if (!e->dix.cur || !e->bix.cur) {
        if (e->dix.cur)
            eng_free(e, e->dix.cur, tab_bytes(cap));
        if (e->bix.cur)
            eng_free(e, e->bix.cur, tab_bytes(cap));
        if (e->a.free)
            e->a.free(e->a.ctx, e, sizeof *e);
        else
            free(e);
        return -ENOMEM;
    }
    *out = e;
    return 0;
}

void engine_destroy(engine_t *e)
{
    if (!e)
        return;
    ensure_online();
    /* Grace periods wait for every open read section: a caller in loop
     * mode closes its own for the waits below, or it waits for itself
     * (and leaves loop mode: the section was this engine's to keep). */
    engine_thread_loop_end(e);
    /* The batch still being filled is freed here after a grace period of
     * our own instead of going to call_rcu: liburcu's callback thread
     * sleeps ~10 ms between batches, and waiting for it made every destroy
     * take that long (a fuzzer destroys an engine per input). */
    struct retire *rb = retire_take(e);
    if (rb) {
        urcu_memb_synchronize_rcu();
        retire_cb(&rb->rcu);
    }
    /* Wait for this engine's own callbacks only, rather than
     * urcu_memb_barrier(), which waits for every engine's and hands a
     * completion between liburcu's threads in a way TSan cannot follow.
     * acquire: pairs with each callback's release, so their frees are done. */
    while (__atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    ENGINE_PANIC_IF(__atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE) != 0);
    struct tab *t = e->dix.cur;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->s[i] <= SLOT_TOMB)
            continue;
        struct rec *r = ptr_of(t->s[i]);
        struct ext *x = rec_ext(r);
        ext_free(e, x);
        eng_free(e, r, rec_bytes(r));
    }
    struct ntab *nts[2] = {&e->uris, &e->owners};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < nts[k]->cap; i++)
            if (nts[k]->v[i])
                eng_free(e, nts[k]->v[i], name_size(nts[k]->v[i]->len));
        eng_free(e, nts[k]->v, nts[k]->cap * sizeof(struct name *));
    }
    struct idx *xs[2] = {&e->dix, &e->bix};
    for (int k = 0; k < 2; k++) {
        eng_free(e, xs[k]->cur, tab_bytes(xs[k]->cur->cap));
        if (xs[k]->next)
            eng_free(e, xs[k]->next, tab_bytes(xs[k]->next->cap));
    }
    struct engine_alloc a = e->a;
    if (a.free)
        a.free(a.ctx, e, sizeof *e);
    else
        free(e);
}
