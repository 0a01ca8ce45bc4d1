/*
 * principal.h — who may talk to icsd: the principal registry (wire-v1 s. 4).
 *
 * Owns: every principal (name, roles, scopes, certificate fingerprint pin,
 * salted PBKDF2-HMAC-SHA256 secret hash) and their durability through the
 * store's aux records of kind PRINCIPAL_AUX_KIND (logged, snapshotted,
 * replayed idempotently: set and del are by name). A clear secret is never
 * stored, logged or encoded: only its salted slow hash is.
 *
 * Invariants: a published struct principal never changes except for its
 * refcount and its revoked flag. Replacing or deleting a principal sets the
 * old record's revoked flag (release), so a connection holding a reference
 * sees it with one acquire load per request (principal_revoked) and then
 * re-looks the name up (principal_get): NULL means unauthenticated.
 *
 * Threads: every function may be called from any thread. The registry is a
 * mutex-protected hash of refcounted records: lookups by name are rare (at
 * authentication and after a revocation), the per-request cost is only the
 * revoked load on a record the connection already holds, so a lock-free
 * index would buy nothing. principal_verify_secret, principal_set and
 * principal_bootstrap_admin run PBKDF2 and are slow by design: call them
 * off the event loop.
 */
#ifndef ICS_NET_PRINCIPAL_H
#define ICS_NET_PRINCIPAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Role bits, exactly the u8 of wire-v1 PRINCIPAL_SET. */
enum principal_role {
    PRINCIPAL_ADMIN = 1,
    PRINCIPAL_IOT_SP = 2,
    PRINCIPAL_TPSP = 4,
    PRINCIPAL_GENERATOR = 8,
    PRINCIPAL_VALIDATOR = 16,
};
#define PRINCIPAL_ROLES_ALL 0x1fu

#define PRINCIPAL_AUX_KIND 1       /* store aux kind of principal records */
#define PRINCIPAL_NAME_MAX 128u    /* = ENGINE_NAME_MAX */
#define PRINCIPAL_SECRET_MAX 1024u /* clear secret bytes accepted */
#define PRINCIPAL_SCOPE_MAX 1024u  /* one scope prefix: a URI at most */
#define PRINCIPAL_MAX_SCOPES 256u  /* scopes per principal */
#define PRINCIPAL_SALT_LEN 16u
#define PRINCIPAL_HASH_LEN 32u     /* PBKDF2-HMAC-SHA256 output */
#define PRINCIPAL_FP_LEN 32u       /* SHA-256 certificate fingerprint */
#define PRINCIPAL_DEFAULT_ITERATIONS 100000u

struct principal_span {
    const uint8_t *p;
    uint16_t len;
};

/* A principal as decoded from PRINCIPAL_SET or a principals-file line:
 * pointers into the caller's bytes, nothing allocated. */
struct principal_def {
    struct principal_span name;
    uint8_t roles;
    struct principal_span secret;      /* len 0: certificate only */
    bool has_fp;
    uint8_t fp[PRINCIPAL_FP_LEN];      /* decoded from hex */
    uint16_t nscopes;
    struct principal_span scopes[PRINCIPAL_MAX_SCOPES];
};

/* An immutable published principal. Fields other than refs and revoked
 * never change after publication. */
struct principal {
    _Atomic int refs;
    _Atomic int revoked;               /* 1 once replaced or deleted */
    uint8_t roles;
    uint16_t name_len;
    uint8_t name[PRINCIPAL_NAME_MAX];
    bool has_secret, has_fp;
    uint32_t iterations;
    uint8_t salt[PRINCIPAL_SALT_LEN];
    uint8_t hash[PRINCIPAL_HASH_LEN];
    uint8_t fp[PRINCIPAL_FP_LEN];
    uint16_t nscopes;
    struct principal_span scopes[];    /* bytes follow in the same block */
};

typedef struct principal_reg principal_reg_t;

struct principal_config {
    uint32_t iterations;   /* PBKDF2 iterations for new secrets; 0 = default */
    void (*log)(void *ctx, enum store_log_level lvl, const char *msg);
    void *log_ctx;
};

int  principal_reg_create(principal_reg_t **out, const struct principal_config *cfg);
void principal_reg_destroy(principal_reg_t *reg); /* holders' refs stay valid */

