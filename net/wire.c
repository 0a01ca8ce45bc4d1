/*
 * wire.c — frame parser, request decoders and encoders (see wire.h).
 *
 * Every length read from the wire is checked against what remains of its
 * container before a byte of the field is touched; sums are done in
 * size_t/uint32_t wide enough that they cannot wrap (extlen + keylen is at
 * most 255 + 65535).
 */
#include "wire.h"

#include <errno.h>
#include <string.h>

int wire_parse_header(const uint8_t *p, size_t n, unsigned accept, uint32_t max_body,
                      struct wire_frame *f)
{
    if (n == 0)
        return 0;
    memset(f, 0, sizeof *f);
    f->magic = p[0];
    /* A wrong magic is known from the first byte: refuse it now rather
     * than wait for a header that an ASCII client ("version\r\n") may
     * never complete, so it gets an answer instead of a timeout. */
    if (f->magic < 0x80 || f->magic > 0x82 || !(accept & (1u << (f->magic - 0x80)))) {
        /* Whatever else it holds, a whole header's opcode and opaque are
         * echoed in the error, as wire-v1 echoes them in every response. */
        if (n >= WIRE_HDR_LEN) {
            f->opcode = p[1];
            f->opaque = wire_be32(p + 12);
        }
        return -EPROTO;
    }
    if (n < WIRE_HDR_LEN)
        return 0;
    f->opcode = p[1];
    f->keylen = wire_be16(p + 2);
    f->extlen = p[4];
    f->datatype = p[5];
    f->status = wire_be16(p + 6);
    f->bodylen = wire_be32(p + 8);
    f->opaque = wire_be32(p + 12);
    f->cas = wire_be64(p + 16);
    f->frame_len = (size_t)WIRE_HDR_LEN + f->bodylen;
    if (f->bodylen > max_body)
        return -EMSGSIZE;
    return 0;
}

int wire_parse(const uint8_t *p, size_t n, unsigned accept, struct wire_frame *f)
{
    int rc = wire_parse_header(p, n, accept, WIRE_MAX_BODY, f);
    if (rc < 0)
        return rc;
    if (n < WIRE_HDR_LEN || n < f->frame_len)
        return 0;
    const uint8_t *body = p + WIRE_HDR_LEN;
    if ((uint32_t)f->extlen + f->keylen > f->bodylen) {
        /* Lengths disagree: point nothing into the body; the frame as a
         * whole is still delimited by bodylen, so it can be skipped. */
        return -EINVAL;
    }
    f->extras = body;
    f->key = body + f->extlen;
    f->value = f->key + f->keylen;
    f->value_len = f->bodylen - f->extlen - f->keylen;
    /* Request fields "data type" and "reserved" must be 0 (responses and
     * events carry their status there). */
    if (f->datatype != 0 || (f->magic == WIRE_MAGIC_REQ && f->status != 0))
        return -EINVAL;
    return (int)f->frame_len;
}


/* --- field checks ----------------------------------------------------------- */

#define FAIL(rc, msg) do { *why = (msg); return (rc); } while (0)

static int check_id(size_t len, const char *what_empty, const char *what_long, const char **why)
{
    if (len == 0)
        FAIL(-EINVAL, what_empty);
    if (len > WIRE_ID_MAX)
        FAIL(-E2BIG, what_long);
    return 0;
}

static int check_uri(const uint8_t *p, size_t len, const char **why)
{
    if (len == 0)
        FAIL(-EINVAL, "empty service URI");
    if (len > WIRE_URI_MAX)
        FAIL(-E2BIG, "service URI longer than 1024 bytes");
    if (memchr(p, 0, len))
        FAIL(-EINVAL, "service URI contains NUL");
    return 0;
}

static int need_ext(const struct wire_frame *f, unsigned a, unsigned b, const char **why)
{
    if (f->extlen != a && f->extlen != b)
        FAIL(-EINVAL, "wrong extras length");
    return 0;
}

