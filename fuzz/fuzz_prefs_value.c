/*
 * fuzz_prefs_value.c — PREFS_SET values: prefs_validate on any bytes, and
 * prefs_allows / prefs_retention on the same bytes whether valid or not
 * (the engine only ever holds validated blobs, but evaluation must not
 * read out of bounds on any). The last 9 input bytes also pick the clock.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prefs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *msg = NULL;
    int rc = prefs_validate(data, size, &msg);
    if (rc != 0 && !msg)
        abort();
    uint64_t now = 1704067200ull * 1000000u;
    if (size >= 8) {
        uint64_t t;
        memcpy(&t, data + size - 8, 8);
        now += t % (7ull * 86400u * 1000000u);
    }
    static const char *uris[] = {"https://a.example/", "h", "https://a.example/ads/1"};
    for (size_t i = 0; i < 3; i++) {
        int ok = prefs_allows(data, size, uris[i], strlen(uris[i]), now);
        if (rc != 0 && size > 0 && ok && size < 10)
            abort(); /* too short to be a blob: must deny */
    }
    uint32_t ret = prefs_retention(data, size);
    if (size >= 4 && ret != ((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
                             (uint32_t)data[2] << 8 | data[3]))
        abort();
    return 0;
}
