/*
 * snap.c — snapshot format: block and row codec (pure), loader, writer.
 */
#include "snap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"
#include "seal.h"

static const uint8_t keycheck_ad[] = "icsd key check";

/* --- varints ------------------------------------------------------------ */

static size_t put_var(uint8_t *o, uint64_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        o[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[i++] = (uint8_t)v;
    return i;
}

static int get_var(const uint8_t **p, size_t *n, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0, i = 0; i < 10; i++, shift += 7) {
        if (i >= *n)
            return -EPROTO;
        uint8_t b = (*p)[i];
        if (shift == 63 && b > 1)
            return -EPROTO;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *p += i + 1;
            *n -= i + 1;
            *v = r;
            return 0;
        }
    }
    return -EPROTO;
}

static int get_bytes(const uint8_t **p, size_t *n, size_t max, struct wal_bytes *b)
{
    uint64_t len;
    if (get_var(p, n, &len) < 0 || len > max || len > *n)
        return -EPROTO;
    b->p = *p;
    b->n = (size_t)len;
    *p += len;
    *n -= len;
    return 0;
}

/* --- blocks ------------------------------------------------------------- */

static uint32_t blk_crc(const uint8_t *hdr, uint32_t len)
{
    uint32_t c = wal_crc32c(0, hdr, 4);
    return wal_crc32c(c, hdr + 8, SNAP_BLK_HDR - 8 + (size_t)len);
}

long snap_block_decode(const uint8_t *p, size_t n, struct snap_block *b)
{
    if (n < SNAP_BLK_HDR)
        return 0;
    uint32_t len = wal_get32(p);
    if (len > SNAP_BLOCK_MAX || p[8] < SNAP_ROWS || p[8] > SNAP_DEVS2 || p[9] || p[10] ||
        p[11])
        return -EPROTO;
    if (n - SNAP_BLK_HDR < len)
        return 0;
    if (wal_get32(p + 4) != blk_crc(p, len))
        return -EBADMSG;
    b->type = p[8];
    b->payload = p + SNAP_BLK_HDR;
    b->len = len;
    b->hdr = p;
    return (long)(SNAP_BLK_HDR + len);
}

void snap_rows_init(struct snap_rows *it, const uint8_t *p, size_t n)
{
    it->p = p;
    it->n = n;
    it->have_dev = 0;
    it->nuris = 0;
    memset(&it->cur, 0, sizeof(it->cur));
}

int snap_rows_next(struct snap_rows *it, struct snap_row *row)
{
    if (it->n == 0)
        return 0;
    const uint8_t *p = it->p;
    size_t n = it->n;
    uint8_t flags = *p++;
    n--;
    if (flags & ~7u)
        return -EPROTO;
    struct snap_row *c = &it->cur;
    c->new_dev = 0;
    if (flags & 1) {
        if (get_bytes(&p, &n, ENGINE_ID_MAX, &c->dev) < 0 || c->dev.n == 0 ||
            get_bytes(&p, &n, ENGINE_NAME_MAX, &c->owner) < 0)
            return -EPROTO;
        c->has_prefs = !!(flags & 4);
        c->prefs.p = NULL;
        c->prefs.n = 0;
        if ((flags & 4) && get_bytes(&p, &n, SNAP_BLOCK_MAX, &c->prefs) < 0)
            return -EPROTO;
        c->new_dev = 1;
        it->have_dev = 1;
    } else if (!it->have_dev || (flags & 4)) {
        return -EPROTO;
    }
    if (flags & 2) {
        if (it->nuris >= SNAP_URI_MAX ||
            get_bytes(&p, &n, ENGINE_URI_MAX, &c->uri) < 0 || c->uri.n == 0)
            return -EPROTO;
        it->uris[it->nuris++] = c->uri;
    } else {
        uint64_t id;
        if (get_var(&p, &n, &id) < 0 || id >= it->nuris)
            return -EPROTO;
        c->uri = it->uris[id];
    }
    uint64_t exp, lsn;
    if (get_bytes(&p, &n, ENGINE_ID_MAX, &c->uti) < 0 || c->uti.n == 0 ||
        get_var(&p, &n, &exp) < 0 || exp > UINT32_MAX || get_var(&p, &n, &lsn) < 0)
        return -EPROTO;
    c->expires_at = (uint32_t)exp;
    c->lsn = lsn;
    it->p = p;
    it->n = n;
    *row = *c;
    return 1;
}

void snap_devs_init(struct snap_devs *it, const uint8_t *p, size_t n)
{
    it->p = p;
    it->n = n;
}

int snap_hist_next(struct wal_bytes *rest, struct engine_hist *h)
{
    const uint8_t *p = rest->p;
    size_t n = rest->n;
    if (n == 0)
        return 0;
    uint8_t ev = *p++;
    n--;
    uint64_t micros;
    struct wal_bytes pr, u, t;
    if ((ev != ENGINE_H_MAP && ev != ENGINE_H_DEMAP && ev != ENGINE_H_EXPIRY) ||
        get_var(&p, &n, &micros) < 0 || get_bytes(&p, &n, ENGINE_NAME_MAX, &pr) < 0 ||
        get_bytes(&p, &n, ENGINE_URI_MAX, &u) < 0 || get_bytes(&p, &n, ENGINE_ID_MAX, &t) < 0)
        return -EPROTO;
    memset(h, 0, sizeof(*h));
    h->micros = micros;
    h->event = ev;
    h->principal = pr.p;
    h->principal_len = (uint16_t)pr.n;
    h->uri = u.p;
    h->uri_len = (uint16_t)u.n;
    h->uti = t.p;
    h->uti_len = (uint16_t)t.n;
    rest->p = p;
    rest->n = n;
    return 1;
}

int snap_devs_next(struct snap_devs *it, struct snap_dev *d)
{
    if (it->n == 0)
        return 0;
    const uint8_t *p = it->p;
    size_t n = it->n;
    uint8_t flags = *p++;
    n--;
    if ((flags & ~3u) || ((flags & 2) && !(flags & 1)))
        return -EPROTO;
    memset(d, 0, sizeof(*d));
    d->meta = flags & 1;
    d->has_prefs = !!(flags & 2);
    if (get_bytes(&p, &n, ENGINE_ID_MAX, &d->dev) < 0 || d->dev.n == 0)
        return -EPROTO;
    if (d->meta && get_bytes(&p, &n, ENGINE_NAME_MAX, &d->owner) < 0)
        return -EPROTO;
    if (d->has_prefs && (get_bytes(&p, &n, SNAP_BLOCK_MAX, &d->prefs) < 0 || d->prefs.n == 0))
        return -EPROTO;
    uint64_t part;
    if (get_var(&p, &n, &d->hist_lsn) < 0 || get_var(&p, &n, &part) < 0 ||
        part > UINT32_MAX || (part && !d->hist_lsn) || get_var(&p, &n, &d->nhist) < 0 ||
        d->nhist > n / 5) /* an entry takes at least 5 bytes */
        return -EPROTO;
    d->hist_part = (uint32_t)part;
    /* Walk the entries now, so the loader never meets a bad one halfway
     * through a device. */
    struct wal_bytes rest = {p, n};
    struct engine_hist h;
    for (uint64_t i = 0; i < d->nhist; i++)
        if (snap_hist_next(&rest, &h) != 1)
            return -EPROTO;
    d->hist.p = p;
    d->hist.n = (size_t)(rest.p - p);
    it->p = rest.p;
    it->n = rest.n;
    return 1;
}

