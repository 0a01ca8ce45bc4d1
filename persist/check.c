/*
 * check.c — ics-check: verifies (and on request repairs) an icsd data
 * directory, like redis-check-aof / redis-check-rdb for both file kinds.
 *
 *   ics-check [--key FILE] [--dump] [--truncate [--yes]] DIR
 *
 * Checks every snapshot (checksums, authentication, END block) and every
 * WAL segment (header, record checksums, consecutive LSNs across segments,
 * that the log reaches back to the newest snapshot). --dump prints every
 * record. --truncate cuts the log at the first damaged record (after
 * printing exactly what goes and asking, unless --yes) and removes the
 * segments after it. Exit: 0 intact, 1 damaged, 2 usage or I/O error.
 * Runs on a directory no icsd holds (it takes the LOCK).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "io.h"
#include "seal.h"
#include "snap.h"
#include "wal.h"

static const uint8_t keycheck_ad[] = "icsd key check";

struct opts { const char *dir, *key; int dump, truncate, yes; };

static int usage(void)
{
    fprintf(stderr, "usage: ics-check [--key FILE] [--dump] [--truncate [--yes]] DIR\n"
                    "  verifies an icsd data directory (WAL segments and snapshots)\n"
                    "  exit 0 intact, 1 damaged, 2 usage or I/O error\n");
    return 2;
}

static int read_all(const char *path, uint8_t **buf, uint64_t *n)
{
    const struct store_io *io = store_io_default();
    *buf = NULL;
    int fd = io->open(io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    int r = io->fsize(io->ctx, fd, n);
    if (r == 0) {
        *buf = malloc(*n ? *n : 1);
        r = *buf ? store_io_read_full(io, fd, *buf, *n, 0) : -ENOMEM;
    }
    io->close(io->ctx, fd);
    return r;
}

static void print_bytes(const char *name, const struct wal_bytes *b)
{
    printf(" %s=", name);
    for (size_t i = 0; i < b->n; i++) {
        uint8_t c = b->p[i];
        if (c >= 0x21 && c < 0x7f && c != '\\')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

static void dump_change(uint64_t lsn, uint8_t type, const uint8_t *p, size_t n)
{
    struct wal_change c;
    printf("  LSN %llu %s", (unsigned long long)lsn, wal_type_name(type));
    if (wal_change_decode(p, n, type, &c) < 0) {
        printf(" (undecodable payload, %zu bytes)\n", n);
        return;
    }
    printf(" t=%llu", (unsigned long long)c.micros);
    if (c.dev.n) print_bytes("dev", &c.dev);
    if (c.uri.n) print_bytes("uri", &c.uri);
    if (c.uti.n) print_bytes("uti", &c.uti);
    if (c.owner.n) print_bytes("owner", &c.owner);
    if (type == WAL_MAP) printf(" expires=%u", c.expires_at);
    if (type == WAL_PREFS) printf(" prefs=%zu bytes", c.data.n);
    if (type == WAL_AUX) printf(" kind=%u data=%zu bytes", c.aux_kind, c.data.n);
    if (c.actor.n) print_bytes("actor", &c.actor);
    putchar('\n');
}

struct seg { uint64_t first; char name[64]; };

static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct seg *)a)->first, y = ((const struct seg *)b)->first;
    return x < y ? -1 : x > y;
}

static int confirm(const struct opts *o, const char *what)
{
    printf("%s\n", what);
    if (o->yes)
        return 1;
    printf("Continue? [y/N]: ");
    fflush(stdout);
    char line[16];
    return fgets(line, sizeof(line), stdin) && (line[0] == 'y' || line[0] == 'Y');
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dump")) o.dump = 1;
        else if (!strcmp(argv[i], "--truncate")) o.truncate = 1;
        else if (!strcmp(argv[i], "--yes")) o.yes = 1;
        else if (!strcmp(argv[i], "--key") && i + 1 < argc) o.key = argv[++i];
        else if (argv[i][0] != '-' && !o.dir) o.dir = argv[i];
        else return usage();
    }
    if (!o.dir)
        return usage();
    const struct store_io *io = store_io_default();
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/LOCK", o.dir);
    int lfd = open(path, O_RDONLY);
    if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        fprintf(stderr, "ics-check: %s is in use by a running icsd; stop it first\n", o.dir);
        return 2;
    }
    struct seal seal;
    if (seal_init(&seal, io, o.key, err, sizeof(err)) < 0) {
        fprintf(stderr, "ics-check: %s\n", err);
        return 2;
    }
    DIR *d = opendir(o.dir);
    if (!d) {
        fprintf(stderr, "ics-check: cannot open %s: %s\n", o.dir, strerror(errno));
        return 2;
    }
    struct seg *segs = NULL;
    size_t nsegs = 0;
    uint64_t snap_start = 0, snap_end = 0;
    int have_snap = 0, damaged = 0, usage_err = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t v;
        if (wal_parse_name(de->d_name, "wal-", "log", &v) == 0) {
            struct seg *ns = realloc(segs, (nsegs + 1) * sizeof(*segs));
            if (!ns) {
                free(segs);
                closedir(d);
                return 2;
            }
            segs = ns;
            segs[nsegs].first = v;
            snprintf(segs[nsegs].name, sizeof(segs[nsegs].name), "%.63s", de->d_name);
            nsegs++;
        } else if (wal_parse_name(de->d_name, "snap-", "snap", &v) == 0) {
            snprintf(path, sizeof(path), "%s/%s", o.dir, de->d_name);
            uint8_t *buf = NULL;
            uint64_t n = 0;
            int r = read_all(path, &buf, &n);
            struct snap_info info = {0};
            if (r == 0)
                r = snap_load_mem(NULL, buf, n, &seal, NULL, NULL, &info, err, sizeof(err));
            else
                snprintf(err, sizeof(err), "cannot read: %s", strerror(-r));
            free(buf);
            if (r == -ENOKEY || r == -EKEYREJECTED) {
                printf("snapshot %s: %s\n", path, r == -ENOKEY ? "encrypted, give --key"
                                                                : "wrong key");
                usage_err = 1;
                continue;
            }
            if (r < 0) {
                printf("snapshot %s: DAMAGED: %s\n", path, err);
                damaged = 1;
                continue;
            }
            printf("snapshot %s: ok, LSN %llu..%llu, %llu rows, %llu devices, %llu blocks, "
                   "%llu bytes (%.1f B/row), %llu device records (history, or no rows) "
                   "with %llu history entries\n", path, (unsigned long long)info.start_lsn,
                   (unsigned long long)info.end_lsn, (unsigned long long)info.rows,
                   (unsigned long long)info.devices, (unsigned long long)info.blocks,
                   (unsigned long long)n, info.rows ? (double)n / (double)info.rows : 0.0,
                   (unsigned long long)info.dev_records,
                   (unsigned long long)info.hist_entries);
            if (!have_snap || info.start_lsn > snap_start) {
                snap_start = info.start_lsn;
                snap_end = info.end_lsn;
                have_snap = 1;
            }
        }
    }
    closedir(d);
    if (nsegs)
        qsort(segs, nsegs, sizeof(*segs), seg_cmp);
    uint64_t prev = 0, records = 0, bytes = 0;
    size_t skip = 0;
    if (have_snap)
        while (skip + 1 < nsegs && segs[skip + 1].first <= snap_start + 1)
            skip++;
    if (nsegs && have_snap && segs[skip].first > snap_start + 1) {
        printf("LOG GAP: the log starts at LSN %llu but the snapshot ends at %llu\n",
               (unsigned long long)segs[skip].first, (unsigned long long)snap_start);
        damaged = 1;
    } else if (nsegs && !have_snap && segs[0].first != 1) {
        printf("LOG GAP: no snapshot and the log starts at LSN %llu, not 1\n",
               (unsigned long long)segs[0].first);
        damaged = 1;
    }
    uint8_t *plain = NULL;
    size_t pcap = 0;
    for (size_t i = 0; i < nsegs; i++) {
        snprintf(path, sizeof(path), "%s/%s", o.dir, segs[i].name);
        uint8_t *buf = NULL;
        uint64_t n = 0;
        if (read_all(path, &buf, &n) < 0 || !buf) {
            free(buf);
            printf("segment %s: cannot read\n", path);
            damaged = 1;
            continue;
        }
        bytes += n;
        struct wal_fhdr h;
        int r = wal_fhdr_decode(buf, n, wal_magic_log, &h);
        if (r < 0 || h.lsn != segs[i].first) {
            printf("segment %s: DAMAGED header at offset 0 (%s)%s\n", path,
                   r == -EAGAIN ? "file too short" : r == -EBADMSG ? "checksum mismatch"
                                                                   : "not a segment",
                   i + 1 == nsegs ? " - torn creation of the newest segment" : "");
            damaged = 1;
            free(buf);
            continue;
        }
        if (prev && h.lsn != prev + 1) {
            printf("LSN GAP: %s starts at %llu, expected %llu\n", path,
                   (unsigned long long)h.lsn, (unsigned long long)prev + 1);
            damaged = 1;
        }
        int sealed = !!(h.flags & WAL_F_ENCRYPTED);
        if (sealed) {
            uint8_t none[1];
            if (!seal.on || seal_open(&seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad),
                                      h.check, 16, none) < 0) {
                if (!seal.on)
                    printf("segment %s: encrypted, give --key\n", path);
                else
                    printf("wrong key for %s\n", path);
                free(buf);
                usage_err = 1;
                break;
            }
        }
        uint64_t off = WAL_FHDR_SIZE, ctr = 0, expect = h.lsn, cnt = 0;
        const char *why = NULL;
        while (off < n) {
            struct wal_rec rec;
            long span = wal_rec_decode(buf + off, n - off, &rec);
            if (span <= 0) {
                int zero = 1;
                for (uint64_t z = off; z < n && zero; z++)
                    zero = !buf[z];
                if (zero)
                    break; /* zero-filled ahead of the writes: the clean end */
                why = span == 0 ? "cut short" : span == -EBADMSG ? "checksum mismatch"
                                                                  : "malformed header";
                break;
            }
            if (rec.lsn != expect) {
                why = "LSN out of sequence";
                break;
            }
            const uint8_t *pl = rec.payload;
            size_t pn = rec.len;
            ctr++;
            if (sealed) {
                if (pcap < pn + 1) {
                    free(plain);
                    pcap = 2 * pn + 1;
                    plain = malloc(pcap);
                    if (!plain)
                        return 2;
                }
                if (pn < WAL_TAG ||
                    seal_open(&seal, h.nonce, ctr, rec.hdr + 8, 12, pl, pn, plain) < 0) {
                    why = "does not authenticate";
                    break;
                }
                pl = plain;
                pn -= WAL_TAG;
            }
            struct wal_change c;
            if (wal_change_decode(pl, pn, rec.type, &c) < 0) {
                why = "undecodable payload";
                break;
            }
            if (o.dump)
                dump_change(rec.lsn, rec.type, pl, pn);
            prev = rec.lsn;
            expect++;
            cnt++;
            off += (uint64_t)span;
        }
        records += cnt;
        if (!cnt && !prev)
            prev = h.lsn - 1;
        printf("segment %s: %llu records, LSN %llu..%llu, %llu bytes%s\n", path,
               (unsigned long long)cnt, (unsigned long long)h.lsn,
               (unsigned long long)(h.lsn + cnt - (cnt ? 1 : 0)), (unsigned long long)n,
               sealed ? ", encrypted" : "");
        if (why) {
            int torn = i + 1 == nsegs && wal_resync(buf + off, n - off, expect - 1) < 0;
            printf("DAMAGED: %s offset %llu (LSN %llu): %s; %s\n", path,
                   (unsigned long long)off, (unsigned long long)expect, why,
                   torn ? "torn tail (the store truncates it at start)"
                        : "valid records follow: corruption");
            damaged = 1;
            if (o.truncate) {
                char what[4400];
                snprintf(what, sizeof(what),
                         "will cut %s at offset %llu (%llu bytes, the records from LSN %llu "
                         "on) and remove %zu later segment(s)", path, (unsigned long long)off,
                         (unsigned long long)(n - off), (unsigned long long)expect,
                         nsegs - i - 1);
                int fd = -1, rc = -1;
                if (!confirm(&o, what)) {
                    printf("nothing changed\n");
                    rc = 1;
                } else if ((fd = io->open(io->ctx, path, O_WRONLY, 0)) < 0 ||
                           io->ftruncate(io->ctx, fd, off) < 0 || io->fsync(io->ctx, fd) < 0) {
                    fprintf(stderr, "ics-check: cannot truncate %s\n", path);
                    rc = 2;
                }
                if (rc >= 0) { /* declined or failed: release everything, as below */
                    if (fd >= 0)
                        io->close(io->ctx, fd);
                    free(buf);
                    free(segs);
                    free(plain);
                    seal_fini(&seal);
                    if (lfd >= 0)
                        close(lfd);
                    return rc;
                }
                io->close(io->ctx, fd);
                for (size_t j = i + 1; j < nsegs; j++) {
                    char p2[4096];
                    snprintf(p2, sizeof(p2), "%s/%s", o.dir, segs[j].name);
                    io->unlink(io->ctx, p2);
                    printf("removed %s\n", p2);
                }
                store_io_sync_dir(io, o.dir);
                printf("truncated: the log now ends at LSN %llu\n",
                       (unsigned long long)(expect - 1));
                free(buf);
                free(segs);
                free(plain);
                seal_fini(&seal);
                return 0;
            }
            free(buf);
            break;
        }
        free(buf);
    }
    if (usage_err) {
        free(segs);
        free(plain);
        seal_fini(&seal);
        return 2;
    }
    printf("summary: %s; %zu segment(s), %llu records, %llu bytes, last LSN %llu%s\n",
           damaged ? "DAMAGED" : "ok", nsegs, (unsigned long long)records,
           (unsigned long long)bytes,
           (unsigned long long)(prev > snap_end ? prev : snap_end),
           have_snap ? "" : ", no snapshot");
    free(segs);
    free(plain);
    seal_fini(&seal);
    if (lfd >= 0)
        close(lfd);
    return damaged ? 1 : 0;
}
