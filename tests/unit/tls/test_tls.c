/*
 * test_tls.c — net/tls against a BoringSSL client, entirely in memory: the
 * test moves ciphertext between the client's memory BIOs and a server
 * tls_conn, so every handshake outcome is checked without sockets.
 * argv[1] is scripts/mkcerts.sh; certificates are made in a temp dir.
 */
#include "tls.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cpu.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static char dir[256];

static const char *path(const char *name)
{
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* ---- a BoringSSL client over two memory BIOs --------------------------- */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rb, *wb;                      /* rb: from the server, wb: to the server */
};

static SSL_SESSION *g_last_session;
static int g_leaf_only;                /* client sends its leaf without the chain */

static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
    SSL_SESSION_free(g_last_session);
    g_last_session = s;                /* we take the reference */
    return 1;
}

/* name: client cert base name in dir, or NULL for no certificate. */
static void client_init(struct client *cl, const char *name, uint16_t max_version,
                        SSL_SESSION *resume)
{
    memset(cl, 0, sizeof *cl);
    cl->ctx = SSL_CTX_new(TLS_method());
    CHECK(cl->ctx);
    CHECK(SSL_CTX_set_min_proto_version(cl->ctx, TLS1_2_VERSION));
    CHECK(SSL_CTX_set_max_proto_version(cl->ctx, max_version));
    if (name) {
        char f[64];
        snprintf(f, sizeof f, "%s.pem", name);
        if (g_leaf_only)
            CHECK(SSL_CTX_use_certificate_file(cl->ctx, path(f), SSL_FILETYPE_PEM) == 1);
        else
            CHECK(SSL_CTX_use_certificate_chain_file(cl->ctx, path(f)) == 1);
        snprintf(f, sizeof f, "%s.key", name);
        CHECK(SSL_CTX_use_PrivateKey_file(cl->ctx, path(f), SSL_FILETYPE_PEM) == 1);
    }
    /* The client checks the server too, against the same development CA. */
    CHECK(SSL_CTX_load_verify_locations(cl->ctx, path("ca.pem"), NULL) == 1);
    SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(cl->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(cl->ctx, new_session_cb);
    cl->ssl = SSL_new(cl->ctx);
    CHECK(cl->ssl);
    cl->rb = BIO_new(BIO_s_mem());
    cl->wb = BIO_new(BIO_s_mem());
    CHECK(cl->rb && cl->wb);
    BIO_set_mem_eof_return(cl->rb, -1);   /* empty means "wait", not EOF */
    SSL_set_bio(cl->ssl, cl->rb, cl->wb);
    SSL_set_connect_state(cl->ssl);
    if (resume)
        CHECK(SSL_set_session(cl->ssl, resume) == 1);
}

static void client_free(struct client *cl)
{
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
}

/* Moves what the client wrote to the server; returns tls_conn_feed's result. */
static int to_server(struct client *cl, struct tls_conn *c)
{
    const uint8_t *p;
    size_t n;
    CHECK(BIO_mem_contents(cl->wb, &p, &n));
    if (n == 0)
        return 0;
    int rc = tls_conn_feed(c, p, n);
    CHECK(BIO_reset(cl->wb) == 1);
    return rc;
}

/* Moves everything the server queued to the client; returns bytes moved. */
static size_t to_client(struct client *cl, struct tls_conn *c)
{
    size_t total = 0, n;
    const uint8_t *p;
    while ((n = tls_conn_out(c, &p)) > 0) {
        CHECK(BIO_write(cl->rb, p, (int)n) == (int)n);
        tls_conn_out_consume(c, n);
        total += n;
    }
    CHECK_EQ(tls_conn_out_pending(c), 0);
    return total;
}

/* Runs the handshake to its end; returns 0 or the server's negative errno. */
static int handshake(struct client *cl, struct tls_conn *c)
{
    for (int round = 0; round < 20; round++) {
        int r = SSL_do_handshake(cl->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(cl->ssl, r);  /* before BIO use */
        int rc = to_server(cl, c);
        to_client(cl, c);
        if (rc < 0)
            return rc;
        if (r == 1 && tls_conn_ready(c))
            return 0;
        if (r != 1 && e != SSL_ERROR_WANT_READ) {
            if (getenv("TLS_TEST_VERBOSE")) {
                fprintf(stderr, "client: r=%d err=%d round=%d\n", r, e, round);
                ERR_print_errors_fp(stderr);
            }
            ERR_clear_error();
            return -1000;              /* the client gave up first */
        }
    }
    return -1001;
}

static struct tls_ctx *make_ctx(int allow12, const char *crl)
{
    struct tls_cfg cfg = {
        .cert_file = path("live-server.pem"),
        .key_file = path("live-server.key"),
        .ca_file = path("ca.pem"),
        .crl_file = crl,
        .allow_tls12 = allow12,
    };
    struct tls_ctx *ctx = NULL;
    char err[256] = "";
    int rc = tls_ctx_create(&ctx, &cfg, err, sizeof err);
    if (rc)
        fprintf(stderr, "tls_ctx_create: %d %s\n", rc, err);
    CHECK_EQ(rc, 0);
    return ctx;
}

/* One full client session: returns the server's handshake result, leaves
 * the server connection in *out (freed by the caller) if asked. */
static int connect_as(struct tls_ctx *ctx, const char *name, uint16_t maxv,
                      SSL_SESSION *resume, struct client *cl, struct tls_conn **out)
{
    client_init(cl, name, maxv, resume);
    struct tls_conn *c = tls_conn_new(ctx);
    CHECK(c);
    CHECK(!tls_conn_ready(c));
    CHECK(tls_conn_principal(c) == NULL);
    int rc = handshake(cl, c);
    *out = c;
    return rc;
}

static void file_copy(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    CHECK(a && b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        CHECK(fwrite(buf, 1, n, b) == n);
    fclose(a);
    CHECK(fclose(b) == 0);
}

/* SHA-256 of the certificate as the openssl tool computes it, lowercased
 * and without colons: an independent check of tls_conn_fingerprint_hex. */
static void cli_fingerprint(const char *pem, char out[65])
{
    char cmd[600], line[256];
    snprintf(cmd, sizeof cmd, "openssl x509 -in '%s' -noout -fingerprint -sha256", pem);
    FILE *p = popen(cmd, "r");
    CHECK(p);
    CHECK(fgets(line, sizeof line, p));
    pclose(p);
    const char *eq = strchr(line, '=');
    CHECK(eq);
    size_t k = 0;
    for (const char *s = eq + 1; *s && k < 64; s++) {
        if (*s == ':' || *s == '\n')
            continue;
        out[k++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
    }
    out[k] = 0;
    CHECK_EQ(k, 64);
}

static void sha256_hex_of_server_cert(SSL *ssl, char out[65])
{
    X509 *x = SSL_get_peer_certificate(ssl);
    CHECK(x);
    uint8_t md[32];
    unsigned n = 0;
    CHECK(X509_digest(x, EVP_sha256(), md, &n) && n == 32);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    X509_free(x);
}

/* Round trip of n bytes each way through an established pair. */
static void round_trip(struct client *cl, struct tls_conn *c, size_t n)
{
    uint8_t *src = malloc(n), *dst = malloc(n + 1);
    CHECK(src && dst);
    for (size_t i = 0; i < n; i++)
        src[i] = (uint8_t)(i * 131 + (i >> 8));

    /* client -> server */
    CHECK_EQ(SSL_write(cl->ssl, src, (int)n), (long long)n);
    CHECK_EQ(to_server(cl, c), 0);
    size_t got = 0;
    for (;;) {
        ssize_t r = tls_conn_read(c, dst + got, n + 1 - got);
        CHECK(r >= 0);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    CHECK_EQ(got, n);
    CHECK_MEM(src, dst, n);

    /* server -> client: whole 16 KiB records (TLS 1.3: 5 header + 1 type +
     * 16 tag bytes each), so 1 MiB is exactly 64 records. */
    CHECK_EQ(tls_conn_write(c, src, n), 0);
    if (strcmp(tls_conn_version(c), "TLSv1.3") == 0) {
        size_t recs = (n + 16383) / 16384;
        CHECK_EQ(tls_conn_out_pending(c), n + recs * 22);
    }
    to_client(cl, c);
    got = 0;
    while (got < n) {
        int r = SSL_read(cl->ssl, dst + got, (int)(n + 1 - got));
        CHECK(r > 0);
        got += (size_t)r;
    }
    CHECK_EQ(got, n);
    CHECK_MEM(src, dst, n);
    free(src);
    free(dst);
}

/* ---- the tests -------------------------------------------------------- */

static void test_handshake_identity_and_data(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;

    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK(tls_conn_ready(c));
    CHECK(!tls_conn_resumed(c));
    CHECK(strcmp(tls_conn_version(c), "TLSv1.3") == 0);
    CHECK_EQ(SSL_version(cl.ssl), TLS1_3_VERSION);
    if (EVP_has_aes_hardware())        /* then AES-128-GCM is preferred */
        CHECK(strcmp(tls_conn_cipher(c), "TLS_AES_128_GCM_SHA256") == 0);
    CHECK(tls_conn_principal(c) && strcmp(tls_conn_principal(c), "alice") == 0);
    char want[65];
    cli_fingerprint(path("alice.pem"), want);
    CHECK(tls_conn_fingerprint_hex(c) && strcmp(tls_conn_fingerprint_hex(c), want) == 0);
    CHECK(strcmp(tls_conn_error(c), "") == 0);

    round_trip(&cl, c, 1);
    round_trip(&cl, c, 100);
    round_trip(&cl, c, 16384);
    round_trip(&cl, c, 1 << 20);

    /* A client KeyUpdate asking for ours (BoringSSL sends the answer ahead
     * of the next write): data flows on under the new keys both ways. */
    CHECK(SSL_key_update(cl.ssl, SSL_KEY_UPDATE_REQUESTED) == 1);
    CHECK_EQ(SSL_write(cl.ssl, "k", 1), 1);
    CHECK_EQ(to_server(&cl, c), 0);
    uint8_t k1[4];
    CHECK_EQ(tls_conn_read(c, k1, sizeof k1), 1);
    CHECK_EQ(tls_conn_write(c, "K", 1), 0);
    /* 27 bytes of KeyUpdate record go first, then the 1-byte record. */
    CHECK_EQ(tls_conn_out_pending(c), 27 + 1 + 22);
    to_client(&cl, c);
    CHECK_EQ(SSL_read(cl.ssl, k1, sizeof k1), 1);
    CHECK_EQ(k1[0], 'K');
    round_trip(&cl, c, 3000);
    round_trip(&cl, c, 20000);

    /* Reading with nothing fed is "none yet", not an error. */
    uint8_t b[16];
    CHECK_EQ(tls_conn_read(c, b, sizeof b), 0);

    /* An orderly close by the client. */
    CHECK(SSL_shutdown(cl.ssl) >= 0);
    CHECK_EQ(to_server(&cl, c), 0);
    CHECK_EQ(tls_conn_read(c, b, sizeof b), -ENOTCONN);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

static void test_principal_naming(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;

    /* carol.pem: CN=carol, SAN URI urn:ics:principal:dave -> the URI wins. */
    CHECK_EQ(connect_as(ctx, "carol", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK(strcmp(tls_conn_principal(c), "dave") == 0);
    tls_conn_free(c);
    client_free(&cl);

    /* erin.pem: no SAN URI -> the CN. */
    CHECK_EQ(connect_as(ctx, "erin", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK(strcmp(tls_conn_principal(c), "erin") == 0);
    char want[65];
    cli_fingerprint(path("erin.pem"), want);
    CHECK(strcmp(tls_conn_fingerprint_hex(c), want) == 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

static void expect_refused(struct tls_ctx *ctx, const char *name, uint16_t maxv,
                           int want_rc, const char *want_err)
{
    struct client cl;
    struct tls_conn *c;
    int rc = connect_as(ctx, name, maxv, NULL, &cl, &c);
    if (rc != want_rc || strcmp(tls_conn_error(c), want_err) != 0)
        fprintf(stderr, "%s: rc %d error '%s', want %d '%s'\n", name ? name : "(none)",
                rc, tls_conn_error(c), want_rc, want_err);
    CHECK_EQ(rc, want_rc);
    CHECK(strcmp(tls_conn_error(c), want_err) == 0);
    CHECK(!tls_conn_ready(c));
    CHECK(tls_conn_principal(c) == NULL);
    CHECK(tls_conn_fingerprint_hex(c) == NULL);
    /* The failure sticks: more input gets the same answer, no crash. */
    CHECK_EQ(tls_conn_feed(c, "x", 1), want_rc);
    uint8_t b[8];
    CHECK_EQ(tls_conn_read(c, b, sizeof b), want_rc);
    CHECK_EQ(tls_conn_write(c, "x", 1), want_rc);
    /* The client was told (an alert): its next read fails. */
    CHECK(SSL_read(cl.ssl, b, sizeof b) <= 0);
    ERR_clear_error();
    tls_conn_free(c);
    client_free(&cl);
}

static void test_refusals(void)
{
    struct tls_ctx *ctx = make_ctx(0, path("crl.pem"));
    /* sanity: the good certificate passes the CRL check */
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    tls_conn_free(c);
    client_free(&cl);

    /* Issued by an intermediate CA under ours: the client's chain carries
     * the intermediate, the CRL file holds both CAs' CRLs. */
    CHECK_EQ(connect_as(ctx, "chained", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK(strcmp(tls_conn_principal(c), "chained") == 0);
    tls_conn_free(c);
    client_free(&cl);
    g_leaf_only = 1;                   /* without the intermediate: no path */
    expect_refused(ctx, "chained", TLS1_3_VERSION, -EACCES, "certificate not trusted");
    g_leaf_only = 0;
    expect_refused(ctx, "old", TLS1_3_VERSION, -EACCES, "certificate expired");
    expect_refused(ctx, "later", TLS1_3_VERSION, -EACCES, "certificate not yet valid");
    expect_refused(ctx, "evil", TLS1_3_VERSION, -EACCES, "certificate not trusted");
    expect_refused(ctx, "gone", TLS1_3_VERSION, -EACCES, "certificate revoked");
    expect_refused(ctx, "srv", TLS1_3_VERSION, -EACCES, "certificate not for client authentication");
    expect_refused(ctx, NULL, TLS1_3_VERSION, -EACCES, "no client certificate");
    expect_refused(ctx, "alice", TLS1_2_VERSION, -EPROTO, "protocol version not allowed");
    tls_ctx_destroy(ctx);

    /* Two trusted CAs but a CRL for one only: the other's certificates are
     * refused, since revocation cannot be checked for them. */
    {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cat '%s' '%s' > '%s'", path("ca.pem"), path("other-ca.pem"),
                 path("two-cas.pem"));
        CHECK(system(cmd) == 0);
        struct tls_cfg two = {
            .cert_file = path("live-server.pem"), .key_file = path("live-server.key"),
            .ca_file = path("two-cas.pem"), .crl_file = path("crl.pem"),
        };
        CHECK_EQ(tls_ctx_create(&ctx, &two, NULL, 0), 0);
        expect_refused(ctx, "evil", TLS1_3_VERSION, -EACCES, "no CRL for the certificate's issuer");
        CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
        tls_conn_free(c);
        client_free(&cl);
        tls_ctx_destroy(ctx);
        /* Without revocation checks: trusted. (path() buffers rotate, so
         * the names are made again.) */
        two.cert_file = path("live-server.pem");
        two.key_file = path("live-server.key");
        two.ca_file = path("two-cas.pem");
        two.crl_file = NULL;
        CHECK_EQ(tls_ctx_create(&ctx, &two, NULL, 0), 0);
        CHECK_EQ(connect_as(ctx, "evil", TLS1_3_VERSION, NULL, &cl, &c), 0);
        CHECK(strcmp(tls_conn_principal(c), "evil") == 0);
        tls_conn_free(c);
        client_free(&cl);
        tls_ctx_destroy(ctx);
    }

    /* Without the CRL the revoked certificate is (by configuration) fine. */
    ctx = make_ctx(0, NULL);
    CHECK_EQ(connect_as(ctx, "gone", TLS1_3_VERSION, NULL, &cl, &c), 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);

    /* TLS 1.2 when allowed: works, and mutual authentication still holds. */
    ctx = make_ctx(1, path("crl.pem"));
    CHECK_EQ(connect_as(ctx, "alice", TLS1_2_VERSION, NULL, &cl, &c), 0);
    CHECK(strcmp(tls_conn_version(c), "TLSv1.2") == 0);
    CHECK(strcmp(tls_conn_principal(c), "alice") == 0);
    round_trip(&cl, c, 5000);
    tls_conn_free(c);
    client_free(&cl);
    expect_refused(ctx, NULL, TLS1_2_VERSION, -EACCES, "no client certificate");
    expect_refused(ctx, "gone", TLS1_2_VERSION, -EACCES, "certificate revoked");
    /* A TLS 1.2 client offering only suites we do not (CBC, no ECDHE). */
    client_init(&cl, "alice", TLS1_2_VERSION, NULL);
    CHECK(SSL_set_cipher_list(cl.ssl, "AES128-SHA"));
    c = tls_conn_new(ctx);
    CHECK_EQ(handshake(&cl, c), -EPROTO);
    CHECK(strcmp(tls_conn_error(c), "no shared cipher") == 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

/* Handshake, then one server write so the client reads the tickets. */
static SSL_SESSION *session_for(struct tls_ctx *ctx, SSL_SESSION *resume, int *resumed)
{
    struct client cl;
    struct tls_conn *c;
    SSL_SESSION_free(g_last_session);
    g_last_session = NULL;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, resume, &cl, &c), 0);
    *resumed = tls_conn_resumed(c);
    CHECK_EQ(*resumed, SSL_session_reused(cl.ssl));
    /* Resumed or not, the identity is the certificate's. */
    CHECK(strcmp(tls_conn_principal(c), "alice") == 0);
    char want[65];
    cli_fingerprint(path("alice.pem"), want);
    CHECK(strcmp(tls_conn_fingerprint_hex(c), want) == 0);
    round_trip(&cl, c, 10);
    SSL_SESSION *s = g_last_session;   /* set by the client's ticket callback */
    g_last_session = NULL;
    CHECK(s);
    tls_conn_free(c);
    client_free(&cl);
    return s;
}

static void test_resumption_and_rotation(void)
{
    struct tls_ctx *ctx = make_ctx(0, path("crl.pem"));
    int resumed;
    SSL_SESSION *s0 = session_for(ctx, NULL, &resumed);
    CHECK(!resumed);
    SSL_SESSION *s1 = session_for(ctx, s0, &resumed);
    CHECK(resumed);

    /* One rotation: the previous key still decrypts. */
    tls_ctx_rotate_tickets(ctx);
    SSL_SESSION *s2 = session_for(ctx, s0, &resumed);
    CHECK(resumed);
    /* Two rotations: s1's key is gone, full handshake (still succeeds). */
    tls_ctx_rotate_tickets(ctx);
    SSL_SESSION *s3 = session_for(ctx, s1, &resumed);
    CHECK(!resumed);
    /* s3 was issued under the current key: resumes. */
    SSL_SESSION *s4 = session_for(ctx, s3, &resumed);
    CHECK(resumed);
    SSL_SESSION_free(s0);
    SSL_SESSION_free(s1);
    SSL_SESSION_free(s2);
    SSL_SESSION_free(s3);
    SSL_SESSION_free(s4);
    tls_ctx_destroy(ctx);

    /* Rotation by time: with a 1 s period, a handshake 1.1 s later rotates
     * (the ticket it issues is sealed with a new key), so one more manual
     * rotation leaves s5's key two steps behind: no resumption, while the
     * same sequence without the wait resumes (one rotation, checked above). */
    struct tls_cfg tcfg = {
        .cert_file = path("live-server.pem"), .key_file = path("live-server.key"),
        .ca_file = path("ca.pem"), .ticket_rotate_s = 1,
    };
    CHECK_EQ(tls_ctx_create(&ctx, &tcfg, NULL, 0), 0);
    SSL_SESSION *s5 = session_for(ctx, NULL, &resumed);
    CHECK(!resumed);
    usleep(1100 * 1000);
    SSL_SESSION *s6 = session_for(ctx, NULL, &resumed);   /* rotates by time */
    tls_ctx_rotate_tickets(ctx);
    SSL_SESSION *s7 = session_for(ctx, s5, &resumed);
    CHECK(!resumed);
    SSL_SESSION *s8 = session_for(ctx, s7, &resumed);
    CHECK(resumed);
    SSL_SESSION_free(s5);
    SSL_SESSION_free(s6);
    SSL_SESSION_free(s7);
    SSL_SESSION_free(s8);
    tls_ctx_destroy(ctx);

    /* no_tickets: never resumes. */
    struct tls_cfg cfg = {
        .cert_file = path("live-server.pem"), .key_file = path("live-server.key"),
        .ca_file = path("ca.pem"), .no_tickets = 1,
    };
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, NULL, 0), 0);
    struct client cl;
    struct tls_conn *c;
    SSL_SESSION_free(g_last_session);
    g_last_session = NULL;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    round_trip(&cl, c, 10);
    CHECK(g_last_session == NULL);     /* no ticket was sent */
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

static void test_reload(void)
{
    file_copy(path("server.pem"), path("live-server.pem"));
    file_copy(path("server.key"), path("live-server.key"));
    struct tls_ctx *ctx = make_ctx(0, path("crl.pem"));
    char fp1[65], fp2[65], got[65], err[256];

    struct client a;
    struct tls_conn *ca;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &a, &ca), 0);
    cli_fingerprint(path("server.pem"), fp1);
    sha256_hex_of_server_cert(a.ssl, got);
    CHECK(strcmp(got, fp1) == 0);
    SSL_SESSION_free(g_last_session);
    g_last_session = NULL;
    round_trip(&a, ca, 10);
    SSL_SESSION *old_ticket = g_last_session;
    g_last_session = NULL;
    CHECK(old_ticket);

    /* A broken key file: reload fails, nothing changes. */
    FILE *f = fopen(path("live-server.key"), "w");
    CHECK(f);
    fputs("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    err[0] = 0;
    CHECK(tls_ctx_reload(ctx, err, sizeof err) < 0);
    CHECK(strstr(err, "live-server.key") != NULL);
    struct client b;
    struct tls_conn *cb;
    CHECK_EQ(connect_as(ctx, "bob", TLS1_3_VERSION, NULL, &b, &cb), 0);
    sha256_hex_of_server_cert(b.ssl, got);
    CHECK(strcmp(got, fp1) == 0);
    tls_conn_free(cb);
    client_free(&b);

    /* The new certificate: new connections get it, the old one goes on. */
    file_copy(path("server2.pem"), path("live-server.pem"));
    file_copy(path("server2.key"), path("live-server.key"));
    CHECK_EQ(tls_ctx_reload(ctx, err, sizeof err), 0);
    cli_fingerprint(path("server2.pem"), fp2);
    CHECK(strcmp(fp1, fp2) != 0);
    CHECK_EQ(connect_as(ctx, "bob", TLS1_3_VERSION, NULL, &b, &cb), 0);
    sha256_hex_of_server_cert(b.ssl, got);
    CHECK(strcmp(got, fp2) == 0);
    CHECK(strcmp(tls_conn_principal(cb), "bob") == 0);
    round_trip(&b, cb, 1000);
    round_trip(&a, ca, 70000);         /* established before the reload */
    CHECK(strcmp(tls_conn_principal(ca), "alice") == 0);

    /* A ticket from before the reload does not resume after it. */
    struct client d;
    struct tls_conn *cd;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, old_ticket, &d, &cd), 0);
    CHECK(!tls_conn_resumed(cd));
    tls_conn_free(cd);
    client_free(&d);
    SSL_SESSION_free(old_ticket);

    /* Destroying the context while connections live is safe: they keep it. */
    tls_ctx_destroy(ctx);
    round_trip(&a, ca, 100);
    round_trip(&b, cb, 100);
    tls_conn_free(cb);
    client_free(&b);
    tls_conn_free(ca);
    client_free(&a);

    file_copy(path("server.pem"), path("live-server.pem"));
    file_copy(path("server.key"), path("live-server.key"));
}

static void test_create_errors(void)
{
    struct tls_ctx *ctx = (struct tls_ctx *)1;
    char err[256];
    struct tls_cfg cfg = {
        .cert_file = path("server.pem"), .key_file = path("server.key"),
        .ca_file = path("nonexistent.pem"),
    };
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, err, sizeof err), -ENOENT);
    CHECK(ctx == NULL);
    CHECK(strstr(err, "nonexistent.pem") != NULL);
    cfg.ca_file = path("ca.pem");
    cfg.key_file = path("alice.key");  /* not the server's key */
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, err, sizeof err), -EINVAL);
    cfg.key_file = path("server.key");
    cfg.crl_file = path("alice.pem");  /* a certificate, not a CRL */
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "no CRL") != NULL);
    cfg.crl_file = NULL;
    cfg.cert_file = NULL;
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, err, sizeof err), -EINVAL);
}

/* The first flight of a real client, for the malformed-input tests. */
static size_t client_hello(uint8_t *out, size_t cap)
{
    struct client cl;
    client_init(&cl, "alice", TLS1_3_VERSION, NULL);
    CHECK(SSL_do_handshake(cl.ssl) <= 0);
    const uint8_t *p;
    size_t n;
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    CHECK(n > 9 && n <= cap && p[0] == 0x16);
    memcpy(out, p, n);
    client_free(&cl);
    ERR_clear_error();
    return n;
}

static int feed_fresh(struct tls_ctx *ctx, const void *p, size_t n, const char **why)
{
    struct tls_conn *c = tls_conn_new(ctx);
    CHECK(c);
    int rc = tls_conn_feed(c, p, n);
    CHECK(!tls_conn_ready(c));
    static char keep[128];
    snprintf(keep, sizeof keep, "%s", tls_conn_error(c));
    *why = keep;
    const uint8_t *o;
    while (tls_conn_out(c, &o) > 0)
        tls_conn_out_consume(c, 1);    /* byte by byte: exercises the chunk list */
    tls_conn_free(c);
    return rc;
}

static void test_bad_input(void)
{
    struct tls_ctx *ctx = make_ctx(0, path("crl.pem"));
    const char *why;

    const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    CHECK_EQ(feed_fresh(ctx, http, sizeof http - 1, &why), -EPROTO);
    CHECK(strcmp(why, "not TLS (plaintext client?)") == 0);

    /* memcached binary NOOP, as a plaintext client would send it */
    uint8_t noop[24] = { 0x80, 0x0a };
    CHECK_EQ(feed_fresh(ctx, noop, sizeof noop, &why), -EPROTO);
    CHECK(strcmp(why, "not TLS (plaintext client?)") == 0);

    uint8_t ch[4096];
    size_t n = client_hello(ch, sizeof ch);
    /* A prefix of a ClientHello: waiting for the rest is right (the caller's
     * handshake timeout ends it), and it is not an error yet. */
    CHECK_EQ(feed_fresh(ctx, ch, n / 2, &why), 0);
    CHECK_EQ(feed_fresh(ctx, ch, 3, &why), 0);
    /* A ClientHello cut short whose lengths say it is complete: decode error. */
    uint8_t cut[4096];
    size_t m = n / 2;
    memcpy(cut, ch, m);
    cut[3] = (uint8_t)((m - 5) >> 8);
    cut[4] = (uint8_t)(m - 5);
    cut[6] = 0;
    cut[7] = (uint8_t)((m - 9) >> 8);
    cut[8] = (uint8_t)(m - 9);
    CHECK_EQ(feed_fresh(ctx, cut, m, &why), -EPROTO);
    CHECK(strcmp(why, "malformed TLS input") == 0);
    /* A record too long for TLS. */
    uint8_t big[5] = { 0x16, 0x03, 0x01, 0xff, 0xff };
    CHECK_EQ(feed_fresh(ctx, big, sizeof big, &why), -EPROTO);
    CHECK(strcmp(why, "malformed TLS input") == 0);
    /* An application-data record before any handshake. */
    uint8_t early[10] = { 0x17, 0x03, 0x03, 0x00, 0x05 };
    CHECK_EQ(feed_fresh(ctx, early, sizeof early, &why), -EPROTO);
    CHECK(strcmp(why, "malformed TLS input") == 0);

    /* Random bytes: never a crash, never a completed handshake; nearly
     * always an immediate error (a random first byte is rarely 0x16). */
    srand(42);
    int errors = 0;
    for (int i = 0; i < 200; i++) {
        uint8_t r[512];
        size_t len = 1 + (size_t)(rand() % (int)sizeof r);
        for (size_t k = 0; k < len; k++)
            r[k] = (uint8_t)rand();
        int rc = feed_fresh(ctx, r, len, &why);
        CHECK(rc <= 0);
        errors += rc < 0;
    }
    CHECK(errors >= 180);
    /* The ClientHello with every single byte flipped: no crash. */
    for (size_t i = 0; i < n; i++) {
        ch[i] ^= 0xff;
        CHECK(feed_fresh(ctx, ch, n, &why) <= 0);
        ch[i] ^= 0xff;
    }
    /* After the handshake: a record altered in flight fails its MAC. */
    {
        struct client cl;
        struct tls_conn *cc;
        CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &cc), 0);
        CHECK_EQ(SSL_write(cl.ssl, "hello", 5), 5);
        const uint8_t *cp;
        size_t cn;
        CHECK(BIO_mem_contents(cl.wb, &cp, &cn));
        uint8_t rec[64];
        CHECK(cn <= sizeof rec);
        memcpy(rec, cp, cn);
        rec[7] ^= 1;                   /* a ciphertext byte */
        CHECK_EQ(tls_conn_feed(cc, rec, cn), 0);
        uint8_t b[16];
        CHECK_EQ(tls_conn_read(cc, b, sizeof b), -EPROTO);
        CHECK(strcmp(tls_conn_error(cc), "bad record MAC (corrupted or forged data)") == 0);
        CHECK_EQ(tls_conn_write(cc, "x", 1), -EPROTO);   /* the failure sticks */
        tls_conn_free(cc);
        client_free(&cl);
    }

    /* And a real ClientHello fed byte by byte advances as one would. */
    struct tls_conn *c = tls_conn_new(ctx);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(tls_conn_feed(c, ch + i, 1), 0);
    CHECK(tls_conn_out_pending(c) > 0);   /* ServerHello... */
    tls_conn_free(c);
    tls_ctx_destroy(ctx);
}

