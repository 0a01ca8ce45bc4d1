/* test_buf.c — net/buf.h: growth, big-endian encoders, str16 limits, consume. */
#include <errno.h>
#include <stdint.h>

#include "buf.h"
#include "test.h"

int main(void)
{
    struct buf b = BUF_INIT;
    CHECK_EQ(buf_put_u8(&b, 0xAB), 0);
    CHECK_EQ(buf_put_u16(&b, 0x0102), 0);
    CHECK_EQ(buf_put_u32(&b, 0x03040506u), 0);
    CHECK_EQ(buf_put_u64(&b, 0x0708090A0B0C0D0Eull), 0);
    CHECK_EQ(buf_put_str16(&b, "hi", 2), 0);
    static const uint8_t want[] = {0xAB, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                   0, 2, 'h', 'i'};
    CHECK_EQ(b.len, sizeof want);
    CHECK_MEM(b.p, want, sizeof want);

    /* str16 over 65535 bytes is refused and leaves the buffer unchanged. */
    static uint8_t big[70000];
    CHECK_EQ(buf_put_str16(&b, big, sizeof big), -E2BIG);
    CHECK_EQ(b.len, sizeof want);
    CHECK_EQ(buf_put_str16(&b, big, 65535), 0);
    CHECK_EQ(b.len, sizeof want + 2 + 65535);
    CHECK(b.cap >= b.len);

    /* Overflowing reservation fails cleanly. */
    CHECK_EQ(buf_reserve(&b, SIZE_MAX - 8), -E2BIG);

    buf_truncate(&b, 5);
    CHECK_EQ(b.len, 5);
    buf_consume(&b, 1);
    CHECK_EQ(b.len, 4);
    CHECK_EQ(b.p[0], 1);
    CHECK_EQ(b.p[3], 4);
    buf_consume(&b, 100);
    CHECK_EQ(b.len, 0);

    /* Many appends grow the buffer and keep every byte. */
    for (int i = 0; i < 10000; i++)
        CHECK_EQ(buf_put_u8(&b, (uint8_t)i), 0);
    for (int i = 0; i < 10000; i++)
        CHECK_EQ(b.p[i], (uint8_t)i);
    uint8_t *d = buf_extend(&b, 3);
    CHECK(d != NULL);
    CHECK_EQ(b.len, 10003);
    buf_free(&b);
    CHECK(b.p == NULL && b.len == 0 && b.cap == 0);
    return 0;
}