/* --- DEVS2 ---------------------------------------------------------------- */

/* Zigzag: a small delta of either sign becomes a small varint. Unsigned
 * arithmetic only (a signed right shift is implementation-defined). */
static uint64_t zig(int64_t d)
{
    uint64_t u = (uint64_t)d;
    return (u << 1) ^ (0 - (u >> 63));
}
static uint64_t unzig(uint64_t v) { return (v >> 1) ^ (0 - (v & 1)); }

/* A URI written as a table id (x even) or a literal of x/2 bytes (x odd),
 * which takes the table's next id while it has room; tab_w (NULL when
 * decoding again) receives it. */
static int get_uref(const uint8_t **p, size_t *n, const struct wal_bytes *tab,
                    struct wal_bytes *tab_w, uint32_t *cnt, struct wal_bytes *out)
{
    uint64_t x;
    if (get_var(p, n, &x) < 0)
        return -EPROTO;
    if (!(x & 1)) {
        if ((x >> 1) >= *cnt)
            return -EPROTO;
        *out = tab[x >> 1];
        return 0;
    }
    uint64_t len = x >> 1;
    if (len > ENGINE_URI_MAX || len > *n)
        return -EPROTO;
    out->p = *p;
    out->n = (size_t)len;
    *p += len;
    *n -= len;
    if (*cnt < SNAP_URI_MAX) {
        if (tab_w)
            tab_w[*cnt] = *out;
        (*cnt)++;
    }
    return 0;
}

/* One DEVS2 history entry from *rest, in block state *st. wr is the
 * iterator when first decoding (literals go into its tables), NULL when
 * decoding again (the tables hold them already, at the same ids). */
static int hist2_step(const struct snap_devs2 *it, struct snap_devs2 *wr,
                      const struct snap_drow *rows, uint32_t nrows, struct wal_bytes *rest,
                      struct snap_hist_state *st, struct engine_hist *h)
{
    const uint8_t *p = rest->p;
    size_t n = rest->n;
    if (n == 0)
        return 0;
    uint8_t hb = *p++;
    n--;
    uint8_t ev = hb & 7;
    uint64_t dz;
    if ((hb & ~31u) || (ev != ENGINE_H_MAP && ev != ENGINE_H_DEMAP && ev != ENGINE_H_EXPIRY) ||
        get_var(&p, &n, &dz) < 0)
        return -EPROTO;
    struct wal_bytes pr, u, t;
    if (hb & 8) {
        if (get_bytes(&p, &n, ENGINE_NAME_MAX, &pr) < 0)
            return -EPROTO;
        if (st->nprins < SNAP_URI_MAX) {
            if (wr)
                wr->prins[st->nprins] = pr;
            st->nprins++;
        }
    } else {
        uint64_t id;
        if (get_var(&p, &n, &id) < 0 || id >= st->nprins)
            return -EPROTO;
        pr = it->prins[id];
    }
    if (hb & 16) {
        uint64_t k;
        if (get_var(&p, &n, &k) < 0 || k >= nrows)
            return -EPROTO;
        u = rows[k].uri;
        t = rows[k].uti;
    } else if (get_uref(&p, &n, it->uris, wr ? wr->uris : NULL, &st->nuris, &u) < 0 ||
               get_bytes(&p, &n, ENGINE_ID_MAX, &t) < 0) {
        return -EPROTO;
    }
    st->micros += unzig(dz); /* modulo 2^64, as the writer subtracted */
    memset(h, 0, sizeof(*h));
    h->micros = st->micros;
    h->event = ev;
    h->principal = pr.p;
    h->principal_len = (uint16_t)pr.n;
    h->uri = u.p;
    h->uri_len = (uint16_t)u.n;
    h->uti = t.p;
    h->uti_len = (uint16_t)t.n;
    rest->p = p;
    rest->n = n;
    return 1;
}

void snap_devs2_init(struct snap_devs2 *it, const uint8_t *p, size_t n)
{
    it->p = p;
    it->n = n;
    memset(&it->st, 0, sizeof(it->st));
}

int snap_devs2_next(struct snap_devs2 *it, struct snap_dev *d)
{
    if (it->n == 0)
        return 0;
    const uint8_t *p = it->p;
    size_t n = it->n;
    uint8_t flags = *p++;
    n--;
    if ((flags & ~7u) || ((flags & 1) && (flags & 4)) || ((flags & 2) && !(flags & 5)))
        return -EPROTO;
    memset(d, 0, sizeof(*d));
    d->meta = flags & 1;
    d->has_prefs = !!(flags & 2);
    if (get_bytes(&p, &n, ENGINE_ID_MAX, &d->dev) < 0 || d->dev.n == 0)
        return -EPROTO;
    if ((flags & 5) && get_bytes(&p, &n, ENGINE_NAME_MAX, &d->owner) < 0)
        return -EPROTO;
    if (d->has_prefs && (get_bytes(&p, &n, SNAP_BLOCK_MAX, &d->prefs) < 0 || d->prefs.n == 0))
        return -EPROTO;
    struct snap_hist_state st = it->st;
    if (flags & 4) {
        uint64_t nr;
        if (get_var(&p, &n, &nr) < 0 || nr == 0 || nr > SNAP_DEV_ROWS_MAX)
            return -EPROTO;
        for (uint32_t i = 0; i < (uint32_t)nr; i++) {
            struct snap_drow *r = &it->rows[i];
            uint64_t exp;
            /* get_uref reads only table entries below st.nuris, each written
             * when it was counted; the analyzer cannot follow the count. */
            // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
            if (get_uref(&p, &n, it->uris, it->uris, &st.nuris, &r->uri) < 0 || r->uri.n == 0 ||
                get_bytes(&p, &n, ENGINE_ID_MAX, &r->uti) < 0 || r->uti.n == 0 ||
                get_var(&p, &n, &exp) < 0 || exp > UINT32_MAX || get_var(&p, &n, &r->lsn) < 0)
                return -EPROTO;
            r->expires_at = (uint32_t)exp;
        }
        d->nrows = (uint32_t)nr;
    }
    d->rows = it->rows;
    uint64_t part;
    if (get_var(&p, &n, &d->hist_lsn) < 0 || get_var(&p, &n, &part) < 0 ||
        part > UINT32_MAX || (part && !d->hist_lsn) || get_var(&p, &n, &d->nhist) < 0 ||
        d->nhist > n / 3) /* an entry takes at least 3 bytes */
        return -EPROTO;
    d->hist_part = (uint32_t)part;
    d->hist0 = st;
    /* Walk the entries now (which also fills the tables), so the loader
     * never meets a bad one halfway through a device. */
    struct wal_bytes rest = {p, n};
    struct engine_hist h;
    for (uint64_t i = 0; i < d->nhist; i++)
        if (hist2_step(it, it, it->rows, d->nrows, &rest, &st, &h) != 1)
            return -EPROTO;
    d->hist.p = p;
    d->hist.n = (size_t)(rest.p - p);
    it->st = st;
    it->p = rest.p;
    it->n = rest.n;
    return 1;
}

