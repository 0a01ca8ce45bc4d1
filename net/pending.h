/*
 * pending.h — the two-phase map table of Y.4462 10.1 (ICS-1 / ICS-2).
 *
 * Owns: every MAP_REQUEST waiting for the iot_sp it was routed to, keyed by
 * a 16-byte request ID from RAND_bytes (unguessable: knowing one ID tells
 * nothing of another). Only the routed iot_sp may take a request
 * (MAP_CONFIRM / MAP_REJECT); anyone else gets -ENOENT, exactly as for an
 * unknown ID, so IDs cannot be probed.
 *
 * Bounds: each principal may be the requester of at most max_per_principal
 * requests and the target of at most as many (default 1024 each): beyond
 * that pending_create says -EAGAIN (TMPFAIL). Requests expire ttl after
 * creation (default 10 min, configurable): the caller
 * runs pending_expire periodically and sends MAP_RESULT NOT_FOUND for each.
 * (The ttl is the table's; req->ttl_s is the row ttl the tpsp asked for.)
 *
 * Threads: any; one mutex (two-phase requests are rare next to inquiries).
 * Callbacks run without the mutex held, so they may call back in.
 * Not durable: a restart forgets pending requests (requesters retry).
 */
#ifndef ICS_NET_PENDING_H
#define ICS_NET_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PENDING_ID_LEN 16u
#define PENDING_DEFAULT_TTL_S 600u
#define PENDING_DEFAULT_MAX 1024u

/* One request, copied in and out whole (no pointers to share). */
struct pending_req {
    uint8_t tpsp[ENGINE_NAME_MAX];  uint16_t tpsp_len;   /* requester */
    uint8_t iot_sp[ENGINE_NAME_MAX]; uint16_t iot_sp_len; /* routed to */
    uint8_t serial[ENGINE_ID_MAX];  uint16_t serial_len;
    uint8_t uri[ENGINE_URI_MAX];    uint16_t uri_len;
    uint8_t uti[ENGINE_ID_MAX];     uint16_t uti_len;
    uint32_t ttl_s;                 /* row ttl asked for (MAP_REQUEST extras) */
    uint64_t created_us;            /* set by the caller: its clock */
    uint64_t expires_us;            /* set by pending_create */
};

struct pending_config {
    uint32_t ttl_s;                 /* 0 = PENDING_DEFAULT_TTL_S */
    uint32_t max_per_principal;     /* 0 = PENDING_DEFAULT_MAX */
};

typedef struct pending pending_t;

int  pending_create_table(pending_t **out, const struct pending_config *cfg);
void pending_destroy_table(pending_t *t);

/* Stores a copy of req and writes its new ID. -EINVAL (empty or oversized
 * name fields), -EAGAIN (a bound reached), -ENOMEM, -EIO (no randomness). */
int pending_create(pending_t *t, const struct pending_req *req,
                   uint8_t id_out[PENDING_ID_LEN]);

/* Removes and returns the request if iot_sp is the principal it was routed
 * to (and it has not expired by now_us; 0 = do not check); else -ENOENT. */
int pending_take(pending_t *t, const uint8_t id[PENDING_ID_LEN],
                 const void *iot_sp, size_t iot_sp_len, uint64_t now_us,
                 struct pending_req *out);

/* Whether request id is still open: created, neither taken nor expired by
 * now_us (0 = do not check the time). */
bool pending_is_open(pending_t *t, const uint8_t id[PENDING_ID_LEN], uint64_t now_us);

/* Removes every request with expires_us <= now_us and calls fn for each
 * (oldest first, without the lock). Returns the number expired. */
typedef void (*pending_expire_fn)(void *arg, const uint8_t id[PENDING_ID_LEN],
                                  const struct pending_req *req);
int pending_expire(pending_t *t, uint64_t now_us, pending_expire_fn fn, void *arg);

size_t pending_count(pending_t *t);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_PENDING_H */
