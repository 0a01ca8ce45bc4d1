/*
 * handlers.c — one function per wire-v1 opcode, dispatched through a table.
 *
 * A handler runs on the connection's worker. It either appends its whole
 * response to conn_sink() (synchronous: inquiries, errors) or creates a
 * response entry (conn_pend_new) and hands the change to the store or the
 * job thread with a message naming {worker, slot, generation, entry};
 * handle_done() turns the result into the response, and later responses
 * queued behind the entry go out after it, in request order.
 *
 * Access control: acl_op_allowed() first (AUTH_ERROR before
 * authentication, ACCESS_DENIED for a role that may not send the opcode),
 * then per object: a row the caller may not see is answered NOT_FOUND,
 * exactly as a row that does not exist.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl.h"
#include "errors.h"
#include "loop_int.h"
#include "history.h"
#include "keys.h"
#include "mailbox.h"
#include "pending.h"
#include "prefs.h"

uint64_t loop_mono_us(void);

struct rq {
    struct conn *c;
    struct worker *w;
    struct loop *l;
    const struct wire_frame *f;
    struct wire_req r;
    struct principal *p;   /* effective principal (not a new ref) or NULL */
    uint64_t t0;
};

typedef void (*handler_fn)(struct rq *x);

/* --- responses ---------------------------------------------------------------- */

static void respond(struct rq *x, uint16_t status, uint64_t cas, const void *ext, uint8_t el,
                    const void *key, uint16_t kl, const void *val, size_t vl)
{
    if (wire_put(conn_sink(x->c), WIRE_MAGIC_RES, x->f->opcode, status, x->f->opaque, cas, ext,
                 el, key, kl, val, (uint32_t)vl) < 0)
        x->c->close_after_flush = 1;
}

static void respond_ok(struct rq *x, uint64_t cas, const void *val, size_t vl)
{
    respond(x, WIRE_S_OK, cas, NULL, 0, NULL, 0, val, vl);
}

static void respond_err(struct rq *x, int err, const char *msg)
{
    if (!msg || !msg[0])
        msg = ics_strerror(err);
    respond(x, ics_status(err), 0, NULL, 0, NULL, 0, msg, strlen(msg));
}

/* A GET-family miss: nothing for the quiet variants; GETK echoes the key
 * on its NOT_FOUND as memcached does (wire-v1 3.1: K variants echo it). */
static void respond_miss(struct rq *x, uint8_t op, const void *key, uint16_t key_len)
{
    static const char msg[] = "not found";
    if (wire_op_quiet(op))
        return;
    if (op == WIRE_OP_GETK)
        respond(x, ics_status(-ENOENT), 0, NULL, 0, key, key_len, msg, sizeof msg - 1);
    else
        respond_err(x, -ENOENT, msg);
}

static int is_admin(const struct principal *p) { return principal_has(p, PRINCIPAL_ADMIN); }

static int name_eq(const struct principal *p, const void *n, size_t len)
{
    return p && p->name_len == len && memcmp(p->name, n, len) == 0;
}

struct rows_ctx {
    struct rq *x;
    struct buf *b;
    uint32_t n;
    uint64_t now_us;
    int with_device;
    int record;    /* an inquiry's answer (EXPORT is not one) */
    int err;
};

/* Every tpsp inquiry that returns a device's data goes to that device's
 * history (event 3): one entry per row returned, recorded from inside the
 * row callback with the record the inquiry already holds
 * (engine_history_add_row: no second lookup, no re-parsing of the answer).
 * Only rows seen as a tpsp are recorded: a device's visible rows are all
 * seen the same way (admin, owner or tpsp: the owner is per device), so an
 * admin's or the owner's inquiry records nothing, as before. A row is
 * recorded once its encoding succeeded; should a later row of the same
 * answer fail for memory, the earlier ones stay recorded although the
 * answer is an error (recording errs towards telling the user). now_us is
 * the clock read once for the whole inquiry or batch. */
static inline void record_row(struct rq *x, const struct engine_row *row, uint64_t now_us)
{
    history_record_row(x->l->d.engine, row, x->p->name, x->p->name_len, now_us);
}

/* ENGINE_INQ_RECORD for a principal whose answers may be recorded: the
 * engine then starts loading the device's ring during the row visit. */
static unsigned inq_flags(const struct principal *p)
{
    return p && principal_has(p, PRINCIPAL_TPSP) && !is_admin(p) ? ENGINE_INQ_RECORD : 0;
}

static int encode_row(void *arg, const struct engine_row *row)
{
    struct rows_ctx *rc = arg;
    int via = acl_row_via(rc->x->p, row, rc->now_us);
    if (via == ACL_VIA_NONE)
        return 0;
    if ((rc->with_device && buf_put_str16(rc->b, row->device, row->device_len) < 0) ||
        buf_put_str16(rc->b, row->uri, row->uri_len) < 0 ||
        buf_put_str16(rc->b, row->uti, row->uti_len) < 0 ||
        buf_put_u32(rc->b, row->expires_at) < 0) {
        rc->err = -ENOMEM;
        return 1;
    }
    rc->n++;
    if (via == ACL_VIA_TPSP && rc->record)
        record_row(rc->x, row, rc->now_us);
    return 0;
}

/* INQUIRE_DEVICE and the GET family: u32 n, n rows of what the caller may
 * see; NOT_FOUND when that is nothing. */
static void h_inquire_device(struct rq *x)
{
    uint8_t op = x->f->opcode;
    int is_get = op == WIRE_OP_GET || op == WIRE_OP_GETQ || op == WIRE_OP_GETK ||
                 op == WIRE_OP_GETKQ;
    int with_key = op == WIRE_OP_GETK || op == WIRE_OP_GETKQ;
    struct buf *b = conn_sink(x->c);
    size_t start = b->len;
    long off = wire_begin(b, WIRE_MAGIC_RES, op, WIRE_S_OK, x->f->opaque, 0);
    if (off < 0)
        goto nomem;
    if (is_get && buf_put_u32(b, 0) < 0) /* flags, as memcached sends */
        goto nomem;
    if (with_key && buf_append(b, x->r.key, x->r.key_len) < 0)
        goto nomem;
    size_t nat = b->len;
    if (buf_put_u32(b, 0) < 0)
        goto nomem;
    struct rows_ctx rc = {.x = x, .b = b, .now_us = loop_now_us(), .record = 1};
    uint64_t lsn = 0;
    int r = engine_inquire_device_ex(x->l->d.engine, x->r.key, x->r.key_len, encode_row, &rc,
                                     &lsn, inq_flags(x->p));
    if (rc.err)
        goto nomem;
    if (r == -ENOENT || rc.n == 0) {
        buf_truncate(b, start);
        respond_miss(x, op, x->r.key, x->r.key_len);
        return;
    }
    if (r < 0) {
        buf_truncate(b, start);
        respond_err(x, r, NULL);
        return;
    }
    buf_be32(b->p + nat, rc.n);
    buf_be64(b->p + off + 16, lsn);
    wire_end(b, off, is_get ? 4 : 0, with_key ? x->r.key_len : 0);
    return;
nomem:
    buf_truncate(b, start);
    respond_err(x, -ENOMEM, NULL);
}

