/*
 * keys.c — signed key batches of the COEL identity authority (see keys.h).
 *
 * Aux record (kind KEYS_AUX_KIND): u8 version = 1, u8 op = 1 (new key),
 * u8 id, u64 born (unix seconds), 32-byte secret. Applying it makes that
 * key current and retires the previous one; a record for a key already
 * known (same id and secret, current or retired) changes nothing, which
 * makes replay after a fuzzy snapshot idempotent. A snapshot dumps the
 * retired keys oldest first and then the current one, so replaying the
 * dump rebuilds the same list.
 *
 * Key ids count up modulo 256. An id that comes round again while still
 * remembered makes the older key with that id forgotten (its batches then
 * fail as BAD_SIGNATURE): with KEYS_RETIRED_MAX 16 that takes 240 more
 * rotations, by which time the old batches are long dead.
 */
#include "keys.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "waiter.h"

#define REC_VERSION 1
#define REC_KEY 1
#define REC_LEN (3 + 8 + KEYS_SECRET_LEN)

struct key {
    uint8_t id;
    uint64_t born;
    uint8_t secret[KEYS_SECRET_LEN];
};

struct keys {
    pthread_mutex_t mu;         /* the key set */
    pthread_mutex_t rotate_mu;  /* one rotation at a time: picks the next id */
    bool has_current;
    struct key current;
    struct key *retired;        /* oldest first */
    uint32_t nretired, retired_max;
    uint32_t interval;
};

int keys_create(keys_t **out, const struct keys_config *cfg)
{
    keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->retired_max = cfg && cfg->retired_max ? cfg->retired_max : KEYS_RETIRED_MAX;
    k->interval = cfg ? cfg->rotate_interval_s : 0;
    k->retired = calloc(k->retired_max, sizeof(*k->retired));
    if (!k->retired) {
        free(k);
        return -ENOMEM;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_mutex_init(&k->rotate_mu, NULL);
    *out = k;
    return 0;
}

void keys_destroy(keys_t *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k->retired, k->retired_max * sizeof(*k->retired));
    OPENSSL_cleanse(&k->current, sizeof(k->current));
    free(k->retired);
    pthread_mutex_destroy(&k->mu);
    pthread_mutex_destroy(&k->rotate_mu);
    free(k);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void encode_rec(uint8_t rec[REC_LEN], const struct key *key)
{
    rec[0] = REC_VERSION;
    rec[1] = REC_KEY;
    rec[2] = key->id;
    buf_be64(rec + 3, key->born);
    memcpy(rec + 11, key->secret, KEYS_SECRET_LEN);
}

static bool same_key(const struct key *a, const struct key *b)
{
    return a->id == b->id && CRYPTO_memcmp(a->secret, b->secret, KEYS_SECRET_LEN) == 0;
}

static void forget_retired(keys_t *k, uint32_t i)
{
    OPENSSL_cleanse(&k->retired[i], sizeof(k->retired[i]));
    memmove(&k->retired[i], &k->retired[i + 1], (k->nretired - i - 1) * sizeof(k->retired[0]));
    k->nretired--;
}

static int aux_apply(void *ctx, const void *data, size_t n, uint64_t lsn)
{
    keys_t *k = ctx;
    const uint8_t *r = data;
    struct key key;
    (void)lsn;
    if (n != REC_LEN || r[0] != REC_VERSION || r[1] != REC_KEY)
        return -EINVAL;
    key.id = r[2];
    key.born = be64(r + 3);
    memcpy(key.secret, r + 11, KEYS_SECRET_LEN);

    pthread_mutex_lock(&k->mu);
    bool known = k->has_current && same_key(&k->current, &key);
    for (uint32_t i = 0; !known && i < k->nretired; i++)
        known = same_key(&k->retired[i], &key);
    if (!known) {
        if (k->has_current) {
            if (k->nretired == k->retired_max)
                forget_retired(k, 0);
            k->retired[k->nretired++] = k->current;
        }
        for (uint32_t i = 0; i < k->nretired;) {
            if (k->retired[i].id == key.id)
                forget_retired(k, i);
            else
                i++;
        }
        k->current = key;
        k->has_current = true;
    }
    pthread_mutex_unlock(&k->mu);
    OPENSSL_cleanse(&key, sizeof(key));
    return 0;
}

static int aux_dump(void *ctx, int (*emit)(void *ectx, const void *p, size_t n), void *ectx)
{
    keys_t *k = ctx;
    uint8_t rec[REC_LEN];
    int rc = 0;
    pthread_mutex_lock(&k->mu);
    for (uint32_t i = 0; i < k->nretired && rc == 0; i++) {
        encode_rec(rec, &k->retired[i]);
        rc = emit(ectx, rec, sizeof(rec));
    }
    if (rc == 0 && k->has_current) {
        encode_rec(rec, &k->current);
        rc = emit(ectx, rec, sizeof(rec));
    }
    pthread_mutex_unlock(&k->mu);
    OPENSSL_cleanse(rec, sizeof(rec));
    return rc;
}

static const struct store_aux_ops aux_ops = {aux_apply, aux_dump};

int keys_register_aux(keys_t *k, store_t *store)
{
    return store_register_aux(store, KEYS_AUX_KIND, &aux_ops, k);
}

int keys_rotate(keys_t *k, store_t *store, uint64_t now, store_done_fn done, void *arg)
{
    struct key key;
    uint8_t rec[REC_LEN];
    int rc;

    pthread_mutex_lock(&k->rotate_mu);
    pthread_mutex_lock(&k->mu);
    key.id = k->has_current ? (uint8_t)(k->current.id + 1) : 1;
    pthread_mutex_unlock(&k->mu);
    key.born = now;
    if (!RAND_bytes(key.secret, sizeof(key.secret))) {
        pthread_mutex_unlock(&k->rotate_mu);
        return -EIO;
    }
    encode_rec(rec, &key);
    OPENSSL_cleanse(&key, sizeof(key));

    struct store_waiter w = STORE_WAITER_INIT;
    if (!store) {
        rc = aux_apply(k, rec, sizeof(rec), 0);
        if (rc == 0 && done)
            done(arg, 0, 0);
    } else {
        /* The store applies the record in its writer lane before
         * store_aux returns, so the next rotation sees the new id. */
        rc = store_aux(store, KEYS_AUX_KIND, rec, sizeof(rec), done ? done : store_waiter_done,
                       done ? arg : &w);
        if (rc > 0)
            rc = 0;
    }
    pthread_mutex_unlock(&k->rotate_mu);
    OPENSSL_cleanse(rec, sizeof(rec));
    if (rc < 0 || !store || done)
        return rc;
    return store_waiter_wait(&w);
}

int keys_maybe_rotate(keys_t *k, store_t *store, uint64_t now)
{
    pthread_mutex_lock(&k->mu);
    bool due = !k->has_current ||
               (k->interval && now >= k->current.born + k->interval);
    pthread_mutex_unlock(&k->mu);
    if (!due)
        return 0;
    int rc = keys_rotate(k, store, now, NULL, NULL);
    return rc < 0 ? rc : 1;
}

int keys_current_id(keys_t *k)
{
    pthread_mutex_lock(&k->mu);
    int id = k->has_current ? k->current.id : -ENOENT;
    pthread_mutex_unlock(&k->mu);
    return id;
}

static int mac(const uint8_t secret[KEYS_SECRET_LEN], const uint8_t *p, size_t n,
               uint8_t out[KEYS_MAC_LEN])
{
    unsigned olen = 0;
    if (!HMAC(EVP_sha256(), secret, KEYS_SECRET_LEN, p, n, out, &olen) || olen != KEYS_MAC_LEN)
        return -EIO;
    return 0;
}

int keys_issue(keys_t *k, unsigned count, uint64_t now, struct buf *out)
{
    uint8_t secret[KEYS_SECRET_LEN];
    uint8_t id;
    if (count < 1 || count > KEYS_COUNT_MAX)
        return -EINVAL;
    pthread_mutex_lock(&k->mu);
    if (!k->has_current) {
        pthread_mutex_unlock(&k->mu);
        return -EAGAIN;
    }
    id = k->current.id;
    memcpy(secret, k->current.secret, sizeof(secret));
    pthread_mutex_unlock(&k->mu);

    size_t start = out->len;
    size_t body = KEYS_HEADER_LEN + (size_t)count * KEYS_UUID_LEN;
    uint8_t *b = buf_extend(out, body + KEYS_MAC_LEN);
    if (!b) {
        OPENSSL_cleanse(secret, sizeof(secret));
        return -ENOMEM;
    }
    buf_be64(b, now);
    b[8] = id;
    buf_be16(b + 9, (uint16_t)count);
    uint8_t *u = b + KEYS_HEADER_LEN;
    int rc = RAND_bytes(u, (size_t)count * KEYS_UUID_LEN) ? 0 : -EIO;
    for (unsigned i = 0; rc == 0 && i < count; i++, u += KEYS_UUID_LEN) {
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* variant RFC 4122 */
    }
    if (rc == 0)
        rc = mac(secret, b, body, b + body);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc < 0)
        buf_truncate(out, start);
    return rc;
}

