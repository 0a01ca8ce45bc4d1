/*
 * wal_log.c — the local WAL: segment files, append + fdatasync, replay with
 * the torn-tail / corruption rules of wal_log.h.
 */
#include "wal_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "seal.h"
#include "wal.h"

static const uint8_t keycheck_ad[] = "icsd key check";

struct seg { uint64_t first_lsn, size; };

struct wal_log {
    struct wal_log_config cfg;
    const struct seal *seal;       /* NULL when plain */
    pthread_mutex_t mu;            /* guards segs/nsegs/bytes (release vs append) */
    struct seg *segs;
    size_t nsegs, segcap;
    uint64_t bytes;
    /* The open segment: written by the commit thread; fdmu orders a
     * rotation (which replaces fd) against a sync from another thread
     * (STORE_RELAXED's syncer). */
    pthread_mutex_t fdmu;
    int fd;
    uint64_t off, ctr;
    uint64_t zeroed;               /* the open segment is zero-filled up to here */
    uint8_t nonce[12];
    uint8_t *obuf;
    size_t ocap;
};

static void logf_(struct wal_log *l, enum store_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(struct wal_log *l, enum store_log_level lvl, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (l->cfg.log)
        l->cfg.log(l->cfg.log_ctx, lvl, msg);
}

static void seg_path(const struct wal_log *l, uint64_t first, char *out, size_t n)
{
    snprintf(out, n, "%s/wal-%016llx.log", l->cfg.dir, (unsigned long long)first);
}

int wal_log_open(struct wal_log **out, const struct wal_log_config *cfg)
{
    struct wal_log *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->cfg = *cfg;
    l->seal = cfg->seal && cfg->seal->on ? cfg->seal : NULL;
    l->fd = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->fdmu, NULL);
    *out = l;
    return 0;
}

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->first_lsn, y = ((const struct seg *)b)->first_lsn;
    return x < y ? -1 : x > y;
}

static int seg_push(struct wal_log *l, uint64_t first, uint64_t size)
{
    if (l->nsegs == l->segcap) {
        size_t c = l->segcap ? l->segcap * 2 : 16;
        struct seg *s = realloc(l->segs, c * sizeof(*s));
        if (!s)
            return -ENOMEM;
        l->segs = s;
        l->segcap = c;
    }
    l->segs[l->nsegs].first_lsn = first;
    l->segs[l->nsegs].size = size;
    l->nsegs++;
    l->bytes += size;
    return 0;
}

static int list_segments(struct wal_log *l)
{
    DIR *d = opendir(l->cfg.dir);
    if (!d)
        return -errno;
    struct dirent *de;
    int r = 0;
    while ((de = readdir(d))) {
        uint64_t first;
        if (wal_parse_name(de->d_name, "wal-", "log", &first) == 0) {
            if ((r = seg_push(l, first, 0)) < 0)
                break;
        }
    }
    closedir(d);
    if (l->nsegs)
        qsort(l->segs, l->nsegs, sizeof(*l->segs), seg_cmp);
    return r;
}

static int truncate_file(struct wal_log *l, const char *path, uint64_t size)
{
    const struct store_io *io = l->cfg.io;
    int fd = io->open(io->ctx, path, O_WRONLY, 0);
    if (fd < 0)
        return fd;
    int r = io->ftruncate(io->ctx, fd, size);
    if (r == 0)
        r = io->fsync(io->ctx, fd);
    io->close(io->ctx, fd);
    return r;
}