struct bind_ctx {
    struct rq *x;
    uint8_t dev[ENGINE_ID_MAX];
    uint16_t dev_len;
    int via;
};

static int binding_row(void *arg, const struct engine_row *row)
{
    struct bind_ctx *bc = arg;
    uint64_t now = loop_now_us();
    bc->via = acl_row_via(bc->x->p, row, now);
    if (bc->via != ACL_VIA_NONE && row->device_len <= ENGINE_ID_MAX) {
        memcpy(bc->dev, row->device, row->device_len);
        bc->dev_len = row->device_len;
        if (bc->via == ACL_VIA_TPSP) /* the answer is this row's device ID */
            record_row(bc->x, row, now);
    }
    return 0;
}

static void h_inquire_binding(struct rq *x)
{
    struct bind_ctx bc = {.x = x};
    uint64_t lsn = 0;
    int r = engine_inquire_binding(x->l->d.engine, x->r.uri, x->r.uri_len, x->r.uti,
                                   x->r.uti_len, binding_row, &bc, &lsn);
    if (r < 0 || bc.via == ACL_VIA_NONE) {
        respond_err(x, -ENOENT, "not found");
        return;
    }
    respond_ok(x, lsn, bc.dev, bc.dev_len);
}

/* Owner and prefs of a device, copied out of the read-side section. */
struct devinfo {
    int found;
    uint8_t owner[ENGINE_NAME_MAX];
    uint16_t owner_len;
    struct buf prefs;
};

static int devinfo_cb(void *arg, const struct engine_row *row)
{
    struct devinfo *d = arg;
    d->found = 1;
    if (row->owner_len && row->owner_len <= ENGINE_NAME_MAX) {
        memcpy(d->owner, row->owner, row->owner_len);
        d->owner_len = row->owner_len;
    }
    if (row->prefs_len)
        buf_append(&d->prefs, row->prefs, row->prefs_len);
    return 1;
}

static int device_info(struct rq *x, const void *dev, size_t len, struct devinfo *d)
{
    memset(d, 0, sizeof *d);
    int r = engine_device_info(x->l->d.engine, dev, len, devinfo_cb, d);
    return d->found ? 0 : (r < 0 ? r : -ENOENT);
}

static int owns(struct rq *x, const struct devinfo *d)
{
    return is_admin(x->p) || (principal_has(x->p, PRINCIPAL_IOT_SP) && d->owner_len &&
                              name_eq(x->p, d->owner, d->owner_len));
}

/* --- changes through the store ------------------------------------------------------ */

/* Starts an asynchronous response; returns the message to pass as done arg. */
static struct msg *begin_async(struct rq *x, struct pend **pe_out)
{
    struct pend *pe = conn_pend_new(x->c, x->f, x->t0);
    if (!pe)
        return NULL;
    struct msg *m = msg_new(x->c, pe, 0);
    if (!m) {
        pe->done = 1;
        wire_put(&pe->resp, WIRE_MAGIC_RES, x->f->opcode, WIRE_S_ENOMEM, x->f->opaque, 0, NULL, 0,
                 NULL, 0, "out of memory", 13);
        return NULL;
    }
    *pe_out = pe;
    return m;
}

/* The store refused synchronously: the entry answers at once. */
static void async_failed(struct rq *x, struct pend *pe, struct msg *m, int err, const char *why)
{
    free(m->result_to);
    free(m->result_dev);
    free(m);
    pe->done = 1;
    if (!why || !why[0])
        why = ics_strerror(err);
    wire_put(&pe->resp, WIRE_MAGIC_RES, x->f->opcode, ics_status(err), x->f->opaque, 0, NULL, 0,
             NULL, 0, why, (uint32_t)strlen(why));
}

void handle_done(struct conn *c, struct pend *pe, const struct msg *m)
{
    pe->done = 1;
    if (m->type == MSG_AUTH) {
        if (m->status == 0) {
            principal_put(c->p);
            c->p = m->principal;
            wire_put(&pe->resp, WIRE_MAGIC_RES, pe->opcode, WIRE_S_OK, pe->opaque, 0, NULL, 0, NULL,
                     0, "Authenticated", 13);
        } else {
            wire_put(&pe->resp, WIRE_MAGIC_RES, pe->opcode, WIRE_S_AUTH_ERROR, pe->opaque, 0, NULL,
                     0, NULL, 0, "Auth failure", 12);
        }
    } else if (m->status < 0) {
        const char *why = ics_strerror(m->status);
        wire_put(&pe->resp, WIRE_MAGIC_RES, pe->opcode, ics_status(m->status), pe->opaque, 0, NULL,
                 0, NULL, 0, why, (uint32_t)strlen(why));
    } else if (pe->opcode == WIRE_OP_DEMAP_DEVICE || pe->opcode == WIRE_OP_DEMAP_SERVICE) {
        uint8_t v[4];
        buf_be32(v, pe->count);
        wire_put(&pe->resp, WIRE_MAGIC_RES, pe->opcode, WIRE_S_OK, pe->opaque, m->lsn, NULL, 0,
                 NULL, 0, v, 4);
    } else {
        wire_put(&pe->resp, WIRE_MAGIC_RES, pe->opcode, WIRE_S_OK, pe->opaque, m->lsn, NULL, 0,
                 NULL, 0, NULL, 0);
    }
    stats_record(c->w, pe->opcode, pe->t0);
}

static const void *actor(struct rq *x) { return x->p ? x->p->name : NULL; }
static size_t actor_len(struct rq *x) { return x->p ? x->p->name_len : 0; }

static uint32_t expires_from_ttl(uint32_t ttl)
{
    return ttl ? (uint32_t)(loop_now_us() / 1000000u) + ttl : 0;
}

/* The device's preferences apply to a new row: a refused URI is
 * ACCESS_DENIED, and the retention bound caps the row's expiry. */
static int prefs_for_map(struct rq *x, const void *dev, size_t dev_len, const void *uri,
                         size_t uri_len, uint32_t *expires_at)
{
    struct devinfo d;
    if (device_info(x, dev, dev_len, &d) < 0 || d.prefs.len == 0) {
        buf_free(&d.prefs);
        return 0;
    }
    uint64_t now = loop_now_us();
    int ok = prefs_allows(d.prefs.p, d.prefs.len, uri, uri_len, now);
    if (ok)
        *expires_at = prefs_cap_expiry(d.prefs.p, d.prefs.len, (uint32_t)(now / 1000000u),
                                       *expires_at);
    buf_free(&d.prefs);
    return ok ? 0 : -EACCES;
}

