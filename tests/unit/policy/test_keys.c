/*
 * test_keys.c — COEL signed key batches in memory: batch of 1 and 1000,
 * counts 0 and 1001, a tampered byte anywhere, rotation (old batches
 * KEY_ROTATED, new OK), the bounded retired list, the rotation schedule
 * and id wrap-around. (Restart through a real store: test_policy_store.c.)
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "keys.h"
#include "test.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void issue(keys_t *k, unsigned n, uint64_t now, struct buf *b)
{
    buf_reset(b);
    CHECK_EQ(keys_issue(k, n, now, b), 0);
    CHECK_EQ(b->len, 11 + 16 * n + 32);
}

static void test_issue_validate(void)
{
    keys_t *k;
    CHECK_EQ(keys_create(&k, NULL), 0);
    struct buf b = BUF_INIT;
    CHECK_EQ(keys_current_id(k), -ENOENT);
    CHECK_EQ(keys_issue(k, 1, 100, &b), -EAGAIN);   /* no signing key yet */
    CHECK_EQ(b.len, 0);
    CHECK_EQ(keys_maybe_rotate(k, NULL, 100), 1);
    CHECK_EQ(keys_current_id(k), 1);
    CHECK_EQ(keys_maybe_rotate(k, NULL, 1000000), 0); /* no schedule */

    issue(k, 1, 1700000000, &b);
    CHECK_EQ(be64(b.p), 1700000000);
    CHECK_EQ(b.p[8], 1);
    CHECK_EQ(be16(b.p + 9), 1);
    CHECK_EQ(keys_validate(k, b.p, b.len), 0);

    issue(k, 1000, 1700000001, &b);
    CHECK_EQ(be16(b.p + 9), 1000);
    CHECK_EQ(keys_validate(k, b.p, b.len), 0);
    unsigned n = 0;
    CHECK_EQ(keys_batch_check(b.p, b.len, &n), 0);
    CHECK_EQ(n, 1000);
    /* RFC 4122 version 4, variant 10xx, and all distinct from the next. */
    for (unsigned i = 0; i < 1000; i++) {
        const uint8_t *u = b.p + 11 + 16 * i;
        CHECK_EQ(u[6] >> 4, 4);
        CHECK_EQ(u[8] >> 6, 2);
    }
    CHECK(memcmp(b.p + 11, b.p + 27, 16) != 0);

    CHECK_EQ(keys_issue(k, 0, 1, &b), -EINVAL);
    CHECK_EQ(keys_issue(k, 1001, 1, &b), -EINVAL);
    CHECK_EQ(b.len, 11 + 16 * 1000 + 32); /* unchanged */

    /* A tampered bit anywhere: BAD_SIGNATURE; in the count field the
     * length no longer matches: EINVAL. */
    issue(k, 3, 1700000002, &b);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            b.p[i] ^= (uint8_t)(1u << bit);
            int rc = keys_validate(k, b.p, b.len);
            int want = (i == 9 || i == 10) ? -EINVAL : -EBADMSG;
            if (rc != want) {
                fprintf(stderr, "byte %zu bit %d: rc %d want %d\n", i, bit, rc, want);
                CHECK(0);
            }
            b.p[i] ^= (uint8_t)(1u << bit);
        }
    }
    CHECK_EQ(keys_validate(k, b.p, b.len), 0);

    /* Malformed. */
    CHECK_EQ(keys_validate(k, b.p, b.len - 1), -EINVAL);
    CHECK_EQ(keys_validate(k, b.p, 11 + 32), -EINVAL);
    CHECK_EQ(keys_validate(k, NULL, 0), -EINVAL);
    CHECK_EQ(buf_put_u8(&b, 0), 0);
    CHECK_EQ(keys_validate(k, b.p, b.len), -EINVAL);
    uint8_t zero[11 + 32] = {0};
    CHECK_EQ(keys_validate(k, zero, sizeof(zero)), -EINVAL); /* n = 0 */
    /* Well formed, forged MAC; unknown key id. */
    issue(k, 2, 5, &b);
    memset(b.p + b.len - 32, 0x5a, 32);
    CHECK_EQ(keys_validate(k, b.p, b.len), -EBADMSG);
    issue(k, 2, 5, &b);
    b.p[8] = 200;
    CHECK_EQ(keys_validate(k, b.p, b.len), -EBADMSG);
    buf_free(&b);
    keys_destroy(k);
}

static void test_rotation(void)
{
    keys_t *k;
    struct keys_config cfg = {.rotate_interval_s = 60};
    CHECK_EQ(keys_create(&k, &cfg), 0);
    CHECK_EQ(keys_maybe_rotate(k, NULL, 1000), 1);
    struct buf old = BUF_INIT, cur = BUF_INIT;
    issue(k, 10, 1000, &old);
    CHECK_EQ(keys_maybe_rotate(k, NULL, 1059), 0);
    CHECK_EQ(keys_validate(k, old.p, old.len), 0);
    CHECK_EQ(keys_maybe_rotate(k, NULL, 1060), 1);
    CHECK_EQ(keys_current_id(k), 2);
    CHECK_EQ(keys_validate(k, old.p, old.len), -ESTALE);
    issue(k, 10, 1061, &cur);
    CHECK_EQ(keys_validate(k, cur.p, cur.len), 0);
    /* A tampered old batch is not "rotated", it is bad. */
    old.p[20] ^= 1;
    CHECK_EQ(keys_validate(k, old.p, old.len), -EBADMSG);
    old.p[20] ^= 1;

    /* On demand: the done callback runs (store NULL: at once). */
    CHECK_EQ(keys_rotate(k, NULL, 1062, NULL, NULL), 0);
    CHECK_EQ(keys_validate(k, cur.p, cur.len), -ESTALE);

    /* 16 retired ids are remembered; the 17th rotation forgets key 1. */
    for (int i = 0; i < 14; i++)
        CHECK_EQ(keys_rotate(k, NULL, 2000, NULL, NULL), 0);
    CHECK_EQ(keys_current_id(k), 17);
    CHECK_EQ(keys_validate(k, old.p, old.len), -ESTALE);
    CHECK_EQ(keys_rotate(k, NULL, 2000, NULL, NULL), 0);
    CHECK_EQ(keys_validate(k, old.p, old.len), -EBADMSG);
    CHECK_EQ(keys_validate(k, cur.p, cur.len), -ESTALE);

    /* Ids wrap modulo 256; a reused id never validates the old key's
     * batches as current. */
    for (int i = 0; i < 300; i++)
        CHECK_EQ(keys_rotate(k, NULL, 3000, NULL, NULL), 0);
    CHECK_EQ(keys_current_id(k), (18 + 300) % 256);
    struct buf now = BUF_INIT;
    issue(k, 1, 3000, &now);
    CHECK_EQ(keys_validate(k, now.p, now.len), 0);
    CHECK_EQ(keys_validate(k, cur.p, cur.len), -EBADMSG);
    buf_free(&old);
    buf_free(&cur);
    buf_free(&now);
    keys_destroy(k);
}

int main(void)
{
    test_issue_validate();
    test_rotation();
    return 0;
}