static int all_zero(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Removes segments [from, nsegs) from disk and the list. */
static int drop_segments(struct wal_log *l, size_t from)
{
    char path[4096];
    for (size_t i = from; i < l->nsegs; i++) {
        seg_path(l, l->segs[i].first_lsn, path, sizeof(path));
        int r = l->cfg.io->unlink(l->cfg.io->ctx, path);
        if (r < 0 && r != -ENOENT)
            return r;
        l->bytes -= l->segs[i].size;
        logf_(l, STORE_LOG_WARN, "removed segment %s", path);
    }
    l->nsegs = from;
    return store_io_sync_dir(l->cfg.io, l->cfg.dir);
}

static int wl_replay(void *lp, uint64_t after, store_log_apply_fn fn, void *arg,
                     uint64_t *last, char *err, size_t errlen)
{
    struct wal_log *l = lp;
    int r = list_segments(l);
    if (r < 0) {
        snprintf(err, errlen, "cannot list %s: %s", l->cfg.dir, strerror(-r));
        return r;
    }
    *last = after;
    if (l->nsegs == 0)
        return 0;
    /* Segments wholly covered by the snapshot are skipped (and later
     * released); the first one replayed must start at or before after+1. */
    size_t start = 0;
    while (start + 1 < l->nsegs && l->segs[start + 1].first_lsn <= after + 1)
        start++;
    if (l->segs[start].first_lsn > after + 1) {
        char p[4096];
        seg_path(l, l->segs[start].first_lsn, p, sizeof(p));
        snprintf(err, errlen, "log gap: %s starts at LSN %llu but the snapshot ends "
                 "at LSN %llu (a segment is missing)", p,
                 (unsigned long long)l->segs[start].first_lsn, (unsigned long long)after);
        return -EBADMSG;
    }
    uint64_t prev = 0;     /* LSN of the last record seen; 0 = none yet */
    uint8_t *plain = NULL;
    size_t pcap = 0;
    char path[4096];
    for (size_t i = 0; i < l->nsegs; i++) {
        struct store_io_buf fb;
        seg_path(l, l->segs[i].first_lsn, path, sizeof(path));
        if (i < start) {
            /* Covered by the snapshot: only its size matters. */
            int fd = l->cfg.io->open(l->cfg.io->ctx, path, O_RDONLY, 0);
            uint64_t sz = 0;
            if (fd >= 0) {
                l->cfg.io->fsize(l->cfg.io->ctx, fd, &sz);
                l->cfg.io->close(l->cfg.io->ctx, fd);
            }
            l->segs[i].size = sz;
            l->bytes += sz;
            continue;
        }
        r = store_io_load(l->cfg.io, path, &fb);
        const uint8_t *buf = fb.p;
        uint64_t size = fb.n;
        if (r < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(-r));
            goto fail;
        }
        l->segs[i].size = size;
        l->bytes += size;
        int is_last = i + 1 == l->nsegs;
        struct wal_fhdr h;
        r = wal_fhdr_decode(buf, size, wal_magic_log, &h);
        if (r == 0 && h.lsn != l->segs[i].first_lsn)
            r = -EPROTO;
        if (r < 0) {
            store_io_unload(l->cfg.io, &fb);
            if (is_last && (r == -EAGAIN || r == -EBADMSG)) {
                /* Crashed while creating the segment: no record was ever
                 * acknowledged from it (its header is synced first). */
                logf_(l, STORE_LOG_WARN, "torn header of newest segment %s "
                      "(%llu bytes): removing it", path, (unsigned long long)size);
                if ((r = drop_segments(l, i)) < 0) {
                    snprintf(err, errlen, "cannot remove %s: %s", path, strerror(-r));
                    goto fail;
                }
                break;
            }
            snprintf(err, errlen, "%s: bad segment header at offset 0 (%s), after LSN %llu",
                     path, r == -EBADMSG ? "checksum mismatch" : "not a segment",
                     (unsigned long long)prev);
            r = -EBADMSG;
            goto fail;
        }
        if (prev && h.lsn != prev + 1) {
            store_io_unload(l->cfg.io, &fb);
            snprintf(err, errlen, "%s: starts at LSN %llu, expected %llu (LSN gap)",
                     path, (unsigned long long)h.lsn, (unsigned long long)prev + 1);
            r = -EBADMSG;
            goto fail;
        }
        int sealed = !!(h.flags & WAL_F_ENCRYPTED);
        if (sealed) {
            uint8_t none[1];
            if (!l->seal) {
                store_io_unload(l->cfg.io, &fb);
                snprintf(err, errlen, "%s is encrypted and no key file was given", path);
                r = -ENOKEY;
                goto fail;
            }
            if (seal_open(l->seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad), h.check,
                          16, none) < 0) {
                store_io_unload(l->cfg.io, &fb);
                snprintf(err, errlen, "wrong key for %s", path);
                r = -EKEYREJECTED;
                goto fail;
            }
        }
        uint64_t off = WAL_FHDR_SIZE, ctr = 0, expect = h.lsn;
        while (off < size) {
            struct wal_rec rec;
            long span = wal_rec_decode(buf + off, size - off, &rec);
            const char *why = NULL;
            if (span <= 0)
                why = span == 0 ? "cut short" : span == -EBADMSG ? "checksum mismatch"
                                                                  : "malformed header";
            else if (rec.lsn != expect)
                why = "LSN out of sequence";
            const uint8_t *pl = rec.payload;
            size_t pn = span > 0 ? rec.len : 0;
            ctr++;
            if (!why && sealed) {
                if (pn < WAL_TAG) {
                    why = "sealed payload too short";
                } else {
                    if (pcap < pn) {
                        free(plain);
                        pcap = pn * 2;
                        plain = malloc(pcap);
                        if (!plain) {
                            store_io_unload(l->cfg.io, &fb);
                            r = -ENOMEM;
                            goto fail;
                        }
                    }
                    if (seal_open(l->seal, h.nonce, ctr, rec.hdr + 8, 12, pl, pn, plain) < 0)
                        why = "does not authenticate";
                    pl = plain;
                    pn -= WAL_TAG;
                }
            }
            if (why && all_zero(buf + off, size - off))
                break; /* the zero-filled rest of the segment: its clean end */
            if (why) {
                long next = is_last ? wal_resync(buf + off, size - off, expect - 1) : 0;
                if (is_last && next < 0) {
                    logf_(l, STORE_LOG_WARN, "torn record at the tail of %s, offset %llu "
                          "(LSN %llu, %s): truncating %llu bytes", path,
                          (unsigned long long)off, (unsigned long long)expect, why,
                          (unsigned long long)(size - off));
                } else if (l->cfg.truncate_corrupt) {
                    logf_(l, STORE_LOG_ERROR, "corrupt record in %s at offset %llu (LSN %llu, "
                          "%s): truncating the log there as asked (--truncate-corrupt); "
                          "%llu bytes and %zu later segment(s) dropped", path,
                          (unsigned long long)off, (unsigned long long)expect, why,
                          (unsigned long long)(size - off), l->nsegs - i - 1);
                } else {
                    store_io_unload(l->cfg.io, &fb);
                    snprintf(err, errlen, "corrupt record in %s at offset %llu (LSN %llu, %s); "
                             "valid records follow, refusing to drop them (run ics-check, or "
                             "start with truncate_corrupt to cut the log there)", path,
                             (unsigned long long)off, (unsigned long long)expect, why);
                    r = -EBADMSG;
                    goto fail;
                }
                store_io_unload(l->cfg.io, &fb);
                l->bytes -= size - off;
                l->segs[i].size = off;
                if ((r = truncate_file(l, path, off)) < 0 ||
                    (r = drop_segments(l, i + 1)) < 0) {
                    snprintf(err, errlen, "cannot truncate %s: %s", path, strerror(-r));
                    goto fail;
                }
                break;
            }
            if (rec.lsn > after) {
                r = fn(arg, rec.lsn, rec.type, pl, pn);
                if (r < 0) {
                    store_io_unload(l->cfg.io, &fb);
                    snprintf(err, errlen, "record in %s at offset %llu (LSN %llu, %s) cannot "
                             "be applied: %s", path, (unsigned long long)off,
                             (unsigned long long)rec.lsn, wal_type_name(rec.type),
                             strerror(-r));
                    goto fail;
                }
                *last = rec.lsn;
            }
            prev = rec.lsn;
            expect++;
            off += (uint64_t)span;
        }
        store_io_unload(l->cfg.io, &fb);
        if (i + 1 == l->nsegs && off == WAL_FHDR_SIZE && l->segs[i].first_lsn > after) {
            /* Newest segment without records: remove it, the next append
             * creates one of the same name with a fresh nonce base. */
            if ((r = drop_segments(l, i)) < 0) {
                snprintf(err, errlen, "cannot remove %s: %s", path, strerror(-r));
                goto fail;
            }
        }
        if (i + 1 < l->nsegs && l->segs[i + 1].first_lsn != expect) {
            seg_path(l, l->segs[i + 1].first_lsn, path, sizeof(path));
            snprintf(err, errlen, "%s: starts at LSN %llu, expected %llu (LSN gap)", path,
                     (unsigned long long)l->segs[i + 1].first_lsn,
                     (unsigned long long)expect);
            r = -EBADMSG;
            goto fail;
        }
    }
    if (prev > *last)
        *last = prev;
    free(plain);
    return 0;
