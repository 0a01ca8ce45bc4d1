/*
 * fuzz_principal_line.c — one line of a principals file (icsd
 * --principals): parse, and check a success points only inside the line
 * and an error always says which line.
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
    char err[160];
    err[0] = 0;
    int rc = principal_parse_line((const char *)data, size, 9, &def, err, sizeof(err));
    if (rc < 0) {
        if (strncmp(err, "9: ", 3) != 0)
            abort();
        return 0;
    }
    if (rc == 1)
        return 0;
    if (rc != 0 || def.roles == 0 || (def.roles & ~PRINCIPAL_ROLES_ALL))
        abort();
    if (def.name.len < 1 || def.name.len > PRINCIPAL_NAME_MAX ||
        !inside(def.name.p, def.name.len, data, size))
        abort();
    if (!inside(def.secret.p, def.secret.len, data, size))
        abort();
    for (uint16_t i = 0; i < def.nscopes; i++)
        if (def.scopes[i].len < 1 || !inside(def.scopes[i].p, def.scopes[i].len, data, size))
            abort();
    return 0;
}