void snap_hist2_init(struct snap_hist2 *c, const struct snap_devs2 *it,
                     const struct snap_dev *d, const struct snap_drow *rows)
{
    c->it = it;
    c->rows = rows;
    c->nrows = d->nrows;
    c->rest = d->hist;
    c->st = d->hist0;
}

int snap_hist2_next(struct snap_hist2 *c, struct engine_hist *h)
{
    return hist2_step(c->it, NULL, c->rows, c->nrows, &c->rest, &c->st, h);
}

int snap_end_decode(const uint8_t *p, size_t n, struct snap_end *e)
{
    if (get_var(&p, &n, &e->end_lsn) < 0 || get_var(&p, &n, &e->rows) < 0 ||
        get_var(&p, &n, &e->devices) < 0 || get_var(&p, &n, &e->blocks) < 0 || n)
        return -EPROTO;
    return 0;
}

/* --- loader ------------------------------------------------------------- */

/* Rows decoded ahead of the one being mapped: each gets an
 * engine_map_prefetch when decoded, so the index slots of the next maps
 * are on their way while this one runs (recovery is bound by those cache
 * misses: bench/README.md "Persistence"). */
#define LOOKAHEAD 8u

static struct engine_map_req row_req(const struct snap_row *r)
{
    struct engine_map_req rq = {
        .dev = r->dev.p, .dev_len = r->dev.n, .uri = r->uri.p, .uri_len = r->uri.n,
        .uti = r->uti.p, .uti_len = r->uti.n, .owner = r->owner.p,
        .owner_len = r->owner.n, .expires_at = r->expires_at, .cas = 0,
    };
    return rq;
}

static int apply_rows(engine_t *e, const uint8_t *p, size_t n, struct snap_info *info,
                      char *err, size_t errlen)
{
    struct snap_rows *it = malloc(sizeof(*it));
    if (!it)
        return -ENOMEM;
    snap_rows_init(it, p, n);
    struct snap_row q[LOOKAHEAD];
    size_t head = 0, cnt = 0;
    uint64_t mapped = info->rows; /* rows of earlier blocks */
    int rc = 0, eof = 0, prefs_pending = 0;
    for (;;) {
        while (!eof && cnt < LOOKAHEAD) {
            struct snap_row r;
            int x = snap_rows_next(it, &r);
            if (x <= 0) {
                rc = x;
                eof = 1;
                break;
            }
            info->rows++;
            if (r.new_dev)
                info->devices++;
            if (e) {
                struct engine_map_req rq = row_req(&r);
                engine_map_prefetch(e, &rq);
            }
            q[(head + cnt) % LOOKAHEAD] = r;
            cnt++;
        }
        if (!cnt)
            break;
        /* The rows of one new device queued together load as one run: its
         * record is built once (engine_map_run), not once per row. */
        size_t k = 1;
        while (e && q[head].new_dev && k < cnt && !q[(head + k) % LOOKAHEAD].new_dev)
            k++;
        struct snap_row run[LOOKAHEAD];
        struct engine_map_req rqs[LOOKAHEAD];
        uint64_t lsns[LOOKAHEAD];
        int res[LOOKAHEAD];
        for (size_t i = 0; i < k; i++) {
            run[i] = q[(head + i) % LOOKAHEAD];
            rqs[i] = row_req(&run[i]);
            lsns[i] = run[i].lsn;
        }
        head = (head + k) % LOOKAHEAD;
        cnt -= k;
        if (!e) {
            mapped += k;
            continue;
        }
        if (k > 1)
            engine_map_run(e, rqs, lsns, k, res);
        else
            res[0] = engine_map(e, &rqs[0], lsns[0], NULL);
        for (size_t i = 0; i < k; i++) {
            struct snap_row *r = &run[i];
            int m = res[i];
            mapped++;
            if (r->new_dev)
                prefs_pending = r->has_prefs;
            if (m == -EEXIST) {
                /* Two rows of one binding: a fuzzy snapshot saw it move
                 * between devices; the WAL after the start LSN settles it. */
                info->conflicts++;
                continue;
            }
            if (m < 0) {
                snprintf(err, errlen, "row %llu cannot be loaded: %s",
                         (unsigned long long)mapped, strerror(-m));
                free(it);
                return m;
            }
            if (prefs_pending) {
                /* A device's prefs come with its first row (the first that
                 * loads: one in conflict leaves them to the next). */
                prefs_pending = 0;
                int sp = engine_set_prefs(e, r->dev.p, r->dev.n, r->prefs.p, r->prefs.n,
                                          r->lsn);
                if (sp < 0 && sp != -ENOENT) {
                    snprintf(err, errlen, "prefs cannot be loaded: %s", strerror(-sp));
                    free(it);
                    return sp;
                }
            }
        }
    }
    free(it);
    if (rc < 0)
        snprintf(err, errlen, "malformed row after row %llu",
                 (unsigned long long)info->rows);
    return rc;
}

