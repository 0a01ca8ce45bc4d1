/*
 * fuzz_client_decode.c — the C client's response/event decoder on arbitrary
 * server bytes: frames are cut one after another from the input, and every
 * complete frame's value is validated for its opcode (response and event
 * interpretations both), then walked with the same reader the library uses.
 */
#include <stddef.h>
#include <stdint.h>

#include "icsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const icsc_frame *f)
{
    /* Validation must agree with a full walk: after a successful validate,
     * reading the fields the library reads must never overrun. */
    if (f->magic == ICSC_MAGIC_EVT) {
        if (icsc_validate_value(f->opcode, 1, f->value, f->value_len) == 0) {
            icsc_rd r;
            const uint8_t *p;
            size_t n;
            int k = f->opcode == ICSC_EV_MAP_PENDING ? 3 : f->opcode == ICSC_EV_DEMAPPED ? 2 : 1;
            icsc_rd_init(&r, f->value, f->value_len);
            for (int i = 0; i < k; i++)
                if (icsc_rd_str16(&r, &p, &n))
                    __builtin_trap();
        }
        return;
    }
    if (icsc_validate_value(f->opcode, 0, f->value, f->value_len) != 0)
        return;
    icsc_rd r;
    icsc_rd_init(&r, f->value, f->value_len);
    uint32_t n32;
    uint64_t u64;
    const uint8_t *p;
    size_t n;
    switch (f->opcode) {
    case ICSC_OP_INQUIRE_DEVICE: case ICSC_OP_EXPORT:
        if (f->opcode == ICSC_OP_EXPORT && icsc_rd_u64(&r, &u64))
            __builtin_trap();
        if (icsc_rd_u32(&r, &n32))
            __builtin_trap();
        for (uint32_t i = 0; i < n32; i++) {
            if (f->opcode == ICSC_OP_EXPORT && icsc_rd_str16(&r, &p, &n))
                __builtin_trap();
            uint32_t expires;
            if (icsc_rd_str16(&r, &p, &n) || icsc_rd_str16(&r, &p, &n) || icsc_rd_u32(&r, &expires))
                __builtin_trap();
        }
        break;
    case ICSC_OP_WHOAMI:
        if (icsc_rd_str16(&r, &p, &n) || icsc_rd_str16(&r, &p, &n))
            __builtin_trap();
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        icsc_frame f;
        int n = icsc_decode_frame(data + off, size - off, ICSC_MAX_BODY, &f);
        if (n <= 0)
            break;
        if ((size_t)n > size - off || f.value + f.value_len > data + size)
            __builtin_trap();
        walk(&f);
        off += (size_t)n;
    }
    return 0;
}
