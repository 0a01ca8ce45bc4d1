/*
 * mailbox.c — per-principal bounded FIFO of event frames (see mailbox.h).
 *
 * One chained hash of boxes keyed by name (FNV-1a); each box is a singly
 * linked FIFO of frames. A box is freed when it empties, so principals
 * that never miss an event cost nothing.
 */
#include "mailbox.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

struct frame {
    struct frame *next;
    size_t len;
    uint8_t data[];
};

struct box {
    struct box *next;
    struct frame *head, *tail;
    uint32_t n;
    bool draining;   /* a drain holds the frames: do not free the box */
    bool cleared;    /* cleared during that drain: drop what it gives back */
    uint16_t len;
    uint8_t name[ENGINE_NAME_MAX];
};

#define NBOXES 1024u

struct mailbox {
    pthread_mutex_t mu;
    struct box *boxes[NBOXES];
    uint32_t max;
    struct mailbox_stats st;
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
};

static uint32_t name_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static struct box **box_slot(mailbox_t *mb, const void *name, size_t len)
{
    struct box **b = &mb->boxes[name_hash(name, len) % NBOXES];
    while (*b && !((*b)->len == len && memcmp((*b)->name, name, len) == 0))
        b = &(*b)->next;
    return b;
}

int mailbox_create(mailbox_t **out, const struct mailbox_config *cfg)
{
    mailbox_t *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return -ENOMEM;
    pthread_mutex_init(&mb->mu, NULL);
    mb->max = cfg && cfg->max_frames ? cfg->max_frames : MAILBOX_DEFAULT_MAX;
    if (cfg) {
        mb->log = cfg->log;
        mb->log_ctx = cfg->log_ctx;
    }
    *out = mb;
    return 0;
}

static size_t free_frames(struct frame *f)
{
    size_t n = 0;
    while (f) {
        struct frame *nx = f->next;
        free(f);
        f = nx;
        n++;
    }
    return n;
}

void mailbox_destroy(mailbox_t *mb)
{
    if (!mb)
        return;
    for (size_t i = 0; i < NBOXES; i++)
        for (struct box *b = mb->boxes[i], *nx; b; b = nx) {
            nx = b->next;
            free_frames(b->head);
            free(b);
        }
    pthread_mutex_destroy(&mb->mu);
    free(mb);
}

int mailbox_push(mailbox_t *mb, const void *name, size_t len, const void *frame, size_t flen)
{
    if (!name || len == 0 || len > ENGINE_NAME_MAX || !frame || flen == 0)
        return -EINVAL;
    struct frame *f = malloc(sizeof(*f) + flen);
    if (!f)
        return -ENOMEM;
    f->next = NULL;
    f->len = flen;
    memcpy(f->data, frame, flen);

    pthread_mutex_lock(&mb->mu);
    struct box **s = box_slot(mb, name, len);
    if (!*s) {
        struct box *b = calloc(1, sizeof(*b));
        if (!b) {
            pthread_mutex_unlock(&mb->mu);
            free(f);
            return -ENOMEM;
        }
        memcpy(b->name, name, len);
        b->len = (uint16_t)len;
        *s = b;
    }
    struct box *b = *s;
    if (b->n >= mb->max) {
        uint64_t refused = ++mb->st.refused;
        pthread_mutex_unlock(&mb->mu);
        free(f);
        if (mb->log) {
            char line[256];
            snprintf(line, sizeof(line),
                     "mailbox of '%.*s' full (%u frames): event refused (%llu refused in all)",
                     (int)len, (const char *)name, mb->max, (unsigned long long)refused);
            mb->log(mb->log_ctx, STORE_LOG_WARN, line);
        }
        return -ENOSPC;
    }
    if (b->tail)
        b->tail->next = f;
    else
        b->head = f;
    b->tail = f;
    b->n++;
    mb->st.queued++;
    mb->st.pushed++;
    pthread_mutex_unlock(&mb->mu);
    return 0;
}

int mailbox_drain(mailbox_t *mb, const void *name, size_t len, mailbox_fn fn, void *arg)
{
    pthread_mutex_lock(&mb->mu);
    struct box *b = *box_slot(mb, name, len);
    if (!b || b->draining) { /* nothing, or another drain is delivering */
        pthread_mutex_unlock(&mb->mu);
        return 0;
    }
    /* Take the whole queue so fn runs without the lock; the box stays,
     * marked, so pushes meanwhile queue behind what we may give back. */
    struct frame *list = b->head;
    uint32_t held = b->n;
    b->head = b->tail = NULL;
    b->n = 0;
    b->draining = true;
    pthread_mutex_unlock(&mb->mu);

    int taken = 0, stop = 0;
    struct frame *f = list;
    while (f) {
        stop = fn(arg, f->data, f->len);
        if (stop)
            break;
        struct frame *nx = f->next;
        free(f);
        f = nx;
        taken++;
    }

    struct frame *drop = NULL;
    pthread_mutex_lock(&mb->mu);
    mb->st.delivered += (uint64_t)taken;
    mb->st.queued -= (uint64_t)taken;
    if (f && b->cleared) {
        drop = f;
        mb->st.queued -= held - (uint32_t)taken;
    } else if (f) {
        /* Put the rest back ahead of frames pushed meanwhile (the box can
         * then exceed max by those; it refuses new ones until it drains). */
        struct frame *last = f;
        while (last->next)
            last = last->next;
        last->next = b->head;
        if (!b->head)
            b->tail = last;
        b->head = f;
        b->n += held - (uint32_t)taken;
    }
    b->draining = false;
    b->cleared = false;
    if (b->n == 0) {
        struct box **s = box_slot(mb, name, len);
        *s = b->next;
        free(b);
    }
    pthread_mutex_unlock(&mb->mu);
    free_frames(drop);
    return f ? stop : taken;
}

size_t mailbox_pending(mailbox_t *mb, const void *name, size_t len)
{
    pthread_mutex_lock(&mb->mu);
    struct box *b = *box_slot(mb, name, len);
    size_t n = b ? b->n : 0;
    pthread_mutex_unlock(&mb->mu);
    return n;
}

size_t mailbox_clear(mailbox_t *mb, const void *name, size_t len)
{
    pthread_mutex_lock(&mb->mu);
    struct box **s = box_slot(mb, name, len);
    struct box *b = *s;
    if (!b) {
        pthread_mutex_unlock(&mb->mu);
        return 0;
    }
    struct frame *list = b->head;
    mb->st.queued -= b->n;
    b->head = b->tail = NULL;
    b->n = 0;
    if (b->draining) {
        b->cleared = true; /* the drain frees the box and drops its rest */
    } else {
        *s = b->next;
        free(b);
    }
    pthread_mutex_unlock(&mb->mu);
    return free_frames(list);
}

void mailbox_stats(mailbox_t *mb, struct mailbox_stats *st)
{
    pthread_mutex_lock(&mb->mu);
    *st = mb->st;
    pthread_mutex_unlock(&mb->mu);
}
