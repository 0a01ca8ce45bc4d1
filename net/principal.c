/*
 * principal.c — the principal registry (see principal.h).
 *
 * The registry is a name-sorted array of refcounted immutable records under
 * one mutex: binary search for lookups, memmove for the rare change, and
 * PRINCIPAL_LIST comes out sorted for free. Each published record holds one
 * reference owned by the array; principal_get hands out more.
 *
 * Aux record (kind PRINCIPAL_AUX_KIND), all integers big-endian:
 *   u8 version = 1, u8 op
 *   op 1 SET: str16 name, u8 roles, u8 flags (bit0 secret, bit1 pin),
 *             u32 iterations, 16 salt, 32 hash, 32 fingerprint,
 *             u16 n, n x str16 scope
 *   op 2 DEL: str16 name
 * Only the salted hash is in it, never the clear secret. Applying SET
 * replaces by name and DEL removes by name (absent: nothing to do), so
 * replaying a record twice leaves the same state.
 */
#include "principal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "waiter.h"
#include "wire.h"

#define REC_VERSION 1
#define REC_SET 1
#define REC_DEL 2

struct principal_reg {
    pthread_mutex_t mu;
    struct principal **v;   /* sorted by (name_len, name) bytes, see cmp_name */
    size_t n, cap;
    uint32_t iterations;
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
};

static void reg_log(principal_reg_t *reg, enum store_log_level lvl, const char *msg)
{
    if (reg->log)
        reg->log(reg->log_ctx, lvl, msg);
}

/* --- records ------------------------------------------------------------ */