/* Ciphertext fed faster than it is read, in pieces that straddle records:
 * the input buffer keeps unread bytes in order across compaction/growth. */
static void test_input_buffering(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    enum { TOTAL = 6 * 16384 + 777 };
    static uint8_t src[TOTAL], dst[TOTAL];
    for (size_t i = 0; i < TOTAL; i++)
        src[i] = (uint8_t)(i * 13 + (i >> 11));
    CHECK_EQ(SSL_write(cl.ssl, src, TOTAL), TOTAL);
    const uint8_t *p;
    size_t n, got = 0;
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    for (size_t off = 0; off < n;) {
        size_t k = n - off < 20000 ? n - off : 20000;
        CHECK_EQ(tls_conn_feed(c, p + off, k), 0);
        off += k;
        ssize_t r = tls_conn_read(c, dst + got, 16384);   /* one record per feed */
        CHECK(r >= 0);
        got += (size_t)r;
    }
    ssize_t r;
    while ((r = tls_conn_read(c, dst + got, TOTAL - got + 1)) > 0)
        got += (size_t)r;
    CHECK_EQ(r, 0);
    CHECK_EQ(got, TOTAL);
    CHECK_MEM(src, dst, TOTAL);
    CHECK(BIO_reset(cl.wb) == 1);
    round_trip(&cl, c, 100);           /* and the buffer works after being freed */
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

/* Records split and joined at any byte after a record boundary: the read
 * that skips SSL_read when no whole record waits must never skip one that
 * does, nor a header no record can have (that must fail, not wait). */
static void test_record_boundaries(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    round_trip(&cl, c, 100);           /* the server now sits at a boundary */
    static uint8_t src[3000], dst[3000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    const uint8_t *p;
    size_t n;

    /* One record fed in three pieces: header split, body less a byte, the
     * last byte. Only the last feed makes it readable. */
    CHECK_EQ(SSL_write(cl.ssl, src, 1000), 1000);
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    CHECK_EQ(n, 1000 + 22);
    CHECK_EQ(tls_conn_feed(c, p, 3), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 0);
    CHECK_EQ(tls_conn_feed(c, p + 3, n - 4), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 0);
    CHECK_EQ(tls_conn_feed(c, p + n - 1, 1), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 1000);
    CHECK_MEM(src, dst, 1000);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 0);
    CHECK(BIO_reset(cl.wb) == 1);

    /* Two records and the first byte of a third in one feed, then the
     * rest: each read returns one record, in order. */
    CHECK_EQ(SSL_write(cl.ssl, src, 1000), 1000);
    CHECK_EQ(SSL_write(cl.ssl, src + 1000, 1000), 1000);
    CHECK_EQ(SSL_write(cl.ssl, src + 2000, 1000), 1000);
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    CHECK_EQ(n, 3 * 1022);
    CHECK_EQ(tls_conn_feed(c, p, 2 * 1022 + 1), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 1000);
    CHECK_EQ(tls_conn_read(c, dst + 1000, sizeof dst - 1000), 1000);
    CHECK_EQ(tls_conn_read(c, dst + 2000, sizeof dst - 2000), 0);
    CHECK_EQ(tls_conn_feed(c, p + 2 * 1022 + 1, 1021), 0);
    CHECK_EQ(tls_conn_read(c, dst + 2000, sizeof dst - 2000), 1000);
    CHECK_MEM(src, dst, 3000);
    CHECK(BIO_reset(cl.wb) == 1);

    /* A record read in pieces smaller than it (decrypted bytes left in
     * BoringSSL: not at a boundary until they are taken). */
    CHECK_EQ(SSL_write(cl.ssl, src, 3000), 3000);
    CHECK_EQ(to_server(&cl, c), 0);
    size_t got = 0;
    ssize_t r;
    while ((r = tls_conn_read(c, dst + got, 700)) > 0)
        got += (size_t)r;
    CHECK_EQ(r, 0);
    CHECK_EQ(got, 3000);
    CHECK_MEM(src, dst, 3000);

    /* A header announcing more than any record may hold: an error now,
     * not a wait for bytes that would never make it whole. */
    static const uint8_t bad[] = { 0x17, 0x03, 0x03, 0xff, 0xff, 0, 0, 0 };
    CHECK_EQ(tls_conn_feed(c, bad, sizeof bad), 0);
    CHECK(tls_conn_read(c, dst, sizeof dst) < 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

/* Lends a copy of the client's pending ciphertext in pieces of `piece`
 * bytes (tls_conn_feed_lent), reads after each, ends the lending and then
 * scribbles over the lent bytes, as a receive buffer being reused would:
 * whatever the reads left must have been copied. Returns plaintext got. */
static size_t lend_and_read(struct client *cl, struct tls_conn *c, size_t piece,
                            uint8_t *dst, size_t cap)
{
    const uint8_t *p;
    size_t n, got = 0;
    CHECK(BIO_mem_contents(cl->wb, &p, &n));
    uint8_t *copy = malloc(n ? n : 1);
    CHECK(copy);
    memcpy(copy, p, n);
    CHECK(BIO_reset(cl->wb) == 1);
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        CHECK_EQ(tls_conn_feed_lent(c, copy + off, k), 0);
        ssize_t r;
        while ((r = tls_conn_read(c, dst + got, cap - got)) > 0)
            got += (size_t)r;
        CHECK_EQ(r, 0);
        CHECK_EQ(tls_conn_feed_end(c), 0);
        memset(copy + off, 0xee, k);
    }
    free(copy);
    return got;
}

/* tls_conn_feed_lent: the handshake and records read in place, partial
 * records kept (copied) by tls_conn_feed_end, mixed with copying feeds. */
static void test_lent_feed(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    client_init(&cl, "alice", TLS1_3_VERSION, NULL);
    struct tls_conn *c = tls_conn_new(ctx);
    CHECK(c);
    static uint8_t src[40000], dst[40000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 29 + (i >> 9));
    /* The handshake through lent bytes only, in odd pieces. */
    for (int round = 0; round < 20 && !tls_conn_ready(c); round++) {
        int r = SSL_do_handshake(cl.ssl);
        CHECK(r == 1 || SSL_get_error(cl.ssl, r) == SSL_ERROR_WANT_READ);
        CHECK_EQ(lend_and_read(&cl, c, 97, dst, sizeof dst), 0);
        to_client(&cl, c);
    }
    CHECK(tls_conn_ready(c));
    CHECK(strcmp(tls_conn_principal(c), "alice") == 0);
    uint8_t x;
    CHECK(SSL_read(cl.ssl, &x, 1) < 0);      /* takes the ticket */
    ERR_clear_error();

    /* Records in many sizes of piece: each straddles some lendings. */
    static const size_t pieces[] = { 1, 5, 6, 700, 1022, 1023, 4096, 16000, 40000 };
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        CHECK_EQ(SSL_write(cl.ssl, src, 1000), 1000);
        CHECK_EQ(SSL_write(cl.ssl, src + 1000, 20000), 20000);
        CHECK_EQ(SSL_write(cl.ssl, src + 21000, 3000), 3000);
        memset(dst, 0, sizeof dst);
        CHECK_EQ(lend_and_read(&cl, c, pieces[i], dst, sizeof dst), 24000);
        CHECK_MEM(src, dst, 24000);
    }
    /* A copying feed of a partial record, then a lent rest (copied too). */
    CHECK_EQ(SSL_write(cl.ssl, src, 500), 500);
    const uint8_t *p;
    size_t n;
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    CHECK_EQ(tls_conn_feed(c, p, 10), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 0);
    CHECK_EQ(tls_conn_feed_lent(c, p + 10, n - 10), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 500);
    CHECK_EQ(tls_conn_feed_end(c), 0);
    CHECK_MEM(src, dst, 500);
    CHECK(BIO_reset(cl.wb) == 1);
    /* A lent partial record, then a copying feed of the rest. */
    CHECK_EQ(SSL_write(cl.ssl, src, 500), 500);
    CHECK(BIO_mem_contents(cl.wb, &p, &n));
    uint8_t head[100];
    memcpy(head, p, sizeof head);
    CHECK_EQ(tls_conn_feed_lent(c, head, sizeof head), 0);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 0);
    CHECK_EQ(tls_conn_feed(c, p + sizeof head, n - sizeof head), 0);   /* ends it */
    memset(head, 0xee, sizeof head);
    CHECK_EQ(tls_conn_read(c, dst, sizeof dst), 500);
    CHECK_EQ(tls_conn_feed_end(c), 0);
    CHECK_MEM(src, dst, 500);
    CHECK(BIO_reset(cl.wb) == 1);
    round_trip(&cl, c, 3000);

    /* Garbage lent: the error comes back from the feed or the read, and
     * tls_conn_feed_end repeats it. */
    static const uint8_t bad[] = { 0x17, 0x03, 0x03, 0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                   10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                   23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
    CHECK_EQ(tls_conn_feed_lent(c, bad, sizeof bad), 0);
    CHECK(tls_conn_read(c, dst, sizeof dst) < 0);
    CHECK(tls_conn_feed_end(c) < 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

/* Live bytes of the module, through the allocation seam (a size header in
 * front of each block). */
struct counter {
    long allocs;
    size_t live;
};

static void *counting_realloc(void *arg, void *p, size_t n)
{
    struct counter *k = arg;
    size_t *h = p ? (size_t *)p - 2 : NULL;
    if (h)
        k->live -= h[0];
    if (n == 0) {
        free(h);
        return NULL;
    }
    size_t *q = realloc(h, n + 2 * sizeof *q);
    if (!q) {
        if (h)
            k->live += h[0];
        return NULL;
    }
    k->allocs++;
    q[0] = n;
    k->live += n;
    return q + 2;
}

/* A busy connection keeps its drained input buffer and output piece from
 * burst to burst (no allocation per burst); tls_conn_trim gives them back,
 * and the connection works on afterwards. */
static void test_buffers_kept_and_trimmed(void)
{
    struct counter k = { 0, 0 };
    struct tls_cfg cfg = {
        .cert_file = path("live-server.pem"), .key_file = path("live-server.key"),
        .ca_file = path("ca.pem"), .realloc_fn = counting_realloc, .alloc_arg = &k,
    };
    struct tls_ctx *ctx = NULL;
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, NULL, 0), 0);
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    tls_conn_trim(c);
    size_t idle = k.live;
    round_trip(&cl, c, 300);
    CHECK(k.live >= idle + 16384 + 16384);   /* input buffer + output piece */
    long before = k.allocs;
    for (int i = 0; i < 20; i++)
        round_trip(&cl, c, 300);
    CHECK_EQ(k.allocs, before);              /* bursts reuse them */
    /* Queued output is never trimmed away; drained buffers are. */
    CHECK_EQ(tls_conn_write(c, "x", 1), 0);
    tls_conn_trim(c);
    CHECK_EQ(tls_conn_out_pending(c), 1 + 22);
    to_client(&cl, c);
    tls_conn_trim(c);
    CHECK_EQ(k.live, idle);
    uint8_t x;
    CHECK_EQ(SSL_read(cl.ssl, &x, 1), 1);
    CHECK_EQ(x, 'x');
    round_trip(&cl, c, 70000);               /* several records each way */
    tls_conn_trim(c);
    CHECK_EQ(k.live, idle);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
    CHECK_EQ(k.live, 0);
}

/* Fail the Nth allocation of the module (tls_cfg.realloc_fn), for every N
 * until a whole session runs without one failing: each failure must come
 * back as -ENOMEM (or NULL from tls_conn_new), never a crash or a leak
 * (ASan checks), and the session must complete when nothing fails. */
struct failer {
    long nth, calls;
    int failed;
};

static void *failing_realloc(void *arg, void *p, size_t n)
{
    struct failer *f = arg;
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (++f->calls == f->nth) {
        f->failed = 1;
        return NULL;
    }
    return realloc(p, n);
}

/* One session under the failer: 0 if it all worked, else the errno seen. */
static int session_under(struct failer *f)
{
    struct tls_cfg cfg = {
        .cert_file = path("live-server.pem"), .key_file = path("live-server.key"),
        .ca_file = path("ca.pem"), .crl_file = path("crl.pem"),
        .realloc_fn = failing_realloc, .alloc_arg = f,
    };
    struct tls_ctx *x = NULL;
    int rc = tls_ctx_create(&x, &cfg, NULL, 0);
    if (rc)
        return rc;
    CHECK_EQ(tls_ctx_reload(x, NULL, 0), f->failed ? -ENOMEM : 0);
    struct client cl;
    client_init(&cl, "alice", TLS1_3_VERSION, NULL);
    struct tls_conn *c = tls_conn_new(x);
    if (!c) {
        client_free(&cl);
        tls_ctx_destroy(x);
        return -ENOMEM;
    }
    rc = handshake(&cl, c);
    static uint8_t data[100000];
    if (rc == 0)
        rc = tls_conn_write(c, data, sizeof data);
    if (rc == 0) {
        CHECK_EQ(tls_conn_out_pending(c), sizeof data + 7 * 22);
        CHECK_EQ(SSL_write(cl.ssl, data, 50000), 50000);
        rc = to_server(&cl, c);
        uint8_t buf[16384];
        ssize_t r = 0;
        size_t got = 0;
        while (rc == 0 && (r = tls_conn_read(c, buf, sizeof buf)) > 0)
            got += (size_t)r;
        if (rc == 0 && r < 0)
            rc = (int)r;
        if (rc == 0)
            CHECK_EQ(got, 50000);
    }
    if (rc == -1000)                   /* the client saw our alert first */
        rc = tls_conn_feed(c, "", 0);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(x);
    ERR_clear_error();
    return rc;
}

static void test_alloc_failures(void)
{
    long nth;
    for (nth = 1; nth < 1000; nth++) {
        struct failer f = { .nth = nth };
        int rc = session_under(&f);
        if (!f.failed) {
            CHECK_EQ(rc, 0);           /* nothing failed: the session worked */
            break;
        }
        if (rc != 0 && rc != -ENOMEM)
            fprintf(stderr, "allocation %ld failed: rc %d\n", nth, rc);
        CHECK(rc == 0 || rc == -ENOMEM);
    }
    CHECK(nth > 5 && nth < 1000);      /* several allocations were failed */
    printf("test_tls: allocation failures: %ld tried\n", nth - 1);
}

/* The chunk handed to a send stays put while more is written behind it. */
static void test_out_stability(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK_EQ(tls_conn_write(c, "hello", 5), 0);
    const uint8_t *p;
    size_t n = tls_conn_out(c, &p);
    CHECK(n == 5 + 22);
    uint8_t copy[64];
    memcpy(copy, p, n);
    static uint8_t big[300000];
    CHECK_EQ(tls_conn_write(c, big, sizeof big), 0);   /* "send" in flight */
    CHECK_MEM(copy, p, n);
    /* Partial sends: consume in odd sizes, the client must see it all. */
    size_t total = tls_conn_out_pending(c), moved = 0;
    while ((n = tls_conn_out(c, &p)) > 0) {
        size_t k = n > 1000 ? 1000 : n;
        CHECK(BIO_write(cl.rb, p, (int)k) == (int)k);
        tls_conn_out_consume(c, k);
        moved += k;
    }
    CHECK_EQ(moved, total);
    uint8_t buf[4096];
    size_t got = 0;
    int r;
    while ((r = SSL_read(cl.ssl, buf, sizeof buf)) > 0)
        got += (size_t)r;
    ERR_clear_error();
    CHECK_EQ(got, 5 + sizeof big);

    /* The iovec view: several pieces at once, consumed across pieces. */
    static uint8_t big2[200000];
    for (size_t i = 0; i < sizeof big2; i++)
        big2[i] = (uint8_t)(i * 7);
    CHECK_EQ(tls_conn_write(c, big2, sizeof big2), 0);
    CHECK_EQ(tls_conn_write(c, "tail", 4), 0);
    total = tls_conn_out_pending(c);
    struct iovec iov[64];
    int niov = tls_conn_out_iov(c, iov, 64);
    CHECK(niov >= 2);                  /* 32 KiB pieces */
    size_t sum = 0;
    for (int i = 0; i < niov; i++)
        sum += iov[i].iov_len;
    CHECK_EQ(sum, total);
    CHECK_EQ(tls_conn_out_iov(c, iov, 1), 1);   /* max is respected */
    niov = tls_conn_out_iov(c, iov, 64);
    size_t first = iov[0].iov_len + 10;   /* spans into the second piece */
    CHECK(BIO_write(cl.rb, iov[0].iov_base, (int)iov[0].iov_len) > 0);
    CHECK(BIO_write(cl.rb, iov[1].iov_base, 10) == 10);
    tls_conn_out_consume(c, first);
    CHECK_EQ(tls_conn_out_pending(c), total - first);
    niov = tls_conn_out_iov(c, iov, 64);
    sum = 0;
    for (int i = 0; i < niov; i++) {
        CHECK(BIO_write(cl.rb, iov[i].iov_base, (int)iov[i].iov_len) == (int)iov[i].iov_len);
        sum += iov[i].iov_len;
    }
    CHECK_EQ(sum, total - first);
    tls_conn_out_consume(c, SIZE_MAX);     /* more than queued: all */
    CHECK_EQ(tls_conn_out_pending(c), 0);
    CHECK_EQ(tls_conn_out_iov(c, iov, 64), 0);
    static uint8_t back[sizeof big2 + 4];
    got = 0;
    while (got < sizeof back) {
        r = SSL_read(cl.ssl, back + got, (int)(sizeof back - got));
        CHECK(r > 0);
        got += (size_t)r;
    }
    CHECK_MEM(back, big2, sizeof big2);
    CHECK_MEM(back + sizeof big2, "tail", 4);

    /* Shutdown queues a close_notify the client recognizes. */
    tls_conn_shutdown(c);
    to_client(&cl, c);
    CHECK_EQ(SSL_read(cl.ssl, buf, sizeof buf), 0);
    CHECK_EQ(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
    tls_conn_free(c);
    client_free(&cl);

    /* Writing before the handshake is done is refused, not queued. */
    c = tls_conn_new(ctx);
    CHECK_EQ(tls_conn_write(c, "x", 1), -EAGAIN);
    CHECK_EQ(tls_conn_out_pending(c), 0);
    tls_conn_free(c);
    tls_ctx_destroy(ctx);
}

/* tls_conn_out_msg: one sendmsg over several queued pieces, over a real
 * socket; the msghdr stays put while more is written behind it. */
static void test_out_msg(void)
{
    struct tls_ctx *ctx = make_ctx(0, NULL);
    struct client cl;
    struct tls_conn *c;
    CHECK_EQ(connect_as(ctx, "alice", TLS1_3_VERSION, NULL, &cl, &c), 0);
    CHECK(tls_conn_out_msg(c) == NULL);        /* nothing queued */
    static uint8_t big[400000], back[sizeof big];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 13 + 1);
    CHECK_EQ(tls_conn_write(c, big, 100000), 0);
    const struct msghdr *m = tls_conn_out_msg(c);
    CHECK(m != NULL);
    CHECK(m->msg_iovlen >= 2 && m->msg_iovlen <= TLS_OUT_IOV_MAX);
    CHECK(m->msg_name == NULL && m->msg_control == NULL && m->msg_flags == 0);
    size_t sum = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        sum += m->msg_iov[i].iov_len;
    CHECK_EQ(sum, tls_conn_out_pending(c));   /* 100 KB: under 8 pieces */
    /* More written while "the send is in flight": the msghdr and what it
     * points at do not change. */
    struct iovec saved[TLS_OUT_IOV_MAX];
    size_t nsaved = m->msg_iovlen;
    memcpy(saved, m->msg_iov, nsaved * sizeof *saved);
    uint8_t head[64];
    memcpy(head, saved[0].iov_base, sizeof head);
    CHECK_EQ(tls_conn_write(c, big + 100000, sizeof big - 100000), 0);
    CHECK_EQ(m->msg_iovlen, nsaved);
    CHECK(memcmp(m->msg_iov, saved, nsaved * sizeof *saved) == 0);
    CHECK_MEM(saved[0].iov_base, head, sizeof head);
    /* 400 KB queued: more pieces than one msghdr takes. */
    m = tls_conn_out_msg(c);
    CHECK_EQ(m->msg_iovlen, (size_t)TLS_OUT_IOV_MAX);
    sum = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        sum += m->msg_iov[i].iov_len;
    CHECK(sum < tls_conn_out_pending(c));

    /* Send it all with sendmsg over a socketpair (partial sends included:
     * the socket buffer is smaller than 400 KB), the client decrypts. */
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int sndbuf = 32768;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    size_t got = 0, sends = 0, partial = 0;
    uint8_t rx[65536];
    while ((m = tls_conn_out_msg(c)) != NULL) {
        size_t want = 0;
        for (size_t i = 0; i < m->msg_iovlen; i++)
            want += m->msg_iov[i].iov_len;
        ssize_t w = sendmsg(sv[0], m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            sends++;
            partial += (size_t)w < want;
            tls_conn_out_consume(c, (size_t)w);
        } else {
            CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        }
        ssize_t r;
        while ((r = recv(sv[1], rx, sizeof rx, MSG_DONTWAIT)) > 0)
            CHECK(BIO_write(cl.rb, rx, (int)r) == (int)r);
        int k;
        while ((k = SSL_read(cl.ssl, back + got, (int)(sizeof back - got))) > 0)
            got += (size_t)k;
        ERR_clear_error();
    }
    CHECK_EQ(tls_conn_out_pending(c), 0);
    ssize_t r;
    while ((r = recv(sv[1], rx, sizeof rx, MSG_DONTWAIT)) > 0)
        CHECK(BIO_write(cl.rb, rx, (int)r) == (int)r);
    int k;
    while ((k = SSL_read(cl.ssl, back + got, (int)(sizeof back - got))) > 0)
        got += (size_t)k;
    ERR_clear_error();
    CHECK_EQ(got, sizeof big);
    CHECK_MEM(back, big, sizeof big);
    CHECK(sends >= 2);
    CHECK(partial >= 1);                        /* consume across pieces was exercised */
    close(sv[0]);
    close(sv[1]);
    tls_conn_free(c);
    client_free(&cl);
    tls_ctx_destroy(ctx);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        TEST_SKIP("usage: test_tls path/to/mkcerts.sh");
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        TEST_SKIP("no openssl tool to make certificates");
    snprintf(dir, sizeof dir, "/tmp/ics_tls_test.XXXXXX");
    CHECK(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' alice bob --alias carol:dave --cn-only erin --expired old "
             "--untrusted evil --revoked gone --server-eku srv --server server2 "
             "--future later --intermediate chained >/dev/null",
             argv[1], dir);
    CHECK(system(cmd) == 0);
    file_copy(path("server.pem"), path("live-server.pem"));
    file_copy(path("server.key"), path("live-server.key"));

    test_handshake_identity_and_data();
    test_principal_naming();
    test_refusals();
    test_resumption_and_rotation();
    test_reload();
    test_create_errors();
    test_bad_input();
    test_out_msg();
    test_input_buffering();
    test_record_boundaries();
    test_lent_feed();
    test_buffers_kept_and_trimmed();
    test_alloc_failures();
    test_out_stability();

    SSL_SESSION_free(g_last_session);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("test_tls: all passed\n");
    return 0;
}