fail:
    free(plain);
    return r;
}

/* Segments are zero-filled ahead of the write position, a chunk at a time:
 * a record then overwrites blocks the file already has, so its fdatasync
 * flushes data only, without the journal commit an append (new size, new
 * extents) needs — about twice the syncs per second on ext4 (measured in
 * bench/README.md). Only one sync per chunk pays for the metadata. Recovery
 * reads an all-zero tail as the clean end of a segment. */
static uint64_t zero_chunk(const struct wal_log *l)
{
    uint64_t c = l->cfg.segment_bytes / 4;
    if (c > (1u << 20))
        c = 1u << 20;
    return c & ~(uint64_t)4095;
}

static int zero_fill(struct wal_log *l, int fd, uint64_t upto)
{
    static const uint8_t zeros[64 << 10];
    while (l->zeroed < upto) {
        size_t n = upto - l->zeroed > sizeof(zeros) ? sizeof(zeros) : (size_t)(upto - l->zeroed);
        ssize_t w = l->cfg.io->pwrite(l->cfg.io->ctx, fd, zeros, n, l->zeroed);
        if (w < 0)
            return (int)w;
        l->zeroed += n;
    }
    return 0;
}

static int new_segment(struct wal_log *l, uint64_t first)
{
    const struct store_io *io = l->cfg.io;
    char path[4096];
    seg_path(l, first, path, sizeof(path));
    int fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return fd;
    struct wal_fhdr h = {.version = 1, .lsn = first,
                         .created_us = l->cfg.now_us(l->cfg.clock_ctx)};
    memcpy(h.magic, wal_magic_log, 8);
    seal_random(h.nonce, 12);
    if (l->seal) {
        h.flags = WAL_F_ENCRYPTED;
        int r = seal_seal(l->seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad), NULL, 0,
                          h.check);
        if (r < 0) {
            io->close(io->ctx, fd);
            return r;
        }
    }
    uint8_t hb[WAL_FHDR_SIZE];
    wal_fhdr_encode(hb, &h);
    ssize_t w = io->pwrite(io->ctx, fd, hb, sizeof(hb), 0);
    int r = w < 0 ? (int)w : 0;
    l->zeroed = WAL_FHDR_SIZE;
    if (r == 0 && zero_chunk(l))
        r = zero_fill(l, fd, zero_chunk(l));
    if (r == 0)
        r = io->fdatasync(io->ctx, fd);
    if (r == 0)
        r = store_io_sync_dir(io, l->cfg.dir);
    if (r < 0) {
        io->close(io->ctx, fd);
        return r;
    }
    pthread_mutex_lock(&l->mu);
    r = seg_push(l, first, l->zeroed);
    pthread_mutex_unlock(&l->mu);
    if (r < 0) {
        io->close(io->ctx, fd);
        return r;
    }
    l->fd = fd;
    l->off = WAL_FHDR_SIZE;
    l->ctr = 0;
    memcpy(l->nonce, h.nonce, 12);
    return 0;
}

