/*
 * buf.h — a growable byte buffer with big-endian put helpers.
 *
 * Owns: one heap block (p, cap) of which the first len bytes are written.
 * Used by every encoder of wire values (responses, events, PRINCIPAL_LIST,
 * key batches) and by the server's per-connection output queue.
 *
 * Invariants: len <= cap; p is NULL only while cap == 0. A failed grow
 * leaves the buffer exactly as it was and returns -ENOMEM (or -E2BIG when
 * the size would overflow), so an encoder can stop at the first error and
 * the caller can truncate back with buf_truncate().
 *
 * Threads: none of its own; a buffer belongs to one thread at a time.
 * Integers are written big-endian as the wire (docs/protocol.md) wants.
 */
#ifndef ICS_NET_BUF_H
#define ICS_NET_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct buf {
    uint8_t *p;
    size_t len, cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
void buf_free(struct buf *b);                 /* back to BUF_INIT */
static inline void buf_reset(struct buf *b) { b->len = 0; } /* keeps memory */
void buf_truncate(struct buf *b, size_t len); /* len <= b->len */

/* Makes room for n more bytes after len. 0, -ENOMEM or -E2BIG. */
int buf_reserve(struct buf *b, size_t n);
/* Reserves n bytes, advances len and returns where to write them (NULL on
 * failure, buffer unchanged). */
uint8_t *buf_extend(struct buf *b, size_t n);

int buf_append(struct buf *b, const void *p, size_t n);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u16(struct buf *b, uint16_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
/* str16: u16 length, then the bytes; -E2BIG if n > 65535. */
int buf_put_str16(struct buf *b, const void *p, size_t n);

/* Removes the first n bytes (n <= len), keeping the rest in order. */
void buf_consume(struct buf *b, size_t n);

/* Big-endian stores into raw memory (the caller owns the bounds). */
static inline void buf_be16(uint8_t *d, uint16_t v) { d[0] = (uint8_t)(v >> 8); d[1] = (uint8_t)v; }
static inline void buf_be32(uint8_t *d, uint32_t v)
{
    d[0] = (uint8_t)(v >> 24); d[1] = (uint8_t)(v >> 16);
    d[2] = (uint8_t)(v >> 8);  d[3] = (uint8_t)v;
}
static inline void buf_be64(uint8_t *d, uint64_t v)
{
    buf_be32(d, (uint32_t)(v >> 32));
    buf_be32(d + 4, (uint32_t)v);
}

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_BUF_H */