static void h_map(struct rq *x)
{
    uint32_t expires_at = expires_from_ttl(x->r.u32);
    if (prefs_for_map(x, x->r.key, x->r.key_len, x->r.uri, x->r.uri_len, &expires_at) < 0) {
        respond_err(x, -EACCES, "the device's preferences deny this service");
        return;
    }
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    struct engine_map_req rq = {
        .dev = x->r.key, .dev_len = x->r.key_len, .uri = x->r.uri, .uri_len = x->r.uri_len,
        .uti = x->r.uti, .uti_len = x->r.uti_len, .owner = x->r.owner,
        .owner_len = x->r.owner_len, .expires_at = expires_at, .cas = x->f->cas,
    };
    int rc = store_map(x->l->d.store, &rq, actor(x), actor_len(x), store_done_cb, m);
    if (rc < 0)
        async_failed(x, pe, m, rc, rc == -EEXIST ? "binding held by another device or CAS mismatch"
                                                 : NULL);
}

/* The row a DEMAP (device, URI, UTI) or DEMAP_BINDING (URI, UTI) names,
 * and how the caller may see it (acl_row_via; ACL_VIA_NONE if absent). */
struct target {
    const struct rq *x;
    uint64_t now_us;
    int via;
};

static int target_cb(void *arg, const struct engine_row *row)
{
    struct target *t = arg;
    const struct rq *x = t->x;
    if (row->uri_len != x->r.uri_len || row->uti_len != x->r.uti_len ||
        memcmp(row->uri, x->r.uri, row->uri_len) != 0 ||
        memcmp(row->uti, x->r.uti, row->uti_len) != 0)
        return 0;
    t->via = acl_row_via(x->p, row, t->now_us);
    return 1; /* found: stop */
}

static int target_via(struct rq *x)
{
    struct target t = {.x = x, .now_us = loop_now_us(), .via = ACL_VIA_NONE};
    engine_t *e = x->l->d.engine;
    if (x->f->opcode == WIRE_OP_DEMAP_BINDING)
        (void)engine_inquire_binding(e, x->r.uri, x->r.uri_len, x->r.uti, x->r.uti_len,
                                     target_cb, &t, NULL);
    else
        (void)engine_inquire_device(e, x->r.key, x->r.key_len, target_cb, &t, NULL);
    return t.via;
}

static void h_demap(struct rq *x)
{
    uint8_t op = x->f->opcode;
    /* Who may: admin; the owner iot_sp (DEMAP, DEMAP_DEVICE); the tpsp of
     * the URI (DEMAP, DEMAP_BINDING, DEMAP_SERVICE) where the device's
     * preferences let it see the row (wire-v1 section 4: a row they refuse
     * does not exist for it). Anyone else sees NOT_FOUND, as for a missing
     * row. A row that changes between this check and the store's apply is
     * answered by the store (NOT_FOUND if it went). */
    if (!is_admin(x->p)) {
        int ok = 0;
        if (op == WIRE_OP_DEMAP_DEVICE) {
            struct devinfo d;
            ok = device_info(x, x->r.key, x->r.key_len, &d) == 0 && owns(x, &d);
            buf_free(&d.prefs);
        } else if (op == WIRE_OP_DEMAP_SERVICE) {
            /* The rows of the URI, in one change, of the devices whose
             * preferences let this tpsp see them (store_demap_service_prefs
             * applies them; NOT_FOUND if none does). */
            ok = principal_has(x->p, PRINCIPAL_TPSP) &&
                 acl_uri_in_scope(x->p, x->r.uri, x->r.uri_len);
        } else {
            int via = target_via(x);
            ok = op == WIRE_OP_DEMAP ? via != ACL_VIA_NONE
                                     : via != ACL_VIA_NONE && principal_has(x->p, PRINCIPAL_TPSP) &&
                                           acl_uri_in_scope(x->p, x->r.uri, x->r.uri_len);
        }
        if (!ok) {
            respond_err(x, -ENOENT, "not found");
            return;
        }
    }
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    store_t *s = x->l->d.store;
    int rc;
    switch (op) {
    case WIRE_OP_DEMAP:
        rc = store_demap(s, x->r.key, x->r.key_len, x->r.uri, x->r.uri_len, x->r.uti,
                         x->r.uti_len, x->f->cas, actor(x), actor_len(x), store_done_cb, m);
        break;
    case WIRE_OP_DEMAP_DEVICE:
        rc = store_demap_device(s, x->r.key, x->r.key_len, actor(x), actor_len(x), store_done_cb,
                                m);
        break;
    case WIRE_OP_DEMAP_BINDING:
        rc = store_demap_binding(s, x->r.uri, x->r.uri_len, x->r.uti, x->r.uti_len, actor(x),
                                 actor_len(x), store_done_cb, m);
        break;
    default:
        rc = is_admin(x->p) ? store_demap_service(s, x->r.uri, x->r.uri_len, actor(x),
                                                  actor_len(x), store_done_cb, m)
                            : store_demap_service_prefs(s, x->r.uri, x->r.uri_len, actor(x),
                                                        actor_len(x), store_done_cb, m);
        break;
    }
    if (rc < 0)
        async_failed(x, pe, m, rc, rc == -ENOENT ? "not found" : NULL);
    else
        pe->count = (uint32_t)rc;
}

static void h_snapshot(struct rq *x)
{
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    int rc = store_snapshot(x->l->d.store, store_done_cb, m);
    if (rc < 0)
        async_failed(x, pe, m, rc, NULL);
}

/* --- two-phase mapping ------------------------------------------------------------------ */

void raise_map_result(struct loop *l, const uint8_t *to, size_t tolen,
                      const uint8_t reqid[WIRE_REQID_LEN], uint16_t status, uint64_t lsn,
                      const void *val, size_t vlen)
{
    struct buf b = BUF_INIT;
    if (vlen > UINT16_MAX)
        vlen = UINT16_MAX;
    long off = wire_begin(&b, WIRE_MAGIC_EVT, WIRE_EV_MAP_RESULT, status, 0, lsn);
    if (off >= 0 && buf_append(&b, reqid, WIRE_REQID_LEN) == 0 &&
        buf_put_str16(&b, val, vlen) == 0 && wire_end(&b, off, 0, WIRE_REQID_LEN) == 0)
        event_raise_to(l, to, tolen, WIRE_W_MAP_RESULT, b.p, b.len, 1);
    buf_free(&b);
}

