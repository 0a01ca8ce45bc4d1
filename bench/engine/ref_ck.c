/*
 * ref_ck.c — Concurrency Kit's ck_ht (SPMC: one writer, lock-free readers)
 * holding the same dual index as the engine, for bench_engine. Written in
 * C because ck's headers are C. Keys are copied into owned memory so the
 * resident-memory comparison is fair.
 */
#include "ref_ck.h"

#include <ck_ht.h>
#include <stdlib.h>
#include <string.h>

static void *ck_m(size_t n) { return malloc(n); }
static void *ck_r(void *p, size_t o, size_t n, bool d)
{
    (void)o;
    (void)d;
    return realloc(p, n);
}
static void ck_f(void *p, size_t n, bool d)
{
    (void)n;
    (void)d;
    free(p);
}
static struct ck_malloc ck_alloc = {ck_m, ck_r, ck_f};

struct ref_ck {
    ck_ht_t dev;  /* device ID -> struct ref_ck_dev * */
    ck_ht_t bind; /* URI || UTI -> struct ref_ck_dev * */
};

struct ref_ck *ref_ck_new(size_t hint)
{
    struct ref_ck *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (!ck_ht_init(&r->dev, CK_HT_MODE_BYTESTRING, NULL, &ck_alloc, hint, 42) ||
        !ck_ht_init(&r->bind, CK_HT_MODE_BYTESTRING, NULL, &ck_alloc, hint, 43)) {
        free(r);
        return NULL;
    }
    return r;
}

static void *get(ck_ht_t *t, const void *k, size_t n)
{
    ck_ht_entry_t e;
    ck_ht_hash_t h;
    ck_ht_hash(&h, t, k, (uint16_t)n);
    ck_ht_entry_key_set(&e, k, (uint16_t)n);
    return ck_ht_get_spmc(t, h, &e) ? ck_ht_entry_value(&e) : NULL;
}

static int put(ck_ht_t *t, void *key_owned, size_t n, void *v)
{
    ck_ht_entry_t e;
    ck_ht_hash_t h;
    ck_ht_hash(&h, t, key_owned, (uint16_t)n);
    ck_ht_entry_set(&e, h, key_owned, (uint16_t)n, v);
    return ck_ht_put_spmc(t, h, &e) ? 0 : -1;
}

struct ref_ck_dev *ref_ck_dev_get(struct ref_ck *r, const void *dev, size_t n)
{
    return get(&r->dev, dev, n);
}

struct ref_ck_dev *ref_ck_bind_get(struct ref_ck *r, const void *key, size_t n)
{
    return get(&r->bind, key, n);
}

int ref_ck_add(struct ref_ck *r, const void *dev, size_t dev_len,
               const void *bkey, size_t bkey_len, uint16_t uri, const void *uti,
               size_t uti_len, uint32_t exp, uint64_t lsn)
{
    struct ref_ck_dev *d = get(&r->dev, dev, dev_len);
    if (!d) {
        d = calloc(1, sizeof *d + dev_len);
        if (!d)
            return -1;
        memcpy(d->id, dev, dev_len);
        d->id_len = (uint8_t)dev_len;
        if (put(&r->dev, d->id, dev_len, d) != 0)
            return -1;
    }
    struct ref_ck_row *rows = realloc(d->rows, (d->n + 1) * sizeof *rows);
    if (!rows)
        return -1;
    d->rows = rows;
    rows[d->n].lsn = lsn;
    rows[d->n].exp = exp;
    rows[d->n].uri = uri;
    memcpy(rows[d->n].uti, uti, uti_len);
    d->n++;
    void *k = malloc(bkey_len);
    if (!k)
        return -1;
    memcpy(k, bkey, bkey_len);
    return put(&r->bind, k, bkey_len, d);
}

void ref_ck_free(struct ref_ck *r)
{
    ck_ht_iterator_t it = CK_HT_ITERATOR_INITIALIZER;
    ck_ht_entry_t *e;
    while (ck_ht_next(&r->bind, &it, &e))
        free(ck_ht_entry_key(e));
    ck_ht_iterator_init(&it);
    while (ck_ht_next(&r->dev, &it, &e)) {
        struct ref_ck_dev *d = ck_ht_entry_value(e);
        free(d->rows);
        free(d);
    }
    ck_ht_destroy(&r->dev);
    ck_ht_destroy(&r->bind);
    free(r);
}
