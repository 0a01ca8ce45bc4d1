/*
 * errors.h — the one place errno values meet wire status codes.
 *
 * Every function of icsd returns 0 or a negative errno; a handler turns
 * its result into a wire status with ics_status() and into a message with
 * ics_strerror(), both from ONE table in errors.c, so an errno is never
 * translated twice or in two ways. Pure, any thread.
 */
#ifndef ICS_NET_ERRORS_H
#define ICS_NET_ERRORS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Wire status for a result: 0 -> OK, -ENOENT -> NOT_FOUND, ...; an errno
 * not in the table maps to INTERNAL. */
uint16_t ics_status(int err);
/* Short ASCII text for a result (never NULL): the default message of an
 * error response. */
const char *ics_strerror(int err);
/* Name of a wire status ("NOT_FOUND"), or "UNKNOWN". */
const char *ics_status_name(uint16_t status);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_ERRORS_H */
