/*
 * fuzz_wal_record — the WAL's pure decoders on untrusted bytes (a damaged
 * or hostile data directory). First byte selects:
 *   0: the rest is a segment file: header, then records until damage;
 *      wal_resync after the damage (what recovery does).
 *   1: byte 1 is a record type, the rest its plaintext payload: decoded
 *      and, if accepted, re-encoded byte for byte (codec round trip).
 * Checksums stop random bytes early; mode 1 reaches the payload decoder
 * directly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    if (mode % 2 == 0) {
        struct wal_fhdr h;
        size_t off = 0;
        if (wal_fhdr_decode(data, size, wal_magic_log, &h) == 0)
            off = WAL_FHDR_SIZE;
        uint64_t last = 0;
        while (off < size) {
            struct wal_rec r;
            long span = wal_rec_decode(data + off, size - off, &r);
            if (span <= 0) {
                long next = wal_resync(data + off, size - off, last);
                if (next > 0 && (size_t)next >= size - off)
                    abort(); /* a resync offset is always inside the input */
                break;
            }
            if ((size_t)span > size - off || r.payload + r.len > data + size)
                abort();
            struct wal_change c;
            (void)wal_change_decode(r.payload, r.len, r.type, &c);
            last = r.lsn;
            off += (size_t)span;
        }
        return 0;
    }
    uint8_t type = data[0];
    struct wal_change c;
    if (wal_change_decode(data + 1, size - 1, type, &c) != 0)
        return 0;
    size_t n = wal_change_size(&c);
    if (n != size - 1)
        abort(); /* an accepted payload has exactly one encoding */
    uint8_t *out = malloc(n);
    if (!out)
        return 0;
    wal_change_encode(out, &c);
    if (memcmp(out, data + 1, n) != 0)
        abort();
    free(out);
    return 0;
}