static void h_map_request(struct rq *x)
{
    if (!acl_uri_in_scope(x->p, x->r.uri, x->r.uri_len)) {
        respond_err(x, -EACCES, "service URI outside your scopes");
        return;
    }
    if (!x->l->d.pending) {
        respond_err(x, -EOPNOTSUPP, "two-phase mapping not configured");
        return;
    }
    struct principal *sp = principal_route_serial(x->l->d.reg, x->r.key, x->r.key_len);
    if (!sp) {
        respond_err(x, -ENOENT, "no IoT service provider owns this serial");
        return;
    }
    struct pending_req *pr = calloc(1, sizeof *pr);
    if (!pr) {
        principal_put(sp);
        respond_err(x, -ENOMEM, NULL);
        return;
    }
    memcpy(pr->tpsp, x->p->name, x->p->name_len);
    pr->tpsp_len = x->p->name_len;
    memcpy(pr->iot_sp, sp->name, sp->name_len);
    pr->iot_sp_len = sp->name_len;
    memcpy(pr->serial, x->r.key, x->r.key_len);
    pr->serial_len = x->r.key_len;
    memcpy(pr->uri, x->r.uri, x->r.uri_len);
    pr->uri_len = x->r.uri_len;
    memcpy(pr->uti, x->r.uti, x->r.uti_len);
    pr->uti_len = x->r.uti_len;
    pr->ttl_s = x->r.u32;
    pr->created_us = loop_now_us();
    uint8_t id[PENDING_ID_LEN];
    int rc = pending_create(x->l->d.pending, pr, id);
    if (rc < 0) {
        free(pr);
        principal_put(sp);
        respond_err(x, rc, rc == -EAGAIN ? "too many pending map requests" : NULL);
        return;
    }
    respond_ok(x, 0, id, sizeof id);
    /* MAP_PENDING to the routed iot_sp (or its mailbox). */
    struct buf b = BUF_INIT;
    long off = wire_begin(&b, WIRE_MAGIC_EVT, WIRE_EV_MAP_PENDING, 0, 0, 0);
    if (off >= 0 && buf_append(&b, id, sizeof id) == 0 &&
        buf_put_str16(&b, x->r.key, x->r.key_len) == 0 &&
        buf_put_str16(&b, x->r.uri, x->r.uri_len) == 0 &&
        buf_put_str16(&b, x->r.uti, x->r.uti_len) == 0 && wire_end(&b, off, 0, sizeof id) == 0)
        event_raise_to(x->l, sp->name, sp->name_len, WIRE_W_MAP_PENDING, b.p, b.len, 1);
    buf_free(&b);
    principal_put(sp);
    free(pr);
}

static void h_map_answer(struct rq *x)
{
    if (!x->l->d.pending) {
        respond_err(x, -EOPNOTSUPP, "two-phase mapping not configured");
        return;
    }
    struct pending_req *pr = calloc(1, sizeof *pr);
    if (!pr) {
        respond_err(x, -ENOMEM, NULL);
        return;
    }
    int rc = pending_take(x->l->d.pending, x->r.key, x->p->name, x->p->name_len, loop_now_us(), pr);
    if (rc < 0) {
        free(pr);
        respond_err(x, -ENOENT, "no such pending request");
        return;
    }
    if (x->f->opcode == WIRE_OP_MAP_REJECT) {
        raise_map_result(x->l, pr->tpsp, pr->tpsp_len, x->r.key, WIRE_S_NOT_FOUND, 0, x->r.text,
                         x->r.text_len);
        respond_ok(x, 0, NULL, 0);
        free(pr);
        return;
    }
    /* CONFIRM: the device must not belong to another iot_sp. */
    struct devinfo d;
    if (device_info(x, x->r.text, x->r.text_len, &d) == 0 && d.owner_len &&
        !name_eq(x->p, d.owner, d.owner_len)) {
        buf_free(&d.prefs);
        const char *why = "device belongs to another IoT service provider";
        raise_map_result(x->l, pr->tpsp, pr->tpsp_len, x->r.key, WIRE_S_ACCESS_DENIED, 0, why,
                         strlen(why));
        respond_err(x, -EACCES, why);
        free(pr);
        return;
    }
    uint32_t expires_at = expires_from_ttl(pr->ttl_s);
    if (d.prefs.len)
        expires_at = prefs_cap_expiry(d.prefs.p, d.prefs.len,
                                      (uint32_t)(loop_now_us() / 1000000u), expires_at);
    if (d.prefs.len && !prefs_allows(d.prefs.p, d.prefs.len, pr->uri, pr->uri_len, loop_now_us())) {
        buf_free(&d.prefs);
        const char *why = "the device's preferences deny this service";
        raise_map_result(x->l, pr->tpsp, pr->tpsp_len, x->r.key, WIRE_S_ACCESS_DENIED, 0, why,
                         strlen(why));
        respond_err(x, -EACCES, why);
        free(pr);
        return;
    }
    buf_free(&d.prefs);
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m) {
        free(pr);
        return;
    }
    m->result_to = malloc(pr->tpsp_len ? pr->tpsp_len : 1);
    m->result_dev = malloc(x->r.text_len);
    if (!m->result_to || !m->result_dev) {
        async_failed(x, pe, m, -ENOMEM, NULL);
        free(pr);
        return;
    }
    memcpy(m->result_to, pr->tpsp, pr->tpsp_len);
    m->result_to_len = pr->tpsp_len;
    memcpy(m->result_dev, x->r.text, x->r.text_len);
    m->result_dev_len = (uint16_t)x->r.text_len;
    memcpy(m->reqid, x->r.key, WIRE_REQID_LEN);
    struct engine_map_req rq = {
        .dev = x->r.text, .dev_len = x->r.text_len, .uri = pr->uri, .uri_len = pr->uri_len,
        .uti = pr->uti, .uti_len = pr->uti_len, .owner = x->p->name,
        .owner_len = x->p->name_len, .expires_at = expires_at,
    };
    rc = store_map(x->l->d.store, &rq, actor(x), actor_len(x), store_done_cb, m);
    if (rc < 0) {
        const char *why = rc == -EEXIST ? "binding held by another device" : ics_strerror(rc);
        raise_map_result(x->l, pr->tpsp, pr->tpsp_len, x->r.key, ics_status(rc), 0, why,
                         strlen(why));
        async_failed(x, pe, m, rc, why);
    }
    free(pr);
}

/* --- authentication and principals ---------------------------------------------------- */

static void h_sasl_list(struct rq *x) { respond_ok(x, 0, "PLAIN", 5); }

static void h_sasl_auth(struct rq *x)
{
    if (x->f->opcode == WIRE_OP_SASL_STEP || x->r.key_len != 5 ||
        memcmp(x->r.key, "PLAIN", 5) != 0) {
        respond(x, WIRE_S_AUTH_ERROR, 0, NULL, 0, NULL, 0, "Auth failure: only PLAIN", 24);
        return;
    }
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    size_t n = (size_t)x->r.authzid_len + x->r.authcid_len + x->r.secret_len;
    struct job *j = calloc(1, sizeof *j + n + 1);
    if (!j) {
        async_failed(x, pe, m, -ENOMEM, NULL);
        return;
    }
    j->kind = JOB_SASL;
    j->m = m;
    j->authzid_len = x->r.authzid_len;
    j->authcid_len = x->r.authcid_len;
    j->secret_len = x->r.secret_len;
    j->len = n;
    memcpy(j->data, x->r.authzid, x->r.authzid_len);
    memcpy(j->data + x->r.authzid_len, x->r.authcid, x->r.authcid_len);
    memcpy(j->data + x->r.authzid_len + x->r.authcid_len, x->r.secret, x->r.secret_len);
    m->type = MSG_AUTH;
    /* Later requests on this connection wait until the result is known,
     * so they run as the principal this authentication establishes. */
    x->c->blocked = 1;
    job_submit(x->l, j);
}

