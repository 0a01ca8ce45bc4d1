/*
 * prefs.c — PREFS_SET values: validation and evaluation (see prefs.h).
 *
 * Evaluation walks the stored blob each time instead of keeping a decoded
 * form: the blob is the engine's opaque bytes, typically a few dozen, and a
 * walk costs less than the cache misses a side structure would add.
 */
#include "prefs.h"

#include <errno.h>
#include <string.h>

#include "wire.h"

#define FAIL(m)                                                            \
    do {                                                                   \
        if (msg)                                                           \
            *msg = (m);                                                    \
        return -EINVAL;                                                    \
    } while (0)

static int check_prefixes(struct wire_cur *r, const char **msg)
{
    uint16_t n;
    if (wire_get_u16(r, &n) < 0)
        FAIL("prefs: truncated prefix count");
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint16_t len;
        if (wire_get_str16(r, &s, &len) < 0)
            FAIL("prefs: truncated URI prefix");
        if (len == 0 || len > PREFS_PREFIX_MAX)
            FAIL("prefs: URI prefix must be 1..1024 bytes");
        if (memchr(s, 0, len))
            FAIL("prefs: URI prefix contains NUL");
    }
    return 0;
}

int prefs_validate(const void *value, size_t len, const char **msg)
{
    struct wire_cur r = {value, len};
    uint32_t retention;
    uint16_t w;
    int rc;

    if (!value && len)
        FAIL("prefs: no value");
    if (wire_get_u32(&r, &retention) < 0)
        FAIL("prefs: truncated retention");
    if ((rc = check_prefixes(&r, msg)) < 0) /* allow */
        return rc;
    if ((rc = check_prefixes(&r, msg)) < 0) /* deny */
        return rc;
    if (wire_get_u16(&r, &w) < 0)
        FAIL("prefs: truncated window count");
    for (uint16_t i = 0; i < w; i++) {
        uint8_t mask;
        uint16_t start, end;
        if (wire_get_u8(&r, &mask) < 0 || wire_get_u16(&r, &start) < 0 ||
            wire_get_u16(&r, &end) < 0)
            FAIL("prefs: truncated window");
        if (mask == 0 || (mask & 0x80))
            FAIL("prefs: weekday mask must be 1..127 (bit0 = Monday)");
        if (start > 1439)
            FAIL("prefs: window start minute must be 0..1439");
        if (end == 0 || end > 1440)
            FAIL("prefs: window end minute must be 1..1440");
        if (start == end)
            FAIL("prefs: empty window (start == end)");
    }
    if (r.n != 0)
        FAIL("prefs: trailing bytes");
    return 0;
}

static bool has_prefix(const uint8_t *uri, size_t ulen, const uint8_t *pfx, size_t plen)
{
    return plen <= ulen && memcmp(uri, pfx, plen) == 0;
}

/* Walks one prefix list. *match: any prefix matched. false if malformed. */
static bool scan_prefixes(struct wire_cur *r, const uint8_t *uri, size_t ulen, bool *nonempty,
                          bool *match)
{
    uint16_t n;
    if (wire_get_u16(r, &n) < 0)
        return false;
    *nonempty = n > 0;
    *match = false;
    for (uint16_t i = 0; i < n; i++) {
        const uint8_t *s;
        uint16_t len;
        if (wire_get_str16(r, &s, &len) < 0)
            return false;
        if (!*match && has_prefix(uri, ulen, s, len))
            *match = true;
    }
    return true;
}

bool prefs_allows(const void *blob, size_t len, const void *uri, size_t ulen,
                  uint64_t now_us)
{
    struct wire_cur r = {blob, len};
    uint32_t retention;
    bool nonempty, match;
    uint16_t w;

    if (len == 0)
        return true;
    if (wire_get_u32(&r, &retention) < 0)
        return false;
    if (!scan_prefixes(&r, uri, ulen, &nonempty, &match))
        return false;
    if (nonempty && !match)
        return false;
    if (!scan_prefixes(&r, uri, ulen, &nonempty, &match))
        return false;
    if (match)
        return false;
    if (wire_get_u16(&r, &w) < 0)
        return false;
    if (w == 0)
        return true;

    uint64_t secs = now_us / 1000000u;
    uint64_t days = secs / 86400u;
    /* 1970-01-01 was a Thursday: with Monday = 0 that is day 3. */
    unsigned today = (unsigned)((days + 3) % 7);
    unsigned yesterday = (today + 6) % 7;
    unsigned minute = (unsigned)((secs % 86400u) / 60u);

    for (uint16_t i = 0; i < w; i++) {
        uint8_t mask;
        uint16_t start, end;
        if (wire_get_u8(&r, &mask) < 0 || wire_get_u16(&r, &start) < 0 ||
            wire_get_u16(&r, &end) < 0)
            return false;
        if (start < end) {
            if ((mask & (1u << today)) && minute >= start && minute < end)
                return true;
        } else {
            /* Wraps midnight: the evening part on a masked day, the morning
             * part on the day after a masked day. */
            if ((mask & (1u << today)) && minute >= start)
                return true;
            if ((mask & (1u << yesterday)) && minute < end)
                return true;
        }
    }
    return false;
}

uint32_t prefs_retention(const void *blob, size_t len)
{
    struct wire_cur r = {blob, len};
    uint32_t v;
    if (wire_get_u32(&r, &v) < 0)
        return 0;
    return v;
}

uint32_t prefs_cap_expiry(const void *blob, size_t len, uint32_t now_s, uint32_t expires_at)
{
    uint32_t ret = prefs_retention(blob, len);
    if (ret == 0)
        return expires_at;
    uint64_t cap = (uint64_t)now_s + ret;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    if (expires_at == 0 || expires_at > cap)
        return (uint32_t)cap;
    return expires_at;
}
