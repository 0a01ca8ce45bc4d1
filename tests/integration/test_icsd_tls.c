/* test_icsd_tls.c — the TLS 1.3 listener of a real icsd: a client
 * certificate naming a principal authenticates the connection (WHOAMI,
 * its rows only), pipelining works inside TLS (also when one burst of
 * answers fills several of net/tls's 32 KiB output pieces, which the
 * server sends with one gathered sendmsg), a certificate naming no
 * known principal leaves the connection unauthenticated, and a plaintext
 * client on the TLS port is closed. Skipped (77) without the openssl tool
 * (scripts/mkcerts.sh makes the certificates). */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_srv srv;
static char certs[400];
static uint16_t tls_port;

static SSL *tls_connect(const char *who, int *fd_out)
{
    char cert[512], key[512], ca[512];
    snprintf(cert, sizeof cert, "%s/%s.pem", certs, who);
    snprintf(key, sizeof key, "%s/%s.key", certs, who);
    snprintf(ca, sizeof ca, "%s/ca.pem", certs);
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    CHECK(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    CHECK_EQ(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
    CHECK_EQ(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    CHECK_EQ(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    struct itest_srv tmp = srv;
    tmp.port = tls_port;
    int fd = itest_connect(&tmp);
    SSL *s = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps a reference */
    SSL_set_fd(s, fd);
    if (SSL_connect(s) != 1) {
        ERR_print_errors_fp(stderr);
        CHECK(!"TLS handshake failed");
    }
    *fd_out = fd;
    return s;
}

static int tls_call(SSL *s, struct itest_resp *r, uint8_t op, const void *key, uint16_t kl)
{
    struct buf b = BUF_INIT;
    wire_put_request(&b, op, 9, 0, NULL, 0, key, kl, NULL, 0);
    CHECK_EQ(SSL_write(s, b.p, (int)b.len), (int)b.len);
    buf_free(&b);
    uint8_t h[24];
    int got = 0;
    while (got < 24) {
        int n = SSL_read(s, h + got, 24 - got);
        CHECK(n > 0);
        got += n;
    }
    uint32_t body = wire_be32(h + 8);
    free(r->value);
    r->value = malloc(body + 1);
    got = 0;
    while ((uint32_t)got < body) {
        int n = SSL_read(s, r->value + got, (int)body - got);
        CHECK(n > 0);
        got += n;
    }
    r->opcode = h[1];
    r->status = wire_be16(h + 6);
    r->keylen = wire_be16(h + 2);
    r->extlen = h[4];
    r->value_len = body;
    return r->status;
}

int main(void)
{
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        TEST_SKIP("the openssl tool is missing (Debian package openssl)");
    snprintf(certs, sizeof certs, "/tmp/icsd-tls-XXXXXX");
    CHECK(mkdtemp(certs));
    char cmd[800];
    snprintf(cmd, sizeof cmd, "%s %s tpA ghost >/dev/null 2>&1", MKCERTS, certs);
    CHECK_EQ(system(cmd), 0);
    char a1[512], a2[512], a3[512];
    snprintf(a1, sizeof a1, "%s/server.pem", certs);
    snprintf(a2, sizeof a2, "%s/server.key", certs);
    snprintf(a3, sizeof a3, "%s/ca.pem", certs);
    const char *args[] = {"--tls-cert", a1, "--tls-key", a2, "--tls-ca", a3, "--tls-port", "0",
                          "--tls-handshake-timeout", "1", NULL};
    itest_start(&srv, args);
    char pf[400];
    snprintf(pf, sizeof pf, "%s/port", srv.dir);
    FILE *f = fopen(pf, "r");
    unsigned p1 = 0, p2 = 0;
    CHECK(f && fscanf(f, "%u\ntls=%u", &p1, &p2) == 2);
    fclose(f);
    tls_port = (uint16_t)p2;
    CHECK(tls_port != 0 && tls_port != srv.port);

    int adm = itest_login(&srv, NULL, NULL);
    const char *sc[] = {"https://a.example/", NULL};
    CHECK_EQ(itest_principal(adm, "tpA", 4, NULL, sc), 0); /* certificate only */
    CHECK_EQ(itest_map(adm, "tls-dev", "https://a.example/1", "u1", NULL, NULL), 0);
    CHECK_EQ(itest_map(adm, "tls-dev", "https://b.example/1", "u2", NULL, NULL), 0);

    struct itest_resp r = {0};
    int fd;
    SSL *s = tls_connect("tpA", &fd);
    CHECK_EQ(tls_call(s, &r, WIRE_OP_WHOAMI, NULL, 0), 0);
    CHECK_MEM(r.value, "\0\3tpA\0\4tpsp", 11);
    CHECK_EQ(tls_call(s, &r, WIRE_OP_INQUIRE_DEVICE, "tls-dev", 7), 0);
    CHECK_EQ(wire_be32(r.value), 1); /* only its URI */
    /* 200 pipelined NOOPs in one TLS write, answered in order. */
    struct buf b = BUF_INIT;
    for (uint32_t i = 0; i < 200; i++)
        wire_put_request(&b, WIRE_OP_NOOP, i, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(SSL_write(s, b.p, (int)b.len), (int)b.len);
    for (uint32_t i = 0; i < 200; i++) {
        uint8_t h[24];
        int got = 0;
        while (got < 24) {
            int n = SSL_read(s, h + got, 24 - got);
            CHECK(n > 0);
            got += n;
        }
        CHECK_EQ(wire_be32(h + 12), i);
    }
    buf_free(&b);

    /* 16 pipelined inquiries of a device with 300 rows: ~11 KiB each, so
     * one turn's answers span several output pieces (one sendmsg). All
     * arrive whole and in order. */
    for (int i = 0; i < 300; i++) {
        char uri[64], uti[16];
        snprintf(uri, sizeof uri, "https://a.example/row/%03d", i);
        snprintf(uti, sizeof uti, "u%03d", i);
        CHECK_EQ(itest_map(adm, "tls-big", uri, uti, NULL, NULL), 0);
    }
    struct buf big = BUF_INIT;
    for (uint32_t i = 0; i < 16; i++)
        wire_put_request(&big, WIRE_OP_INQUIRE_DEVICE, 1000 + i, 0, NULL, 0, "tls-big", 7, NULL,
                         0);
    CHECK_EQ(SSL_write(s, big.p, (int)big.len), (int)big.len);
    size_t total = 0;
    for (uint32_t i = 0; i < 16; i++) {
        uint8_t h[24];
        int got = 0;
        while (got < 24) {
            int n = SSL_read(s, h + got, 24 - got);
            CHECK(n > 0);
            got += n;
        }
        CHECK_EQ(wire_be16(h + 6), 0);
        CHECK_EQ(wire_be32(h + 12), 1000 + i);
        uint32_t body = wire_be32(h + 8);
        uint8_t *v = malloc(body);
        CHECK(v);
        for (uint32_t k = 0; k < body;) {
            int n = SSL_read(s, v + k, (int)(body - k));
            CHECK(n > 0);
            k += (uint32_t)n;
        }
        uint32_t off = wire_be16(h + 2) + h[4]; /* key + extras come first */
        CHECK(body >= off + 4);
        CHECK_EQ(wire_be32(v + off), 300);   /* every row, none cut */
        total += body;
        free(v);
    }
    CHECK(total > 3 * 32768);
    buf_free(&big);
    SSL_free(s);
    close(fd);

    /* A certificate naming no principal: connected, not authenticated. */
    s = tls_connect("ghost", &fd);
    CHECK_EQ(tls_call(s, &r, WIRE_OP_NOOP, NULL, 0), 0);
    CHECK_EQ(tls_call(s, &r, WIRE_OP_WHOAMI, NULL, 0), WIRE_S_AUTH_ERROR);
    SSL_free(s);
    close(fd);

    /* Plaintext on the TLS port: refused and closed. */
    struct itest_srv tmp = srv;
    tmp.port = tls_port;
    fd = itest_connect(&tmp);
    CHECK_EQ(itest_req(fd, WIRE_OP_NOOP, 1, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK(itest_closed(fd, 5000));
    close(fd);
    /* A client that opens the TLS port and never finishes a handshake is
     * closed after --tls-handshake-timeout (1 s here). */
    fd = itest_connect(&tmp);
    CHECK(itest_closed(fd, 5000));
    close(fd);
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    close(adm);
    itest_resp_free(&r);
    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", certs);
    if (system(cmd) != 0) {}
    return 0;
}
