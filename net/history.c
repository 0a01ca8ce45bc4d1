/*
 * history.c — HISTORY responses and inquiry records (see history.h).
 */
#include "history.h"

#include <errno.h>
#include <string.h>

#include "acl.h"
#include "prefs.h"

struct owner_ctx {
    const struct principal *p;
    bool owner;
    struct buf prefs; /* a copy: the engine's bytes live only inside the call */
    int err;
};

static int owner_cb(void *arg, const struct engine_row *row)
{
    struct owner_ctx *c = arg;
    c->owner = acl_owns_device(c->p, row->owner, row->owner_len);
    if (!c->owner && row->prefs_len)
        c->err = buf_append(&c->prefs, row->prefs, row->prefs_len) < 0 ? -ENOMEM : 0;
    return 1; /* owner and prefs are the device's, the same on every row */
}

struct enc_ctx {
    const struct principal *p;
    bool all;
    uint32_t max, n;
    struct buf *out;
    int err;
    const void *prefs;
    size_t prefs_len;
    uint64_t now_us;
};

static int enc_cb(void *arg, const struct engine_hist *h)
{
    struct enc_ctx *c = arg;
    /* A tpsp sees the entries of its scopes that the device's preferences
     * let it see now, the rule acl_row_via applies to rows: an entry for a
     * URI they refuse belongs to a row that, for this tpsp, does not exist
     * (wire-v1 section 4). */
    if (!c->all && (!acl_uri_in_scope(c->p, h->uri, h->uri_len) ||
                    !prefs_allows(c->prefs, c->prefs_len, h->uri, h->uri_len, c->now_us)))
        return 0;
    int rc = 0;
    rc |= buf_put_u64(c->out, h->micros);
    rc |= buf_put_u8(c->out, h->event);
    rc |= buf_put_str16(c->out, h->principal, h->principal_len);
    rc |= buf_put_str16(c->out, h->uri, h->uri_len);
    rc |= buf_put_str16(c->out, h->uti, h->uti_len);
    if (rc) {
        c->err = -ENOMEM;
        return 1;
    }
    c->n++;
    return c->max && c->n >= c->max ? 1 : 0;
}

static int encode(engine_t *e, const void *dev, size_t dev_len, const struct principal *p,
                  uint32_t max, uint64_t now_us, struct buf *out, struct owner_ctx *oc)
{
    int rc = engine_device_info(e, dev, dev_len, owner_cb, oc);
    if (rc < 0)
        return rc;
    if (oc->err)
        return oc->err;
    bool all = oc->owner; /* admin or the owner iot_sp */
    if (!all && !(p->roles & PRINCIPAL_TPSP))
        return -ENOENT;

    size_t start = out->len;
    if (buf_put_u32(out, 0) < 0)
        return -ENOMEM;
    struct enc_ctx c = {p, all, max, 0, out, 0, oc->prefs.p, oc->prefs.len, now_us};
    rc = engine_history_get(e, dev, dev_len, (size_t)-1, enc_cb, &c);
    if (c.err || (rc < 0 && rc != -ENOENT)) {
        buf_truncate(out, start);
        return c.err ? c.err : rc;
    }
    if (!all && c.n == 0) {
        /* A tpsp with nothing of its own here must not learn the device
         * exists. */
        buf_truncate(out, start);
        return -ENOENT;
    }
    buf_be32(out->p + start, c.n);
    return 0;
}

int history_encode(engine_t *e, const void *dev, size_t dev_len, const struct principal *p,
                   uint32_t max, uint64_t now_us, struct buf *out)
{
    if (!p)
        return -ENOENT;
    struct owner_ctx oc = {p, false, BUF_INIT, 0};
    int rc = encode(e, dev, dev_len, p, max, now_us, out, &oc);
    buf_free(&oc.prefs);
    return rc;
}

int history_record_inquiry(engine_t *e, const void *dev, size_t dev_len, const void *principal,
                           size_t plen, const void *uri, size_t ulen, const void *uti,
                           size_t tlen, uint64_t now_us)
{
    if (plen > 0xffff || ulen > 0xffff || tlen > 0xffff)
        return -EINVAL;
    struct engine_hist h = {
        .micros = now_us,
        .event = ENGINE_H_INQUIRY,
        .principal = principal, .principal_len = (uint16_t)plen,
        .uri = uri, .uri_len = (uint16_t)ulen,
        .uti = uti, .uti_len = (uint16_t)tlen,
    };
    return engine_history_add(e, dev, dev_len, &h);
}

int history_record_row(engine_t *e, const struct engine_row *row, const void *principal,
                       size_t plen, uint64_t now_us)
{
    if (!row || plen > 0xffff)
        return -EINVAL;
    struct engine_hist h = {
        .micros = now_us,
        .event = ENGINE_H_INQUIRY,
        .principal = principal, .principal_len = (uint16_t)plen,
        .uri = row->uri, .uri_len = row->uri_len,
        .uti = row->uti, .uti_len = row->uti_len,
    };
    return engine_history_add_row(e, row, &h);
}
