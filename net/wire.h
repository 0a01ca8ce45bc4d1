/*
 * wire.h — the ICS wire protocol v1 (docs/protocol.md, the contract is
 * /work/shared/spec/wire-v1.md): constants, a frame parser, one decoder
 * for every request body and the response/event encoders.
 *
 * Everything here is pure: bytes in, a frame / "need more" / an error out.
 * No sockets, no allocation (encoders write into a caller's struct buf),
 * no globals, so the libFuzzer driver is a few lines. A parser never reads
 * a byte past the length it was given; every pointer it returns points
 * into the caller's bytes and lives as long as they do.
 *
 * Errors are negative errno values, mapped to wire statuses by errors.h:
 *   -EPROTO   framing lost (wrong magic): answer EINVAL, then close
 *   -EMSGSIZE body over WIRE_MAX_BODY: answer TOO_LARGE, then close
 *   -EINVAL   malformed but framed (the frame can be skipped)
 *   -E2BIG    a field over its limit (TOO_LARGE, the frame is skipped)
 * Threads: none; every function is reentrant.
 */
#ifndef ICS_NET_WIRE_H
#define ICS_NET_WIRE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WIRE_HDR_LEN   24u
#define WIRE_MAX_BODY  (1u << 20)   /* 1 MiB */
#define WIRE_ID_MAX    128u         /* device ID, UTI, serial, principal */
#define WIRE_URI_MAX   1024u
#define WIRE_REQID_LEN 16u

enum wire_magic { WIRE_MAGIC_REQ = 0x80, WIRE_MAGIC_RES = 0x81, WIRE_MAGIC_EVT = 0x82 };

enum wire_op {
    /* 3.1 memcached-compatible */
    WIRE_OP_GET = 0x00, WIRE_OP_SET = 0x01, WIRE_OP_ADD = 0x02, WIRE_OP_REPLACE = 0x03,
    WIRE_OP_DELETE = 0x04, WIRE_OP_INCREMENT = 0x05, WIRE_OP_DECREMENT = 0x06,
    WIRE_OP_QUIT = 0x07, WIRE_OP_FLUSH = 0x08, WIRE_OP_GETQ = 0x09, WIRE_OP_NOOP = 0x0A,
    WIRE_OP_VERSION = 0x0B, WIRE_OP_GETK = 0x0C, WIRE_OP_GETKQ = 0x0D,
    WIRE_OP_APPEND = 0x0E, WIRE_OP_PREPEND = 0x0F, WIRE_OP_STAT = 0x10,
    WIRE_OP_QUITQ = 0x17, WIRE_OP_SASL_LIST_MECHS = 0x20, WIRE_OP_SASL_AUTH = 0x21,
    WIRE_OP_SASL_STEP = 0x22,
    /* 3.2 identity correlation */
    WIRE_OP_MAP = 0xC0, WIRE_OP_MAP_REQUEST = 0xC1, WIRE_OP_MAP_CONFIRM = 0xC2,
    WIRE_OP_MAP_REJECT = 0xC3, WIRE_OP_DEMAP = 0xC4, WIRE_OP_DEMAP_DEVICE = 0xC5,
    WIRE_OP_DEMAP_BINDING = 0xC6, WIRE_OP_DEMAP_SERVICE = 0xC7,
    WIRE_OP_INQUIRE_DEVICE = 0xC8, WIRE_OP_INQUIRE_BINDING = 0xC9,
    WIRE_OP_WATCH = 0xCA, WIRE_OP_EXPORT = 0xCB,
    /* 3.3 identity authority and transparency */
    WIRE_OP_KEY_ISSUE = 0xD0, WIRE_OP_KEY_VALIDATE = 0xD1, WIRE_OP_HISTORY = 0xD2,
    WIRE_OP_SNAPSHOT = 0xD3, WIRE_OP_WHOAMI = 0xD4, WIRE_OP_PREFS_SET = 0xD5,
    WIRE_OP_PREFS_GET = 0xD6, WIRE_OP_PRINCIPAL_SET = 0xD7, WIRE_OP_PRINCIPAL_DEL = 0xD8,
    WIRE_OP_PRINCIPAL_LIST = 0xD9,
};

