/*
 * mailbox.h — events kept for a principal that has no WATCH connection.
 *
 * wire-v1 3.2 delivers MAP_PENDING and MAP_RESULT at least once: an event
 * raised while its recipient is not watching is kept here, per principal,
 * as the encoded 0x82 frame, and sent when a WATCH starts (mailbox_drain).
 *
 * Bound: at most max_frames per principal (default 1024). When a mailbox
 * is full a new frame is REFUSED (-ENOSPC), never an old one dropped:
 * dropping the oldest would silently break at-least-once for an event the
 * recipient was promised first. Each refusal counts in mailbox_stats and
 * logs one warning line; the requester's side still ends (pending expiry).
 *
 * Threads: any; one mutex. Not durable (a restart empties mailboxes).
 */
#ifndef ICS_NET_MAILBOX_H
#define ICS_NET_MAILBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MAILBOX_DEFAULT_MAX 1024u

struct mailbox_config {
    uint32_t max_frames;   /* per principal; 0 = MAILBOX_DEFAULT_MAX */
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
};

struct mailbox_stats {
    uint64_t queued;       /* frames held now, all principals */
    uint64_t pushed;       /* frames accepted since start */
    uint64_t delivered;    /* frames handed to a drain callback that took them */
    uint64_t refused;      /* frames refused because a mailbox was full */
};

typedef struct mailbox mailbox_t;

int  mailbox_create(mailbox_t **out, const struct mailbox_config *cfg);
void mailbox_destroy(mailbox_t *mb);

/* Queues a copy of frame for name. 0, -ENOSPC (full: refused and counted),
 * -EINVAL (empty name or frame), -ENOMEM. */
int mailbox_push(mailbox_t *mb, const void *name, size_t len,
                 const void *frame, size_t flen);

/* Hands name's frames to fn in the order they were pushed, without the
 * lock held. fn returns 0 when it took the frame (it is then freed), or
 * nonzero to stop: that frame and the ones after it stay queued, ahead of
 * any pushed meanwhile. Returns the number taken, or fn's nonzero value if
 * it stopped before the mailbox was empty. */
typedef int (*mailbox_fn)(void *arg, const uint8_t *frame, size_t flen);
int mailbox_drain(mailbox_t *mb, const void *name, size_t len, mailbox_fn fn, void *arg);

/* Frames queued for name. */
size_t mailbox_pending(mailbox_t *mb, const void *name, size_t len);

/* Drops name's mailbox (principal deleted). Returns frames dropped. */
size_t mailbox_clear(mailbox_t *mb, const void *name, size_t len);

void mailbox_stats(mailbox_t *mb, struct mailbox_stats *st);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_MAILBOX_H */