int keys_batch_check(const void *batch, size_t len, unsigned *n_out)
{
    const uint8_t *b = batch;
    if (!b || len < KEYS_HEADER_LEN + KEYS_UUID_LEN + KEYS_MAC_LEN)
        return -EINVAL;
    unsigned n = (unsigned)(b[9] << 8 | b[10]);
    if (n < 1 || n > KEYS_COUNT_MAX ||
        len != KEYS_HEADER_LEN + (size_t)n * KEYS_UUID_LEN + KEYS_MAC_LEN)
        return -EINVAL;
    if (n_out)
        *n_out = n;
    return 0;
}

int keys_validate(keys_t *k, const void *batch, size_t len)
{
    const uint8_t *b = batch;
    uint8_t secret[KEYS_SECRET_LEN], want[KEYS_MAC_LEN];
    int found = 0; /* 1 current, 2 retired */
    int rc = keys_batch_check(batch, len, NULL);
    if (rc < 0)
        return rc;

    pthread_mutex_lock(&k->mu);
    if (k->has_current && k->current.id == b[8]) {
        memcpy(secret, k->current.secret, sizeof(secret));
        found = 1;
    } else {
        for (uint32_t i = 0; i < k->nretired; i++)
            if (k->retired[i].id == b[8]) {
                memcpy(secret, k->retired[i].secret, sizeof(secret));
                found = 2;
                break;
            }
    }
    pthread_mutex_unlock(&k->mu);
    if (!found)
        return -EBADMSG;

    size_t body = len - KEYS_MAC_LEN;
    rc = mac(secret, b, body, want);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc < 0)
        return rc;
    if (CRYPTO_memcmp(want, b + body, KEYS_MAC_LEN) != 0)
        return -EBADMSG;
    return found == 1 ? 0 : -ESTALE;
}
