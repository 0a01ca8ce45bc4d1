/*
 * buf.c — growable byte buffer (see buf.h). Grows by doubling so appends
 * are amortised O(1); never shrinks on its own (a connection's buffers
 * stay warm), buf_free gives the memory back.
 */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf_free(struct buf *b)
{
    free(b->p);
    buf_init(b);
}

void buf_truncate(struct buf *b, size_t len)
{
    if (len < b->len)
        b->len = len;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return -E2BIG;
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

uint8_t *buf_extend(struct buf *b, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return NULL;
    uint8_t *d = b->p + b->len;
    b->len += n;
    return d;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    uint8_t *d = buf_extend(b, n);
    if (!d)
        return -ENOMEM;
    memcpy(d, p, n);
    return 0;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
    uint8_t *d = buf_extend(b, 1);
    if (!d)
        return -ENOMEM;
    d[0] = v;
    return 0;
}

int buf_put_u16(struct buf *b, uint16_t v)
{
    uint8_t *d = buf_extend(b, 2);
    if (!d)
        return -ENOMEM;
    buf_be16(d, v);
    return 0;
}

int buf_put_u32(struct buf *b, uint32_t v)
{
    uint8_t *d = buf_extend(b, 4);
    if (!d)
        return -ENOMEM;
    buf_be32(d, v);
    return 0;
}

int buf_put_u64(struct buf *b, uint64_t v)
{
    uint8_t *d = buf_extend(b, 8);
    if (!d)
        return -ENOMEM;
    buf_be64(d, v);
    return 0;
}

int buf_put_str16(struct buf *b, const void *p, size_t n)
{
    if (n > UINT16_MAX)
        return -E2BIG;
    /* Reserve both parts first so a failure leaves nothing half-written. */
    int rc = buf_reserve(b, 2 + n);
    if (rc < 0)
        return rc;
    buf_be16(b->p + b->len, (uint16_t)n);
    if (n)
        memcpy(b->p + b->len + 2, p, n);
    b->len += 2 + n;
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}