static int need_no_key(const struct wire_frame *f, const char **why)
{
    if (f->keylen)
        FAIL(-EINVAL, "unexpected key");
    return 0;
}

static int need_no_value(const struct wire_frame *f, const char **why)
{
    if (f->value_len)
        FAIL(-EINVAL, "unexpected value");
    return 0;
}

static int key_dev(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    r->key = f->key;
    r->key_len = f->keylen;
    return check_id(f->keylen, "empty device ID", "device ID longer than 128 bytes", why);
}

static int key_uri(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    r->key = f->key;
    r->key_len = f->keylen;
    r->uri = f->key;
    r->uri_len = f->keylen;
    return check_uri(f->key, f->keylen, why);
}

static int key_reqid(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    if (f->keylen != WIRE_REQID_LEN)
        FAIL(-EINVAL, "request ID must be 16 bytes");
    r->key = f->key;
    r->key_len = f->keylen;
    return 0;
}

static void opt_u32(const struct wire_frame *f, struct wire_req *r)
{
    if (f->extlen == 4) {
        r->u32 = wire_be32(f->extras);
        r->has_u32 = 1;
    }
}

/* value = str16 URI, str16 UTI [, str16 owner if allow_owner] */
static int val_uri_uti(const struct wire_frame *f, struct wire_req *r, int allow_owner,
                       const char **why)
{
    struct wire_cur c = {f->value, f->value_len};
    if (wire_get_str16(&c, &r->uri, &r->uri_len) < 0)
        FAIL(-EINVAL, "service URI overruns the value");
    int rc = check_uri(r->uri, r->uri_len, why);
    if (rc < 0)
        return rc;
    if (wire_get_str16(&c, &r->uti, &r->uti_len) < 0)
        FAIL(-EINVAL, "UTI overruns the value");
    if ((rc = check_id(r->uti_len, "empty UTI", "UTI longer than 128 bytes", why)) < 0)
        return rc;
    if (allow_owner && c.n) {
        if (wire_get_str16(&c, &r->owner, &r->owner_len) < 0)
            FAIL(-EINVAL, "owner overruns the value");
        if (r->owner_len > WIRE_ID_MAX)
            FAIL(-E2BIG, "owner longer than 128 bytes");
    }
    if (c.n)
        FAIL(-EINVAL, "trailing bytes after the value's fields");
    return 0;
}

static int val_uti(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    struct wire_cur c = {f->value, f->value_len};
    if (wire_get_str16(&c, &r->uti, &r->uti_len) < 0)
        FAIL(-EINVAL, "UTI overruns the value");
    int rc = check_id(r->uti_len, "empty UTI", "UTI longer than 128 bytes", why);
    if (rc < 0)
        return rc;
    if (c.n)
        FAIL(-EINVAL, "trailing bytes after the UTI");
    return 0;
}

static int val_str16_only(const struct wire_frame *f, const uint8_t **s, uint16_t *len,
                          const char **why)
{
    struct wire_cur c = {f->value, f->value_len};
    if (wire_get_str16(&c, s, len) < 0)
        FAIL(-EINVAL, "field overruns the value");
    if (c.n)
        FAIL(-EINVAL, "trailing bytes after the field");
    return 0;
}

static int sasl_plain(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    /* authzid NUL authcid NUL secret (RFC 4616). */
    const uint8_t *v = f->value, *end = v + f->value_len;
    const uint8_t *n1 = memchr(v, 0, f->value_len);
    if (!n1)
        FAIL(-EINVAL, "SASL PLAIN: expected authzid NUL authcid NUL secret");
    const uint8_t *n2 = memchr(n1 + 1, 0, (size_t)(end - n1 - 1));
    if (!n2)
        FAIL(-EINVAL, "SASL PLAIN: expected authzid NUL authcid NUL secret");
    size_t zl = (size_t)(n1 - v), cl = (size_t)(n2 - n1 - 1), sl = (size_t)(end - n2 - 1);
    if (zl > WIRE_ID_MAX || cl > WIRE_ID_MAX)
        FAIL(-E2BIG, "SASL PLAIN: name longer than 128 bytes");
    if (cl == 0)
        FAIL(-EINVAL, "SASL PLAIN: empty authcid");
    if (sl > UINT16_MAX)
        FAIL(-E2BIG, "SASL PLAIN: secret too long");
    r->authzid = v, r->authzid_len = (uint16_t)zl;
    r->authcid = n1 + 1, r->authcid_len = (uint16_t)cl;
    r->secret = n2 + 1, r->secret_len = (uint16_t)sl;
    return 0;
}