static int wl_append(void *lp, uint8_t *recs, size_t n, uint64_t first_lsn)
{
    struct wal_log *l = lp;
    const struct store_io *io = l->cfg.io;
    int r;
    if (l->fd < 0 || l->off >= l->cfg.segment_bytes) {
        pthread_mutex_lock(&l->fdmu);
        if (l->fd >= 0) {
            /* Relaxed mode may not have synced it yet. */
            r = io->fdatasync(io->ctx, l->fd);
            io->close(io->ctx, l->fd);
            l->fd = -1;
            if (r < 0) {
                pthread_mutex_unlock(&l->fdmu);
                return r;
            }
        }
        r = new_segment(l, first_lsn);
        pthread_mutex_unlock(&l->fdmu);
        if (r < 0)
            return r;
    }
    const uint8_t *out = recs;
    size_t outn = n;
    if (l->seal) {
        /* Count records to size the output: each grows by the tag. */
        size_t cnt = 0;
        for (size_t off = 0; off < n; cnt++)
            off += WAL_REC_HDR + wal_get32(recs + off);
        size_t need = n + cnt * WAL_TAG;
        if (l->ocap < need) {
            free(l->obuf);
            l->ocap = need * 2;
            l->obuf = malloc(l->ocap);
            if (!l->obuf) {
                l->ocap = 0;
                return -ENOMEM;
            }
        }
        size_t o = 0;
        for (size_t off = 0; off < n;) {
            uint32_t len = wal_get32(recs + off);
            uint8_t *h = l->obuf + o;
            memcpy(h, recs + off, WAL_REC_HDR);
            wal_put32(h, len + WAL_TAG);
            r = seal_seal(l->seal, l->nonce, ++l->ctr, h + 8, 12, recs + off + WAL_REC_HDR,
                          len, h + WAL_REC_HDR);
            if (r < 0)
                return r;
            wal_rec_finish(h, wal_get64(h + 8), h[16], len + WAL_TAG);
            o += WAL_REC_HDR + len + WAL_TAG;
            off += WAL_REC_HDR + len;
        }
        out = l->obuf;
        outn = o;
    } else {
        for (size_t off = 0; off < n;) {
            uint32_t len = wal_get32(recs + off);
            wal_rec_finish(recs + off, wal_get64(recs + off + 8), recs[off + 16], len);
            off += WAL_REC_HDR + len;
            l->ctr++;
        }
    }
    uint64_t chunk = zero_chunk(l);
    if (chunk && l->off + outn > l->zeroed) {
        r = zero_fill(l, l->fd, (l->off + outn + chunk - 1) / chunk * chunk + chunk);
        if (r < 0)
            return r;
    }
    ssize_t w = io->pwrite(io->ctx, l->fd, out, outn, l->off);
    if (w < 0)
        return (int)w;
    l->off += outn;
    uint64_t size = l->off > l->zeroed ? l->off : l->zeroed;
    pthread_mutex_lock(&l->mu);
    l->bytes += size - l->segs[l->nsegs - 1].size;
    l->segs[l->nsegs - 1].size = size;
    pthread_mutex_unlock(&l->mu);
    if (l->cfg.crash_point)
        l->cfg.crash_point("between write and fsync");
    return 0;
}

