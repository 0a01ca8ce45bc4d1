/*
 * fuzz_principal_set.c — PRINCIPAL_SET: the first byte is the key length
 * (mod 131), then the key (principal name), the rest is the value. A
 * decoded definition must only point inside the input and respect the
 * limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "principal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const uint8_t *p, size_t n, const uint8_t *d, size_t size)
{
    return n == 0 || (p >= d && p + n <= d + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct principal_def def;
    if (size < 1)
        return 0;
    size_t nlen = data[0] % 131;
    if (nlen > size - 1)
        nlen = size - 1;
    const uint8_t *name = data + 1, *value = name + nlen;
    size_t vlen = size - 1 - nlen;
    const char *msg = NULL;
    int rc = principal_decode_set(name, nlen, value, vlen, &def, &msg);
    if (rc < 0) {
        if (!msg)
            abort();
        return 0;
    }
    if (def.name.len < 1 || def.name.len > PRINCIPAL_NAME_MAX || memchr(def.name.p, 0, def.name.len))
        abort();
    if (def.roles == 0 || (def.roles & ~PRINCIPAL_ROLES_ALL) || def.nscopes > PRINCIPAL_MAX_SCOPES ||
        def.secret.len > PRINCIPAL_SECRET_MAX)
        abort();
    if (!inside(def.secret.p, def.secret.len, data, size))
        abort();
    for (uint16_t i = 0; i < def.nscopes; i++)
        if (def.scopes[i].len < 1 || def.scopes[i].len > PRINCIPAL_SCOPE_MAX ||
            !inside(def.scopes[i].p, def.scopes[i].len, data, size))
            abort();
    return 0;
}
