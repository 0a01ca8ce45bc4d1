/*
 * tls.c — server-side TLS 1.3 with mutual X.509 authentication over memory
 * buffers (contract in tls.h).
 *
 * BoringSSL reads and writes through one custom BIO per connection: reads
 * come from an input buffer the caller fills with tls_conn_feed, writes are
 * appended to a list of fixed-size chunks that never move, so the loop may
 * hand a chunk to an asynchronous send while more records are queued behind
 * it. Plaintext goes from BoringSSL's record buffer (decrypted in place) to
 * the caller's buffer: one copy, no staging buffer of ours. An idle
 * connection holds no buffer of this module (both sides are freed when
 * drained), which matters with many mostly silent IoT connections.
 *
 * Session tickets are sealed with keys this module owns (not BoringSSL's
 * built-in ones) so that they rotate on a schedule and across SSL_CTX swaps:
 * the current key encrypts, the previous one still decrypts (and asks for a
 * renewed ticket), anything older is unknown and forces a full handshake.
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#if !defined(OPENSSL_IS_BORINGSSL)
#error "net/tls.c is written for BoringSSL (/usr/include/android), not OpenSSL"
#endif

#define TLS_PRINCIPAL_URN "urn:ics:principal:"
/* Output chunks are 32 KiB with their header, so they stay in jemalloc's
 * thread cache size classes; each holds at least one full record. */
#define TLS_OUT_CHUNK_BYTES (32u * 1024u)
#define TLS_DEFAULT_ROTATE_S 3600u
/* The input buffer's first size (a full record and then some); a drained
 * buffer up to twice that is kept for the next burst. */
#define TLS_IN_BYTES 16384u
#define TLS_IN_KEEP_BYTES (2u * TLS_IN_BYTES)

/* The allocation seam (tls_cfg.realloc_fn), NULL fn = libc. */
struct tls_alloc {
    void *(*fn)(void *arg, void *p, size_t n);
    void *arg;
};