static int apply_devs(engine_t *e, const uint8_t *p, size_t n, struct snap_info *info,
                      char *err, size_t errlen)
{
    struct snap_devs it;
    struct snap_dev d;
    struct engine_hist *hv = NULL;
    size_t hcap = 0;
    int rc;
    snap_devs_init(&it, p, n);
    while ((rc = snap_devs_next(&it, &d)) > 0) {
        info->dev_records++;
        info->hist_entries += d.nhist;
        if (!e)
            continue;
        if (d.nhist > hcap) {
            free(hv);
            hcap = (size_t)d.nhist;
            hv = malloc(hcap * sizeof(*hv));
            if (!hv) {
                snprintf(err, errlen, "no memory for %llu history entries",
                         (unsigned long long)d.nhist);
                return -ENOMEM;
            }
        }
        struct wal_bytes rest = d.hist;
        for (uint64_t i = 0; i < d.nhist; i++)
            (void)snap_hist_next(&rest, &hv[i]); /* checked by snap_devs_next */
        struct engine_device_load dl = {
            .dev = d.dev.p, .dev_len = d.dev.n, .owner = d.owner.p, .owner_len = d.owner.n,
            .prefs = d.prefs.p, .prefs_len = d.prefs.n, .meta = d.meta, .hist = hv,
            .nhist = (size_t)d.nhist, .hist_lsn = d.hist_lsn, .hist_part = d.hist_part,
        };
        int r = engine_device_restore(e, &dl);
        if (r < 0) {
            snprintf(err, errlen, "device record %llu cannot be loaded: %s",
                     (unsigned long long)info->dev_records, strerror(-r));
            free(hv);
            return r;
        }
    }
    free(hv);
    if (rc < 0)
        snprintf(err, errlen, "malformed device record after record %llu",
                 (unsigned long long)info->dev_records);
    return rc;
}

/* DEVS2 entries decoded ahead of the one being loaded: their rows' index
 * slots are prefetched when decoded, as apply_rows does. */
#define DEV_AHEAD 4u
struct dev_q {
    struct snap_dev d;
    struct snap_drow rows[SNAP_DEV_ROWS_MAX];
};

/* Loads one DEVS2 entry: its rows as one run (with the prefs after the
 * first that loads, like apply_rows), then its history and key. */
static int load_dev2(engine_t *e, const struct snap_devs2 *it, struct dev_q *q,
                     struct engine_hist **hv, size_t *hcap, struct snap_info *info,
                     uint64_t rec, char *err, size_t errlen)
{
    const struct snap_dev *d = &q->d;
    if (d->nrows) {
        struct engine_map_req rqs[SNAP_DEV_ROWS_MAX];
        uint64_t lsns[SNAP_DEV_ROWS_MAX];
        int res[SNAP_DEV_ROWS_MAX];
        for (uint32_t i = 0; i < d->nrows; i++) {
            const struct snap_drow *r = &q->rows[i];
            rqs[i] = (struct engine_map_req){
                .dev = d->dev.p, .dev_len = d->dev.n, .uri = r->uri.p, .uri_len = r->uri.n,
                .uti = r->uti.p, .uti_len = r->uti.n, .owner = d->owner.p,
                .owner_len = d->owner.n, .expires_at = r->expires_at, .cas = 0,
            };
            lsns[i] = r->lsn;
        }
        if (d->nrows > 1)
            engine_map_run(e, rqs, lsns, d->nrows, res);
        else
            res[0] = engine_map(e, &rqs[0], lsns[0], NULL);
        int prefs_pending = d->has_prefs;
        for (uint32_t i = 0; i < d->nrows; i++) {
            if (res[i] == -EEXIST) {
                info->conflicts++; /* see apply_rows */
                continue;
            }
            if (res[i] < 0) {
                snprintf(err, errlen, "device record %llu: a row cannot be loaded: %s",
                         (unsigned long long)rec, strerror(-res[i]));
                return res[i];
            }
            if (prefs_pending) {
                prefs_pending = 0;
                int sp = engine_set_prefs(e, d->dev.p, d->dev.n, d->prefs.p, d->prefs.n,
                                          lsns[i]);
                if (sp < 0 && sp != -ENOENT) {
                    snprintf(err, errlen, "prefs cannot be loaded: %s", strerror(-sp));
                    return sp;
                }
            }
        }
    }
    if (d->nhist > *hcap) {
        free(*hv);
        *hcap = (size_t)d->nhist;
        *hv = malloc(*hcap * sizeof(**hv));
        if (!*hv) {
            *hcap = 0;
            snprintf(err, errlen, "no memory for %llu history entries",
                     (unsigned long long)d->nhist);
            return -ENOMEM;
        }
    }
    struct snap_hist2 c;
    snap_hist2_init(&c, it, d, q->rows);
    for (uint64_t i = 0; i < d->nhist; i++)
        (void)snap_hist2_next(&c, &(*hv)[i]); /* checked by snap_devs2_next */
    struct engine_device_load dl = {
        .dev = d->dev.p, .dev_len = d->dev.n, .owner = d->owner.p, .owner_len = d->owner.n,
        .prefs = d->prefs.p, .prefs_len = d->prefs.n, .meta = d->meta, .hist = *hv,
        .nhist = (size_t)d->nhist, .hist_lsn = d->hist_lsn, .hist_part = d->hist_part,
    };
    int r = engine_device_restore(e, &dl);
    if (r < 0)
        snprintf(err, errlen, "device record %llu cannot be loaded: %s",
                 (unsigned long long)rec, strerror(-r));
    return r;
}

static int apply_devs2(engine_t *e, const uint8_t *p, size_t n, struct snap_info *info,
                       char *err, size_t errlen)
{
    struct snap_devs2 *it = malloc(sizeof(*it));
    struct dev_q *q = malloc(DEV_AHEAD * sizeof(*q));
    struct engine_hist *hv = NULL;
    size_t hcap = 0, head = 0, cnt = 0;
    uint64_t loaded = info->dev_records;
    int rc = 0, eof = 0;
    if (!it || !q) {
        free(it);
        free(q);
        return -ENOMEM;
    }
    snap_devs2_init(it, p, n);
    for (;;) {
        while (!eof && cnt < DEV_AHEAD) {
            struct dev_q *s = &q[(head + cnt) % DEV_AHEAD];
            int x = snap_devs2_next(it, &s->d);
            if (x <= 0) {
                rc = x;
                eof = 1;
                break;
            }
            info->dev_records++;
            info->hist_entries += s->d.nhist;
            if (s->d.nrows) {
                info->rows += s->d.nrows;
                info->devices++;
            }
            if (!e)
                continue;
            /* it->rows is the iterator's: the next entry overwrites it. */
            memcpy(s->rows, it->rows, s->d.nrows * sizeof(s->rows[0]));
            s->d.rows = s->rows;
            for (uint32_t i = 0; i < s->d.nrows; i++) {
                struct engine_map_req rq = {
                    .dev = s->d.dev.p, .dev_len = s->d.dev.n, .uri = s->rows[i].uri.p,
                    .uri_len = s->rows[i].uri.n, .uti = s->rows[i].uti.p,
                    .uti_len = s->rows[i].uti.n,
                };
                engine_map_prefetch(e, &rq);
            }
            cnt++;
        }
        if (!cnt)
            break;
        int r = load_dev2(e, it, &q[head], &hv, &hcap, info, ++loaded, err, errlen);
        if (r < 0) {
            rc = r;
            goto out;
        }
        head = (head + 1) % DEV_AHEAD;
        cnt--;
    }
    if (rc < 0)
        snprintf(err, errlen, "malformed device record after record %llu",
                 (unsigned long long)info->dev_records);
out:
    free(hv);
    free(q);
    free(it);
    return rc;
}

