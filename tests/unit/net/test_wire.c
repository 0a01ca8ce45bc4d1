/* test_wire.c — net/wire.h: framing rules of wire-v1 section 1.1 and each
 * opcode's body decoder, plus net/errors.h's one table. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "errors.h"
#include "test.h"
#include "wire.h"

static struct buf b;

static const uint8_t *req(uint8_t op, const void *ext, uint8_t el, const void *key, uint16_t kl,
                          const void *val, uint32_t vl)
{
    buf_reset(&b);
    CHECK_EQ(wire_put_request(&b, op, 0x11223344, 0, ext, el, key, kl, val, vl), 0);
    return b.p;
}

static int decode(uint8_t op, const void *ext, uint8_t el, const void *key, uint16_t kl,
                  const void *val, uint32_t vl, struct wire_req *r)
{
    const uint8_t *p = req(op, ext, el, key, kl, val, vl);
    struct wire_frame f;
    CHECK_EQ(wire_parse_request(p, b.len, &f), (int)b.len);
    const char *why = NULL;
    int rc = wire_decode(&f, r, &why);
    CHECK(why != NULL);
    if (rc < 0)
        CHECK(why[0] != 0);
    return rc;
}

static size_t s16(uint8_t *d, const char *s)
{
    size_t n = strlen(s);
    d[0] = (uint8_t)(n >> 8), d[1] = (uint8_t)n;
    memcpy(d + 2, s, n);
    return n + 2;
}

static void test_framing(void)
{
    struct wire_frame f;
    const uint8_t *p = req(WIRE_OP_NOOP, NULL, 0, NULL, 0, NULL, 0);
    /* Every prefix shorter than the frame needs more bytes. */
    for (size_t i = 0; i < b.len; i++)
        CHECK_EQ(wire_parse_request(p, i, &f), 0);
    CHECK_EQ(wire_parse_request(p, b.len, &f), 24);
    CHECK_EQ(f.opaque, 0x11223344);
    CHECK_EQ(f.opcode, WIRE_OP_NOOP);

    /* A body split across reads: header alone tells the frame length. */
    p = req(WIRE_OP_GET, NULL, 0, "dev1", 4, NULL, 0);
    CHECK_EQ(wire_parse_request(p, 26, &f), 0);
    CHECK_EQ(f.frame_len, 28);
    CHECK_EQ(wire_parse_request(p, 28, &f), 28);
    CHECK_MEM(f.key, "dev1", 4);

    /* Wrong magic: framing lost. A response magic is not a request. */
    b.p[0] = 0x81;
    CHECK_EQ(wire_parse_request(b.p, b.len, &f), -EPROTO);
    b.p[0] = 0x00;
    CHECK_EQ(wire_parse_request(b.p, 24, &f), -EPROTO);
    /* a whole header's opcode and opaque are kept for the error's echo */
    CHECK_EQ(f.opcode, b.p[1]);
    CHECK_EQ(f.opaque, wire_be32(b.p + 12));
    /* Known from the first byte, before a whole header is in: an ASCII
     * client is refused at once, a good magic waits for more. */
    CHECK_EQ(wire_parse_request((const uint8_t *)"v", 1, &f), -EPROTO);
    CHECK_EQ(wire_parse_request((const uint8_t *)"version\r\n", 9, &f), -EPROTO);
    b.p[0] = 0x80;
    CHECK_EQ(wire_parse_request(b.p, 1, &f), 0);
    CHECK_EQ(wire_parse_request(b.p, 23, &f), 0);
    CHECK_EQ(wire_parse_request(b.p, 0, &f), 0);

    /* Data type and reserved must be 0; the frame stays skippable. */
    b.p[5] = 1;
    CHECK_EQ(wire_parse_request(b.p, b.len, &f), -EINVAL);
    CHECK_EQ(f.frame_len, 28);
    b.p[5] = 0;
    b.p[7] = 1;
    CHECK_EQ(wire_parse_request(b.p, b.len, &f), -EINVAL);
    b.p[7] = 0;

    /* Key longer than the body. */
    buf_be16(b.p + 2, 5);
    CHECK_EQ(wire_parse_request(b.p, b.len, &f), -EINVAL);
    buf_be16(b.p + 2, 4);
    b.p[4] = 1; /* extras 1 + key 4 > body 4 */
    CHECK_EQ(wire_parse_request(b.p, b.len, &f), -EINVAL);
    b.p[4] = 0;

    /* Body over 1 MiB: TOO_LARGE from the header alone. */
    buf_be32(b.p + 8, WIRE_MAX_BODY + 1);
    CHECK_EQ(wire_parse_request(b.p, 24, &f), -EMSGSIZE);
    buf_be32(b.p + 8, 0xFFFFFFFFu);
    CHECK_EQ(wire_parse_request(b.p, 24, &f), -EMSGSIZE);
    buf_be32(b.p + 8, WIRE_MAX_BODY);
    CHECK_EQ(wire_parse_request(b.p, 24, &f), 0); /* exactly 1 MiB is allowed */

    /* Responses and events parse with their own accept mask. */
    buf_reset(&b);
    CHECK_EQ(wire_put(&b, WIRE_MAGIC_EVT, WIRE_EV_DEMAPPED, 1, 0, 77, NULL, 0, "d", 1, "xy", 2), 0);
    CHECK_EQ(wire_parse(b.p, b.len, 1u << 2, &f), 27);
    CHECK_EQ(f.status, 1);
    CHECK_EQ(f.cas, 77);
    CHECK_EQ(f.value_len, 2);
    CHECK_EQ(wire_parse(b.p, b.len, 1u << 1, &f), -EPROTO);
}