static void h_principal_change(struct rq *x)
{
    int del = x->f->opcode == WIRE_OP_PRINCIPAL_DEL;
    if (!del) {
        /* Decode now for a precise message; hashing happens on the job thread. */
        struct principal_def *def = malloc(sizeof *def);
        const char *why = NULL;
        if (!def) {
            respond_err(x, -ENOMEM, NULL);
            return;
        }
        int rc = principal_decode_set(x->r.key, x->r.key_len, x->r.text, x->r.text_len, def, &why);
        free(def);
        if (rc < 0) {
            respond_err(x, rc, why);
            return;
        }
    }
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    size_t n = (size_t)x->r.key_len + (del ? 0 : x->r.text_len);
    struct job *j = calloc(1, sizeof *j + n + 1);
    if (!j) {
        async_failed(x, pe, m, -ENOMEM, NULL);
        return;
    }
    j->kind = del ? JOB_PDEL : JOB_PSET;
    j->m = m;
    j->authcid_len = x->r.key_len; /* name length */
    j->len = n;
    memcpy(j->data, x->r.key, x->r.key_len);
    if (!del)
        memcpy(j->data + x->r.key_len, x->r.text, x->r.text_len);
    job_submit(x->l, j);
}

static void h_principal_list(struct rq *x)
{
    struct buf *b = conn_sink(x->c);
    size_t start = b->len;
    long off = wire_begin(b, WIRE_MAGIC_RES, x->f->opcode, WIRE_S_OK, x->f->opaque, 0);
    if (off < 0 || principal_list_encode(x->l->d.reg, b) < 0) {
        buf_truncate(b, start);
        respond_err(x, -ENOMEM, NULL);
        return;
    }
    wire_end(b, off, 0, 0);
}

static void h_whoami(struct rq *x)
{
    struct buf v = BUF_INIT;
    const char *role = acl_role_name(x->p);
    if (buf_put_str16(&v, x->p->name, x->p->name_len) < 0 ||
        buf_put_str16(&v, role, strlen(role)) < 0)
        respond_err(x, -ENOMEM, NULL);
    else
        respond_ok(x, 0, v.p, v.len);
    buf_free(&v);
}

/* --- memcached basics ------------------------------------------------------------------- */

static void h_noop(struct rq *x) { respond_ok(x, 0, NULL, 0); }

static void h_version(struct rq *x)
{
    char v[64];
    int n = snprintf(v, sizeof v, "%s icsd", x->l->cfg.version);
    respond_ok(x, 0, v, (size_t)n);
}

static void h_quit(struct rq *x)
{
    if (x->f->opcode == WIRE_OP_QUIT)
        respond_ok(x, 0, NULL, 0);
    x->c->close_after_flush = 1;
    x->c->stop_input = 1;
}

static void stat_one(struct rq *x, const char *name, uint64_t v)
{
    char s[32];
    int n = snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    respond(x, WIRE_S_OK, 0, NULL, 0, name, (uint16_t)strlen(name), s, (size_t)n);
}

static void h_stat(struct rq *x)
{
    struct loop *l = x->l;
    const char *g = (const char *)x->r.key;
    size_t gl = x->r.key_len;
#define GROUP(s) (gl == sizeof(s) - 1 && memcmp(g, s, gl) == 0)
    uint32_t curr = atomic_load_explicit(&l->curr_conns, memory_order_relaxed);
    uint64_t total = atomic_load_explicit(&l->total_conns, memory_order_relaxed);
    if (gl == 0) {
        struct engine_stats es;
        engine_stats(l->d.engine, &es);
        uint64_t now = loop_now_us();
        stat_one(x, "pid", (uint64_t)getpid());
        stat_one(x, "uptime", (now - l->start_us) / 1000000u);
        stat_one(x, "time", now / 1000000u);
        /* No "version" line, as memcached has: wire-v1 makes every stat an
         * ASCII number; VERSION answers the version. */
        stat_one(x, "threads", l->nw);
        stat_one(x, "curr_connections", curr);
        stat_one(x, "total_connections", total);
        stat_one(x, "rows", es.rows);
        stat_one(x, "devices", es.devices);
        stat_one(x, "bytes", es.bytes);
    } else if (GROUP("engine")) {
        struct engine_stats es;
        engine_stats(l->d.engine, &es);
        stat_one(x, "rows", es.rows);
        stat_one(x, "devices", es.devices);
        stat_one(x, "uris", es.uris);
        stat_one(x, "bytes", es.bytes);
        stat_one(x, "device_slots", es.device_slots);
        stat_one(x, "binding_slots", es.binding_slots);
        stat_one(x, "resizes", es.resizes);
        stat_one(x, "last_lsn", es.last_lsn);
    } else if (GROUP("wal")) {
        struct store_stats ss;
        store_stats(l->d.store, &ss);
        stat_one(x, "last_lsn", ss.last_lsn);
        stat_one(x, "durable_lsn", ss.durable_lsn);
        stat_one(x, "wal_bytes", ss.wal_bytes);
        stat_one(x, "wal_segments", ss.wal_segments);
        stat_one(x, "wal_records", ss.wal_records);
        stat_one(x, "syncs", ss.syncs);
        stat_one(x, "sync_us_total", ss.sync_us_total);
        stat_one(x, "batch_max", ss.batch_max);
        stat_one(x, "snapshots", ss.snapshots);
        stat_one(x, "snapshot_lsn", ss.snapshot_lsn);
        stat_one(x, "snapshot_bytes", ss.snapshot_bytes);
        stat_one(x, "expired", ss.expired);
        stat_one(x, "history_dropped", ss.history_dropped);
        stat_one(x, "recovery_us", ss.recovery_us);
        stat_one(x, "recovered_records", ss.recovered_records);
        stat_one(x, "read_only", (uint64_t)ss.read_only);
        stat_one(x, "encrypted", (uint64_t)ss.encrypted);
        stat_one(x, "relaxed", (uint64_t)ss.relaxed);
    } else if (GROUP("conns")) {
        stat_one(x, "curr_connections", curr);
        stat_one(x, "total_connections", total);
        stat_one(x, "max_connections", l->cfg.max_conns);
        stat_one(x, "rejected_connections",
                 atomic_load_explicit(&l->rejected_conns, memory_order_relaxed));
        stat_one(x, "closed_idle", atomic_load_explicit(&l->closed_idle, memory_order_relaxed));
        stat_one(x, "closed_overflow",
                 atomic_load_explicit(&l->closed_overflow, memory_order_relaxed));
        stat_one(x, "recv_nobufs", atomic_load_explicit(&l->recv_nobufs, memory_order_relaxed));
        uint64_t hits = 0, timeouts = 0;
        for (unsigned i = 0; i < l->nw; i++) {
            hits += atomic_load_explicit(&l->w[i].poll_hits, memory_order_relaxed);
            timeouts += atomic_load_explicit(&l->w[i].poll_timeouts, memory_order_relaxed);
        }
        stat_one(x, "busy_poll_us", l->cfg.busy_poll_us);
        stat_one(x, "busy_poll_hits", hits);
        stat_one(x, "busy_poll_timeouts", timeouts);
        stat_one(x, "idle_timeout", l->cfg.idle_timeout_s);
        stat_one(x, "max_conn_buffer", l->cfg.max_conn_buffer);
    } else if (GROUP("ops")) {
        uint64_t batched = 0;
        for (unsigned i = 0; i < l->nw; i++)
            batched += atomic_load_explicit(&l->w[i].batched, memory_order_relaxed);
        stat_one(x, "batched_inquiries", batched);
        for (unsigned op = 0; op < 256; op++) {
            uint64_t n = 0;
            uint64_t p50 = stats_percentile(l, (uint8_t)op, 0.50, &n);
            if (!n)
                continue;
            uint64_t p99 = stats_percentile(l, (uint8_t)op, 0.99, NULL);
            const char *name = wire_op_name((uint8_t)op);
            char k[64], unk[8];
            if (!name) {
                snprintf(unk, sizeof unk, "op_%02x", op);
                name = unk;
            }
            snprintf(k, sizeof k, "%s_count", name);
            stat_one(x, k, n);
            snprintf(k, sizeof k, "%s_p50_us", name);
            stat_one(x, k, p50);
            snprintf(k, sizeof k, "%s_p99_us", name);
            stat_one(x, k, p99);
        }
    } else {
        respond_err(x, -ENOENT, "unknown stat group");
        return;
    }
#undef GROUP
    respond_ok(x, 0, NULL, 0); /* the empty-key end */
}