/* memcached's binary opcodes (protocol_binary.h): 0x00-0x1e, SASL 0x20-0x22,
 * GATK/GATKQ 0x23-0x24, the range/vbucket/TAP block 0x30-0x48. */
static int memcached_known(uint8_t op)
{
    return op <= 0x1e || (op >= 0x20 && op <= 0x24) || (op >= 0x30 && op <= 0x48);
}

int wire_decode(const struct wire_frame *f, struct wire_req *r, const char **why)
{
    int rc;
    memset(r, 0, sizeof *r);
    *why = "";
    switch (f->opcode) {
    case WIRE_OP_GET: case WIRE_OP_GETQ: case WIRE_OP_GETK: case WIRE_OP_GETKQ:
    case WIRE_OP_INQUIRE_DEVICE: case WIRE_OP_DEMAP_DEVICE: case WIRE_OP_PREFS_GET:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = need_no_value(f, why)))
            return rc;
        return key_dev(f, r, why);
    case WIRE_OP_NOOP: case WIRE_OP_VERSION: case WIRE_OP_QUIT: case WIRE_OP_QUITQ:
    case WIRE_OP_SASL_LIST_MECHS: case WIRE_OP_SNAPSHOT: case WIRE_OP_WHOAMI:
    case WIRE_OP_PRINCIPAL_LIST:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = need_no_key(f, why)) ||
            (rc = need_no_value(f, why)))
            return rc;
        return 0;
    case WIRE_OP_STAT:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = need_no_value(f, why)))
            return rc;
        /* Group names are short words; bounding them keeps every decoded
         * key within the largest field the spec allows (found by fuzzing). */
        if (f->keylen > WIRE_ID_MAX)
            FAIL(-EINVAL, "STAT group name longer than 128 bytes");
        r->key = f->key, r->key_len = f->keylen;
        return 0;
    case WIRE_OP_SASL_AUTH: case WIRE_OP_SASL_STEP:
        /* wire-v1 answers SASL_AUTH with OK or AUTH_ERROR (-EPERM): a
         * malformed exchange is a failed authentication, not a bad
         * argument; why still says what was wrong. */
        if (need_ext(f, 0, 0, why))
            return -EPERM;
        if (f->keylen == 0 || f->keylen > 32)
            FAIL(-EPERM, "SASL mechanism name missing or too long");
        r->key = f->key, r->key_len = f->keylen;
        r->text = f->value, r->text_len = f->value_len;
        if (f->keylen == 5 && memcmp(f->key, "PLAIN", 5) == 0)
            return sasl_plain(f, r, why) < 0 ? -EPERM : 0;
        return 0; /* the handler answers AUTH_ERROR for an unknown mechanism */
    case WIRE_OP_MAP: case WIRE_OP_MAP_REQUEST:
        if ((rc = need_ext(f, 0, 4, why)))
            return rc;
        r->key = f->key, r->key_len = f->keylen;
        if ((rc = check_id(f->keylen,
                           f->opcode == WIRE_OP_MAP ? "empty device ID" : "empty device serial",
                           f->opcode == WIRE_OP_MAP ? "device ID longer than 128 bytes"
                                                    : "device serial longer than 128 bytes",
                           why)))
            return rc;
        opt_u32(f, r);
        return val_uri_uti(f, r, f->opcode == WIRE_OP_MAP, why);
    case WIRE_OP_MAP_CONFIRM:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = key_reqid(f, r, why)))
            return rc;
    {
        uint16_t l = 0;
        if ((rc = val_str16_only(f, &r->text, &l, why)))
            return rc;
        r->text_len = l;
        return check_id(l, "empty device ID", "device ID longer than 128 bytes", why);
    }
    case WIRE_OP_MAP_REJECT: {
        if ((rc = need_ext(f, 0, 0, why)) || (rc = key_reqid(f, r, why)))
            return rc;
        uint16_t l = 0;
        if ((rc = val_str16_only(f, &r->text, &l, why)))
            return rc;
        r->text_len = l;
        return 0;
    }
    case WIRE_OP_DEMAP:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = key_dev(f, r, why)))
            return rc;
        return val_uri_uti(f, r, 0, why);
    case WIRE_OP_DEMAP_BINDING: case WIRE_OP_INQUIRE_BINDING:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = key_uri(f, r, why)))
            return rc;
        return val_uti(f, r, why);
    case WIRE_OP_DEMAP_SERVICE:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = need_no_value(f, why)))
            return rc;
        return key_uri(f, r, why);
    case WIRE_OP_WATCH:
        if ((rc = need_ext(f, 4, 4, why)) || (rc = need_no_key(f, why)) ||
            (rc = need_no_value(f, why)))
            return rc;
        opt_u32(f, r);
        if (r->u32 & ~7u)
            FAIL(-EINVAL, "unknown bits in the event mask");
        return 0;
    case WIRE_OP_EXPORT:
        if ((rc = need_ext(f, 0, 4, why)) || (rc = need_no_value(f, why)))
            return rc;
        if (f->keylen != 0 && f->keylen != 8)
            FAIL(-EINVAL, "EXPORT cursor must be a u64 key");
        if (f->keylen == 8)
            r->u64 = wire_be64(f->key);
        opt_u32(f, r);
        return 0;
    case WIRE_OP_KEY_ISSUE:
        if ((rc = need_ext(f, 2, 2, why)) || (rc = need_no_key(f, why)) ||
            (rc = need_no_value(f, why)))
            return rc;
        r->u32 = wire_be16(f->extras);
        r->has_u32 = 1;
        if (r->u32 < 1 || r->u32 > 1000)
            FAIL(-EINVAL, "key count must be 1..1000");
        return 0;
    case WIRE_OP_KEY_VALIDATE:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = need_no_key(f, why)))
            return rc;
        r->text = f->value, r->text_len = f->value_len;
        return 0;
    case WIRE_OP_HISTORY:
        if ((rc = need_ext(f, 0, 4, why)) || (rc = need_no_value(f, why)))
            return rc;
        opt_u32(f, r);
        return key_dev(f, r, why);
    case WIRE_OP_PREFS_SET:
        if ((rc = need_ext(f, 0, 0, why)) || (rc = key_dev(f, r, why)))
            return rc;
        r->text = f->value, r->text_len = f->value_len;
        return 0;
    case WIRE_OP_PRINCIPAL_SET: case WIRE_OP_PRINCIPAL_DEL:
        if ((rc = need_ext(f, 0, 0, why)))
            return rc;
        if (f->opcode == WIRE_OP_PRINCIPAL_DEL && (rc = need_no_value(f, why)))
            return rc;
        r->key = f->key, r->key_len = f->keylen;
        r->text = f->value, r->text_len = f->value_len;
        return check_id(f->keylen, "empty principal name", "principal name longer than 128 bytes",
                        why);
    default:
        if (memcached_known(f->opcode))
            FAIL(-EOPNOTSUPP, "not supported by ICS");
        FAIL(-ENOSYS, "unknown command");
    }
}

