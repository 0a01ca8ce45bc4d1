/*
 * keys.h — the identity authority of OASIS COEL: signed batches of fresh
 * keys (wire-v1 KEY_ISSUE / KEY_VALIDATE).
 *
 * A batch is   u64 unix time, u8 key id, u16 n, n x 16-byte RFC 4122 v4
 * UUID, 32-byte HMAC-SHA256 over all bytes before it under the signing key
 * of that id: exactly 11 + 16 n + 32 bytes, n in 1..1000.
 *
 * Owns: the current signing key and a bounded list of retired ones
 * (KEYS_RETIRED_MAX, oldest forgotten first), each a 32-byte random secret
 * with a u8 id. Rotation (on demand by an admin, or on a schedule through
 * keys_maybe_rotate) is durable: one store aux record of kind KEYS_AUX_KIND
 * per new key, so a restart keeps batches of the current key valid, and
 * the keys are encrypted at rest when the store is. Replay is idempotent:
 * a record whose key is already known changes nothing.
 *
 * Validation: 0 if the batch verifies under the current key; -ESTALE
 * (KEY_ROTATED) if under a remembered retired key; -EBADMSG
 * (BAD_SIGNATURE) if it does not verify (tamper, forgery, unknown or
 * forgotten id); -EINVAL if malformed. MACs compare in constant time.
 *
 * Threads: any. A mutex guards the key set and is held only to copy the
 * 32-byte key out; HMAC and RAND_bytes run outside it.
 */
#ifndef ICS_NET_KEYS_H
#define ICS_NET_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEYS_AUX_KIND 2
#define KEYS_RETIRED_MAX 16u
#define KEYS_SECRET_LEN 32u
#define KEYS_UUID_LEN 16u
#define KEYS_MAC_LEN 32u
#define KEYS_HEADER_LEN 11u     /* u64 time, u8 id, u16 n */
#define KEYS_COUNT_MAX 1000u

struct keys_config {
    uint32_t rotate_interval_s; /* schedule for keys_maybe_rotate; 0 = never */
    uint32_t retired_max;       /* retired ids remembered; 0 = KEYS_RETIRED_MAX */
};

typedef struct keys keys_t;

int  keys_create(keys_t **out, const struct keys_config *cfg);
void keys_destroy(keys_t *k);

/* Registers KEYS_AUX_KIND: after store_open, before store_recover. */
int keys_register_aux(keys_t *k, store_t *store);

/* Makes a new random signing key current (the old one retires), durable
 * through the store. now: unix seconds (recorded as the key's birth).
 * Returns 0 when accepted and done(arg, status, lsn) follows from a store
 * thread; done == NULL waits until durable and returns the status;
 * store == NULL applies in memory at once. */
int keys_rotate(keys_t *k, store_t *store, uint64_t now, store_done_fn done, void *arg);

/* Rotates (as keys_rotate with done == NULL) if there is no key yet, or the
 * current one is older than rotate_interval_s. 1 rotated, 0 not, <0 error. */
int keys_maybe_rotate(keys_t *k, store_t *store, uint64_t now);

/* Appends a signed batch of count fresh UUIDs, stamped now (unix seconds).
 * -EINVAL (count not 1..1000), -EAGAIN (no signing key yet), -ENOMEM,
 * -EIO (no randomness). */
int keys_issue(keys_t *k, unsigned count, uint64_t now, struct buf *out);

/* 0, -ESTALE, -EBADMSG or -EINVAL as above. Pure apart from reading keys. */
int keys_validate(keys_t *k, const void *batch, size_t len);

/* Structural check only (length, n): what a fuzzer can reach without keys. */
int keys_batch_check(const void *batch, size_t len, unsigned *n_out);

/* Current key id, or -ENOENT if none. */
int keys_current_id(keys_t *k);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_KEYS_H */