int snap_load_mem(engine_t *e, const uint8_t *p, size_t n, const struct seal *seal,
                  snap_aux_fn aux, void *aux_arg, struct snap_info *info,
                  char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    struct wal_fhdr h;
    int r = wal_fhdr_decode(p, n, wal_magic_snap, &h);
    if (r < 0) {
        snprintf(err, errlen, "bad snapshot header at offset 0 (%s)",
                 r == -EAGAIN ? "file too short" : r == -EBADMSG ? "checksum mismatch"
                                                                 : "not a snapshot");
        return r == -EAGAIN ? -EBADMSG : r;
    }
    info->start_lsn = h.lsn;
    int sealed = !!(h.flags & WAL_F_ENCRYPTED);
    if (sealed) {
        if (!seal || !seal->on) {
            snprintf(err, errlen, "encrypted snapshot and no key given");
            return -ENOKEY;
        }
        uint8_t none[1];
        if (seal_open(seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad), h.check, 16,
                      none) < 0) {
            snprintf(err, errlen, "wrong key");
            return -EKEYREJECTED;
        }
    }
    uint8_t *scratch = NULL;
    size_t off = WAL_FHDR_SIZE, cap = 0;
    int ended = 0;
    r = 0;
    while (off < n) {
        struct snap_block b;
        long span = snap_block_decode(p + off, n - off, &b);
        info->bad_off = off;
        if (span <= 0) {
            snprintf(err, errlen, "bad block at offset %zu (%s)", off,
                     span == 0 ? "cut short" : span == -EBADMSG ? "checksum mismatch"
                                                                : "malformed header");
            r = span == 0 ? -EBADMSG : (int)span;
            goto out;
        }
        if (ended) {
            snprintf(err, errlen, "data after the END block at offset %zu", off);
            r = -EPROTO;
            goto out;
        }
        const uint8_t *pl = b.payload;
        size_t pn = b.len;
        if (sealed) {
            if (pn < WAL_TAG) {
                snprintf(err, errlen, "sealed block too short at offset %zu", off);
                r = -EPROTO;
                goto out;
            }
            if (cap < pn) {
                free(scratch);
                cap = pn;
                scratch = malloc(cap);
                if (!scratch) {
                    r = -ENOMEM;
                    goto out;
                }
            }
            if (seal_open(seal, h.nonce, info->blocks + 1, b.hdr + 8, 4, pl, pn,
                          scratch) < 0) {
                snprintf(err, errlen, "block at offset %zu does not authenticate", off);
                r = -EBADMSG;
                goto out;
            }
            pl = scratch;
            pn -= WAL_TAG;
        }
        if (b.type == SNAP_ROWS) {
            r = apply_rows(e, pl, pn, info, err, errlen);
            if (r < 0) {
                char tmp[160];
                snprintf(tmp, sizeof(tmp), "%s", err);
                snprintf(err, errlen, "block at offset %zu: %s", off, tmp);
                goto out;
            }
        } else if (b.type == SNAP_DEVS || b.type == SNAP_DEVS2) {
            r = b.type == SNAP_DEVS ? apply_devs(e, pl, pn, info, err, errlen)
                                    : apply_devs2(e, pl, pn, info, err, errlen);
            if (r < 0) {
                char tmp[160];
                snprintf(tmp, sizeof(tmp), "%s", err);
                snprintf(err, errlen, "DEVS block at offset %zu: %s", off, tmp);
                goto out;
            }
        } else if (b.type == SNAP_AUX) {
            if (pn < 1) {
                snprintf(err, errlen, "empty aux block at offset %zu", off);
                r = -EPROTO;
                goto out;
            }
            if (e && aux && (r = aux(aux_arg, pl[0], pl + 1, pn - 1)) < 0) {
                snprintf(err, errlen, "aux block (kind %u) at offset %zu rejected: %s",
                         pl[0], off, strerror(-r));
                goto out;
            }
        } else {
            struct snap_end end;
            if (snap_end_decode(pl, pn, &end) < 0 || end.rows != info->rows ||
                end.devices != info->devices || end.blocks != info->blocks ||
                end.end_lsn < info->start_lsn) {
                snprintf(err, errlen, "END block at offset %zu disagrees with the file",
                         off);
                r = -EPROTO;
                goto out;
            }
            info->end_lsn = end.end_lsn;
            ended = 1;
        }
        info->blocks++;
        off += (size_t)span;
    }
    if (!ended) {
        info->bad_off = off;
        snprintf(err, errlen, "no END block (snapshot incomplete) at offset %zu", off);
        r = -EBADMSG;
    }
out:
    free(scratch);
    if (r == 0)
        info->blocks--; /* the END block itself is not counted */
    return r;
}

/* --- writer -------------------------------------------------------------- */

#define URI_SLOTS 8192u

struct snap_writer {
    const struct store_io *io;
    const struct seal *seal;
    int fd;
    uint64_t off, rows, devices, blocks;
    uint8_t nonce[12];
    uint8_t *buf, *obuf;
    size_t len, cap, ocap, olen;
    uint32_t nuris;
    struct { uint32_t id1, off; uint16_t len; } slot[URI_SLOTS];
    int have_prev;
    uint8_t prev_dev[ENGINE_ID_MAX];
    size_t prev_len;
    uint8_t *dbuf, *hb;            /* DEVS2 payload being built; one device's */
    size_t dlen, dcap, hlen, hcap; /* history entries (scratch, DEVS layout) */
    int herr;
    /* The record snap_writer_device saw last, held until its rows (which
     * engine_iterate_devices visits next) are in: its DEVS2 entry carries
     * them, so its history can point at them. */
    int pend;
    uint8_t pdev[ENGINE_ID_MAX], powner[ENGINE_NAME_MAX];
    uint16_t pdev_len, powner_len;
    uint8_t *pprefs, *rb;          /* its prefs; its rows' URI and UTI bytes */
    size_t pprefs_len, pprefs_cap, rlen, rcap;
    uint32_t pwant, prows;         /* rows the record has; rows held */
    uint64_t klsn;
    uint32_t kpart;
    struct prow { uint32_t uri_off, uti_off; uint16_t uri_len, uti_len; uint32_t exp;
                  uint64_t lsn; } prow[SNAP_DEV_ROWS_MAX];
    /* The DEVS2 block's URI and principal tables (entries point into dbuf)
     * and the micros of its last history entry. */
    struct tslot { uint32_t id1, off; uint16_t len; } duri[URI_SLOTS], dprin[URI_SLOTS];
    uint32_t dnuris, dnprins;
    uint64_t dmicros;
};