static void *mem_realloc(const struct tls_alloc *a, void *p, size_t n)
{
    if (a->fn)
        return a->fn(a->arg, p, n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static void mem_free(const struct tls_alloc *a, void *p)
{
    if (p)
        mem_realloc(a, p, 0);
}

static void *mem_zalloc(const struct tls_alloc *a, size_t n)
{
    void *p = mem_realloc(a, NULL, n);
    if (p)
        memset(p, 0, n);
    return p;
}

struct tls_ticket_key {
    uint8_t name[16];
    uint8_t aes[16];                   /* AES-128-CBC, as the callback API wants */
    uint8_t hmac[32];                  /* HMAC-SHA256 */
};

/* One generation of configuration (what a reload replaces). BoringSSL
 * refcounts the SSL_CTX itself, but with atomics inside an uninstrumented
 * library; this count is ours, so the last release (which frees the
 * SSL_CTX and its X509_STORE) is ordered after every connection's use of
 * it in a way ThreadSanitizer can see. Each connection holds a reference,
 * and the tls_ctx holds one for the current generation. Increments are
 * relaxed (the caller already holds a reference, or mu); the decrement is
 * acq_rel so the freeing thread sees all other holders' accesses. */
struct tls_gen {
    SSL_CTX *ssl_ctx;
    atomic_int refs;
};

struct tls_ctx {
    pthread_mutex_t mu;                /* guards gen, keys, rotated_at */
    struct tls_gen *gen;               /* for new connections */
    struct tls_ticket_key keys[2];     /* [0] current, [1] previous */
    int nkeys;
    time_t rotated_at;                 /* CLOCK_MONOTONIC seconds */
    /* One reference for the owner plus one per tls_conn, so the ticket
     * callback of a late connection never sees a freed context. Increments
     * are relaxed (the caller already holds a reference); the decrement is
     * acq_rel so the last owner sees every other owner's writes before
     * freeing. */
    atomic_int refs;
    char *cert_file, *key_file, *ca_file, *crl_file;
    int allow_tls12, no_tickets;
    unsigned rotate_s;
    struct tls_alloc mem;
};

struct tls_out_chunk {
    struct tls_out_chunk *next;
    size_t off, len, cap;              /* [off, len) waits to be sent */
    uint8_t data[];
};

struct tls_conn {
    struct tls_ctx *ctx;
    struct tls_gen *gen;
    SSL *ssl;
    uint8_t *in;                       /* ciphertext fed, [in_off, in_len) unread */
    size_t in_off, in_len, in_cap;
    /* tls_conn_feed_lent's bytes, read in place: [lent_off, lent_len)
     * unread. Only lent while nothing waits in `in`, so they come next. */
    const uint8_t *lent;
    size_t lent_off, lent_len;
    /* 1 when BoringSSL holds no part of a record: the last SSL_read
     * returned data and left no decrypted bytes behind. Then the unread
     * input starts with a record header, and tls_conn_read can tell
     * without asking BoringSSL that no whole record waits (an SSL_read
     * that can only say WANT_READ costs about as much as decrypting a
     * small record). */
    int at_boundary;
    struct tls_out_chunk *out_head, *out_tail;
    size_t out_total;
    /* tls_conn_out_msg's gathered send: here, not on the caller's stack,
     * because an asynchronous sendmsg reads it after the call returns
     * (~200 bytes, which an idle connection keeps; no allocation). */
    struct msghdr out_msg;
    struct iovec out_iov[TLS_OUT_IOV_MAX];
    int ready, failed;
    int oom;                           /* an output chunk could not be had */
    int verify_err;                    /* first X509_V_ERR_* seen, 0 none */
    const char *err;
    int has_principal;
    char principal[TLS_PRINCIPAL_MAX + 1];
    char fingerprint[TLS_FINGERPRINT_HEX_LEN + 1];
};

/* ---- small helpers ------------------------------------------------------ */

static time_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* A macro, not a va_list helper: snprintf checks every format directly. */
#define set_err(err, errlen, ...)                                          \
    do {                                                                   \
        if ((err) && (errlen))                                             \
            snprintf((err), (errlen), __VA_ARGS__);                        \
    } while (0)

static const char *ssl_reason(void)
{
    uint32_t e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static char *dup_or_null(const struct tls_alloc *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = mem_realloc(a, NULL, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- the memory BIO ------------------------------------------------------ */

/* Built once; immutable afterwards (not mutable global state). */
static BIO_METHOD *g_bio_method;
static pthread_once_t g_bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *out, int len)
{
    struct tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (c->lent_off < c->lent_len) {
        size_t n = c->lent_len - c->lent_off;
        n = (size_t)len < n ? (size_t)len : n;
        memcpy(out, c->lent + c->lent_off, n);
        c->lent_off += n;
        return (int)n;
    }
    size_t avail = c->in_len - c->in_off;
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < avail ? (size_t)len : avail;
    memcpy(out, c->in + c->in_off, n);
    c->in_off += n;
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    return (int)n;
}

static int out_append(struct tls_conn *c, const uint8_t *p, size_t n)
{
    while (n) {
        struct tls_out_chunk *t = c->out_tail;
        if (!t || t->len == t->cap) {
            size_t cap = TLS_OUT_CHUNK_BYTES - sizeof *t;
            if (n > cap)
                cap = n;
            t = mem_realloc(&c->ctx->mem, NULL, sizeof *t + cap);
            if (!t)
                return -ENOMEM;
            t->next = NULL;
            t->off = t->len = 0;
            t->cap = cap;
            if (c->out_tail)
                c->out_tail->next = t;
            else
                c->out_head = t;
            c->out_tail = t;
        }
        size_t k = t->cap - t->len < n ? t->cap - t->len : n;
        memcpy(t->data + t->len, p, k);
        t->len += k;
        c->out_total += k;
        p += k;
        n -= k;
    }
    return 0;
}

static int bio_write(BIO *b, const char *in, int len)
{
    struct tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (out_append(c, (const uint8_t *)in, (size_t)len) != 0) {
        c->oom = 1;
        return -1;
    }
    return len;
}

/* libssl only ever asks this BIO to flush (after each flight); writes are
 * already "flushed" into the output queue. */
static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH;
}

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "ics tls memory");
    if (!m)
        return;
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    g_bio_method = m;
}

/* ---- ticket keys ---------------------------------------------------------- */

static int new_ticket_key(struct tls_ticket_key *k)
{
    return RAND_bytes((uint8_t *)k, sizeof *k) == 1 ? 0 : -EIO;
}

/* mu held. */
static void rotate_locked(struct tls_ctx *ctx)
{
    struct tls_ticket_key k;
    if (new_ticket_key(&k) != 0)
        return;                        /* keep the old key rather than none */
    ctx->keys[1] = ctx->keys[0];
    ctx->keys[0] = k;
    ctx->nkeys = ctx->nkeys == 0 ? 1 : 2;
    ctx->rotated_at = mono_now();
    OPENSSL_cleanse(&k, sizeof k);
}

/* mu held. After two idle periods the previous key is too old as well. */
static void rotate_if_due(struct tls_ctx *ctx)
{
    time_t age = mono_now() - ctx->rotated_at;
    if (age >= 2 * (time_t)ctx->rotate_s)
        ctx->nkeys = 0;
    if (ctx->nkeys == 0 || age >= (time_t)ctx->rotate_s)
        rotate_locked(ctx);
}

void tls_ctx_rotate_tickets(struct tls_ctx *ctx)
{
    pthread_mutex_lock(&ctx->mu);
    rotate_locked(ctx);
    pthread_mutex_unlock(&ctx->mu);
}

/* BoringSSL's ticket callback: 1 = key set, 2 = decrypted with an old key
 * (issue a new ticket), 0 = unknown key (full handshake), < 0 = error. */
static int ticket_cb(SSL *ssl, uint8_t *key_name, uint8_t *iv,
                     EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx, int encrypt)
{
    struct tls_conn *c = SSL_get_app_data(ssl);
    if (!c)
        return -1;
    struct tls_ctx *ctx = c->ctx;
    struct tls_ticket_key k;
    int ret = 1;

    pthread_mutex_lock(&ctx->mu);
    rotate_if_due(ctx);
    if (encrypt && ctx->nkeys == 0) {  /* no randomness: issue no ticket */
        pthread_mutex_unlock(&ctx->mu);
        return -1;
    }
    if (encrypt) {
        k = ctx->keys[0];
    } else {
        int i;
        for (i = 0; i < ctx->nkeys; i++)
            if (memcmp(ctx->keys[i].name, key_name, 16) == 0)
                break;
        if (i == ctx->nkeys) {
            pthread_mutex_unlock(&ctx->mu);
            return 0;
        }
        k = ctx->keys[i];
        ret = i == 0 ? 1 : 2;
    }
    pthread_mutex_unlock(&ctx->mu);

    if (encrypt) {
        if (RAND_bytes(iv, 16) != 1)
            ret = -1;
        memcpy(key_name, k.name, 16);
    }
    if (ret > 0) {
        int ok = encrypt
            ? EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k.aes, iv)
            : EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k.aes, iv);
        if (!ok || !HMAC_Init_ex(hctx, k.hmac, sizeof k.hmac, EVP_sha256(), NULL))
            ret = -1;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return ret;
}