const char *wire_op_name(uint8_t op)
{
    switch (op) {
    case WIRE_OP_GET: return "GET";
    case WIRE_OP_GETQ: return "GETQ";
    case WIRE_OP_GETK: return "GETK";
    case WIRE_OP_GETKQ: return "GETKQ";
    case WIRE_OP_QUIT: return "QUIT";
    case WIRE_OP_QUITQ: return "QUITQ";
    case WIRE_OP_NOOP: return "NOOP";
    case WIRE_OP_VERSION: return "VERSION";
    case WIRE_OP_STAT: return "STAT";
    case WIRE_OP_SASL_LIST_MECHS: return "SASL_LIST_MECHS";
    case WIRE_OP_SASL_AUTH: return "SASL_AUTH";
    case WIRE_OP_SASL_STEP: return "SASL_STEP";
    case WIRE_OP_MAP: return "MAP";
    case WIRE_OP_MAP_REQUEST: return "MAP_REQUEST";
    case WIRE_OP_MAP_CONFIRM: return "MAP_CONFIRM";
    case WIRE_OP_MAP_REJECT: return "MAP_REJECT";
    case WIRE_OP_DEMAP: return "DEMAP";
    case WIRE_OP_DEMAP_DEVICE: return "DEMAP_DEVICE";
    case WIRE_OP_DEMAP_BINDING: return "DEMAP_BINDING";
    case WIRE_OP_DEMAP_SERVICE: return "DEMAP_SERVICE";
    case WIRE_OP_INQUIRE_DEVICE: return "INQUIRE_DEVICE";
    case WIRE_OP_INQUIRE_BINDING: return "INQUIRE_BINDING";
    case WIRE_OP_WATCH: return "WATCH";
    case WIRE_OP_EXPORT: return "EXPORT";
    case WIRE_OP_KEY_ISSUE: return "KEY_ISSUE";
    case WIRE_OP_KEY_VALIDATE: return "KEY_VALIDATE";
    case WIRE_OP_HISTORY: return "HISTORY";
    case WIRE_OP_SNAPSHOT: return "SNAPSHOT";
    case WIRE_OP_WHOAMI: return "WHOAMI";
    case WIRE_OP_PREFS_SET: return "PREFS_SET";
    case WIRE_OP_PREFS_GET: return "PREFS_GET";
    case WIRE_OP_PRINCIPAL_SET: return "PRINCIPAL_SET";
    case WIRE_OP_PRINCIPAL_DEL: return "PRINCIPAL_DEL";
    case WIRE_OP_PRINCIPAL_LIST: return "PRINCIPAL_LIST";
    default: return NULL;
    }
}

