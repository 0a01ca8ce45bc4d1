/*
 * snap.h — snapshot files: format, pure block/row decoders, writer, loader.
 *
 * A snapshot is a fuzzy image of the engine: device records are read with
 * engine_iterate_devices while writers go on, so it holds every row present
 * for the whole iteration plus some rows changed meanwhile in their old or
 * new state; replaying the WAL from the header's start LSN (idempotently)
 * makes it exact. Each record's rows, owner, prefs and history come from
 * one visit of that record, history with its ring's logged key, so the
 * replay adds exactly the entries the image lacks. It is published only after every LSN up to its END LSN is
 * durable in the WAL, so it never holds a change the log lacks.
 *
 * File: the 64-byte header of wal.h (magic "ICSSNP\0\1", lsn = start LSN),
 * then blocks:
 *   0 u32 len   payload bytes on disk (+16 tag if sealed)
 *   4 u32 crc   CRC32C of bytes 0..3 then 8..12+len
 *   8 u8  type  SNAP_ROWS, SNAP_AUX, SNAP_END (last block), SNAP_DEVS, SNAP_DEVS2
 *   9 u8[3] 0
 *  12 payload   sealed: nonce counter = block index (1, 2, ...), AAD = bytes 8..11
 * ROWS payload: rows, each
 *   u8 flags (1 new device, 2 new URI, 4 device has prefs)
 *   [new device: varint len, device ID, varint len, owner, [varint len, prefs]]
 *   [new URI: varint len, URI (gets the block's next URI id) | varint URI id]
 *   varint len, UTI; varint expires_at; varint LSN
 * so a device ID, owner and URI are written once per run of rows instead of
 * per row (a URI table per block, at most SNAP_URI_MAX entries).
 * DEVS payload (device records: history, and the owner and prefs of those
 * without rows), entries, each
 *   u8 flags (1 meta: a record without rows, owner [and prefs] follow;
 *             2 has prefs, only with 1)
 *   varint len, device ID; [meta: varint len, owner; [varint len, prefs]]
 *   varint key LSN, varint key part (the ring's newest logged entry)
 *   varint n, then n history entries, oldest first, each
 *     u8 event (1 map, 2 demap, 4 expiry: inquiries are not kept),
 *     varint micros, varint len, principal, varint len, URI, varint len, UTI
 * A device has an entry if it has no rows or a nonzero key; a long history
 * may take several entries of one device (later ones without meta), which
 * the loader appends in order. Files written before DEVS existed have no
 * such block and load as before (no history, no row-less records).
 * DEVS2 payload (type 5, written since; DEVS is only read): a record's rows
 * and history together, so entries point at its rows and at per-block
 * tables instead of repeating bytes. Each block has a URI table and a
 * principal table (a literal takes the next id while the table has fewer
 * than SNAP_URI_MAX) and the micros of its previous history entry (0 at
 * the block's start). Entries, each
 *   u8 flags (1 meta: a record without rows; 2 has prefs, with 1 or 4;
 *             4 rows follow)
 *   varint len, device ID; [1|4: varint len, owner; [2: varint len, prefs]]
 *   [4: varint nrows (1..SNAP_DEV_ROWS_MAX), rows: uref, varint len, UTI,
 *       varint expires_at, varint LSN]
 *   varint key LSN, varint key part, varint n, n history entries (oldest
 *   first), each
 *     u8 h: bits 0..2 event (1 map, 2 demap, 4 expiry), 8 principal is a
 *           literal, 16 URI and UTI are those of a row of this entry
 *     varint zigzag(micros - previous micros)
 *     [8: varint len, principal | varint principal id]
 *     [16: varint row index | uref, varint len, UTI]
 *   uref: varint x; x even: URI id x/2, x odd: a literal of x/2 bytes.
 * A record's rows beyond SNAP_DEV_ROWS_MAX (or all of them, when it has no
 * history and a zero key) go to ROWS blocks as before.
 * AUX payload: u8 kind, opaque bytes (one record of a module's dump).
 * END payload: varint end LSN, varint rows, varint devices, varint blocks.
 * Varints are LEB128.
 */
#ifndef ICS_PERSIST_SNAP_H
#define ICS_PERSIST_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "wal.h"

