/*
 * errors.c — errno <-> wire status, one table (see errors.h).
 */
#include "errors.h"

#include <errno.h>
#include <stddef.h>

#include "wire.h"

static const struct {
    int err;            /* positive errno */
    uint16_t status;
    const char *name;   /* status name */
    const char *msg;    /* default message */
} table[] = {
    {0, WIRE_S_OK, "OK", "ok"},
    {ENOENT, WIRE_S_NOT_FOUND, "NOT_FOUND", "not found"},
    {EEXIST, WIRE_S_EXISTS, "EXISTS", "exists"},
    {E2BIG, WIRE_S_TOO_LARGE, "TOO_LARGE", "too large"},
    {EMSGSIZE, WIRE_S_TOO_LARGE, "TOO_LARGE", "frame too large"},
    {EINVAL, WIRE_S_EINVAL, "EINVAL", "invalid arguments"},
    {EPROTO, WIRE_S_EINVAL, "EINVAL", "bad frame"},
    {EPERM, WIRE_S_AUTH_ERROR, "AUTH_ERROR", "authentication required or failed"},
    {EACCES, WIRE_S_ACCESS_DENIED, "ACCESS_DENIED", "access denied"},
    {ENOSYS, WIRE_S_UNKNOWN_COMMAND, "UNKNOWN_COMMAND", "unknown command"},
    {ENOMEM, WIRE_S_ENOMEM, "ENOMEM", "out of memory"},
    {EOPNOTSUPP, WIRE_S_NOT_SUPPORTED, "NOT_SUPPORTED", "not supported"},
    {EIO, WIRE_S_INTERNAL, "INTERNAL", "internal error"},
    {EROFS, WIRE_S_TMPFAIL, "TMPFAIL", "temporary failure: store is read-only"},
    {EAGAIN, WIRE_S_TMPFAIL, "TMPFAIL", "temporary failure: try again"},
    {ESTALE, WIRE_S_KEY_ROTATED, "KEY_ROTATED", "signing key retired"},
    {EBADMSG, WIRE_S_BAD_SIGNATURE, "BAD_SIGNATURE", "bad signature"},
};

#define N (sizeof table / sizeof table[0])

uint16_t ics_status(int err)
{
    int e = err < 0 ? -err : err;
    for (size_t i = 0; i < N; i++)
        if (table[i].err == e)
            return table[i].status;
    return WIRE_S_INTERNAL;
}

const char *ics_strerror(int err)
{
    int e = err < 0 ? -err : err;
    for (size_t i = 0; i < N; i++)
        if (table[i].err == e)
            return table[i].msg;
    return "internal error";
}

const char *ics_status_name(uint16_t status)
{
    for (size_t i = 0; i < N; i++)
        if (table[i].status == status)
            return table[i].name;
    if (status == WIRE_S_INTERNAL)
        return "INTERNAL";
    return "UNKNOWN";
}