static int w_reserve(uint8_t **b, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need)
        c *= 2;
    uint8_t *nb = realloc(*b, c);
    if (!nb)
        return -ENOMEM;
    *b = nb;
    *cap = c;
    return 0;
}

/* Seals a block into the pending output; snap_writer_drain writes it.
 * Rows arrive inside engine_iterate's read-side section, which must not
 * block: only memory work happens there, the pwrite comes after. */
static int w_block(struct snap_writer *w, uint8_t type, const uint8_t *pl, size_t n)
{
    size_t on = n + (w->seal ? WAL_TAG : 0);
    int r = w_reserve(&w->obuf, &w->ocap, w->olen + SNAP_BLK_HDR + on);
    if (r < 0)
        return r;
    uint8_t *h = w->obuf + w->olen;
    wal_put32(h, (uint32_t)on);
    h[8] = type;
    h[9] = h[10] = h[11] = 0;
    if (w->seal) {
        r = seal_seal(w->seal, w->nonce, w->blocks + 1, h + 8, 4, pl, n,
                      h + SNAP_BLK_HDR);
        if (r < 0)
            return r;
    } else if (n) {
        memcpy(h + SNAP_BLK_HDR, pl, n);
    }
    wal_put32(h + 4, blk_crc(h, (uint32_t)on));
    w->olen += SNAP_BLK_HDR + on;
    w->blocks++;
    return 0;
}

int snap_writer_drain(struct snap_writer *w)
{
    if (!w->olen)
        return 0;
    ssize_t wr = w->io->pwrite(w->io->ctx, w->fd, w->obuf, w->olen, w->off);
    if (wr < 0)
        return (int)wr;
    w->off += w->olen;
    w->olen = 0;
    return 0;
}

static int w_flush_rows(struct snap_writer *w)
{
    if (!w->len)
        return 0;
    int r = w_block(w, SNAP_ROWS, w->buf, w->len);
    w->len = 0;
    w->nuris = 0;
    memset(w->slot, 0, sizeof(w->slot));
    w->have_prev = 0;
    return r;
}

static int w_flush_devs(struct snap_writer *w)
{
    if (!w->dlen)
        return 0;
    int r = w_block(w, SNAP_DEVS2, w->dbuf, w->dlen);
    w->dlen = 0;
    w->dnuris = w->dnprins = 0;
    w->dmicros = 0;
    memset(w->duri, 0, sizeof(w->duri));
    memset(w->dprin, 0, sizeof(w->dprin));
    return r;
}

