/*
 * wal.h — the write-ahead log's on-disk format: pure encoders and decoders.
 *
 * Owns: the byte layout of WAL segment files and of one record; the file
 * header shared with snapshot files; CRC32C. No I/O, no allocation: every
 * decoder is (bytes, len) -> record | need more | error, so the fuzzer and
 * ics-check drive exactly the code recovery runs.
 *
 * File header (64 bytes, little-endian), WAL segments and snapshots alike:
 *   0  magic[8]     "ICSWAL\0\1" or "ICSSNP\0\1"
 *   8  u32 version  1
 *  12  u32 flags    bit 0: encrypted (AES-256-GCM)
 *  16  u64 lsn      segment: LSN of its first record; snapshot: start LSN
 *  24  u64 created  unix microseconds
 *  32  nonce[12]    fresh random per file: base of every nonce in the file
 *  44  check[16]    encrypted: GCM tag of an empty message under nonce
 *                   counter 0 (tells a wrong key apart from damage); else 0
 *  60  u32 crc      CRC32C of bytes 0..59
 * Record (20-byte header, then the payload):
 *   0  u32 len      payload bytes on disk (ciphertext + 16-byte tag if sealed)
 *   4  u32 crc      CRC32C of bytes 0..3 then 8..20+len (covers the sealed
 *                   bytes, so damage and a wrong key are told apart)
 *   8  u64 lsn
 *  16  u8  type     enum wal_type
 *  17  u8  flags    0
 *  18  u16 0
 * Sealed payloads use nonce = file nonce with its last 8 bytes XORed with
 * the record's index in the file (1, 2, ...) and AAD = header bytes 8..19.
 * Change payload (plaintext): u64 micros, then the type's fields, each as
 * u16 length + bytes (prefs and aux data: u32 length + bytes), see
 * wal_change_encode.
 */
#ifndef ICS_PERSIST_WAL_H
#define ICS_PERSIST_WAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WAL_FHDR_SIZE 64u
#define WAL_REC_HDR 20u
#define WAL_REC_MAX (16u << 20)   /* payload bytes; larger is damage */
#define WAL_TAG 16u
#define WAL_F_ENCRYPTED 1u

extern const uint8_t wal_magic_log[8];
extern const uint8_t wal_magic_snap[8];

enum wal_type {
    WAL_MAP = 1, WAL_DEMAP = 2, WAL_DEMAP_DEVICE = 3, WAL_DEMAP_BINDING = 4,
    WAL_DEMAP_SERVICE = 5, WAL_EXPIRE = 6, WAL_PREFS = 7, WAL_AUX = 8,
    /* A tpsp's DEMAP_SERVICE: the rows of devices whose preferences allow
     * the URI at the record's micros (the store's filter decides, live and
     * on replay alike). Same fields as WAL_DEMAP_SERVICE. */
    WAL_DEMAP_SERVICE_PREFS = 9,
};
#define WAL_TYPE_MAX 9

uint32_t wal_crc32c(uint32_t crc, const void *p, size_t n);

struct wal_fhdr {
    uint8_t magic[8];
    uint32_t version, flags;
    uint64_t lsn, created_us;
    uint8_t nonce[12];
    uint8_t check[16];
};
void wal_fhdr_encode(uint8_t out[WAL_FHDR_SIZE], const struct wal_fhdr *h);
/* 0, or -EBADMSG (checksum), -EPROTO (magic/version), -EAGAIN (short). */
int wal_fhdr_decode(const uint8_t *p, size_t n, const uint8_t magic[8],
                    struct wal_fhdr *h);

struct wal_rec {
    uint64_t lsn;
    uint8_t type;
    const uint8_t *payload;   /* points into the input */
    uint32_t len;
    const uint8_t *hdr;       /* the 20 header bytes (AAD is hdr+8, 12 bytes) */
};
/* Decodes one record at p. Returns the bytes it spans (> 0), 0 if more
 * bytes are needed (a record cut short), -EBADMSG on a checksum mismatch,
 * -EPROTO on an impossible header (length, type, flags). */
long wal_rec_decode(const uint8_t *p, size_t n, struct wal_rec *r);
/* Writes a record header for a payload already at hdr+20 (len bytes) and
 * fills in its CRC. */
void wal_rec_finish(uint8_t *hdr, uint64_t lsn, uint8_t type, uint32_t len);
/* After damage at p: is there a valid record with LSN in (after, after+2^20]
 * anywhere in p[1..n)? Tells mid-log corruption (good records follow) from
 * a torn tail (nothing valid follows). Returns its offset or -1. */
long wal_resync(const uint8_t *p, size_t n, uint64_t after);

struct wal_bytes { const uint8_t *p; size_t n; };
struct wal_change {
    uint8_t type;
    uint64_t micros;
    struct wal_bytes dev, uri, uti, owner, actor, data; /* data: prefs or aux */
    uint32_t expires_at;
    uint8_t aux_kind;
};
/* Plaintext payload size of c. */
size_t wal_change_size(const struct wal_change *c);
/* Encodes c into out (wal_change_size bytes). */
void wal_change_encode(uint8_t *out, const struct wal_change *c);
/* Decodes a plaintext payload of the given type; fields point into p.
 * 0 or -EPROTO. */
int wal_change_decode(const uint8_t *p, size_t n, uint8_t type,
                      struct wal_change *c);
const char *wal_type_name(uint8_t type);
/* Parses a data directory file name "<prefix><16 hex digits>.<ext>"
 * (e.g. "wal-", "log"): 0 and *v, or -EINVAL for any other name. */
int wal_parse_name(const char *name, const char *prefix, const char *ext, uint64_t *v);

/* Little-endian helpers shared with snap.c. */
static inline void wal_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void wal_put64(uint8_t *p, uint64_t v)
{
    wal_put32(p, (uint32_t)v); wal_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint32_t wal_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static inline uint64_t wal_get64(const uint8_t *p)
{
    return (uint64_t)wal_get32(p) | (uint64_t)wal_get32(p + 4) << 32;
}

#ifdef __cplusplus
}
#endif
#endif
