/*
 * pending.c — the two-phase map table (see pending.h).
 *
 * Entries sit in a chained hash keyed by their random ID (the first 8 ID
 * bytes are already uniform, so they are the hash) and on a list in
 * creation order, which pending_expire walks. Per-principal counts live in
 * a second small chained hash keyed by name (FNV-1a), a node existing only
 * while its count is nonzero.
 */
#include "pending.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

struct entry {
    struct entry *hnext;           /* hash chain */
    struct entry *prev, *next;     /* creation order */
    uint8_t id[PENDING_ID_LEN];
    struct pending_req req;
};

struct counter {
    struct counter *next;
    uint32_t n;
    uint16_t len;
    uint8_t name[ENGINE_NAME_MAX];
};

#define NCOUNTERS 1024u

struct pending {
    pthread_mutex_t mu;
    struct entry **buckets;
    size_t nbuckets, count;
    struct entry *head, *tail;
    struct counter *counters[NCOUNTERS];
    uint64_t ttl_us;
    uint32_t max;
};

static uint64_t id_hash(const uint8_t id[PENDING_ID_LEN])
{
    uint64_t h;
    memcpy(&h, id, sizeof(h));
    return h;
}

static uint32_t name_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static struct counter **counter_slot(pending_t *t, const uint8_t *name, size_t len)
{
    struct counter **c = &t->counters[name_hash(name, len) % NCOUNTERS];
    while (*c && !((*c)->len == len && memcmp((*c)->name, name, len) == 0))
        c = &(*c)->next;
    return c;
}

static uint32_t counter_get(pending_t *t, const uint8_t *name, size_t len)
{
    struct counter *c = *counter_slot(t, name, len);
    return c ? c->n : 0;
}

/* Only after counter_get said there is room, so a failed allocation can
 * be reported before anything changed. */
static int counter_add(pending_t *t, const uint8_t *name, size_t len, int d)
{
    struct counter **s = counter_slot(t, name, len);
    if (!*s) {
        if (d < 0)
            return 0;
        struct counter *c = calloc(1, sizeof(*c));
        if (!c)
            return -ENOMEM;
        memcpy(c->name, name, len);
        c->len = (uint16_t)len;
        *s = c;
    }
    struct counter *c = *s;
    c->n = (uint32_t)((int64_t)c->n + d);
    if (c->n == 0) {
        *s = c->next;
        free(c);
    }
    return 0;
}

int pending_create_table(pending_t **out, const struct pending_config *cfg)
{
    pending_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets) {
        free(t);
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->ttl_us = (uint64_t)(cfg && cfg->ttl_s ? cfg->ttl_s : PENDING_DEFAULT_TTL_S) * 1000000u;
    t->max = cfg && cfg->max_per_principal ? cfg->max_per_principal : PENDING_DEFAULT_MAX;
    *out = t;
    return 0;
}