/* --- watch, export, history, prefs, keys -------------------------------------------------- */

/* A kept MAP_PENDING whose request was answered or expired while it
 * waited is dropped, not delivered: it names a request that no longer
 * exists (a CONFIRM of it would get NOT_FOUND). Frames here are ours
 * (built by event_raise_to), so their layout is known. */
static int mailbox_to_conn(void *arg, const uint8_t *frame, size_t flen)
{
    struct conn *c = arg;
    pending_t *pt = c->w->l->d.pending;
    if (pt && flen >= WIRE_HDR_LEN && flen >= WIRE_HDR_LEN + WIRE_REQID_LEN + frame[4] &&
        frame[0] == WIRE_MAGIC_EVT && frame[1] == WIRE_EV_MAP_PENDING &&
        !pending_is_open(pt, frame + WIRE_HDR_LEN + frame[4], loop_now_us()))
        return 0;
    return buf_append(conn_sink(c), frame, flen) < 0 ? 1 : 0;
}

static void h_watch(struct rq *x)
{
    struct conn *c = x->c;
    uint32_t mask = x->r.u32;
    if (!mask) {
        watch_unregister(c);
        c->watch_mask = 0;
    } else {
        c->watch_mask = mask;
        watch_register(c);
    }
    respond_ok(x, 0, NULL, 0);
    if (mask & (WIRE_W_MAP_PENDING | WIRE_W_MAP_RESULT) && x->l->d.mailbox)
        mailbox_drain(x->l->d.mailbox, x->p->name, x->p->name_len, mailbox_to_conn, c);
}

static int export_row(void *arg, const struct engine_row *row)
{
    struct rows_ctx *rc = arg;
    return encode_row(arg, row) ? 1 : (rc->err ? 1 : 0);
}

static void h_export(struct rq *x)
{
    uint32_t max = x->r.has_u32 && x->r.u32 ? x->r.u32 : 1000;
    if (max > 1000)
        max = 1000;
    struct buf *b = conn_sink(x->c);
    size_t start = b->len;
    long off = wire_begin(b, WIRE_MAGIC_RES, x->f->opcode, WIRE_S_OK, x->f->opaque, 0);
    size_t at = b->len;
    if (off < 0 || buf_put_u64(b, 0) < 0 || buf_put_u32(b, 0) < 0) {
        buf_truncate(b, start);
        respond_err(x, -ENOMEM, NULL);
        return;
    }
    uint64_t cursor = x->r.u64;
    struct rows_ctx rc = {.x = x, .b = b, .now_us = loop_now_us(), .with_device = 1};
    int r = engine_iterate(x->l->d.engine, &cursor, max, export_row, &rc);
    if (rc.err || r < 0) {
        buf_truncate(b, start);
        respond_err(x, rc.err ? rc.err : r, NULL);
        return;
    }
    buf_be64(b->p + at, cursor);
    buf_be32(b->p + at + 8, rc.n);
    wire_end(b, off, 0, 0);
}

static void h_history(struct rq *x)
{
    struct buf *b = conn_sink(x->c);
    size_t start = b->len;
    long off = wire_begin(b, WIRE_MAGIC_RES, x->f->opcode, WIRE_S_OK, x->f->opaque, 0);
    int rc = off < 0 ? -ENOMEM
                     : history_encode(x->l->d.engine, x->r.key, x->r.key_len, x->p, x->r.u32,
                                      loop_now_us(), b);
    if (rc < 0) {
        buf_truncate(b, start);
        respond_err(x, rc, rc == -ENOENT ? "not found" : NULL);
        return;
    }
    wire_end(b, off, 0, 0);
}

static void h_prefs_set(struct rq *x)
{
    const char *why = NULL;
    int rc = prefs_validate(x->r.text, x->r.text_len, &why);
    if (rc < 0) {
        respond_err(x, rc, why);
        return;
    }
    struct devinfo d;
    rc = device_info(x, x->r.key, x->r.key_len, &d);
    int ok = rc == 0 && owns(x, &d);
    buf_free(&d.prefs);
    if (!ok) {
        respond_err(x, -ENOENT, "not found");
        return;
    }
    struct pend *pe;
    struct msg *m = begin_async(x, &pe);
    if (!m)
        return;
    rc = store_set_prefs(x->l->d.store, x->r.key, x->r.key_len, x->r.text, x->r.text_len,
                         actor(x), actor_len(x), store_done_cb, m);
    if (rc < 0)
        async_failed(x, pe, m, rc, NULL);
}

static void h_prefs_get(struct rq *x)
{
    struct devinfo d;
    int rc = device_info(x, x->r.key, x->r.key_len, &d);
    if (rc < 0 || !owns(x, &d) || d.prefs.len == 0)
        respond_err(x, -ENOENT, "not found");
    else
        respond_ok(x, 0, d.prefs.p, d.prefs.len);
    buf_free(&d.prefs);
}