static void test_decoders(void)
{
    struct wire_req r;
    uint8_t v[4096], ext[8];
    size_t n;
    char big[2000];
    memset(big, 'a', sizeof big);

    /* GET family and single-key ops: device ID limits. */
    CHECK_EQ(decode(WIRE_OP_GET, NULL, 0, "d", 1, NULL, 0, &r), 0);
    CHECK_EQ(r.key_len, 1);
    CHECK_EQ(decode(WIRE_OP_GETKQ, NULL, 0, big, 128, NULL, 0, &r), 0);
    CHECK_EQ(decode(WIRE_OP_INQUIRE_DEVICE, NULL, 0, big, 129, NULL, 0, &r), -E2BIG);
    CHECK_EQ(decode(WIRE_OP_INQUIRE_DEVICE, NULL, 0, NULL, 0, NULL, 0, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_GET, "abcd", 4, "d", 1, NULL, 0, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_GET, NULL, 0, "d", 1, "v", 1, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_NOOP, NULL, 0, "k", 1, NULL, 0, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_VERSION, NULL, 0, NULL, 0, NULL, 0, &r), 0);
    CHECK_EQ(decode(WIRE_OP_STAT, NULL, 0, "ops", 3, NULL, 0, &r), 0);
    CHECK_EQ(r.key_len, 3);

    /* MAP: str16 URI, str16 UTI, optional owner; optional ttl extras. */
    n = s16(v, "https://svc.example/a");
    n += s16(v + n, "uti-1");
    buf_be32(ext, 3600);
    CHECK_EQ(decode(WIRE_OP_MAP, ext, 4, "dev", 3, v, (uint32_t)n, &r), 0);
    CHECK_EQ(r.uri_len, 21);
    CHECK_MEM(r.uti, "uti-1", 5);
    CHECK_EQ(r.u32, 3600);
    CHECK_EQ(r.has_u32, 1);
    CHECK_EQ(r.owner_len, 0);
    size_t n2 = n + s16(v + n, "vendor");
    CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)n2, &r), 0);
    CHECK_MEM(r.owner, "vendor", 6);
    CHECK_EQ(r.has_u32, 0);
    /* MAP_REQUEST has no owner field: trailing bytes are malformed. */
    CHECK_EQ(decode(WIRE_OP_MAP_REQUEST, NULL, 0, "SN1", 3, v, (uint32_t)n2, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_MAP_REQUEST, NULL, 0, "SN1", 3, v, (uint32_t)n, &r), 0);
    /* Field overrun: the URI length claims more than the value holds. */
    for (size_t cut = 0; cut < n; cut++)
        CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)cut, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_MAP, ext, 2, "dev", 3, v, (uint32_t)n, &r), -EINVAL);
    /* URI limits: 1024 ok, 1025 too large, NUL refused, empty refused. */
    n = 0;
    v[n++] = 1024 >> 8, v[n++] = 1024 & 255;
    memcpy(v + n, big, 1024), n += 1024;
    n += s16(v + n, "u");
    CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)n, &r), 0);
    n = 0;
    v[n++] = 1025 >> 8, v[n++] = 1025 & 255;
    memcpy(v + n, big, 1025), n += 1025;
    n += s16(v + n, "u");
    CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)n, &r), -E2BIG);
    n = s16(v, "a\0b") ; /* strlen stops: build by hand */
    v[0] = 0, v[1] = 3, v[2] = 'a', v[3] = 0, v[4] = 'b';
    n = 5 + s16(v + 5, "u");
    CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)n, &r), -EINVAL);
    n = s16(v, "");
    n += s16(v + n, "u");
    CHECK_EQ(decode(WIRE_OP_MAP, NULL, 0, "dev", 3, v, (uint32_t)n, &r), -EINVAL);
    n = s16(v, "uri");
    n += s16(v + n, "");
    CHECK_EQ(decode(WIRE_OP_DEMAP, NULL, 0, "dev", 3, v, (uint32_t)n, &r), -EINVAL);

    /* CONFIRM / REJECT: 16-byte request ID. */
    n = s16(v, "device-9");
    CHECK_EQ(decode(WIRE_OP_MAP_CONFIRM, NULL, 0, "0123456789abcdef", 16, v, (uint32_t)n, &r), 0);
    CHECK_EQ(r.text_len, 8);
    CHECK_MEM(r.text, "device-9", 8);
    CHECK_EQ(decode(WIRE_OP_MAP_CONFIRM, NULL, 0, "0123456789abcde", 15, v, (uint32_t)n, &r),
             -EINVAL);
    n = s16(v, "");
    CHECK_EQ(decode(WIRE_OP_MAP_CONFIRM, NULL, 0, "0123456789abcdef", 16, v, (uint32_t)n, &r),
             -EINVAL);
    n = s16(v, "user said no");
    CHECK_EQ(decode(WIRE_OP_MAP_REJECT, NULL, 0, "0123456789abcdef", 16, v, (uint32_t)n, &r), 0);
    CHECK_EQ(r.text_len, 12);

    /* Binding ops: key = URI, value = str16 UTI. */
    n = s16(v, "uti");
    CHECK_EQ(decode(WIRE_OP_INQUIRE_BINDING, NULL, 0, "https://x", 9, v, (uint32_t)n, &r), 0);
    CHECK_EQ(r.uri_len, 9);
    CHECK_EQ(r.uti_len, 3);
    CHECK_EQ(decode(WIRE_OP_DEMAP_SERVICE, NULL, 0, "https://x", 9, NULL, 0, &r), 0);
    CHECK_EQ(decode(WIRE_OP_DEMAP_SERVICE, NULL, 0, big, 1025, NULL, 0, &r), -E2BIG);

    /* WATCH mask, EXPORT cursor, KEY_ISSUE count, HISTORY max. */
    buf_be32(ext, 7);
    CHECK_EQ(decode(WIRE_OP_WATCH, ext, 4, NULL, 0, NULL, 0, &r), 0);
    CHECK_EQ(r.u32, 7);
    buf_be32(ext, 8);
    CHECK_EQ(decode(WIRE_OP_WATCH, ext, 4, NULL, 0, NULL, 0, &r), -EINVAL);
    CHECK_EQ(decode(WIRE_OP_WATCH, NULL, 0, NULL, 0, NULL, 0, &r), -EINVAL);
    uint8_t cur[8];
    buf_be64(cur, 0x0102030405060708ull);
    buf_be32(ext, 100);
    CHECK_EQ(decode(WIRE_OP_EXPORT, ext, 4, cur, 8, NULL, 0, &r), 0);
    CHECK_EQ(r.u64, 0x0102030405060708ull);
    CHECK_EQ(r.u32, 100);
    CHECK_EQ(decode(WIRE_OP_EXPORT, ext, 4, cur, 7, NULL, 0, &r), -EINVAL);
    buf_be16(ext, 1000);
    CHECK_EQ(decode(WIRE_OP_KEY_ISSUE, ext, 2, NULL, 0, NULL, 0, &r), 0);
    buf_be16(ext, 1001);
    CHECK_EQ(decode(WIRE_OP_KEY_ISSUE, ext, 2, NULL, 0, NULL, 0, &r), -EINVAL);
    buf_be16(ext, 0);
    CHECK_EQ(decode(WIRE_OP_KEY_ISSUE, ext, 2, NULL, 0, NULL, 0, &r), -EINVAL);
    buf_be32(ext, 5);
    CHECK_EQ(decode(WIRE_OP_HISTORY, ext, 4, "d", 1, NULL, 0, &r), 0);
    CHECK_EQ(r.u32, 5);
    CHECK_EQ(decode(WIRE_OP_PRINCIPAL_DEL, NULL, 0, "bob", 3, NULL, 0, &r), 0);
    CHECK_EQ(decode(WIRE_OP_PRINCIPAL_SET, NULL, 0, big, 129, "x", 1, &r), -E2BIG);

    /* SASL PLAIN: authzid NUL authcid NUL secret. */
    CHECK_EQ(decode(WIRE_OP_SASL_AUTH, NULL, 0, "PLAIN", 5, "\0admin\0s3cret", 13, &r), 0);
    CHECK_EQ(r.authzid_len, 0);
    CHECK_EQ(r.authcid_len, 5);
    CHECK_MEM(r.authcid, "admin", 5);
    CHECK_EQ(r.secret_len, 6);
    CHECK_MEM(r.secret, "s3cret", 6);
    /* malformed: AUTH_ERROR (-EPERM), as wire-v1 answers SASL_AUTH */
    CHECK_EQ(decode(WIRE_OP_SASL_AUTH, NULL, 0, "PLAIN", 5, "admin", 5, &r), -EPERM);
    CHECK_EQ(decode(WIRE_OP_SASL_AUTH, NULL, 0, "PLAIN", 5, "a\0\0s", 4, &r), -EPERM);
    CHECK_EQ(decode(WIRE_OP_SASL_AUTH, NULL, 0, NULL, 0, "\0a\0s", 5, &r), -EPERM);
    CHECK_EQ(decode(WIRE_OP_SASL_AUTH, "\0\0\0\0", 4, "PLAIN", 5, "\0a\0s", 5, &r), -EPERM);

    /* Unknown vs known-but-unserved opcodes. */
    CHECK_EQ(decode(WIRE_OP_SET, NULL, 0, "k", 1, "v", 1, &r), -EOPNOTSUPP);
    CHECK_EQ(decode(WIRE_OP_DELETE, NULL, 0, "k", 1, NULL, 0, &r), -EOPNOTSUPP);
    CHECK_EQ(decode(0x23, NULL, 0, "k", 1, NULL, 0, &r), -EOPNOTSUPP); /* GATK */
    CHECK_EQ(decode(0x24, NULL, 0, "k", 1, NULL, 0, &r), -EOPNOTSUPP); /* GATKQ */
    CHECK_EQ(decode(0x99, NULL, 0, NULL, 0, NULL, 0, &r), -ENOSYS);
    CHECK_EQ(decode(0xFF, NULL, 0, NULL, 0, NULL, 0, &r), -ENOSYS);
}