/* Registers the aux kind with the store: after store_open, before
 * store_recover. Without it (store NULL everywhere) changes apply at once,
 * in memory only (tests). */
int principal_register_aux(principal_reg_t *reg, store_t *store);

/* A reference to the current principal of that name, or NULL. */
struct principal *principal_get(principal_reg_t *reg, const void *name, size_t len);
void principal_put(struct principal *p);        /* NULL ok */
struct principal *principal_ref(struct principal *p);

/* Acquire load: pairs with the release store made when p was replaced or
 * deleted, so that after seeing 0 the holder may act on p's rights. */
static inline bool principal_revoked(const struct principal *p)
{
    return atomic_load_explicit(&((struct principal *)p)->revoked,
                                memory_order_acquire) != 0;
}

static inline bool principal_has(const struct principal *p, unsigned roles)
{
    return p != NULL && (p->roles & roles) != 0;
}

/* Slow by design (PBKDF2). 0 if the secret matches, else -EACCES (also for
 * a certificate-only principal). Constant-time compare. */
int principal_verify_secret(const struct principal *p, const void *secret, size_t len);

/* true if p has no pin or the pin equals the SHA-256 of the certificate. */
bool principal_fp_matches(const struct principal *p, const uint8_t sha256[PRINCIPAL_FP_LEN]);

/* Pure decoder of PRINCIPAL_SET: key = name, value as wire-v1 3.3.
 * 0, or -EINVAL / -E2BIG with *msg a static ASCII reason. def points into
 * name and value. */
int principal_decode_set(const void *name, size_t nlen, const void *value, size_t vlen,
                         struct principal_def *def, const char **msg);

/* Pure parser of one line of a principals file (config as code):
 *   NAME roles=iot_sp,tpsp [secret=S] [fingerprint=HEX64] [scopes=a,b]
 * Fields are separated by spaces or tabs; '#' starts a comment line.
 * Returns 0 with def filled (pointers into line), 1 for a blank or comment
 * line, or -EINVAL / -E2BIG with err = "LINENO: reason". */
int principal_parse_line(const char *line, size_t len, unsigned lineno,
                         struct principal_def *def, char *err, size_t errlen);

/* Imports a whole principals file (icsd --principals): every line is
 * parsed first and nothing is set unless all lines parse and no name
 * repeats (err = "LINENO: reason" of the first problem); then each
 * principal is created or replaced, waiting until durable (slow: PBKDF2
 * per secret). Principals not in the file are left alone. Returns the
 * number set, or a negative errno (-EINVAL / -E2BIG: err says where). */
int principal_import(principal_reg_t *reg, store_t *store, const char *text, size_t len,
                     char *err, size_t errlen);

/* Creates or replaces a principal: hashes the secret (slow), logs an aux
 * record through the store, which applies it in its writer lane; the old
 * record is revoked. Returns 0 when accepted (done(arg, status, lsn) is
 * called once it is durable, from a store thread) or a negative errno
 * (done never called). done == NULL: waits until durable and returns its
 * status (so never from a store thread or a store callback: it would wait
 * for itself). store == NULL: applies in memory at once, done(arg, 0, 0). */
int principal_set(principal_reg_t *reg, store_t *store, const struct principal_def *def,
                  store_done_fn done, void *arg);
/* Deletes a principal; -ENOENT if unknown. Same done rules. */
int principal_del(principal_reg_t *reg, store_t *store, const void *name, size_t len,
                  store_done_fn done, void *arg);

/* Appends the PRINCIPAL_LIST value, names sorted: never a secret. */
int principal_list_encode(principal_reg_t *reg, struct buf *out);

/* The iot_sp principal whose serial-prefix scope is the longest prefix of
 * serial (ties: the smaller name), as a reference; NULL if none. */
struct principal *principal_route_serial(principal_reg_t *reg, const void *serial, size_t len);

size_t principal_count(principal_reg_t *reg);

/* First start with an empty registry: creates an admin principal with a
 * random secret (32 hex characters, NUL-terminated into secret_out, which
 * must hold 33 bytes) and waits until it is durable. -EEXIST if the
 * registry already holds any principal. */
int principal_bootstrap_admin(principal_reg_t *reg, store_t *store, const char *name,
                              char *secret_out, size_t secret_cap);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_PRINCIPAL_H */