static void h_key_issue(struct rq *x)
{
    if (!x->l->d.keys) {
        respond_err(x, -EOPNOTSUPP, "identity authority not configured");
        return;
    }
    struct buf *b = conn_sink(x->c);
    size_t start = b->len;
    long off = wire_begin(b, WIRE_MAGIC_RES, x->f->opcode, WIRE_S_OK, x->f->opaque, 0);
    int rc = off < 0 ? -ENOMEM
                     : keys_issue(x->l->d.keys, x->r.u32, loop_now_us() / 1000000u, b);
    if (rc < 0) {
        buf_truncate(b, start);
        respond_err(x, rc, NULL);
        return;
    }
    wire_end(b, off, 0, 0);
}

static void h_key_validate(struct rq *x)
{
    if (!x->l->d.keys) {
        respond_err(x, -EOPNOTSUPP, "identity authority not configured");
        return;
    }
    int rc = keys_validate(x->l->d.keys, x->r.text, x->r.text_len);
    if (rc < 0)
        respond_err(x, rc, rc == -ESTALE ? "signed with a retired key"
                           : rc == -EBADMSG ? "signature does not verify" : "malformed batch");
    else
        respond_ok(x, 0, NULL, 0);
}

static void h_not_wired(struct rq *x)
{
    respond_err(x, -EOPNOTSUPP, "not supported by this build");
}

/* --- dispatch ---------------------------------------------------------------------------- */

static handler_fn table[256];

static void table_init(void)
{
    table[WIRE_OP_GET] = table[WIRE_OP_GETQ] = table[WIRE_OP_GETK] = table[WIRE_OP_GETKQ] =
        h_inquire_device;
    table[WIRE_OP_INQUIRE_DEVICE] = h_inquire_device;
    table[WIRE_OP_INQUIRE_BINDING] = h_inquire_binding;
    table[WIRE_OP_NOOP] = h_noop;
    table[WIRE_OP_VERSION] = h_version;
    table[WIRE_OP_QUIT] = table[WIRE_OP_QUITQ] = h_quit;
    table[WIRE_OP_STAT] = h_stat;
    table[WIRE_OP_SASL_LIST_MECHS] = h_sasl_list;
    table[WIRE_OP_SASL_AUTH] = table[WIRE_OP_SASL_STEP] = h_sasl_auth;
    table[WIRE_OP_MAP] = h_map;
    table[WIRE_OP_DEMAP] = table[WIRE_OP_DEMAP_DEVICE] = table[WIRE_OP_DEMAP_BINDING] =
        table[WIRE_OP_DEMAP_SERVICE] = h_demap;
    table[WIRE_OP_WATCH] = h_watch;
    table[WIRE_OP_EXPORT] = h_export;
    table[WIRE_OP_SNAPSHOT] = h_snapshot;
    table[WIRE_OP_WHOAMI] = h_whoami;
    table[WIRE_OP_PRINCIPAL_SET] = table[WIRE_OP_PRINCIPAL_DEL] = h_principal_change;
    table[WIRE_OP_PRINCIPAL_LIST] = h_principal_list;
    table[WIRE_OP_PREFS_GET] = h_prefs_get;
    table[WIRE_OP_MAP_REQUEST] = table[WIRE_OP_MAP_CONFIRM] = table[WIRE_OP_MAP_REJECT] =
        h_not_wired;
    table[WIRE_OP_KEY_ISSUE] = table[WIRE_OP_KEY_VALIDATE] = h_not_wired;
    table[WIRE_OP_HISTORY] = table[WIRE_OP_PREFS_SET] = h_not_wired;
    table[WIRE_OP_MAP_REQUEST] = h_map_request;
    table[WIRE_OP_MAP_CONFIRM] = table[WIRE_OP_MAP_REJECT] = h_map_answer;
    table[WIRE_OP_KEY_ISSUE] = h_key_issue;
    table[WIRE_OP_KEY_VALIDATE] = h_key_validate;
    table[WIRE_OP_HISTORY] = h_history;
    table[WIRE_OP_PREFS_SET] = h_prefs_set;
}

static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* The principal this request runs as: the authenticated one (re-looked
 * up when it was replaced or deleted), else the anonymous one if the
 * operator named it and this is a loopback client (or allowed remote). */
static struct principal *effective_principal(struct conn *c)
{
    struct loop *l = c->w->l;
    if (c->p && principal_revoked(c->p)) {
        struct principal *np = principal_get(l->d.reg, c->p->name, c->p->name_len);
        principal_put(c->p);
        c->p = np;
        if (!np && c->watch_mask) {
            watch_unregister(c);
            c->watch_mask = 0;
        } else if (np && c->watch_mask) {
            watch_register(c);
        }
    }
    if (c->p)
        return c->p;
    if (!l->cfg.anonymous || (!c->loopback && !l->cfg.allow_anonymous_remote))
        return NULL;
    struct worker *w = c->w;
    if (w->anon && principal_revoked(w->anon)) {
        principal_put(w->anon);
        w->anon = NULL;
    }
    if (!w->anon)
        w->anon = principal_get(l->d.reg, l->cfg.anonymous, strlen(l->cfg.anonymous));
    return w->anon;
}

/* --- batched inquiries ------------------------------------------------------------
 * Pipelined INQUIRE_DEVICE / GET frames that arrive together are looked up
 * with engine_inquire_device_batch, which overlaps the memory loads of the
 * lookups (prefetch). Its callback sees the rows in key order and results[i]
 * says how many rows key i had, which splits them back per request. */

#define BATCH_MAX 64

static int batchable(uint8_t op)
{
    return op == WIRE_OP_INQUIRE_DEVICE || op == WIRE_OP_GET || op == WIRE_OP_GETQ ||
           op == WIRE_OP_GETK || op == WIRE_OP_GETKQ;
}

struct brow { uint32_t off, len; uint8_t via; };

struct batch_ctx {
    struct rq *x;                 /* the engine and principal, for record_row */
    const struct principal *p;
    uint64_t now_us;              /* one clock read for the whole batch */
    struct buf rows;              /* encoded visible rows, back to back */
    struct brow *ri;
    size_t n, cap;
    int err;
};

static int batch_row(void *arg, const struct engine_row *row)
{
    struct batch_ctx *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct brow *ri = realloc(b->ri, cap * sizeof *ri);
        if (!ri) {
            b->err = -ENOMEM;
            return 0; /* keep counting rows so results[] still splits them */
        }
        b->ri = ri;
        b->cap = cap;
    }
    struct brow *r = &b->ri[b->n++];
    r->via = (uint8_t)acl_row_via(b->p, row, b->now_us);
    r->off = (uint32_t)b->rows.len;
    r->len = 0;
    if (r->via != ACL_VIA_NONE) {
        if (buf_put_str16(&b->rows, row->uri, row->uri_len) < 0 ||
            buf_put_str16(&b->rows, row->uti, row->uti_len) < 0 ||
            buf_put_u32(&b->rows, row->expires_at) < 0)
            b->err = -ENOMEM;
        else if (r->via == ACL_VIA_TPSP && !b->err) /* a batch that failed records no more */
            record_row(b->x, row, b->now_us);
        r->len = (uint32_t)(b->rows.len - r->off);
    }
    return 0;
}