#ifdef __cplusplus
extern "C" {
#endif

struct seal;
struct store_io;

#define SNAP_BLK_HDR 12u
#define SNAP_BLOCK_MAX (8u << 20)
#define SNAP_BLOCK_TARGET (1u << 20)
#define SNAP_URI_MAX 4096u
#define SNAP_DEV_ROWS_MAX 64u
enum snap_type { SNAP_ROWS = 1, SNAP_AUX = 2, SNAP_END = 3, SNAP_DEVS = 4, SNAP_DEVS2 = 5 };

struct snap_block {
    uint8_t type;
    const uint8_t *payload;
    uint32_t len;
    const uint8_t *hdr;
};
/* bytes spanned (> 0), 0 need more, -EBADMSG checksum, -EPROTO header. */
long snap_block_decode(const uint8_t *p, size_t n, struct snap_block *b);

struct snap_row {
    struct wal_bytes dev, owner, prefs, uri, uti;
    int new_dev, has_prefs;
    uint32_t expires_at;
    uint64_t lsn;
};
/* Iterates the rows of one (opened) ROWS payload. Pure, no allocation. */
struct snap_rows {
    const uint8_t *p;
    size_t n;
    struct snap_row cur;
    int have_dev;
    uint32_t nuris;
    struct wal_bytes uris[SNAP_URI_MAX];
};
void snap_rows_init(struct snap_rows *it, const uint8_t *p, size_t n);
/* 1 row in *row (valid while the payload is), 0 end, -EPROTO. */
int snap_rows_next(struct snap_rows *it, struct snap_row *row);

/* A row of a DEVS2 entry; the block state a history decodes from. */
struct snap_drow {
    struct wal_bytes uri, uti;
    uint32_t expires_at;
    uint64_t lsn;
};
struct snap_hist_state { uint64_t micros; uint32_t nuris, nprins; };

/* Device records of one (opened) DEVS payload. Pure, no allocation. */
struct snap_dev {
    struct wal_bytes dev, owner, prefs;
    int meta, has_prefs;
    uint64_t hist_lsn;
    uint32_t hist_part;
    uint64_t nhist;
    struct wal_bytes hist;   /* the n entries, for snap_hist_next */
    /* DEVS2 only: the entry's rows, and the block state its history
     * decodes from (snap_hist2_init). */
    uint32_t nrows;
    const struct snap_drow *rows;
    struct snap_hist_state hist0;
};
struct snap_devs { const uint8_t *p; size_t n; };
void snap_devs_init(struct snap_devs *it, const uint8_t *p, size_t n);
/* 1 entry in *d (valid while the payload is; its history already checked
 * whole), 0 end, -EPROTO. */
int snap_devs_next(struct snap_devs *it, struct snap_dev *d);
/* Next history entry of d->hist (advances *rest): 1, 0 end, -EPROTO.
 * h's pointers point into the payload; lsn/part are 0. */
int snap_hist_next(struct wal_bytes *rest, struct engine_hist *h);

/* Device records of one (opened) DEVS2 payload. Pure, no allocation: the
 * iterator holds the block's tables and the current entry's rows. */
struct snap_devs2 {
    const uint8_t *p;
    size_t n;
    struct snap_hist_state st;     /* the block's state after the last entry */
    struct wal_bytes uris[SNAP_URI_MAX], prins[SNAP_URI_MAX];
    struct snap_drow rows[SNAP_DEV_ROWS_MAX];
};
void snap_devs2_init(struct snap_devs2 *it, const uint8_t *p, size_t n);
/* 1 entry in *d (d->rows point into it->rows: valid until the next call;
 * owner/prefs/dev/hist into the payload; history checked whole), 0 end,
 * -EPROTO. d->hist0 is the state its history decodes from. */
int snap_devs2_next(struct snap_devs2 *it, struct snap_dev *d);
/* Decodes an entry's history again: init with the entry (and a copy of its
 * rows, which may outlive it->rows), then next: 1, 0 end, -EPROTO. Only
 * for entries snap_devs2_next returned from the same iterator. */
struct snap_hist2 {
    const struct snap_devs2 *it;
    const struct snap_drow *rows;
    uint32_t nrows;
    struct wal_bytes rest;
    struct snap_hist_state st;
};
void snap_hist2_init(struct snap_hist2 *c, const struct snap_devs2 *it,
                     const struct snap_dev *d, const struct snap_drow *rows);
int snap_hist2_next(struct snap_hist2 *c, struct engine_hist *h);

struct snap_end { uint64_t end_lsn, rows, devices, blocks; };
int snap_end_decode(const uint8_t *p, size_t n, struct snap_end *e);

/* --- loader ------------------------------------------------------------ */

struct snap_info {
    uint64_t start_lsn, end_lsn, rows, devices, blocks, conflicts;
    uint64_t bad_off;          /* on failure: offset of the bad block */
    uint64_t dev_records;      /* DEVS entries, and the history entries */
    uint64_t hist_entries;     /* they hold */
};
typedef int (*snap_aux_fn)(void *arg, uint8_t kind, const void *p, size_t n);
/* Checks (e == NULL) or loads (into e) a whole snapshot held in memory.
 * seal may be NULL or off for plain files; a sealed file needs a key.
 * 0, or a negative errno with a message in err (offset, what). */
int snap_load_mem(engine_t *e, const uint8_t *p, size_t n, const struct seal *seal,
                  snap_aux_fn aux, void *aux_arg, struct snap_info *info,
                  char *err, size_t errlen);

/* --- writer ------------------------------------------------------------ */

struct snap_writer;
int snap_writer_open(struct snap_writer **out, const struct store_io *io,
                     const char *path, uint64_t start_lsn, uint64_t now_us,
                     const struct seal *seal);
/* Adds a row; memory work only, so it may run inside an engine_iterate
 * callback. snap_writer_drain (outside the callback) writes what is done. */
int snap_writer_row(struct snap_writer *w, const struct engine_row *row);
/* Adds a device record's DEVS entry if it needs one (no rows, or history);
 * memory work only: call it from the engine_iterate_devices dev_fn that
 * got d (it reads the history with engine_device_history). */
int snap_writer_device(struct snap_writer *w, engine_t *e, const struct engine_device *d);
int snap_writer_drain(struct snap_writer *w);
int snap_writer_aux(struct snap_writer *w, uint8_t kind, const void *p, size_t n);
/* Writes END and fdatasyncs; the caller then durable-replaces the file. */
int snap_writer_finish(struct snap_writer *w, uint64_t end_lsn);
uint64_t snap_writer_bytes(const struct snap_writer *w);
uint64_t snap_writer_rows(const struct snap_writer *w);
void snap_writer_close(struct snap_writer *w);   /* frees; closes the fd */

#ifdef __cplusplus
}
#endif
#endif