static void test_encoders(void)
{
    buf_reset(&b);
    long off = wire_begin(&b, WIRE_MAGIC_RES, WIRE_OP_GET, WIRE_S_OK, 9, 42);
    CHECK_EQ(off, 0);
    CHECK_EQ(buf_put_u32(&b, 0), 0);          /* flags */
    CHECK_EQ(buf_append(&b, "key", 3), 0);
    CHECK_EQ(buf_put_u32(&b, 1), 0);          /* value */
    CHECK_EQ(wire_end(&b, off, 4, 3), 0);
    static const uint8_t want[] = {0x81, 0x00, 0, 3, 4, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 9,
                                   0, 0, 0, 0, 0, 0, 0, 42};
    CHECK_MEM(b.p, want, 24);
    struct wire_frame f;
    CHECK_EQ(wire_parse(b.p, b.len, 1u << 1, &f), 35);
    CHECK_MEM(f.key, "key", 3);
    CHECK_EQ(f.value_len, 4);
}

static void test_errors(void)
{
    CHECK_EQ(ics_status(0), WIRE_S_OK);
    CHECK_EQ(ics_status(-ENOENT), WIRE_S_NOT_FOUND);
    CHECK_EQ(ics_status(-EEXIST), WIRE_S_EXISTS);
    CHECK_EQ(ics_status(-E2BIG), WIRE_S_TOO_LARGE);
    CHECK_EQ(ics_status(-EMSGSIZE), WIRE_S_TOO_LARGE);
    CHECK_EQ(ics_status(-EINVAL), WIRE_S_EINVAL);
    CHECK_EQ(ics_status(-EPERM), WIRE_S_AUTH_ERROR);
    CHECK_EQ(ics_status(-EACCES), WIRE_S_ACCESS_DENIED);
    CHECK_EQ(ics_status(-ENOSYS), WIRE_S_UNKNOWN_COMMAND);
    CHECK_EQ(ics_status(-ENOMEM), WIRE_S_ENOMEM);
    CHECK_EQ(ics_status(-EOPNOTSUPP), WIRE_S_NOT_SUPPORTED);
    CHECK_EQ(ics_status(-EIO), WIRE_S_INTERNAL);
    CHECK_EQ(ics_status(-EROFS), WIRE_S_TMPFAIL);
    CHECK_EQ(ics_status(-EAGAIN), WIRE_S_TMPFAIL);
    CHECK_EQ(ics_status(-ESTALE), WIRE_S_KEY_ROTATED);
    CHECK_EQ(ics_status(-EBADMSG), WIRE_S_BAD_SIGNATURE);
    CHECK_EQ(ics_status(-EXDEV), WIRE_S_INTERNAL);
    CHECK(strcmp(ics_strerror(-EACCES), "access denied") == 0);
    CHECK(strcmp(ics_status_name(WIRE_S_KEY_ROTATED), "KEY_ROTATED") == 0);
    CHECK(ics_strerror(-12345)[0] != 0);
}

int main(void)
{
    test_framing();
    test_decoders();
    test_encoders();
    test_errors();
    buf_free(&b);
    return 0;
}
