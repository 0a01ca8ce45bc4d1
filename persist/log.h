/*
 * log.h — the replication seam: what the store needs from "the log".
 *
 * The store appends batches of records in LSN order, asks for them to be
 * made durable, replays them from an LSN at start, and releases the prefix a
 * snapshot covers. The local WAL (wal_log_*, persist/wal_log.c) is one
 * implementation; a replicated log (Raft, a quorum of peers) can implement
 * the same table later and be handed to the store without touching engine/
 * or net/: "durable" then means "on a quorum".
 *
 * Records handed to append are WAL records (persist/wal.h) whose header has
 * len/lsn/type set and whose payload is plaintext; the implementation
 * seals and checksums them as its format wants. append and sync are called
 * from the store's commit thread only; release from its snapshot thread;
 * bytes from any thread.
 */
#ifndef ICS_PERSIST_LOG_H
#define ICS_PERSIST_LOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One replayed record: plaintext payload, valid during the call. */
typedef int (*store_log_apply_fn)(void *arg, uint64_t lsn, uint8_t type,
                                  const uint8_t *payload, size_t len);

struct store_log_ops {
    /* Writes the batch (not yet durable). 0 or a negative errno. */
    int (*append)(void *log, uint8_t *recs, size_t n, uint64_t first_lsn);
    /* Everything appended so far is durable when this returns 0. */
    int (*sync)(void *log);
    /* Calls fn for every record with LSN > after, in order. *last gets the
     * highest LSN seen (at least after). A damaged tail is dealt with per
     * the implementation's rules; other damage fails with a message. */
    int (*replay)(void *log, uint64_t after, store_log_apply_fn fn, void *arg,
                  uint64_t *last, char *err, size_t errlen);
    /* Records with LSN <= upto are covered elsewhere and may be dropped. */
    int (*release)(void *log, uint64_t upto);
    /* Bytes and segments held. */
    void (*usage)(void *log, uint64_t *bytes, uint64_t *segments);
    void (*close)(void *log);
};

#ifdef __cplusplus
}
#endif
#endif
