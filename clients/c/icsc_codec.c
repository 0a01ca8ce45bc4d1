/*
 * icsc_codec.c — the client's pure wire-v1 codec: frame header encode and
 * decode, a bounds-checked value reader, and structural validation of each
 * response/event value. No sockets, no allocation: fuzz_client_decode feeds
 * it arbitrary bytes.
 */
#include "icsc.h"

#include <errno.h>
#include <string.h>

static uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

int icsc_decode_frame(const uint8_t *buf, size_t len, size_t max_body, icsc_frame *f)
{
    if (len < 1)
        return 0;
    /* Reject a bad magic on its first byte: waiting for 24 bytes of a
     * stream that is not ours could stall a caller until its timeout. */
    if (buf[0] != ICSC_MAGIC_RES && buf[0] != ICSC_MAGIC_EVT)
        return -EPROTO;
    if (len < ICSC_HDR_LEN)
        return 0;
    uint16_t klen = be16(buf + 2);
    uint8_t elen = buf[4];
    uint32_t blen = be32(buf + 8);
    if (buf[5] != 0)
        return -EPROTO;
    if ((uint64_t)klen + elen > blen)
        return -EPROTO;
    if (blen > max_body)
        return -EMSGSIZE;
    if (len - ICSC_HDR_LEN < blen)
        return 0;
    f->magic = buf[0];
    f->opcode = buf[1];
    f->status = be16(buf + 6);
    f->opaque = be32(buf + 12);
    f->cas = be64(buf + 16);
    f->extras = buf + ICSC_HDR_LEN;
    f->extras_len = elen;
    f->key = f->extras + elen;
    f->key_len = klen;
    f->value = f->key + klen;
    f->value_len = blen - elen - klen;
    return (int)(ICSC_HDR_LEN + blen);
}

void icsc_encode_header(uint8_t out[ICSC_HDR_LEN], uint8_t magic, uint8_t opcode,
                        uint16_t key_len, uint8_t extras_len, uint16_t status,
                        uint32_t body_len, uint32_t opaque, uint64_t cas)
{
    out[0] = magic;
    out[1] = opcode;
    out[2] = (uint8_t)(key_len >> 8);
    out[3] = (uint8_t)key_len;
    out[4] = extras_len;
    out[5] = 0;
    out[6] = (uint8_t)(status >> 8);
    out[7] = (uint8_t)status;
    for (int i = 0; i < 4; i++) {
        out[8 + i] = (uint8_t)(body_len >> (24 - 8 * i));
        out[12 + i] = (uint8_t)(opaque >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++)
        out[16 + i] = (uint8_t)(cas >> (56 - 8 * i));
}

void icsc_rd_init(icsc_rd *r, const void *p, size_t n)
{
    r->p = p;
    r->n = n;
    r->err = 0;
}

int icsc_rd_bytes(icsc_rd *r, size_t n, const uint8_t **p)
{
    if (r->err || r->n < n) {
        r->err = -EPROTO;
        return -EPROTO;
    }
    if (p)
        *p = r->p;
    r->p += n;
    r->n -= n;
    return 0;
}

int icsc_rd_u8(icsc_rd *r, uint8_t *v)
{
    const uint8_t *p;
    if (icsc_rd_bytes(r, 1, &p))
        return -EPROTO;
    *v = p[0];
    return 0;
}

int icsc_rd_u16(icsc_rd *r, uint16_t *v)
{
    const uint8_t *p;
    if (icsc_rd_bytes(r, 2, &p))
        return -EPROTO;
    *v = be16(p);
    return 0;
}

int icsc_rd_u32(icsc_rd *r, uint32_t *v)
{
    const uint8_t *p;
    if (icsc_rd_bytes(r, 4, &p))
        return -EPROTO;
    *v = be32(p);
    return 0;
}

int icsc_rd_u64(icsc_rd *r, uint64_t *v)
{
    const uint8_t *p;
    if (icsc_rd_bytes(r, 8, &p))
        return -EPROTO;
    *v = be64(p);
    return 0;
}

int icsc_rd_str16(icsc_rd *r, const uint8_t **p, size_t *len)
{
    uint16_t n;
    if (icsc_rd_u16(r, &n) || icsc_rd_bytes(r, n, p))
        return -EPROTO;
    *len = n;
    return 0;
}

static int skip_str16(icsc_rd *r, int count)
{
    const uint8_t *p;
    size_t n;
    for (int i = 0; i < count; i++)
        if (icsc_rd_str16(r, &p, &n))
            return -EPROTO;
    return 0;
}

/* Element counts come from the peer: each loop below consumes at least one
 * byte per element, so a huge n fails on overrun instead of looping long. */
static int validate_rows(icsc_rd *r, int with_device)
{
    uint32_t n, exp;
    if (icsc_rd_u32(r, &n))
        return -EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        if (with_device && skip_str16(r, 1))
            return -EPROTO;
        if (skip_str16(r, 2) || icsc_rd_u32(r, &exp))
            return -EPROTO;
    }
    return 0;
}