/* ---- verification --------------------------------------------------------- */

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    if (!ok) {
        SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
        struct tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
        if (c && !c->verify_err)
            c->verify_err = X509_STORE_CTX_get_error(sctx);
    }
    return ok;
}

static const char *verify_reason(int v)
{
    switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "certificate not yet valid";
    case X509_V_ERR_CERT_REVOKED:
        return "certificate revoked";
    case X509_V_ERR_INVALID_PURPOSE:
        return "certificate not for client authentication";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_UNTRUSTED:
        return "certificate not trusted";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "no CRL for the certificate's issuer";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "CRL expired";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "CRL not yet valid";
    default:
        return "certificate verification failed";
    }
}

/* Records why the connection failed and returns the errno for it. */
static int conn_fail(struct tls_conn *c)
{
    int rc = -EPROTO;
    const char *why = NULL;
    /* The last error is libssl's own summary (the first may be a lower
     * layer's detail, e.g. the cipher's BAD_DECRYPT under a bad MAC). */
    uint32_t e = ERR_peek_last_error();
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);

    if (c->oom || reason == ERR_R_MALLOC_FAILURE) {   /* common reasons are < 100 */
        why = "out of memory";
        rc = -ENOMEM;
    } else if (c->verify_err) {
        why = verify_reason(c->verify_err);
        rc = -EACCES;
    } else if (lib == ERR_LIB_SSL) {
        switch (reason) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            why = "no client certificate";
            rc = -EACCES;
            break;
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
            why = "certificate verification failed";
            rc = -EACCES;
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
            why = "protocol version not allowed";
            break;
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
        case SSL_R_WRONG_VERSION_NUMBER:
            why = "not TLS (plaintext client?)";
            break;
        case SSL_R_NO_SHARED_CIPHER:
            why = "no shared cipher";
            break;
        case SSL_R_DECODE_ERROR:
        case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
        case SSL_R_EXCESSIVE_MESSAGE_SIZE:
        case SSL_R_RECORD_TOO_LARGE:
        case SSL_R_UNEXPECTED_RECORD:
        case SSL_R_UNEXPECTED_MESSAGE:
            why = "malformed TLS input";
            break;
        case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
            why = "bad record MAC (corrupted or forged data)";
            break;
        default:
            why = ERR_reason_error_string(e);
            break;
        }
    } else if (e) {
        why = ERR_reason_error_string(e);
    }
    c->err = why ? why : "TLS protocol error";
    c->failed = rc;
    ERR_clear_error();
    return rc;
}

