/*
 * history.h — the transparency side of X.1363: who got a device's data and
 * when (wire-v1 HISTORY), on top of the engine's per-device history ring.
 *
 * Map, demap and expiry entries are added by the store as it applies each
 * change (and so are rebuilt from the log on restart). Inquiry entries are
 * added by the server for every row a tpsp inquiry returned, from inside
 * the engine's row callback (history_record_row: no second device lookup),
 * and are kept in memory only: logging each inquiry would put a disk write
 * on the read hot path. history_record_inquiry is the same for a caller
 * that is not inside a row callback (it looks the device up again).
 *
 * Visibility (wire-v1 3.3): admin and the device's owner iot_sp see every
 * entry; a tpsp sees only entries whose URI is in its scopes and that the
 * device's preferences allow it now (as its rows); anyone else,
 * or a tpsp with nothing to see, gets -ENOENT (NOT_FOUND), as if the device
 * did not exist.
 *
 * Threads: any (engine_history_* are; the calling thread must be engine
 * online for history_encode, which reads).
 */
#ifndef ICS_NET_HISTORY_H
#define ICS_NET_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "engine.h"
#include "principal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends the HISTORY response value (u32 n, n x (u64 unix micros,
 * u8 event, str16 principal, str16 URI, str16 UTI), newest first, at most
 * max entries visible to p; max 0 = all kept). A tpsp's entries are also
 * those the device's preferences allow at now_us (unix micros), as for its
 * rows. -ENOENT as above, -ENOMEM; on error out is as it was. */
int history_encode(engine_t *e, const void *dev, size_t dev_len,
                   const struct principal *p, uint32_t max, uint64_t now_us,
                   struct buf *out);

/* Records one inquiry (event 3) by principal for (uri, uti) at now_us;
 * -ENOENT if the device is unknown, -EINVAL for a field over 0xffff bytes. */
int history_record_inquiry(engine_t *e, const void *dev, size_t dev_len,
                           const void *principal, size_t plen,
                           const void *uri, size_t ulen,
                           const void *uti, size_t tlen, uint64_t now_us);

/* The same for the row an engine_row_fn is visiting (its URI and UTI),
 * from inside that callback of engine_inquire_device[_ex|_batch] or
 * engine_inquire_binding: no second device lookup (engine_history_add_row).
 * The server's hot path: pass ENGINE_INQ_RECORD to engine_inquire_device_ex
 * when the visit may record. 0 (also when history is off), -EINVAL. */
int history_record_row(engine_t *e, const struct engine_row *row,
                       const void *principal, size_t plen, uint64_t now_us);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_HISTORY_H */