static void run_batch(struct conn *c, const struct wire_frame *fr, const struct wire_req *rr,
                      size_t n, struct principal *p, uint64_t t0)
{
    struct loop *l = c->w->l;
    struct engine_key keys[BATCH_MAX];
    int results[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        keys[i] = (struct engine_key){rr[i].key, rr[i].key_len};
    struct engine_stats es;
    engine_stats(l->d.engine, &es); /* the LSN the answers reflect at least */
    struct rq bx = {.c = c, .w = c->w, .l = l, .p = p};
    struct batch_ctx b = {.x = &bx, .p = p, .now_us = loop_now_us()};
    engine_inquire_device_batch_ex(l->d.engine, keys, n, batch_row, &b, results, inq_flags(p));
    atomic_fetch_add_explicit(&c->w->batched, n, memory_order_relaxed); /* a counter */
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        struct rq x = {.c = c, .w = c->w, .l = l, .f = &fr[i], .r = rr[i], .p = p, .t0 = t0};
        size_t cnt = results[i] > 0 ? (size_t)results[i] : 0;
        if (b.err || at + cnt > b.n) {
            respond_err(&x, -ENOMEM, NULL);
            at += cnt;
            stats_record(c->w, fr[i].opcode, t0);
            continue;
        }
        uint8_t op = fr[i].opcode;
        int is_get = op != WIRE_OP_INQUIRE_DEVICE;
        int with_key = op == WIRE_OP_GETK || op == WIRE_OP_GETKQ;
        uint32_t vis = 0;
        for (size_t j = at; j < at + cnt; j++)
            vis += b.ri[j].via != ACL_VIA_NONE;
        if (!vis) {
            respond_miss(&x, op, rr[i].key, rr[i].key_len);
        } else {
            struct buf *o = conn_sink(c);
            size_t start = o->len;
            long off = wire_begin(o, WIRE_MAGIC_RES, op, WIRE_S_OK, fr[i].opaque, es.last_lsn);
            int bad = off < 0 || (is_get && buf_put_u32(o, 0) < 0) ||
                      (with_key && buf_append(o, rr[i].key, rr[i].key_len) < 0);
            bad = bad || buf_put_u32(o, vis) < 0;
            for (size_t j = at; !bad && j < at + cnt; j++)
                if (b.ri[j].len && buf_append(o, b.rows.p + b.ri[j].off, b.ri[j].len) < 0)
                    bad = 1;
            if (bad) {
                buf_truncate(o, start);
                respond_err(&x, -ENOMEM, NULL);
            } else {
                wire_end(o, off, is_get ? 4 : 0, with_key ? rr[i].key_len : 0);
            }
        }
        at += cnt;
        stats_record(c->w, op, t0);
    }
    buf_free(&b.rows);
    free(b.ri);
}

static void dispatch(struct conn *c, const struct wire_frame *f)
{
    struct rq x = {.c = c, .w = c->w, .l = c->w->l, .f = f, .t0 = loop_mono_us()};
    uint64_t seq_before = c->next_seq;
    const char *why = NULL;
    int rc = wire_decode(f, &x.r, &why);
    x.p = effective_principal(c);
    /* A WATCH by the anonymous principal needs a principal on the conn. */
    if (!acl_op_allowed(x.p, f->opcode)) {
        if (x.p)
            respond_err(&x, -EACCES, "access denied for your role");
        else
            respond_err(&x, -EPERM, "authentication required");
    } else if (rc < 0) {
        respond_err(&x, rc, why);
    } else {
        if (f->opcode == WIRE_OP_WATCH && !c->p && x.p)
            c->p = principal_ref(x.p);
        table[f->opcode](&x);
    }
    if (c->next_seq == seq_before) /* asynchronous ones count when done */
        stats_record(c->w, f->opcode, x.t0);
}

/* Answers the collected inquiries: one alone goes the ordinary way. */
static void flush_batch(struct conn *c, struct wire_frame *fr, struct wire_req *rr, size_t *nb,
                        uint64_t t0)
{
    if (*nb == 1)
        dispatch(c, &fr[0]);
    else if (*nb > 1)
        run_batch(c, fr, rr, *nb, effective_principal(c), t0);
    *nb = 0;
}

size_t handle_input(struct conn *c, const uint8_t *p, size_t n)
{
    pthread_once(&table_once, table_init);
    size_t off = 0;
    struct wire_frame fr[BATCH_MAX];
    struct wire_req rr[BATCH_MAX];
    size_t nb = 0;
    uint64_t t0 = 0;
    while (off < n && !c->blocked && !c->stop_input && !c->closing) {
        struct wire_frame f;
        int rc = wire_parse_request(p + off, n - off, &f);
        if (rc > 0 && batchable(f.opcode)) {
            /* Collect it if it is well-formed and allowed; anything else
             * (errors included) goes through dispatch, after the batch. */
            const char *why;
            struct principal *ep = effective_principal(c);
            if (wire_decode(&f, &rr[nb], &why) == 0 && acl_op_allowed(ep, f.opcode)) {
                if (nb == 0)
                    t0 = loop_mono_us();
                fr[nb++] = f;
                off += (size_t)rc;
                if (nb == BATCH_MAX)
                    flush_batch(c, fr, rr, &nb, t0);
                continue;
            }
        }
        flush_batch(c, fr, rr, &nb, t0);
        if (rc == 0)
            break;
        if (rc == -EPROTO || rc == -EMSGSIZE) {
            /* Framing lost: answer once, then close (no resync possible). */
            struct rq x = {.c = c, .w = c->w, .l = c->w->l, .f = &f};
            respond_err(&x, rc, rc == -EPROTO ? "bad magic: framing lost, closing"
                                              : "body over 1 MiB, closing");
            c->stop_input = 1;
            c->close_after_flush = 1;
            off = n;
            break;
        }
        if (rc == -EINVAL) {
            struct rq x = {.c = c, .w = c->w, .l = c->w->l, .f = &f};
            respond_err(&x, -EINVAL,
                        f.datatype ? "data type must be 0"
                        : f.status ? "reserved field must be 0"
                                   : "extras and key longer than the body");
            off += f.frame_len;
            continue;
        }
        dispatch(c, &f);
        off += (size_t)rc;
    }
    flush_batch(c, fr, rr, &nb, t0);
    conn_settle(c); /* entries the store refused at once are done already */
    return off;
}