void pending_destroy_table(pending_t *t)
{
    if (!t)
        return;
    for (struct entry *e = t->head, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    for (size_t i = 0; i < NCOUNTERS; i++)
        for (struct counter *c = t->counters[i], *n; c; c = n) {
            n = c->next;
            free(c);
        }
    free(t->buckets);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void grow(pending_t *t)
{
    size_t nb = t->nbuckets * 2;
    struct entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nbuckets; i++)
        for (struct entry *e = t->buckets[i], *n; e; e = n) {
            n = e->hnext;
            size_t j = id_hash(e->id) & (nb - 1);
            e->hnext = b[j];
            b[j] = e;
        }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

static struct entry **lookup(pending_t *t, const uint8_t id[PENDING_ID_LEN])
{
    struct entry **e = &t->buckets[id_hash(id) & (t->nbuckets - 1)];
    while (*e && memcmp((*e)->id, id, PENDING_ID_LEN) != 0)
        e = &(*e)->hnext;
    return e;
}

/* Unlinks e from hash, list and counts. Caller holds mu. */
static void unlink_entry(pending_t *t, struct entry *e)
{
    struct entry **h = lookup(t, e->id);
    *h = e->hnext;
    if (e->prev)
        e->prev->next = e->next;
    else
        t->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->tail = e->prev;
    counter_add(t, e->req.tpsp, e->req.tpsp_len, -1);
    counter_add(t, e->req.iot_sp, e->req.iot_sp_len, -1);
    t->count--;
}

static bool name_ok(uint16_t len)
{
    return len >= 1 && len <= ENGINE_NAME_MAX;
}

int pending_create(pending_t *t, const struct pending_req *req, uint8_t id_out[PENDING_ID_LEN])
{
    if (!name_ok(req->tpsp_len) || !name_ok(req->iot_sp_len) || req->serial_len == 0 ||
        req->serial_len > ENGINE_ID_MAX || req->uri_len == 0 || req->uri_len > ENGINE_URI_MAX ||
        req->uti_len == 0 || req->uti_len > ENGINE_ID_MAX)
        return -EINVAL;
    struct entry *e = malloc(sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->req = *req;
    e->req.expires_us = req->created_us + t->ttl_us;

    pthread_mutex_lock(&t->mu);
    if (counter_get(t, req->tpsp, req->tpsp_len) >= t->max ||
        counter_get(t, req->iot_sp, req->iot_sp_len) >= t->max) {
        pthread_mutex_unlock(&t->mu);
        free(e);
        return -EAGAIN;
    }
    /* A collision of 128 random bits does not happen; the loop is for a
     * broken generator, which must not alias two requests. */
    do {
        if (!RAND_bytes(e->id, PENDING_ID_LEN)) {
            pthread_mutex_unlock(&t->mu);
            free(e);
            return -EIO;
        }
    } while (*lookup(t, e->id));
    if (counter_add(t, req->tpsp, req->tpsp_len, 1) < 0) {
        pthread_mutex_unlock(&t->mu);
        free(e);
        return -ENOMEM;
    }
    if (counter_add(t, req->iot_sp, req->iot_sp_len, 1) < 0) {
        counter_add(t, req->tpsp, req->tpsp_len, -1);
        pthread_mutex_unlock(&t->mu);
        free(e);
        return -ENOMEM;
    }
    struct entry **h = &t->buckets[id_hash(e->id) & (t->nbuckets - 1)];
    e->hnext = *h;
    *h = e;
    e->next = NULL;
    e->prev = t->tail;
    if (t->tail)
        t->tail->next = e;
    else
        t->head = e;
    t->tail = e;
    t->count++;
    if (t->count > t->nbuckets)
        grow(t);
    memcpy(id_out, e->id, PENDING_ID_LEN);
    pthread_mutex_unlock(&t->mu);
    return 0;
}

int pending_take(pending_t *t, const uint8_t id[PENDING_ID_LEN], const void *iot_sp,
                 size_t iot_sp_len, uint64_t now_us, struct pending_req *out)
{
    pthread_mutex_lock(&t->mu);
    struct entry *e = *lookup(t, id);
    if (!e || e->req.iot_sp_len != iot_sp_len ||
        memcmp(e->req.iot_sp, iot_sp, iot_sp_len) != 0 ||
        (now_us && e->req.expires_us <= now_us)) {
        pthread_mutex_unlock(&t->mu);
        return -ENOENT;
    }
    unlink_entry(t, e);
    pthread_mutex_unlock(&t->mu);
    if (out)
        *out = e->req;
    free(e);
    return 0;
}

bool pending_is_open(pending_t *t, const uint8_t id[PENDING_ID_LEN], uint64_t now_us)
{
    pthread_mutex_lock(&t->mu);
    const struct entry *e = *lookup(t, id);
    bool open = e && (!now_us || e->req.expires_us > now_us);
    pthread_mutex_unlock(&t->mu);
    return open;
}

int pending_expire(pending_t *t, uint64_t now_us, pending_expire_fn fn, void *arg)
{
    struct entry *gone = NULL, **tail = &gone;
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (struct entry *e = t->head, *nx; e; e = nx) {
        nx = e->next;
        if (e->req.expires_us <= now_us) {
            unlink_entry(t, e);
            e->next = NULL;
            *tail = e;
            tail = &e->next;
            n++;
        }
    }
    pthread_mutex_unlock(&t->mu);
    for (struct entry *e = gone, *nx; e; e = nx) {
        nx = e->next;
        if (fn)
            fn(arg, e->id, &e->req);
        free(e);
    }
    return n;
}

size_t pending_count(pending_t *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->count;
    pthread_mutex_unlock(&t->mu);
    return n;
}
