/*
 * fuzz_config.c — icsd's config file parser (server/config.c): any bytes
 * as a config file; a failure must say "FILE:LINE: ..." and the settings
 * must stay NUL-terminated.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FZ_CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct icsd_config c;
    config_defaults(&c);
    char err[512] = "";
    int rc = config_parse(&c, (const char *)data, size, "fuzz.conf", err, sizeof err);
    if (rc < 0)
        FZ_CHECK(strncmp(err, "fuzz.conf:", 10) == 0);
    else
        FZ_CHECK(rc == 0);
    FZ_CHECK(memchr(c.data, 0, sizeof c.data) && memchr(c.host, 0, sizeof c.host));
    FZ_CHECK(memchr(c.anonymous, 0, sizeof c.anonymous) && c.port <= 65535);
    FZ_CHECK(c.log_level >= 0 && c.log_level <= 3);
    return 0;
}
