/*
 * test_tls_threads.c — one tls_ctx shared by several loop threads, as in
 * icsd: workers make connections (full and resumed handshakes, data both
 * ways) while another thread reloads the context and rotates ticket keys.
 * Every handshake must succeed and name the right principal; TSan checks
 * the locking (label concurrency). argv[1] is scripts/mkcerts.sh.
 */
#include "tls.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define WORKERS 2
#define ROUNDS 25

static char dir[256];
static struct tls_ctx *ctx;
static atomic_int done_workers;
static atomic_long handshakes, resumptions;

static void pathf(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
    SSL_SESSION **slot = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    SSL_SESSION_free(*slot);
    *slot = s;
    return 1;
}

/* One connection as principal `who`, resuming *sess if set. */
static void one_conn(SSL_CTX *cctx, SSL_SESSION **sess, const char *who, int round)
{
    SSL *ssl = SSL_new(cctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    CHECK(ssl && rb && wb);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    if (*sess && (round & 1))
        SSL_set_session(ssl, *sess);
    struct tls_conn *c = tls_conn_new(ctx);
    CHECK(c);

    uint8_t buf[4096];
    const uint8_t *p;
    size_t n;
    int ok = 0;
    for (int i = 0; i < 10 && !ok; i++) {
        int r = SSL_do_handshake(ssl);
        CHECK(BIO_mem_contents(wb, &p, &n));
        if (n) {
            int rc = tls_conn_feed(c, p, n);
            if (rc)
                fprintf(stderr, "feed: %d %s\n", rc, tls_conn_error(c));
            CHECK_EQ(rc, 0);
            BIO_reset(wb);
        }
        while ((n = tls_conn_out(c, &p)) > 0) {
            BIO_write(rb, p, (int)n);
            tls_conn_out_consume(c, n);
        }
        ok = r == 1 && tls_conn_ready(c);
    }
    CHECK(ok);
    CHECK(strcmp(tls_conn_principal(c), who) == 0);
    atomic_fetch_add_explicit(&handshakes, 1, memory_order_relaxed);
    if (tls_conn_resumed(c))
        atomic_fetch_add_explicit(&resumptions, 1, memory_order_relaxed);

    /* Data both ways; the client's read also takes in the ticket. */
    CHECK_EQ(SSL_write(ssl, "ping", 4), 4);
    CHECK(BIO_mem_contents(wb, &p, &n));
    CHECK_EQ(tls_conn_feed(c, p, n), 0);
    BIO_reset(wb);
    CHECK_EQ(tls_conn_read(c, buf, sizeof buf), 4);
    CHECK_MEM(buf, "ping", 4);
    CHECK_EQ(tls_conn_write(c, "pong", 4), 0);
    while ((n = tls_conn_out(c, &p)) > 0) {
        BIO_write(rb, p, (int)n);
        tls_conn_out_consume(c, n);
    }
    CHECK_EQ(SSL_read(ssl, buf, sizeof buf), 4);
    CHECK_MEM(buf, "pong", 4);
    tls_conn_free(c);
    SSL_free(ssl);
}

static void *worker(void *arg)
{
    const char *who = arg;
    char cert[512], key[512], ca[512];
    char f[64];
    snprintf(f, sizeof f, "%s.pem", who);
    pathf(cert, sizeof cert, f);
    snprintf(f, sizeof f, "%s.key", who);
    pathf(key, sizeof key, f);
    pathf(ca, sizeof ca, "ca.pem");
    SSL_CTX *cctx = SSL_CTX_new(TLS_method());
    CHECK(cctx);
    CHECK(SSL_CTX_use_certificate_chain_file(cctx, cert) == 1);
    CHECK(SSL_CTX_use_PrivateKey_file(cctx, key, SSL_FILETYPE_PEM) == 1);
    CHECK(SSL_CTX_load_verify_locations(cctx, ca, NULL) == 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
    SSL_SESSION *sess = NULL;
    SSL_CTX_set_app_data(cctx, &sess);
    SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(cctx, new_session_cb);
    for (int i = 0; i < ROUNDS; i++)
        one_conn(cctx, &sess, who, i);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    ERR_clear_error();
    atomic_fetch_add_explicit(&done_workers, 1, memory_order_release);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        TEST_SKIP("usage: test_tls_threads path/to/mkcerts.sh");
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        TEST_SKIP("no openssl tool to make certificates");
    snprintf(dir, sizeof dir, "/tmp/ics_tls_threads.XXXXXX");
    CHECK(mkdtemp(dir));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' '%s' alice bob >/dev/null", argv[1], dir);
    CHECK(system(cmd) == 0);

    char cert[512], key[512], ca[512], crl[512], err[256];
    pathf(cert, sizeof cert, "server.pem");
    pathf(key, sizeof key, "server.key");
    pathf(ca, sizeof ca, "ca.pem");
    pathf(crl, sizeof crl, "crl.pem");
    struct tls_cfg cfg = { .cert_file = cert, .key_file = key, .ca_file = ca, .crl_file = crl };
    CHECK_EQ(tls_ctx_create(&ctx, &cfg, err, sizeof err), 0);

    pthread_t t[WORKERS];
    static const char *names[WORKERS] = { "alice", "bob" };
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)names[i]) == 0);
    /* Meanwhile: reloads and rotations, until the workers finish. */
    int reloads = 0;
    while (atomic_load_explicit(&done_workers, memory_order_acquire) < WORKERS) {
        CHECK_EQ(tls_ctx_reload(ctx, err, sizeof err), 0);
        tls_ctx_rotate_tickets(ctx);
        reloads++;
        usleep(2000);
    }
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    tls_ctx_destroy(ctx);
    CHECK_EQ(atomic_load(&handshakes), WORKERS * ROUNDS);
    CHECK(reloads > 0);
    printf("test_tls_threads: %ld handshakes (%ld resumed) during %d reloads: passed\n",
           atomic_load(&handshakes), atomic_load(&resumptions), reloads);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