int snap_writer_open(struct snap_writer **out, const struct store_io *io,
                     const char *path, uint64_t start_lsn, uint64_t now_us,
                     const struct seal *seal)
{
    struct snap_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->io = io;
    w->seal = seal && seal->on ? seal : NULL;
    w->fd = io->open(io->ctx, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (w->fd < 0) {
        int r = w->fd;
        free(w);
        return r;
    }
    struct wal_fhdr h = {.version = 1, .lsn = start_lsn, .created_us = now_us};
    memcpy(h.magic, wal_magic_snap, 8);
    if (w->seal) {
        h.flags = WAL_F_ENCRYPTED;
        seal_random(h.nonce, 12);
        int r = seal_seal(w->seal, h.nonce, 0, keycheck_ad, sizeof(keycheck_ad), NULL, 0,
                          h.check);
        if (r < 0) {
            snap_writer_close(w);
            return r;
        }
    }
    memcpy(w->nonce, h.nonce, 12);
    uint8_t hb[WAL_FHDR_SIZE];
    wal_fhdr_encode(hb, &h);
    ssize_t wr = io->pwrite(io->ctx, w->fd, hb, sizeof(hb), 0);
    if (wr < 0) {
        snap_writer_close(w);
        return (int)wr;
    }
    w->off = WAL_FHDR_SIZE;
    *out = w;
    return 0;
}

static uint32_t uri_hash(const uint8_t *p, size_t n) { return wal_crc32c(0, p, n); }

static int w_dev_row(struct snap_writer *w, const struct engine_row *row);
static int w_dev_emit(struct snap_writer *w);

int snap_writer_row(struct snap_writer *w, const struct engine_row *row)
{
    if (w->pend) {
        int r = w_dev_row(w, row);
        if (r < 0)
            return r;
        if (r == 1)
            return w->prows == w->pwant ? w_dev_emit(w) : 0;
        if (r == 0 && (r = w_dev_emit(w)) < 0)
            return r; /* another device's row: the pending one is whole */
    }
    if (w->len >= SNAP_BLOCK_TARGET || w->nuris >= SNAP_URI_MAX) {
        int r = w_flush_rows(w);
        if (r < 0)
            return r;
    }
    size_t need = 1 + 3 * 10 + row->device_len + row->owner_len + row->prefs_len +
                  row->uri_len + row->uti_len + 40;
    int r = w_reserve(&w->buf, &w->cap, w->len + need);
    if (r < 0)
        return r;
    uint8_t *o = w->buf + w->len, *flags = o++;
    *flags = 0;
    if (!w->have_prev || w->prev_len != row->device_len ||
        memcmp(w->prev_dev, row->device, row->device_len) != 0) {
        *flags |= 1;
        o += put_var(o, row->device_len);
        memcpy(o, row->device, row->device_len);
        o += row->device_len;
        o += put_var(o, row->owner_len);
        if (row->owner_len)
            memcpy(o, row->owner, row->owner_len);
        o += row->owner_len;
        if (row->prefs_len) {
            *flags |= 4;
            o += put_var(o, row->prefs_len);
            memcpy(o, row->prefs, row->prefs_len);
            o += row->prefs_len;
        }
        memcpy(w->prev_dev, row->device, row->device_len);
        w->prev_len = row->device_len;
        w->have_prev = 1;
        w->devices++;
    }
    /* URI table of this block: open addressing on CRC32C of the URI. */
    uint32_t hsh = uri_hash(row->uri, row->uri_len), i = hsh & (URI_SLOTS - 1);
    int found = -1;
    while (w->slot[i].id1) {
        if (w->slot[i].len == row->uri_len &&
            memcmp(w->buf + w->slot[i].off, row->uri, row->uri_len) == 0) {
            found = (int)w->slot[i].id1 - 1;
            break;
        }
        i = (i + 1) & (URI_SLOTS - 1);
    }
    if (found >= 0) {
        o += put_var(o, (uint64_t)found);
    } else {
        *flags |= 2;
        o += put_var(o, row->uri_len);
        w->slot[i].id1 = ++w->nuris;
        w->slot[i].off = (uint32_t)(o - w->buf);
        w->slot[i].len = row->uri_len;
        memcpy(o, row->uri, row->uri_len);
        o += row->uri_len;
    }
    o += put_var(o, row->uti_len);
    memcpy(o, row->uti, row->uti_len);
    o += row->uti_len;
    o += put_var(o, row->expires_at);
    o += put_var(o, row->lsn);
    w->len = (size_t)(o - w->buf);
    w->rows++;
    return 0;
}

/* --- DEVS2 ----------------------------------------------------------------- */

/* History bytes (DEVS layout) per DEVS2 entry: a longer ring takes several
 * entries, so a block stays near SNAP_BLOCK_TARGET whatever history_len is. */
#define HIST_CHUNK (256u << 10)

/* Runs under the device's ring lock (engine_device_history): copies only,
 * in the plain DEVS layout; w_dev_emit compacts them once the record's
 * rows are in. Inquiry entries are memory-only by design
 * (docs/identity-authority.md), so a snapshot keeps map/demap/expiry
 * entries alone. */
static int hist_cb(void *arg, const struct engine_hist *h)
{
    struct snap_writer *w = arg;
    if (h->event == ENGINE_H_INQUIRY)
        return 0;
    size_t need = 1 + 10 + 3 * 3 + (size_t)h->principal_len + h->uri_len + h->uti_len;
    if (w_reserve(&w->hb, &w->hcap, w->hlen + need) < 0) {
        w->herr = -ENOMEM;
        return 1;
    }
    uint8_t *o = w->hb + w->hlen;
    *o++ = h->event;
    o += put_var(o, h->micros);
    o += put_var(o, h->principal_len);
    if (h->principal_len)
        memcpy(o, h->principal, h->principal_len);
    o += h->principal_len;
    o += put_var(o, h->uri_len);
    if (h->uri_len)
        memcpy(o, h->uri, h->uri_len);
    o += h->uri_len;
    o += put_var(o, h->uti_len);
    if (h->uti_len)
        memcpy(o, h->uti, h->uti_len);
    o += h->uti_len;
    w->hlen = (size_t)(o - w->hb);
    return 0;
}

/* A block table's id for these bytes, or -1 with *at the free slot. */
static int tab_find(const struct tslot *t, const uint8_t *base, const void *p, size_t n,
                    uint32_t *at)
{
    uint32_t i = uri_hash(p, n) & (URI_SLOTS - 1);
    while (t[i].id1) {
        if (t[i].len == n && memcmp(base + t[i].off, p, n) == 0)
            return (int)t[i].id1 - 1;
        i = (i + 1) & (URI_SLOTS - 1);
    }
    *at = i;
    return -1;
}

/* Writes a URI as a table id or a literal (which takes the next id while
 * the table has room, as the decoder counts). */
static uint8_t *put_uref(struct snap_writer *w, uint8_t *o, const void *p, size_t n)
{
    uint32_t at = 0;
    int id = tab_find(w->duri, w->dbuf, p, n, &at);
    if (id >= 0)
        return o + put_var(o, (uint64_t)id << 1);
    o += put_var(o, ((uint64_t)n << 1) | 1);
    if (w->dnuris < SNAP_URI_MAX) {
        w->duri[at].id1 = ++w->dnuris;
        w->duri[at].off = (uint32_t)(o - w->dbuf);
        w->duri[at].len = (uint16_t)n;
    }
    if (n)
        memcpy(o, p, n);
    return o + n;
}

/* One compact history entry (the block's tables, the previous micros, a
 * row of this entry when URI and UTI match one). */
static uint8_t *put_hist2(struct snap_writer *w, uint8_t *o, const struct engine_hist *h,
                          uint32_t nrows)
{
    int row = -1;
    for (uint32_t k = 0; k < nrows && row < 0; k++) {
        const struct prow *r = &w->prow[k];
        if (r->uri_len == h->uri_len && r->uti_len == h->uti_len &&
            memcmp(w->rb + r->uti_off, h->uti, h->uti_len) == 0 &&
            memcmp(w->rb + r->uri_off, h->uri, h->uri_len) == 0)
            row = (int)k;
    }
    uint32_t at = 0;
    int pid = tab_find(w->dprin, w->dbuf, h->principal, h->principal_len, &at);
    *o++ = (uint8_t)(h->event | (pid < 0 ? 8 : 0) | (row >= 0 ? 16 : 0));
    int64_t delta = (int64_t)(h->micros - w->dmicros); /* modulo 2^64 */
    o += put_var(o, zig(delta));
    w->dmicros = h->micros;
    if (pid >= 0) {
        o += put_var(o, (uint64_t)pid);
    } else {
        o += put_var(o, h->principal_len);
        if (w->dnprins < SNAP_URI_MAX) {
            w->dprin[at].id1 = ++w->dnprins;
            w->dprin[at].off = (uint32_t)(o - w->dbuf);
            w->dprin[at].len = h->principal_len;
        }
        if (h->principal_len)
            memcpy(o, h->principal, h->principal_len);
        o += h->principal_len;
    }
    if (row >= 0)
        return o + put_var(o, (uint64_t)row);
    o = put_uref(w, o, h->uri, h->uri_len);
    o += put_var(o, h->uti_len);
    if (h->uti_len)
        memcpy(o, h->uti, h->uti_len);
    return o + h->uti_len;
}

/* Writes the pending record's DEVS2 entries (several for a long history;
 * the first carries the meta or rows). */
static int w_dev_emit(struct snap_writer *w)
{
    if (!w->pend)
        return 0;
    w->pend = 0;
    int meta = w->pwant == 0, r;
    uint32_t nrows = w->prows;
    size_t off = 0;
    do {
        size_t end = off;
        uint64_t cnt = 0;
        while (end < w->hlen && (cnt == 0 || end - off < HIST_CHUNK)) {
            struct wal_bytes rest = {w->hb + end, w->hlen - end};
            struct engine_hist h;
            if (snap_hist_next(&rest, &h) != 1)
                return -EPROTO; /* cannot happen: hist_cb wrote it */
            end = (size_t)(rest.p - w->hb);
            cnt++;
        }
        if (w->dlen >= SNAP_BLOCK_TARGET && (r = w_flush_devs(w)) < 0)
            return r;
        /* Bound: a compact history entry is at most 11 bytes longer than
         * its DEVS layout (a micros delta takes up to 10 bytes where the
         * plain micros took 1; an id up to 2 where an empty principal or
         * URI took 1), a row at most 40 more than its URI and UTI, the
         * entry's head at most 80 more than its device, owner and prefs. */
        size_t need = 1 + 8 * 10 + w->pdev_len +
                      (meta || nrows ? w->powner_len + w->pprefs_len : 0) +
                      (size_t)nrows * 40 + w->rlen + (end - off) + (size_t)cnt * 12;
        if (w->dlen && w->dlen + need > SNAP_BLOCK_MAX - WAL_TAG && (r = w_flush_devs(w)) < 0)
            return r;
        if (w->dlen + need > SNAP_BLOCK_MAX - WAL_TAG)
            return -E2BIG;
        if ((r = w_reserve(&w->dbuf, &w->dcap, w->dlen + need)) < 0)
            return r;
        uint8_t *o = w->dbuf + w->dlen;
        *o++ = (uint8_t)((meta ? 1 : 0) | (nrows ? 4 : 0) |
                         ((meta || nrows) && w->pprefs_len ? 2 : 0));
        o += put_var(o, w->pdev_len);
        memcpy(o, w->pdev, w->pdev_len);
        o += w->pdev_len;
        if (meta || nrows) {
            o += put_var(o, w->powner_len);
            if (w->powner_len)
                memcpy(o, w->powner, w->powner_len);
            o += w->powner_len;
            if (w->pprefs_len) {
                o += put_var(o, w->pprefs_len);
                memcpy(o, w->pprefs, w->pprefs_len);
                o += w->pprefs_len;
            }
        }
        if (nrows) {
            o += put_var(o, nrows);
            for (uint32_t k = 0; k < nrows; k++) {
                const struct prow *pr = &w->prow[k];
                o = put_uref(w, o, w->rb + pr->uri_off, pr->uri_len);
                o += put_var(o, pr->uti_len);
                memcpy(o, w->rb + pr->uti_off, pr->uti_len);
                o += pr->uti_len;
                o += put_var(o, pr->exp);
                o += put_var(o, pr->lsn);
            }
            w->rows += nrows;
            w->devices++;
        }
        o += put_var(o, w->klsn);
        o += put_var(o, w->kpart);
        o += put_var(o, cnt);
        struct wal_bytes rest = {w->hb + off, end - off};
        struct engine_hist h;
        while (snap_hist_next(&rest, &h) == 1)
            o = put_hist2(w, o, &h, nrows);
        if ((size_t)(o - w->dbuf) > w->dlen + need)
            abort(); /* the bound above is wrong: memory is already damaged */
        w->dlen = (size_t)(o - w->dbuf);
        meta = 0;
        nrows = 0;
        off = end;
    } while (off < w->hlen);
    return 0;
}

/* Holds one of the pending record's rows for its DEVS2 entry: 1 held,
 * 2 its row past SNAP_DEV_ROWS_MAX (ROWS takes it), 0 another device's. */
static int w_dev_row(struct snap_writer *w, const struct engine_row *row)
{
    if (row->device_len != w->pdev_len || memcmp(row->device, w->pdev, w->pdev_len) != 0)
        return 0;
    if (w->prows >= SNAP_DEV_ROWS_MAX)
        return 2;
    int r = w_reserve(&w->rb, &w->rcap, w->rlen + row->uri_len + row->uti_len);
    if (r < 0)
        return r;
    struct prow *p = &w->prow[w->prows++];
    p->uri_off = (uint32_t)w->rlen;
    p->uri_len = row->uri_len;
    memcpy(w->rb + w->rlen, row->uri, row->uri_len);
    w->rlen += row->uri_len;
    p->uti_off = (uint32_t)w->rlen;
    p->uti_len = row->uti_len;
    memcpy(w->rb + w->rlen, row->uti, row->uti_len);
    w->rlen += row->uti_len;
    p->exp = row->expires_at;
    p->lsn = row->lsn;
    return 1;
}

int snap_writer_device(struct snap_writer *w, engine_t *e, const struct engine_device *d)
{
    int r = w_dev_emit(w);
    if (r < 0)
        return r;
    /* Headroom first, so the copy under the ring's lock rarely grows it. */
    if ((r = w_reserve(&w->hb, &w->hcap, 64u << 10)) < 0)
        return r;
    w->hlen = 0;
    w->herr = 0;
    uint64_t klsn = 0;
    uint32_t kpart = 0;
    r = engine_device_history(e, d, hist_cb, w, &klsn, &kpart);
    if (w->herr)
        return w->herr;
    if (r < 0)
        return r;
    if (d->rows && !klsn && !w->hlen)
        return 0; /* its rows say everything: ROWS blocks */
    if (d->prefs_len && (r = w_reserve(&w->pprefs, &w->pprefs_cap, d->prefs_len)) < 0)
        return r;
    memcpy(w->pdev, d->device, d->device_len);
    w->pdev_len = d->device_len;
    w->powner_len = d->owner_len;
    if (d->owner_len)
        memcpy(w->powner, d->owner, d->owner_len);
    w->pprefs_len = d->prefs_len;
    if (d->prefs_len)
        memcpy(w->pprefs, d->prefs, d->prefs_len);
    w->pwant = d->rows;
    w->prows = 0;
    w->rlen = 0;
    w->klsn = klsn;
    w->kpart = kpart;
    w->pend = 1;
    return d->rows ? 0 : w_dev_emit(w);
}

int snap_writer_aux(struct snap_writer *w, uint8_t kind, const void *p, size_t n)
{
    int r = w_dev_emit(w);
    if (r < 0 || (r = w_flush_rows(w)) < 0 || (r = w_flush_devs(w)) < 0)
        return r;
    if (n + 1 > SNAP_BLOCK_MAX - WAL_TAG)
        return -E2BIG;
    uint8_t *tmp = malloc(n + 1);
    if (!tmp)
        return -ENOMEM;
    tmp[0] = kind;
    if (n)
        memcpy(tmp + 1, p, n);
    r = w_block(w, SNAP_AUX, tmp, n + 1);
    free(tmp);
    return r < 0 ? r : snap_writer_drain(w);
}

int snap_writer_finish(struct snap_writer *w, uint64_t end_lsn)
{
    int r = w_dev_emit(w);
    if (r < 0 || (r = w_flush_rows(w)) < 0 || (r = w_flush_devs(w)) < 0)
        return r;
    uint8_t e[40];
    size_t n = 0;
    n += put_var(e + n, end_lsn);
    n += put_var(e + n, w->rows);
    n += put_var(e + n, w->devices);
    n += put_var(e + n, w->blocks);
    r = w_block(w, SNAP_END, e, n);
    if (r < 0 || (r = snap_writer_drain(w)) < 0)
        return r;
    return w->io->fdatasync(w->io->ctx, w->fd);
}

uint64_t snap_writer_bytes(const struct snap_writer *w) { return w->off + w->olen; }
uint64_t snap_writer_rows(const struct snap_writer *w) { return w->rows; }

void snap_writer_close(struct snap_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        w->io->close(w->io->ctx, w->fd);
    free(w->buf);
    free(w->obuf);
    free(w->dbuf);
    free(w->hb);
    free(w->pprefs);
    free(w->rb);
    free(w);
}
