/*
 * fuzz_keys_validate.c — KEY_VALIDATE's input: any bytes as a signed
 * batch. Checks the structural rule (11 + 16 n + 32 bytes, n 1..1000) is
 * the only way past EINVAL, and that nothing but 0 / ESTALE / EBADMSG /
 * EINVAL comes back. Every 64th input with a valid shape is also re-signed
 * by a real issue of the same size, to exercise the verifying path.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static keys_t *k;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!k) {
        if (keys_create(&k, NULL) < 0 || keys_rotate(k, NULL, 1, NULL, NULL) < 0 ||
            keys_rotate(k, NULL, 2, NULL, NULL) < 0)
            abort();
    }
    unsigned n = 0;
    int shape = keys_batch_check(data, size, &n);
    int rc = keys_validate(k, data, size);
    if (shape < 0 && rc != -EINVAL)
        abort();
    if (shape == 0 && (n < 1 || n > KEYS_COUNT_MAX || size != 11 + 16u * n + 32))
        abort();
    if (rc != 0 && rc != -ESTALE && rc != -EBADMSG && rc != -EINVAL)
        abort();
    if (shape == 0 && size > 0 && data[0] % 64 == 0) {
        struct buf b = BUF_INIT;
        if (keys_issue(k, n, 3, &b) != 0 || b.len != size || keys_validate(k, b.p, b.len) != 0)
            abort();
        buf_free(&b);
    }
    return 0;
}