static int valid_principal(const uint8_t *p, size_t n)
{
    return n >= 1 && n <= TLS_PRINCIPAL_MAX && memchr(p, 0, n) == NULL;
}

/* Called once when the handshake completes: the principal and fingerprint. */
static void conn_identify(struct tls_conn *c)
{
    X509 *leaf = SSL_get_peer_certificate(c->ssl);
    if (!leaf)
        return;

    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (X509_digest(leaf, EVP_sha256(), md, &mdlen) && mdlen == 32) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < 32; i++) {
            c->fingerprint[2 * i] = hex[md[i] >> 4];
            c->fingerprint[2 * i + 1] = hex[md[i] & 15];
        }
        c->fingerprint[64] = 0;
    }

    /* The SAN URI wins over the CN: a CN is free text that CAs fill with
     * host names and labels, a URN in our namespace is unambiguous. */
    const size_t plen = sizeof TLS_PRINCIPAL_URN - 1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (size_t i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !c->has_principal; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const uint8_t *u = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        size_t n = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (n > plen && strncasecmp((const char *)u, TLS_PRINCIPAL_URN, plen) == 0 &&
            valid_principal(u + plen, n - plen)) {
            memcpy(c->principal, u + plen, n - plen);
            c->principal[n - plen] = 0;
            c->has_principal = 1;
        }
    }
    GENERAL_NAMES_free(gens);

    if (!c->has_principal) {
        X509_NAME *subj = X509_get_subject_name(leaf);
        int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
        if (idx >= 0) {
            ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
            uint8_t *utf8 = NULL;
            int n = ASN1_STRING_to_UTF8(&utf8, cn);
            if (n > 0 && valid_principal(utf8, (size_t)n)) {
                memcpy(c->principal, utf8, (size_t)n);
                c->principal[n] = 0;
                c->has_principal = 1;
            }
            OPENSSL_free(utf8);
        }
    }
    X509_free(leaf);
}

/* ---- contexts ------------------------------------------------------------- */

static int file_errno(const char *path)
{
    return access(path, R_OK) == 0 ? 0 : -errno;
}

static size_t count_crls(X509_STORE *store)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    size_t n = 0;
    for (size_t i = 0; i < sk_X509_OBJECT_num(objs); i++)
        n += X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_CRL;
    return n;
}

