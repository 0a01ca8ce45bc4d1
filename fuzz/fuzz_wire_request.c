/*
 * fuzz_wire_request.c — the request frame parser and every body decoder.
 * Input: a byte stream as a client would send it; frames are parsed one
 * after another exactly as a connection does (skip a malformed framed
 * frame, stop where framing is lost), each decoded frame's pointers are
 * checked to stay inside the input, and a response is encoded from it.
 */
#include <stdlib.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errors.h"
#include "wire.h"

/* Always on, also in release builds where assert() is compiled out. */
#define FZ_CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void in_bounds(const uint8_t *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
    if (n)
        FZ_CHECK(p >= lo && p + n <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    struct buf out = BUF_INIT;
    while (p < end) {
        struct wire_frame f;
        int rc = wire_parse_request(p, (size_t)(end - p), &f);
        if (rc == 0 || rc == -EPROTO || rc == -EMSGSIZE)
            break;
        if (rc == -EINVAL) {
            FZ_CHECK(f.frame_len >= WIRE_HDR_LEN && f.frame_len <= (size_t)(end - p));
            p += f.frame_len;
            continue;
        }
        FZ_CHECK(rc > 0 && (size_t)rc == f.frame_len && f.frame_len <= (size_t)(end - p));
        const uint8_t *fe = p + f.frame_len;
        struct wire_req r;
        const char *why = NULL;
        int d = wire_decode(&f, &r, &why);
        FZ_CHECK(why != NULL);
        if (d == 0) {
            in_bounds(r.key, r.key_len, p, fe);
            in_bounds(r.uri, r.uri_len, p, fe);
            in_bounds(r.uti, r.uti_len, p, fe);
            in_bounds(r.owner, r.owner_len, p, fe);
            in_bounds(r.text, r.text_len, p, fe);
            in_bounds(r.authcid, r.authcid_len, p, fe);
            in_bounds(r.secret, r.secret_len, p, fe);
            FZ_CHECK(r.key_len <= 1024 && r.uti_len <= WIRE_ID_MAX);
        } else {
            FZ_CHECK(why[0] != 0);
        }
        buf_reset(&out);
        const char *msg = d ? why : "";
        int e = wire_put(&out, WIRE_MAGIC_RES, f.opcode, ics_status(d), f.opaque, 0, NULL, 0,
                         NULL, 0, msg, (uint32_t)__builtin_strlen(msg));
        FZ_CHECK(e == 0);
        struct wire_frame g;
        FZ_CHECK(wire_parse(out.p, out.len, 1u << 1, &g) == (int)out.len);
        p = fe;
    }
    buf_free(&out);
    return 0;
}