/* --- encoders ------------------------------------------------------------ */

long wire_begin(struct buf *b, uint8_t magic, uint8_t opcode, uint16_t status,
                uint32_t opaque, uint64_t cas)
{
    size_t off = b->len;
    uint8_t *h = buf_extend(b, WIRE_HDR_LEN);
    if (!h)
        return -ENOMEM;
    memset(h, 0, WIRE_HDR_LEN);
    h[0] = magic;
    h[1] = opcode;
    buf_be16(h + 6, status);
    buf_be32(h + 12, opaque);
    buf_be64(h + 16, cas);
    return (long)off;
}

int wire_end(struct buf *b, long off, uint8_t extlen, uint16_t keylen)
{
    uint8_t *h = b->p + off;
    size_t body = b->len - (size_t)off - WIRE_HDR_LEN;
    if (body > UINT32_MAX || (size_t)extlen + keylen > body)
        return -E2BIG;
    buf_be16(h + 2, keylen);
    h[4] = extlen;
    buf_be32(h + 8, (uint32_t)body);
    return 0;
}

int wire_put(struct buf *b, uint8_t magic, uint8_t opcode, uint16_t status,
             uint32_t opaque, uint64_t cas, const void *ext, uint8_t extlen,
             const void *key, uint16_t keylen, const void *val, uint32_t vlen)
{
    size_t start = b->len;
    int rc = buf_reserve(b, WIRE_HDR_LEN + (size_t)extlen + keylen + vlen);
    if (rc < 0)
        return rc;
    long off = wire_begin(b, magic, opcode, status, opaque, cas);
    if (off < 0 || buf_append(b, ext, extlen) || buf_append(b, key, keylen) ||
        buf_append(b, val, vlen)) {
        buf_truncate(b, start);
        return -ENOMEM;
    }
    return wire_end(b, off, extlen, keylen);
}
