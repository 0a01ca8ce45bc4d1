/*
 * wal_log.h — the local write-ahead log: segment files in the data
 * directory, one implementation of log.h.
 *
 * Segments are named wal-<first LSN, 16 hex digits>.log and hold the file
 * header and records of wal.h. Appends go to the newest segment; when it
 * passes segment_bytes the next batch starts a new one (created, header
 * written, fdatasynced, directory fsynced before any record goes in). A
 * segment is never reopened for appending after a restart: recovery always
 * ends with the next append creating a fresh segment (fresh nonce base).
 * Recovery rules (wal_log_ops()->replay): records must carry consecutive
 * LSNs; damage at the tail of the newest segment with no valid record after
 * it is a torn write and is truncated (logged); any other damage fails
 * naming file, offset and LSN, unless truncate_corrupt, which cuts the log
 * there (dropping later segments) and says so.
 */
#ifndef ICS_PERSIST_WAL_LOG_H
#define ICS_PERSIST_WAL_LOG_H

#include <stdint.h>

#include "log.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

struct seal;
struct wal_log;

struct wal_log_config {
    const struct store_io *io;
    const char *dir;
    const struct seal *seal;        /* NULL or off: plain */
    uint64_t segment_bytes;
    int truncate_corrupt;
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
    void (*crash_point)(const char *where);  /* may be NULL */
    uint64_t (*now_us)(void *ctx);
    void *clock_ctx;
};

int wal_log_open(struct wal_log **out, const struct wal_log_config *cfg);
const struct store_log_ops *wal_log_ops(void);

#ifdef __cplusplus
}
#endif
#endif