static int build_ssl_ctx(const struct tls_ctx *ctx, SSL_CTX **out, char *err, size_t errlen)
{
    const char *paths[] = { ctx->cert_file, ctx->key_file, ctx->ca_file, ctx->crl_file };
    for (size_t i = 0; i < 4; i++) {
        if (!paths[i])
            continue;
        int rc = file_errno(paths[i]);
        if (rc) {
            set_err(err, errlen, "%s: %s", paths[i], strerror(-rc));
            return rc;
        }
    }

    ERR_clear_error();
    SSL_CTX *s = SSL_CTX_new(TLS_method());
    if (!s) {
        set_err(err, errlen, "%s", "out of memory");
        return -ENOMEM;
    }
    int rc = -EINVAL;
    if (!SSL_CTX_set_min_proto_version(s, ctx->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION)) {
        set_err(err, errlen, "protocol versions: %s", ssl_reason());
        goto fail;
    }
    /* TLS 1.2 only (1.3 suites are fixed by BoringSSL, AES-128-GCM first
     * where AES-NI exists): forward secret AEAD suites. */
    if (!SSL_CTX_set_strict_cipher_list(s,
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")) {
        set_err(err, errlen, "cipher list: %s", ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(s, ctx->cert_file) != 1) {
        set_err(err, errlen, "%s: %s", ctx->cert_file, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(s, ctx->key_file, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "%s: %s", ctx->key_file, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        set_err(err, errlen, "%s: key does not match the certificate", ctx->key_file);
        goto fail;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(s);
    if (X509_STORE_load_locations(store, ctx->ca_file, NULL) != 1) {
        set_err(err, errlen, "%s: %s", ctx->ca_file, ssl_reason());
        goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ctx->ca_file);
    if (names)
        SSL_CTX_set_client_CA_list(s, names);   /* takes ownership */
    if (ctx->crl_file) {
        /* The same loader reads certificates and CRLs from a PEM file; a
         * CRL file without a CRL would silently disable revocation, so the
         * store must have gained one. */
        if (X509_STORE_load_locations(store, ctx->crl_file, NULL) != 1 ||
            count_crls(store) == 0) {
            set_err(err, errlen, "%s: no CRL loaded (%s)", ctx->crl_file, ssl_reason());
            goto fail;
        }
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    }
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);

    static const uint8_t sid_ctx[] = "icsd";
    SSL_CTX_set_session_id_context(s, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);   /* stateless tickets only */
    if (ctx->no_tickets) {
        SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
    } else {
        SSL_CTX_set_tlsext_ticket_key_cb(s, ticket_cb);
        /* One ticket per handshake, not BoringSSL's default two: our
         * tickets are not single-use, so a client reuses one ticket for
         * parallel connections, and each ticket costs a seal and ~1 KiB. */
        SSL_CTX_set_num_tickets(s, 1);
        /* A ticket is usable for as long as its key can still decrypt. */
        SSL_CTX_set_timeout(s, 2 * ctx->rotate_s);
        SSL_CTX_set_session_psk_dhe_timeout(s, 2 * ctx->rotate_s);
    }
    SSL_CTX_set_max_send_fragment(s, 16384);
    *out = s;
    return 0;
fail:
    SSL_CTX_free(s);
    ERR_clear_error();
    return rc;
}

static void gen_unref(struct tls_ctx *ctx, struct tls_gen *g)
{
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) {
        SSL_CTX_free(g->ssl_ctx);
        mem_free(&ctx->mem, g);
    }
}

/* Wraps a fresh SSL_CTX (taking it over) in a generation with one reference. */
static struct tls_gen *gen_new(struct tls_ctx *ctx, SSL_CTX *s)
{
    struct tls_gen *g = mem_realloc(&ctx->mem, NULL, sizeof *g);
    if (!g) {
        SSL_CTX_free(s);
        return NULL;
    }
    g->ssl_ctx = s;
    atomic_init(&g->refs, 1);
    return g;
}

static void ctx_unref(struct tls_ctx *ctx)
{
    if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
        return;
    gen_unref(ctx, ctx->gen);
    OPENSSL_cleanse(ctx->keys, sizeof ctx->keys);
    pthread_mutex_destroy(&ctx->mu);
    struct tls_alloc mem = ctx->mem;
    mem_free(&mem, ctx->cert_file);
    mem_free(&mem, ctx->key_file);
    mem_free(&mem, ctx->ca_file);
    mem_free(&mem, ctx->crl_file);
    mem_free(&mem, ctx);
}

int tls_ctx_create(struct tls_ctx **out, const struct tls_cfg *cfg, char *err, size_t errlen)
{
    *out = NULL;
    pthread_once(&g_bio_once, bio_method_init);
    if (!g_bio_method) {
        set_err(err, errlen, "%s", "out of memory");
        return -ENOMEM;
    }
    if (!cfg->cert_file || !cfg->key_file || !cfg->ca_file) {
        set_err(err, errlen, "%s", "TLS needs a certificate, a key and a CA file");
        return -EINVAL;
    }
    struct tls_alloc mem = { cfg->realloc_fn, cfg->alloc_arg };
    struct tls_ctx *ctx = mem_zalloc(&mem, sizeof *ctx);
    if (!ctx) {
        set_err(err, errlen, "%s", "out of memory");
        return -ENOMEM;
    }
    ctx->mem = mem;
    pthread_mutex_init(&ctx->mu, NULL);
    atomic_init(&ctx->refs, 1);
    ctx->allow_tls12 = cfg->allow_tls12 != 0;
    ctx->no_tickets = cfg->no_tickets != 0;
    ctx->rotate_s = cfg->ticket_rotate_s ? cfg->ticket_rotate_s : TLS_DEFAULT_ROTATE_S;
    ctx->cert_file = dup_or_null(&mem, cfg->cert_file);
    ctx->key_file = dup_or_null(&mem, cfg->key_file);
    ctx->ca_file = dup_or_null(&mem, cfg->ca_file);
    ctx->crl_file = dup_or_null(&mem, cfg->crl_file);
    int rc = -ENOMEM;
    if (!ctx->cert_file || !ctx->key_file || !ctx->ca_file || (cfg->crl_file && !ctx->crl_file))
        goto fail;
    SSL_CTX *s;
    rc = build_ssl_ctx(ctx, &s, err, errlen);
    if (rc)
        goto fail;
    ctx->gen = gen_new(ctx, s);
    rc = -ENOMEM;
    if (!ctx->gen)
        goto fail;
    rotate_locked(ctx);                /* no other thread sees ctx yet */
    if (ctx->nkeys == 0) {
        rc = -EIO;
        set_err(err, errlen, "%s", "no randomness for ticket keys");
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    ctx_unref(ctx);
    return rc;
}

int tls_ctx_reload(struct tls_ctx *ctx, char *err, size_t errlen)
{
    SSL_CTX *fresh;
    int rc = build_ssl_ctx(ctx, &fresh, err, errlen);
    if (rc)
        return rc;
    struct tls_gen *g = gen_new(ctx, fresh);
    if (!g) {
        set_err(err, errlen, "%s", "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&ctx->mu);
    struct tls_gen *old = ctx->gen;
    ctx->gen = g;
    /* Forget every ticket key: a ticket minted before the reload must not
     * carry a certificate the new CA or CRL would refuse past it. */
    ctx->nkeys = 0;
    rotate_locked(ctx);
    pthread_mutex_unlock(&ctx->mu);
    gen_unref(ctx, old);               /* live connections hold their own */
    return 0;
}

void tls_ctx_destroy(struct tls_ctx *ctx)
{
    if (ctx)
        ctx_unref(ctx);
}

/* ---- connections -------------------------------------------------------- */

struct tls_conn *tls_conn_new(struct tls_ctx *ctx)
{
    struct tls_conn *c = mem_zalloc(&ctx->mem, sizeof *c);
    if (!c)
        return NULL;
    c->err = "";
    c->ctx = ctx;
    BIO *bio = BIO_new(g_bio_method);
    if (!bio) {
        mem_free(&ctx->mem, c);
        return NULL;
    }
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);

    pthread_mutex_lock(&ctx->mu);
    c->gen = ctx->gen;
    atomic_fetch_add_explicit(&c->gen->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&ctx->mu);
    c->ssl = SSL_new(c->gen->ssl_ctx);
    if (!c->ssl) {
        gen_unref(ctx, c->gen);
        BIO_free(bio);
        mem_free(&ctx->mem, c);
        ERR_clear_error();
        return NULL;
    }
    atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    SSL_set_app_data(c->ssl, c);
    SSL_set_bio(c->ssl, bio, bio);     /* one reference, used both ways */
    SSL_set_accept_state(c->ssl);
    /* Once the handshake is done, BoringSSL drops its copy of the handshake
     * configuration (certificate, key, verify settings): memory that a
     * mostly idle IoT connection would otherwise keep for its lifetime. */
    SSL_set_shed_handshake_config(c->ssl, 1);
    return c;
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    struct tls_ctx *ctx = c->ctx;
    SSL_free(c->ssl);
    gen_unref(ctx, c->gen);
    struct tls_out_chunk *k = c->out_head;
    while (k) {
        struct tls_out_chunk *next = k->next;
        mem_free(&ctx->mem, k);
        k = next;
    }
    mem_free(&ctx->mem, c->in);
    mem_free(&ctx->mem, c);
    ctx_unref(ctx);                    /* last: ctx->mem freed c */
}

static int handshake(struct tls_conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->ready = 1;
        conn_identify(c);
        /* TLS 1.3 session tickets wait in BoringSSL's pending flight until
         * the next write; a zero-length write flushes them now, so a client
         * that only sends still gets a ticket to resume with. */
        if (SSL_write(c->ssl, "", 0) < 0)
            ERR_clear_error();
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    return conn_fail(c);
}

/* The largest TLSCiphertext.length (RFC 8446 5.2: 2^14 + 256). */
#define TLS_RECORD_BODY_MAX (16384u + 256u)

/* At a record boundary: does the unread input hold a whole record? A
 * length no TLS record can have counts as yes, so that SSL_read sees it
 * and fails the connection. */
static int in_has_record(const struct tls_conn *c)
{
    int lent = c->lent_off < c->lent_len;   /* then `in` holds nothing */
    size_t avail = lent ? c->lent_len - c->lent_off : c->in_len - c->in_off;
    if (avail < 5)
        return 0;
    const uint8_t *h = lent ? c->lent + c->lent_off : c->in + c->in_off;
    size_t len = (size_t)h[3] << 8 | h[4];
    return len > TLS_RECORD_BODY_MAX || avail >= 5 + len;
}

/* BoringSSL reports errors through a per-thread queue that SSL_get_error
 * consults, so it must be empty before each call; clearing it always
 * walks every slot, checking first is a thread-local read. */
static void err_reset(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Appends n bytes to the input buffer (grown or compacted as needed). */
static int in_append(struct tls_conn *c, const void *in, size_t n)
{
    if (n > c->in_cap - c->in_len) {
        if (c->in_off) {               /* compact once, not per record */
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        if (n > c->in_cap - c->in_len) {
            size_t cap = c->in_cap ? c->in_cap : TLS_IN_BYTES;
            while (cap - c->in_len < n)
                cap *= 2;
            uint8_t *p = mem_realloc(&c->ctx->mem, c->in, cap);
            if (!p) {
                c->err = "out of memory";
                return c->failed = -ENOMEM;
            }
            c->in = p;
            c->in_cap = cap;
        }
    }
    if (n)
        memcpy(c->in + c->in_len, in, n);
    c->in_len += n;
    return 0;
}

int tls_conn_feed(struct tls_conn *c, const void *in, size_t n)
{
    if (c->failed)
        return c->failed;
    /* Lent bytes still unread come first: move them in, then append. */
    int rc = c->lent ? tls_conn_feed_end(c) : 0;
    if (rc == 0)
        rc = in_append(c, in, n);
    if (rc)
        return rc;
    if (!c->ready)
        return handshake(c);
    return 0;
}

int tls_conn_feed_lent(struct tls_conn *c, const void *in, size_t n)
{
    if (c->failed)
        return c->failed;
    if (c->in_len > c->in_off || c->lent)
        return tls_conn_feed(c, in, n);   /* a partial record waits: append */
    c->lent = in;
    c->lent_off = 0;
    c->lent_len = n;
    if (!c->ready)
        return handshake(c);
    return 0;
}

int tls_conn_feed_end(struct tls_conn *c)
{
    const uint8_t *p = c->lent;
    size_t off = c->lent_off, n = c->lent_len - c->lent_off;
    c->lent = NULL;
    c->lent_off = c->lent_len = 0;
    if (n == 0 || c->failed)
        return c->failed;
    return in_append(c, p + off, n);
}

static void in_free(struct tls_conn *c)
{
    mem_free(&c->ctx->mem, c->in);
    c->in = NULL;
    c->in_cap = 0;
}

/* All input read. A buffer of the usual size stays for the next burst (a
 * busy connection would otherwise allocate and free it once per burst)
 * until tls_conn_trim; one grown by a big message goes now. */
static void in_drained(struct tls_conn *c)
{
    if (c->in_len == 0 && c->in_cap > TLS_IN_KEEP_BYTES)
        in_free(c);
}

ssize_t tls_conn_read(struct tls_conn *c, void *out, size_t cap)
{
    if (c->failed)
        return c->failed;
    if (!c->ready || cap == 0)
        return 0;
    /* BoringSSL takes a record from the BIO in two reads, header then
     * body, never beyond it: at a boundary without a whole record waiting,
     * SSL_read could only say WANT_READ. */
    if (c->at_boundary && !in_has_record(c)) {
        in_drained(c);
        return 0;
    }
    err_reset();
    int r = SSL_read(c->ssl, out, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (r > 0) {
        c->at_boundary = SSL_pending(c->ssl) == 0;
        return r;
    }
    c->at_boundary = 0;                /* it may hold a partial record */
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        in_drained(c);
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        c->err = "peer closed the TLS session";
        return -ENOTCONN;
    default:
        return conn_fail(c);
    }
}

int tls_conn_write(struct tls_conn *c, const void *plain, size_t n)
{
    if (c->failed)
        return c->failed;
    if (!c->ready)
        return -EAGAIN;
    const uint8_t *p = plain;
    while (n) {
        int k = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
        err_reset();
        int r = SSL_write(c->ssl, p, k);
        if (r <= 0)
            return conn_fail(c);
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

void tls_conn_shutdown(struct tls_conn *c)
{
    if (c->ready && !c->failed) {
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

size_t tls_conn_out(struct tls_conn *c, const uint8_t **p)
{
    struct tls_out_chunk *k = c->out_head;
    if (!k || k->off == k->len) {
        *p = NULL;
        return 0;
    }
    *p = k->data + k->off;
    return k->len - k->off;
}

size_t tls_conn_out_pending(const struct tls_conn *c)
{
    return c->out_total;
}

int tls_conn_out_iov(struct tls_conn *c, struct iovec *iov, int max)
{
    int n = 0;
    for (struct tls_out_chunk *k = c->out_head; k && n < max; k = k->next) {
        if (k->off == k->len)
            continue;
        iov[n].iov_base = k->data + k->off;
        iov[n].iov_len = k->len - k->off;
        n++;
    }
    return n;
}

const struct msghdr *tls_conn_out_msg(struct tls_conn *c)
{
    int n = tls_conn_out_iov(c, c->out_iov, TLS_OUT_IOV_MAX);
    if (n == 0)
        return NULL;
    memset(&c->out_msg, 0, sizeof c->out_msg);
    c->out_msg.msg_iov = c->out_iov;
    c->out_msg.msg_iovlen = (size_t)n;
    return &c->out_msg;
}

void tls_conn_out_consume(struct tls_conn *c, size_t n)
{
    struct tls_out_chunk *k;
    while ((k = c->out_head) != NULL) {
        size_t take = n < k->len - k->off ? n : k->len - k->off;
        k->off += take;
        c->out_total -= take;
        n -= take;
        if (k->off < k->len)
            break;
        /* The last chunk, of the usual size, stays for the next burst
         * (tls_conn_trim frees it once the connection is quiet); others
         * go now. */
        if (!k->next && sizeof *k + k->cap == TLS_OUT_CHUNK_BYTES) {
            k->off = k->len = 0;
            break;
        }
        c->out_head = k->next;
        if (!c->out_head)
            c->out_tail = NULL;
        mem_free(&c->ctx->mem, k);
    }
}

void tls_conn_trim(struct tls_conn *c)
{
    if (c->in && c->in_len == 0)
        in_free(c);
    struct tls_out_chunk *k = c->out_head;
    if (k && !k->next && k->off == k->len) {
        mem_free(&c->ctx->mem, k);
        c->out_head = c->out_tail = NULL;
    }
}

int tls_conn_ready(const struct tls_conn *c)
{
    return c->ready && !c->failed;
}

int tls_conn_resumed(const struct tls_conn *c)
{
    return c->ready && SSL_session_reused(c->ssl);
}

const char *tls_conn_principal(const struct tls_conn *c)
{
    return c->ready && c->has_principal ? c->principal : NULL;
}

const char *tls_conn_fingerprint_hex(const struct tls_conn *c)
{
    return c->ready && c->fingerprint[0] ? c->fingerprint : NULL;
}

const char *tls_conn_version(const struct tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
    const SSL_CIPHER *ci = SSL_get_current_cipher(c->ssl);
    return ci ? SSL_CIPHER_standard_name(ci) : "";
}

const char *tls_conn_error(const struct tls_conn *c)
{
    return c->err;
}