enum wire_event { WIRE_EV_MAP_PENDING = 0xE0, WIRE_EV_MAP_RESULT = 0xE1, WIRE_EV_DEMAPPED = 0xE2 };
enum wire_watch_mask { WIRE_W_MAP_PENDING = 1, WIRE_W_MAP_RESULT = 2, WIRE_W_DEMAPPED = 4 };

enum wire_status {
    WIRE_S_OK = 0x0000, WIRE_S_NOT_FOUND = 0x0001, WIRE_S_EXISTS = 0x0002,
    WIRE_S_TOO_LARGE = 0x0003, WIRE_S_EINVAL = 0x0004, WIRE_S_AUTH_ERROR = 0x0020,
    WIRE_S_ACCESS_DENIED = 0x0024, WIRE_S_UNKNOWN_COMMAND = 0x0081,
    WIRE_S_ENOMEM = 0x0082, WIRE_S_NOT_SUPPORTED = 0x0083, WIRE_S_INTERNAL = 0x0084,
    WIRE_S_TMPFAIL = 0x0086, WIRE_S_KEY_ROTATED = 0x00C1, WIRE_S_BAD_SIGNATURE = 0x00C2,
};

/* One frame as it sits in the caller's bytes. */
struct wire_frame {
    uint8_t magic, opcode, extlen, datatype;
    uint16_t keylen, status;      /* status: the "reserved" field of a request */
    uint32_t bodylen, opaque;
    uint64_t cas;
    const uint8_t *extras, *key, *value;
    uint32_t value_len;
    size_t frame_len;             /* WIRE_HDR_LEN + bodylen */
};

/* Reads only the 24-byte header. With n < WIRE_HDR_LEN it checks just the
 * magic (0, or -EPROTO at once) and sets only f->magic. Fills f's header
 * fields and frame_len. 0, -EPROTO (magic not in accept: a bitmask of
 * 1 << (magic - 0x80)) or -EMSGSIZE (bodylen > max_body). */
int wire_parse_header(const uint8_t *p, size_t n, unsigned accept, uint32_t max_body,
                      struct wire_frame *f);

/* Parses one whole frame from p[0..n). Returns the frame length (> 0) with
 * f filled, 0 if more bytes are needed (then, if n >= 24, f's header fields
 * and frame_len are valid so the caller knows how much to wait for),
 * -EPROTO / -EMSGSIZE as above, or -EINVAL with f fully filled for a framed
 * but malformed frame (data type != 0, extras + key > body): skip
 * f->frame_len bytes and answer EINVAL. */
int wire_parse(const uint8_t *p, size_t n, unsigned accept, struct wire_frame *f);
static inline int wire_parse_request(const uint8_t *p, size_t n, struct wire_frame *f)
{
    return wire_parse(p, n, 1u << 0, f);
}

/* A decoded request body: pointers into the frame. Which fields a given
 * opcode fills is listed at wire_decode() in wire.c and docs/protocol.md. */
struct wire_req {
    const uint8_t *key;   uint16_t key_len;   /* device ID, serial, URI, name, request ID */
    const uint8_t *uri;   uint16_t uri_len;
    const uint8_t *uti;   uint16_t uti_len;
    const uint8_t *owner; uint16_t owner_len; /* MAP's optional owner */
    const uint8_t *text;  uint32_t text_len;  /* device ID (CONFIRM), reason, raw value */
    const uint8_t *authzid, *authcid, *secret; /* SASL PLAIN */
    uint16_t authzid_len, authcid_len, secret_len;
    uint32_t u32;         /* ttl, watch mask, max rows / entries, key count */
    uint64_t u64;         /* EXPORT cursor */
    uint8_t has_u32;
};

/* Decodes the body of request f by its opcode. 0, -EINVAL / -E2BIG with
 * *why (static ASCII) saying what is wrong, or -ENOSYS for an opcode
 * outside the protocol. Known memcached opcodes that ICS does not serve
 * return -EOPNOTSUPP. Never reads outside f's extras/key/value. */