struct principal *principal_ref(struct principal *p)
{
    /* Relaxed: taking a reference to a record we can already see needs no
     * ordering; the release/acquire pair is on the drop to zero. */
    if (p)
        atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void principal_put(struct principal *p)
{
    if (!p)
        return;
    /* acq_rel: the last dropper must see every other holder's use done. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
        free(p);
}

/* One block: the struct, the scope spans, then the scope bytes. */
static struct principal *principal_alloc(const uint8_t *name, uint16_t name_len,
                                         uint16_t nscopes, const struct principal_span *scopes)
{
    size_t bytes = 0;
    for (uint16_t i = 0; i < nscopes; i++)
        bytes += scopes[i].len;
    struct principal *p = calloc(1, sizeof(*p) + nscopes * sizeof(p->scopes[0]) + bytes);
    if (!p)
        return NULL;
    atomic_init(&p->refs, 1);
    atomic_init(&p->revoked, 0);
    memcpy(p->name, name, name_len);
    p->name_len = name_len;
    p->nscopes = nscopes;
    uint8_t *d = (uint8_t *)&p->scopes[nscopes];
    for (uint16_t i = 0; i < nscopes; i++) {
        memcpy(d, scopes[i].p, scopes[i].len);
        p->scopes[i].p = d;
        p->scopes[i].len = scopes[i].len;
        d += scopes[i].len;
    }
    return p;
}

int principal_verify_secret(const struct principal *p, const void *secret, size_t len)
{
    uint8_t out[PRINCIPAL_HASH_LEN];
    if (!p || !p->has_secret || (len && !secret))
        return -EACCES;
    if (!PKCS5_PBKDF2_HMAC((const char *)(len ? secret : ""), len, p->salt,
                           sizeof(p->salt), p->iterations, EVP_sha256(), sizeof(out), out))
        return -EACCES;
    int ok = CRYPTO_memcmp(out, p->hash, sizeof(out)) == 0;
    OPENSSL_cleanse(out, sizeof(out));
    return ok ? 0 : -EACCES;
}

bool principal_fp_matches(const struct principal *p, const uint8_t sha256[PRINCIPAL_FP_LEN])
{
    if (!p)
        return false;
    if (!p->has_fp)
        return true;
    return sha256 && CRYPTO_memcmp(p->fp, sha256, PRINCIPAL_FP_LEN) == 0;
}

/* --- pure decoders ------------------------------------------------------ */

static int get_span(struct wire_cur *c, struct principal_span *s)
{
    return wire_get_str16(c, &s->p, &s->len);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_fp(const uint8_t *hex, size_t len, uint8_t out[PRINCIPAL_FP_LEN])
{
    if (len != 2 * PRINCIPAL_FP_LEN)
        return false;
    for (size_t i = 0; i < PRINCIPAL_FP_LEN; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

#define FAIL(code, m)                                                      \
    do {                                                                   \
        if (msg)                                                           \
            *msg = (m);                                                    \
        return (code);                                                     \
    } while (0)

static int check_name(const uint8_t *name, size_t len, const char **msg)
{
    if (len == 0)
        FAIL(-EINVAL, "principal name is empty");
    if (len > PRINCIPAL_NAME_MAX)
        FAIL(-E2BIG, "principal name longer than 128 bytes");
    if (memchr(name, 0, len))
        FAIL(-EINVAL, "principal name contains NUL");
    return 0;
}

static int check_scope(const struct principal_span *s, const char **msg)
{
    if (s->len == 0)
        FAIL(-EINVAL, "empty scope prefix");
    if (s->len > PRINCIPAL_SCOPE_MAX)
        FAIL(-E2BIG, "scope prefix longer than 1024 bytes");
    if (memchr(s->p, 0, s->len))
        FAIL(-EINVAL, "scope prefix contains NUL");
    return 0;
}

int principal_decode_set(const void *name, size_t nlen, const void *value, size_t vlen,
                         struct principal_def *def, const char **msg)
{
    struct wire_cur r = {value, vlen};
    struct principal_span fp;
    int rc;

    memset(def, 0, offsetof(struct principal_def, scopes));
    if ((rc = check_name(name, nlen, msg)) < 0)
        return rc;
    def->name.p = name;
    def->name.len = (uint16_t)nlen;
    if (wire_get_u8(&r, &def->roles) < 0)
        FAIL(-EINVAL, "truncated roles");
    if (def->roles == 0 || (def->roles & ~PRINCIPAL_ROLES_ALL))
        FAIL(-EINVAL, "roles must be a nonzero mask of bits 0..4");
    if (get_span(&r, &def->secret) < 0)
        FAIL(-EINVAL, "truncated secret");
    if (def->secret.len > PRINCIPAL_SECRET_MAX)
        FAIL(-E2BIG, "secret longer than 1024 bytes");
    if (get_span(&r, &fp) < 0)
        FAIL(-EINVAL, "truncated certificate fingerprint");
    if (fp.len) {
        if (!parse_fp(fp.p, fp.len, def->fp))
            FAIL(-EINVAL, "fingerprint must be 64 hex digits (SHA-256)");
        def->has_fp = true;
    }
    if (wire_get_u16(&r, &def->nscopes) < 0)
        FAIL(-EINVAL, "truncated scope count");
    if (def->nscopes > PRINCIPAL_MAX_SCOPES)
        FAIL(-E2BIG, "more than 256 scopes");
    for (uint16_t i = 0; i < def->nscopes; i++) {
        if (get_span(&r, &def->scopes[i]) < 0)
            FAIL(-EINVAL, "truncated scope");
        if ((rc = check_scope(&def->scopes[i], msg)) < 0)
            return rc;
    }
    if (r.n)
        FAIL(-EINVAL, "trailing bytes after scopes");
    return 0;
}

/* --- principals file line ------------------------------------------------ */

static int line_err(char *err, size_t errlen, unsigned lineno, int code, const char *what,
                    const char *tok, size_t toklen)
{
    if (err && errlen) {
        if (tok)
            snprintf(err, errlen, "%u: %s '%.*s'", lineno, what,
                     (int)(toklen > 64 ? 64 : toklen), tok);
        else
            snprintf(err, errlen, "%u: %s", lineno, what);
    }
    return code;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int parse_roles(const char *s, size_t len, uint8_t *roles)
{
    static const struct { const char *n; uint8_t bit; } names[] = {
        {"admin", PRINCIPAL_ADMIN}, {"iot_sp", PRINCIPAL_IOT_SP}, {"tpsp", PRINCIPAL_TPSP},
        {"generator", PRINCIPAL_GENERATOR}, {"validator", PRINCIPAL_VALIDATOR},
    };
    *roles = 0;
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        size_t k;
        for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
            if (strlen(names[k].n) == j - i && memcmp(names[k].n, s + i, j - i) == 0)
                break;
        if (k == sizeof(names) / sizeof(names[0]))
            return -(int)(i + 1); /* where the bad role starts, 1-based */
        *roles |= names[k].bit;
        i = j + 1;
    }
    return 0;
}

int principal_parse_line(const char *line, size_t len, unsigned lineno,
                         struct principal_def *def, char *err, size_t errlen)
{
    bool seen_roles = false, seen_secret = false, seen_fp = false, seen_scopes = false;
    const char *msg = NULL;
    size_t i = 0;
    int rc;

    memset(def, 0, offsetof(struct principal_def, scopes));
    while (i < len && is_blank(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return 1;

    size_t t = i;
    while (i < len && !is_blank(line[i]))
        i++;
    if (memchr(line + t, '=', i - t))
        return line_err(err, errlen, lineno, -EINVAL, "line must start with a principal name, not",
                        line + t, i - t);
    if ((rc = check_name((const uint8_t *)line + t, i - t, &msg)) < 0)
        return line_err(err, errlen, lineno, rc, msg, NULL, 0);
    def->name.p = (const uint8_t *)line + t;
    def->name.len = (uint16_t)(i - t);

    for (;;) {
        while (i < len && is_blank(line[i]))
            i++;
        if (i == len)
            break;
        t = i;
        while (i < len && !is_blank(line[i]))
            i++;
        const char *tok = line + t;
        size_t tlen = i - t;
        const char *eq = memchr(tok, '=', tlen);
        if (!eq)
            return line_err(err, errlen, lineno, -EINVAL, "expected key=value, got", tok, tlen);
        size_t klen = (size_t)(eq - tok);
        const char *v = eq + 1;
        size_t vlen = tlen - klen - 1;
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(tok, s, klen) == 0)
        if (KEY("roles")) {
            if (seen_roles)
                return line_err(err, errlen, lineno, -EINVAL, "duplicate key", tok, klen);
            seen_roles = true;
            rc = parse_roles(v, vlen, &def->roles);
            if (rc < 0) {
                size_t at = (size_t)(-rc - 1);
                const char *c = memchr(v + at, ',', vlen - at);
                size_t blen = c ? (size_t)(c - (v + at)) : vlen - at;
                return line_err(err, errlen, lineno, -EINVAL,
                                "unknown role (admin, iot_sp, tpsp, generator, validator):",
                                v + at, blen);
            }
        } else if (KEY("secret")) {
            if (seen_secret)
                return line_err(err, errlen, lineno, -EINVAL, "duplicate key", tok, klen);
            seen_secret = true;
            if (vlen == 0)
                return line_err(err, errlen, lineno, -EINVAL, "empty secret (omit the key for certificate only)", NULL, 0);
            if (vlen > PRINCIPAL_SECRET_MAX)
                return line_err(err, errlen, lineno, -E2BIG, "secret longer than 1024 bytes", NULL, 0);
            def->secret.p = (const uint8_t *)v;
            def->secret.len = (uint16_t)vlen;
        } else if (KEY("fingerprint")) {
            if (seen_fp)
                return line_err(err, errlen, lineno, -EINVAL, "duplicate key", tok, klen);
            seen_fp = true;
            if (!parse_fp((const uint8_t *)v, vlen, def->fp))
                return line_err(err, errlen, lineno, -EINVAL,
                                "fingerprint must be 64 hex digits (SHA-256), got", v, vlen);
            def->has_fp = true;
        } else if (KEY("scopes")) {
            if (seen_scopes)
                return line_err(err, errlen, lineno, -EINVAL, "duplicate key", tok, klen);
            seen_scopes = true;
            size_t a = 0;
            while (a <= vlen) {
                size_t b = a;
                while (b < vlen && v[b] != ',')
                    b++;
                if (def->nscopes == PRINCIPAL_MAX_SCOPES)
                    return line_err(err, errlen, lineno, -E2BIG, "more than 256 scopes", NULL, 0);
                struct principal_span *s = &def->scopes[def->nscopes];
                s->p = (const uint8_t *)v + a;
                s->len = (uint16_t)(b - a > 0xffff ? 0xffff : b - a);
                if ((rc = check_scope(s, &msg)) < 0)
                    return line_err(err, errlen, lineno, rc, msg, NULL, 0);
                def->nscopes++;
                a = b + 1;
            }
        } else {
            return line_err(err, errlen, lineno, -EINVAL,
                            "unknown key (roles, secret, fingerprint, scopes):", tok, klen);
        }
#undef KEY
    }
    if (!seen_roles || def->roles == 0)
        return line_err(err, errlen, lineno, -EINVAL, "missing roles=", NULL, 0);
    return 0;
}

/* --- registry ------------------------------------------------------------ */

static int cmp_name(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Index of name, or -(insertion point) - 1. Caller holds mu. */
static ptrdiff_t find(principal_reg_t *reg, const void *name, size_t len)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_name(reg->v[mid]->name, reg->v[mid]->name_len, name, len);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ptrdiff_t)lo - 1;
}

int principal_reg_create(principal_reg_t **out, const struct principal_config *cfg)
{
    principal_reg_t *reg = calloc(1, sizeof(*reg));
    if (!reg)
        return -ENOMEM;
    pthread_mutex_init(&reg->mu, NULL);
    reg->iterations = cfg && cfg->iterations ? cfg->iterations : PRINCIPAL_DEFAULT_ITERATIONS;
    if (cfg) {
        reg->log = cfg->log;
        reg->log_ctx = cfg->log_ctx;
    }
    *out = reg;
    return 0;
}

void principal_reg_destroy(principal_reg_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++) {
        atomic_store_explicit(&reg->v[i]->revoked, 1, memory_order_release);
        principal_put(reg->v[i]);
    }
    free(reg->v);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

struct principal *principal_get(principal_reg_t *reg, const void *name, size_t len)
{
    struct principal *p = NULL;
    pthread_mutex_lock(&reg->mu);
    ptrdiff_t i = find(reg, name, len);
    if (i >= 0)
        p = principal_ref(reg->v[i]);
    pthread_mutex_unlock(&reg->mu);
    return p;
}

size_t principal_count(principal_reg_t *reg)
{
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->n;
    pthread_mutex_unlock(&reg->mu);
    return n;
}

/* Publishes p (taking over its reference), revoking the one it replaces. */
static int reg_insert(principal_reg_t *reg, struct principal *p)
{
    struct principal *old = NULL;
    pthread_mutex_lock(&reg->mu);
    ptrdiff_t i = find(reg, p->name, p->name_len);
    if (i >= 0) {
        old = reg->v[i];
        reg->v[i] = p;
    } else {
        if (reg->n == reg->cap) {
            size_t cap = reg->cap ? reg->cap * 2 : 16;
            struct principal **v = realloc(reg->v, cap * sizeof(*v));
            if (!v) {
                pthread_mutex_unlock(&reg->mu);
                principal_put(p);
                return -ENOMEM;
            }
            reg->v = v;
            reg->cap = cap;
        }
        size_t at = (size_t)(-i - 1);
        memmove(&reg->v[at + 1], &reg->v[at], (reg->n - at) * sizeof(reg->v[0]));
        reg->v[at] = p;
        reg->n++;
    }
    pthread_mutex_unlock(&reg->mu);
    if (old) {
        /* Release: pairs with principal_revoked's acquire load. */
        atomic_store_explicit(&old->revoked, 1, memory_order_release);
        principal_put(old);
    }
    return 0;
}

static int reg_remove(principal_reg_t *reg, const void *name, size_t len)
{
    struct principal *old = NULL;
    pthread_mutex_lock(&reg->mu);
    ptrdiff_t i = find(reg, name, len);
    if (i >= 0) {
        old = reg->v[i];
        memmove(&reg->v[i], &reg->v[i + 1], (reg->n - (size_t)i - 1) * sizeof(reg->v[0]));
        reg->n--;
    }
    pthread_mutex_unlock(&reg->mu);
    if (!old)
        return -ENOENT;
    atomic_store_explicit(&old->revoked, 1, memory_order_release);
    principal_put(old);
    return 0;
}

/* --- aux records --------------------------------------------------------- */

static int encode_set(struct buf *b, const struct principal *p)
{
    int rc = 0;
    rc |= buf_put_u8(b, REC_VERSION);
    rc |= buf_put_u8(b, REC_SET);
    rc |= buf_put_str16(b, p->name, p->name_len);
    rc |= buf_put_u8(b, p->roles);
    rc |= buf_put_u8(b, (uint8_t)((p->has_secret ? 1 : 0) | (p->has_fp ? 2 : 0)));
    rc |= buf_put_u32(b, p->iterations);
    rc |= buf_append(b, p->salt, sizeof(p->salt));
    rc |= buf_append(b, p->hash, sizeof(p->hash));
    rc |= buf_append(b, p->fp, sizeof(p->fp));
    rc |= buf_put_u16(b, p->nscopes);
    for (uint16_t i = 0; i < p->nscopes; i++)
        rc |= buf_put_str16(b, p->scopes[i].p, p->scopes[i].len);
    return rc ? -ENOMEM : 0;
}

static int encode_del(struct buf *b, const void *name, size_t len)
{
    int rc = 0;
    rc |= buf_put_u8(b, REC_VERSION);
    rc |= buf_put_u8(b, REC_DEL);
    rc |= buf_put_str16(b, name, len);
    return rc ? -ENOMEM : 0;
}

static int aux_apply(void *ctx, const void *data, size_t n, uint64_t lsn)
{
    principal_reg_t *reg = ctx;
    struct wire_cur r = {data, n};
    uint8_t ver, op;
    struct principal_span name;
    (void)lsn;

    if (wire_get_u8(&r, &ver) < 0 || ver != REC_VERSION || wire_get_u8(&r, &op) < 0 ||
        get_span(&r, &name) < 0 || name.len == 0 || name.len > PRINCIPAL_NAME_MAX)
        return -EINVAL;
    if (op == REC_DEL) {
        if (r.n)
            return -EINVAL;
        reg_remove(reg, name.p, name.len); /* absent: already applied */
        return 0;
    }
    if (op != REC_SET)
        return -EINVAL;

    uint8_t roles, flags;
    uint32_t iters;
    const uint8_t *salt, *hash, *fp;
    uint16_t ns;
    struct principal_span scopes[PRINCIPAL_MAX_SCOPES];
    if (wire_get_u8(&r, &roles) < 0 || wire_get_u8(&r, &flags) < 0 ||
        wire_get_u32(&r, &iters) < 0 || wire_get_bytes(&r, &salt, PRINCIPAL_SALT_LEN) < 0 ||
        wire_get_bytes(&r, &hash, PRINCIPAL_HASH_LEN) < 0 ||
        wire_get_bytes(&r, &fp, PRINCIPAL_FP_LEN) < 0 || wire_get_u16(&r, &ns) < 0 ||
        ns > PRINCIPAL_MAX_SCOPES)
        return -EINVAL;
    for (uint16_t i = 0; i < ns; i++)
        if (get_span(&r, &scopes[i]) < 0)
            return -EINVAL;
    if (r.n)
        return -EINVAL;
    struct principal *p = principal_alloc(name.p, name.len, ns, scopes);
    if (!p)
        return -ENOMEM;
    p->roles = roles;
    p->has_secret = flags & 1;
    p->has_fp = (flags & 2) != 0;
    p->iterations = iters;
    memcpy(p->salt, salt, PRINCIPAL_SALT_LEN);
    memcpy(p->hash, hash, PRINCIPAL_HASH_LEN);
    memcpy(p->fp, fp, PRINCIPAL_FP_LEN);
    return reg_insert(reg, p);
}

static int aux_dump(void *ctx, int (*emit)(void *ectx, const void *p, size_t n), void *ectx)
{
    principal_reg_t *reg = ctx;
    struct buf b = BUF_INIT;
    int rc = 0;
    /* Under the mutex: emit writes to the snapshot file and never calls
     * back into the registry. */
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->n && rc == 0; i++) {
        buf_reset(&b);
        rc = encode_set(&b, reg->v[i]);
        if (rc == 0)
            rc = emit(ectx, b.p, b.len);
    }
    pthread_mutex_unlock(&reg->mu);
    OPENSSL_cleanse(b.p, b.cap);
    buf_free(&b);
    return rc;
}

static const struct store_aux_ops aux_ops = {aux_apply, aux_dump};

int principal_register_aux(principal_reg_t *reg, store_t *store)
{
    return store_register_aux(store, PRINCIPAL_AUX_KIND, &aux_ops, reg);
}

/* done == NULL: wait here until the store calls back. */
static int submit(principal_reg_t *reg, store_t *store, const struct buf *rec,
                  store_done_fn done, void *arg)
{
    int rc;
    if (!store) {
        rc = aux_apply(reg, rec->p, rec->len, 0);
        if (rc >= 0 && done)
            done(arg, 0, 0);
        return rc < 0 ? rc : 0;
    }
    if (done) {
        rc = store_aux(store, PRINCIPAL_AUX_KIND, rec->p, rec->len, done, arg);
        return rc < 0 ? rc : 0;
    }
    struct store_waiter w = STORE_WAITER_INIT;
    rc = store_aux(store, PRINCIPAL_AUX_KIND, rec->p, rec->len, store_waiter_done, &w);
    if (rc < 0)
        return rc;
    return store_waiter_wait(&w);
}

int principal_set(principal_reg_t *reg, store_t *store, const struct principal_def *def,
                  store_done_fn done, void *arg)
{
    const char *msg;
    int rc;
    if (!def || check_name(def->name.p, def->name.len, &msg) < 0)
        return -EINVAL;
    if (def->roles == 0 || (def->roles & ~PRINCIPAL_ROLES_ALL) ||
        def->nscopes > PRINCIPAL_MAX_SCOPES || def->secret.len > PRINCIPAL_SECRET_MAX)
        return -EINVAL;

    struct principal *p = principal_alloc(def->name.p, def->name.len, def->nscopes, def->scopes);
    if (!p)
        return -ENOMEM;
    p->roles = def->roles;
    p->iterations = reg->iterations;
    if (def->has_fp) {
        p->has_fp = true;
        memcpy(p->fp, def->fp, PRINCIPAL_FP_LEN);
    }
    if (def->secret.len) {
        p->has_secret = true;
        if (!RAND_bytes(p->salt, sizeof(p->salt)) ||
            !PKCS5_PBKDF2_HMAC((const char *)def->secret.p, def->secret.len, p->salt,
                               sizeof(p->salt), p->iterations, EVP_sha256(), sizeof(p->hash),
                               p->hash)) {
            principal_put(p);
            return -EIO;
        }
    }
    struct buf rec = BUF_INIT;
    rc = encode_set(&rec, p);
    principal_put(p); /* the registry gets its own copy from the record */
    if (rc == 0)
        rc = submit(reg, store, &rec, done, arg);
    buf_free(&rec);
    if (rc == 0) {
        char line[200];
        snprintf(line, sizeof(line), "principal '%.*s' set (roles 0x%02x, %u scopes)",
                 (int)def->name.len, (const char *)def->name.p, def->roles, def->nscopes);
        reg_log(reg, STORE_LOG_INFO, line);
    }
    return rc;
}

int principal_del(principal_reg_t *reg, store_t *store, const void *name, size_t len,
                  store_done_fn done, void *arg)
{
    if (!name || len == 0 || len > PRINCIPAL_NAME_MAX)
        return -EINVAL;
    struct principal *p = principal_get(reg, name, len);
    if (!p)
        return -ENOENT;
    principal_put(p);
    struct buf rec = BUF_INIT;
    int rc = encode_del(&rec, name, len);
    if (rc == 0)
        rc = submit(reg, store, &rec, done, arg);
    buf_free(&rec);
    if (rc == 0) {
        char line[200];
        snprintf(line, sizeof(line), "principal '%.*s' deleted", (int)len, (const char *)name);
        reg_log(reg, STORE_LOG_INFO, line);
    }
    return rc;
}

/* Calls fn for each line of text with its 1-based number; stops at the
 * first nonzero return. */
static int each_line(const char *text, size_t len,
                     int (*fn)(void *arg, const char *line, size_t n, unsigned lineno), void *arg)
{
    unsigned lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        int rc = fn(arg, text + i, n, ++lineno);
        if (rc)
            return rc;
        i += n + 1;
    }
    return 0;
}

struct import {
    principal_reg_t *reg;
    store_t *store;
    struct principal_span *names; /* names seen so far (check pass) */
    size_t n, cap;
    char *err;
    size_t errlen;
    int set;
};

static int import_check(void *arg, const char *line, size_t n, unsigned lineno)
{
    struct principal_def def;
    struct import *im = arg;
    int rc = principal_parse_line(line, n, lineno, &def, im->err, im->errlen);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return 0;
    for (size_t i = 0; i < im->n; i++)
        if (im->names[i].len == def.name.len &&
            memcmp(im->names[i].p, def.name.p, def.name.len) == 0)
            return line_err(im->err, im->errlen, lineno, -EINVAL, "principal named twice:",
                            (const char *)def.name.p, def.name.len);
    if (im->n == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 32;
        struct principal_span *v = realloc(im->names, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        im->names = v;
        im->cap = cap;
    }
    im->names[im->n++] = def.name;
    return 0;
}

static int import_set(void *arg, const char *line, size_t n, unsigned lineno)
{
    struct principal_def def;
    struct import *im = arg;
    int rc = principal_parse_line(line, n, lineno, &def, im->err, im->errlen);
    if (rc == 1)
        return 0;
    if (rc == 0)
        rc = principal_set(im->reg, im->store, &def, NULL, NULL);
    if (rc < 0) {
        if (im->err && im->errlen)
            snprintf(im->err, im->errlen, "%u: could not set principal: error %d", lineno, rc);
        return rc;
    }
    im->set++;
    return 0;
}

int principal_import(principal_reg_t *reg, store_t *store, const char *text, size_t len,
                     char *err, size_t errlen)
{
    struct import im = {reg, store, NULL, 0, 0, err, errlen, 0};
    if (err && errlen)
        err[0] = 0;
    int rc = each_line(text, len, import_check, &im);
    free(im.names);
    if (rc == 0)
        rc = each_line(text, len, import_set, &im);
    return rc < 0 ? rc : im.set;
}

int principal_list_encode(principal_reg_t *reg, struct buf *out)
{
    size_t start = out->len;
    int rc = 0;
    pthread_mutex_lock(&reg->mu);
    rc |= buf_put_u32(out, (uint32_t)reg->n);
    for (size_t i = 0; i < reg->n && rc == 0; i++) {
        const struct principal *p = reg->v[i];
        rc |= buf_put_str16(out, p->name, p->name_len);
        rc |= buf_put_u8(out, p->roles);
        rc |= buf_put_u16(out, p->nscopes);
        for (uint16_t j = 0; j < p->nscopes; j++)
            rc |= buf_put_str16(out, p->scopes[j].p, p->scopes[j].len);
    }
    pthread_mutex_unlock(&reg->mu);
    if (rc) {
        buf_truncate(out, start);
        return -ENOMEM;
    }
    return 0;
}

struct principal *principal_route_serial(principal_reg_t *reg, const void *serial, size_t len)
{
    struct principal *best = NULL;
    size_t best_len = 0;
    pthread_mutex_lock(&reg->mu);
    /* Names ascend, so '>' keeps the smaller name on a tie. */
    for (size_t i = 0; i < reg->n; i++) {
        const struct principal *p = reg->v[i];
        if (!(p->roles & PRINCIPAL_IOT_SP))
            continue;
        for (uint16_t j = 0; j < p->nscopes; j++) {
            const struct principal_span *s = &p->scopes[j];
            if (s->len <= len && s->len > best_len && memcmp(serial, s->p, s->len) == 0) {
                best = reg->v[i];
                best_len = s->len;
            }
        }
    }
    principal_ref(best);
    pthread_mutex_unlock(&reg->mu);
    return best;
}

int principal_bootstrap_admin(principal_reg_t *reg, store_t *store, const char *name,
                              char *secret_out, size_t secret_cap)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[16];
    if (!name || !secret_out || secret_cap < 2 * sizeof(raw) + 1)
        return -EINVAL;
    if (principal_count(reg) != 0)
        return -EEXIST;
    if (!RAND_bytes(raw, sizeof(raw)))
        return -EIO;
    for (size_t i = 0; i < sizeof(raw); i++) {
        secret_out[2 * i] = hex[raw[i] >> 4];
        secret_out[2 * i + 1] = hex[raw[i] & 15];
    }
    secret_out[2 * sizeof(raw)] = 0;
    OPENSSL_cleanse(raw, sizeof(raw));

    struct principal_def def;
    memset(&def, 0, offsetof(struct principal_def, scopes));
    def.name.p = (const uint8_t *)name;
    def.name.len = (uint16_t)strnlen(name, PRINCIPAL_NAME_MAX + 1);
    def.roles = PRINCIPAL_ADMIN;
    def.secret.p = (const uint8_t *)secret_out;
    def.secret.len = 2 * sizeof(raw);
    int rc = principal_set(reg, store, &def, NULL, NULL);
    if (rc < 0)
        OPENSSL_cleanse(secret_out, secret_cap);
    return rc;
}