int icsc_validate_value(uint8_t opcode, int is_event, const uint8_t *v, size_t n)
{
    icsc_rd r;
    icsc_rd_init(&r, v, n);
    if (is_event) {
        switch (opcode) {
        case ICSC_EV_MAP_PENDING: return skip_str16(&r, 3);
        case ICSC_EV_MAP_RESULT: return skip_str16(&r, 1);
        case ICSC_EV_DEMAPPED: return skip_str16(&r, 2);
        default: return -EPROTO;
        }
    }
    switch (opcode) {
    case ICSC_OP_GET: case ICSC_OP_GETQ: case ICSC_OP_GETK: case ICSC_OP_GETKQ:
    case ICSC_OP_INQUIRE_DEVICE:
        return validate_rows(&r, 0);
    case ICSC_OP_MAP_REQUEST:
        return n == 16 ? 0 : -EPROTO;
    case ICSC_OP_DEMAP_DEVICE: case ICSC_OP_DEMAP_SERVICE:
        return n == 4 ? 0 : -EPROTO;
    case ICSC_OP_EXPORT: {
        uint64_t cur;
        if (icsc_rd_u64(&r, &cur))
            return -EPROTO;
        return validate_rows(&r, 1);
    }
    case ICSC_OP_KEY_ISSUE: {
        uint64_t t;
        uint8_t kid;
        uint16_t cnt;
        if (icsc_rd_u64(&r, &t) || icsc_rd_u8(&r, &kid) || icsc_rd_u16(&r, &cnt))
            return -EPROTO;
        return r.n == (size_t)cnt * 16 + 32 ? 0 : -EPROTO;
    }
    case ICSC_OP_HISTORY: {
        uint32_t cnt;
        uint64_t t;
        uint8_t ev;
        if (icsc_rd_u32(&r, &cnt))
            return -EPROTO;
        for (uint32_t i = 0; i < cnt; i++)
            if (icsc_rd_u64(&r, &t) || icsc_rd_u8(&r, &ev) || skip_str16(&r, 3))
                return -EPROTO;
        return 0;
    }
    case ICSC_OP_WHOAMI:
        return skip_str16(&r, 2);
    case ICSC_OP_PREFS_GET: case ICSC_OP_PREFS_SET: {
        uint32_t ret;
        uint16_t cnt;
        const uint8_t *p;
        if (opcode == ICSC_OP_PREFS_SET)
            return 0; /* response is empty */
        if (icsc_rd_u32(&r, &ret))
            return -EPROTO;
        for (int list = 0; list < 2; list++)
            if (icsc_rd_u16(&r, &cnt) || skip_str16(&r, cnt))
                return -EPROTO;
        if (icsc_rd_u16(&r, &cnt) || icsc_rd_bytes(&r, (size_t)cnt * 5, &p))
            return -EPROTO;
        return 0;
    }
    case ICSC_OP_PRINCIPAL_LIST: {
        uint32_t cnt;
        uint8_t roles;
        uint16_t m;
        if (icsc_rd_u32(&r, &cnt))
            return -EPROTO;
        for (uint32_t i = 0; i < cnt; i++)
            if (skip_str16(&r, 1) || icsc_rd_u8(&r, &roles) || icsc_rd_u16(&r, &m) ||
                skip_str16(&r, m))
                return -EPROTO;
        return 0;
    }
    default:
        return 0; /* empty, raw bytes or ASCII: nothing to check */
    }
}

const char *icsc_strerror(int rc)
{
    switch (rc) {
    case ICSC_S_OK: return "OK";
    case ICSC_S_NOT_FOUND: return "NOT_FOUND: no such row, device, binding or request";
    case ICSC_S_EXISTS: return "EXISTS: binding belongs to another device, or CAS mismatch";
    case ICSC_S_TOO_LARGE: return "TOO_LARGE: frame or field over the limits";
    case ICSC_S_EINVAL: return "EINVAL: malformed request";
    case ICSC_S_AUTH_ERROR: return "AUTH_ERROR: not authenticated, or bad credentials";
    case ICSC_S_ACCESS_DENIED: return "ACCESS_DENIED: this principal may not do this";
    case ICSC_S_UNKNOWN_COMMAND: return "UNKNOWN_COMMAND: opcode not known";
    case ICSC_S_ENOMEM: return "ENOMEM: server memory limit reached";
    case ICSC_S_NOT_SUPPORTED: return "NOT_SUPPORTED: opcode not served";
    case ICSC_S_INTERNAL: return "INTERNAL: server bug or I/O fault";
    case ICSC_S_TMPFAIL: return "TMPFAIL: try again later";
    case ICSC_S_KEY_ROTATED: return "KEY_ROTATED: signing key retired";
    case ICSC_S_BAD_SIGNATURE: return "BAD_SIGNATURE: signature does not verify";
    case ICSC_E_UNKNOWN_OUTCOME:
        return "unknown outcome: the change was sent but no answer came";
    default:
        break;
    }
    if (rc > 0)
        return "unknown wire status";
    switch (-rc) {
    case ETIMEDOUT: return "timed out";
    case ECONNREFUSED: return "connection refused";
    case ECONNRESET: return "connection reset or closed by the server";
    case ENOTCONN: return "not connected";
    case EPROTO: return "protocol error: malformed frame from the server";
    case EMSGSIZE: return "message too large";
    case ENOMEM: return "out of memory";
    case EINVAL: return "invalid argument";
    case EHOSTUNREACH: return "host unreachable";
    case ENOENT: return "host not found";
    case EKEYREJECTED: return "TLS handshake or certificate failed";
    default: return strerror(-rc);
    }
}

int icsc_roles_parse(const char *s)
{
    static const char *names[] = {"admin", "iot_sp", "tpsp", "generator", "validator"};
    int mask = 0;
    while (s && *s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int found = 0;
        for (int i = 0; i < 5; i++)
            if (strlen(names[i]) == n && memcmp(names[i], s, n) == 0) {
                mask |= 1 << i;
                found = 1;
            }
        if (!found && n)
            return -EINVAL;
        s = e ? e + 1 : NULL;
    }
    return mask;
}