int wire_decode(const struct wire_frame *f, struct wire_req *r, const char **why);

/* Name of an opcode ("INQUIRE_DEVICE") or NULL if unknown. */
const char *wire_op_name(uint8_t op);
/* Quiet GET variants send nothing on NOT_FOUND. */
static inline int wire_op_quiet(uint8_t op)
{
    return op == WIRE_OP_GETQ || op == WIRE_OP_GETKQ || op == WIRE_OP_QUITQ;
}

/* --- encoders ------------------------------------------------------------ */

/* Starts a frame in b: writes a header with zero lengths and returns its
 * offset (>= 0) or -ENOMEM. Append extras, key, value; then wire_end()
 * patches extlen, keylen and the body length. */
long wire_begin(struct buf *b, uint8_t magic, uint8_t opcode, uint16_t status,
                uint32_t opaque, uint64_t cas);
int wire_end(struct buf *b, long off, uint8_t extlen, uint16_t keylen);

/* One whole frame: header, extras, key, value. 0 or -ENOMEM/-E2BIG. */
int wire_put(struct buf *b, uint8_t magic, uint8_t opcode, uint16_t status,
             uint32_t opaque, uint64_t cas, const void *ext, uint8_t extlen,
             const void *key, uint16_t keylen, const void *val, uint32_t vlen);

/* A request frame (clients, tests, load generator). */
static inline int wire_put_request(struct buf *b, uint8_t op, uint32_t opaque, uint64_t cas,
                                   const void *ext, uint8_t extlen, const void *key,
                                   uint16_t keylen, const void *val, uint32_t vlen)
{
    return wire_put(b, WIRE_MAGIC_REQ, op, 0, opaque, cas, ext, extlen, key, keylen, val, vlen);
}

/* Reads a u16/u32/u64 big-endian (caller checked the bounds). */
static inline uint16_t wire_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t wire_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t wire_be64(const uint8_t *p)
{
    return (uint64_t)wire_be32(p) << 32 | wire_be32(p + 4);
}

/* A cursor over a value for str16 fields: wire_get_str16 returns 0 or
 * -EINVAL when the field overruns its container. */
struct wire_cur { const uint8_t *p; size_t n; };
/* Inline: prefs_allows walks a blob with these on every tpsp inquiry. */
static inline int wire_get_bytes(struct wire_cur *c, const uint8_t **s, size_t len)
{
    if (c->n < len)
        return -EINVAL;
    *s = c->p;
    c->p += len, c->n -= len;
    return 0;
}
static inline int wire_get_u8(struct wire_cur *c, uint8_t *v)
{
    if (c->n < 1)
        return -EINVAL;
    *v = c->p[0];
    c->p++, c->n--;
    return 0;
}
static inline int wire_get_u16(struct wire_cur *c, uint16_t *v)
{
    if (c->n < 2)
        return -EINVAL;
    *v = wire_be16(c->p);
    c->p += 2, c->n -= 2;
    return 0;
}
static inline int wire_get_u32(struct wire_cur *c, uint32_t *v)
{
    if (c->n < 4)
        return -EINVAL;
    *v = wire_be32(c->p);
    c->p += 4, c->n -= 4;
    return 0;
}
static inline int wire_get_u64(struct wire_cur *c, uint64_t *v)
{
    if (c->n < 8)
        return -EINVAL;
    *v = wire_be64(c->p);
    c->p += 8, c->n -= 8;
    return 0;
}
/* On error the cursor stays where it was. */
static inline int wire_get_str16(struct wire_cur *c, const uint8_t **s, uint16_t *len)
{
    if (c->n < 2 || (size_t)wire_be16(c->p) > c->n - 2)
        return -EINVAL;
    *len = wire_be16(c->p);
    *s = c->p + 2;
    c->p += 2 + (size_t)*len, c->n -= 2 + (size_t)*len;
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_WIRE_H */