static int wl_sync(void *lp)
{
    struct wal_log *l = lp;
    pthread_mutex_lock(&l->fdmu);
    int r = l->fd < 0 ? 0 : l->cfg.io->fdatasync(l->cfg.io->ctx, l->fd);
    pthread_mutex_unlock(&l->fdmu);
    return r;
}

static int wl_release(void *lp, uint64_t upto)
{
    struct wal_log *l = lp;
    char path[4096];
    int r = 0;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        /* Segment 0 is wholly covered when the next one starts at or
         * before upto + 1; the newest segment is never released. */
        if (l->nsegs < 2 || l->segs[1].first_lsn > upto + 1) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        struct seg s = l->segs[0];
        memmove(l->segs, l->segs + 1, (l->nsegs - 1) * sizeof(*l->segs));
        l->nsegs--;
        l->bytes -= s.size;
        pthread_mutex_unlock(&l->mu);
        seg_path(l, s.first_lsn, path, sizeof(path));
        r = l->cfg.io->unlink(l->cfg.io->ctx, path);
        if (r < 0 && r != -ENOENT)
            return r;
        r = 1;
    }
    return r > 0 ? store_io_sync_dir(l->cfg.io, l->cfg.dir) : r;
}

static void wl_usage(void *lp, uint64_t *bytes, uint64_t *segments)
{
    struct wal_log *l = lp;
    pthread_mutex_lock(&l->mu);
    *bytes = l->bytes;
    *segments = l->nsegs;
    pthread_mutex_unlock(&l->mu);
}

static void wl_close(void *lp)
{
    struct wal_log *l = lp;
    if (!l)
        return;
    if (l->fd >= 0)
        l->cfg.io->close(l->cfg.io->ctx, l->fd);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->fdmu);
    free(l->segs);
    free(l->obuf);
    free(l);
}

static const struct store_log_ops ops = {
    wl_append, wl_sync, wl_replay, wl_release, wl_usage, wl_close,
};

const struct store_log_ops *wal_log_ops(void) { return &ops; }
