/*
 * prefs.h — a device's PII preferences (X.1363 clause 10), wire-v1
 * PREFS_SET value, enforced on every tpsp request for that device.
 *
 * The blob the engine keeps per device is the PREFS_SET value as sent
 * (validated once by prefs_validate, then stored opaque):
 *   u32 retention seconds (0 = none)
 *   u16 n allow, n x str16 URI prefix
 *   u16 m deny,  m x str16 URI prefix
 *   u16 w windows, w x (u8 weekday mask, u16 start minute, u16 end minute)
 * Weekday mask: bit0 = Monday .. bit6 = Sunday, bit 7 must be 0, mask != 0.
 * Minutes are UTC: start 0..1439, end 1..1440, start != end; the window is
 * [start, end). A window with end < start wraps midnight: it runs from start
 * on a masked day until end on the following day (the mask names the day
 * the window opens).
 *
 * A request is allowed unless: the allow list is not empty and no allow
 * prefix matches the URI; or a deny prefix matches (deny wins); or there
 * are windows and now is in none of them.
 *
 * Pure functions: no state, no allocation, the clock is an argument, so any
 * thread may call them and tests control time. A malformed blob (never
 * stored: prefs_validate guards the door) denies everything (fail closed).
 */
#ifndef ICS_NET_PREFS_H
#define ICS_NET_PREFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PREFS_PREFIX_MAX 1024u /* one URI prefix: 1..1024 bytes */

/* 0 if value is a well-formed PREFS_SET value, else -EINVAL with *msg
 * (may be NULL) a static ASCII reason. */
int prefs_validate(const void *value, size_t len, const char **msg);

/* Whether a tpsp request for uri at now_us (unix microseconds, UTC) is
 * allowed by the blob. len == 0 (no prefs): always true. */
bool prefs_allows(const void *blob, size_t len, const void *uri, size_t ulen,
                  uint64_t now_us);

/* Retention bound in seconds (0 = none or no blob). */
uint32_t prefs_retention(const void *blob, size_t len);

/* The expires_at (unix seconds, 0 = never) a row mapped now_s for a device
 * with this blob must get: the earlier of expires_at and now_s + retention
 * (retention enforced as an expiry fixed at map time, as the store does
 * for its global max_row_age). Unchanged without a retention bound. */
uint32_t prefs_cap_expiry(const void *blob, size_t len, uint32_t now_s, uint32_t expires_at);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_PREFS_H */
