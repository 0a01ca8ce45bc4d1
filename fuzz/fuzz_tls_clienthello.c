/*
 * fuzz_tls_clienthello.c — arbitrary bytes as the first flight a client
 * sends to a fresh server tls_conn (net/tls over BoringSSL): a ClientHello,
 * or whatever a hostile or confused client sends instead. The whole input
 * is fed at once, and again split in two at a point taken from its first
 * byte, so both the parser and the input buffering are exercised.
 * Invariants: no crash, no leak, never a completed handshake (nothing here
 * can produce the client's certificate and Finished), and a failure always
 * comes with a reason string.
 *
 * The certificate and key below are a throwaway development pair made by
 * scripts/mkcerts.sh for this driver only; they protect nothing.
 */
#include "tls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Always on, unlike assert (plain builds define NDEBUG). */
#define FUZZ_CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FUZZ_CHECK: %s\n", #cond); abort(); } } while (0)

static const char ca_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBgDCCASagAwIBAgIUOp69q1fBgHoPW3v7Or69wFpEaiAwCgYIKoZIzj0EAwIw\n"
    "HjEcMBoGA1UEAwwTaWNzZCBkZXZlbG9wbWVudCBDQTAeFw0yNjExMjIwOTEyMTNa\n"
    "Fw0zNjExMTkwOTEyMTNaMB4xHDAaBgNVBAMME2ljc2QgZGV2ZWxvcG1lbnQgQ0Ew\n"
    "WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATPxs1YnGYW1LFi33oyVjcIAdLugirp\n"
    "d6pWBFLGGMncMNnkfULrfHg3g3WZu0vumnDNrnBovZY6KG6R6vVUW9u2o0IwQDAP\n"
    "BgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUGk6TPsia\n"
    "0IiUqDEYHzBkFdAjRCUwCgYIKoZIzj0EAwIDSAAwRQIhAMQdbACLFfVdNEMEvXmS\n"
    "kdGHTiyUS8GgSClYqtm5NRHaAiAIpt9nXhpf4qLy6LkjnClnNT5u6i08WWzEl8M3\n"
    "/lFjRg==\n"
    "-----END CERTIFICATE-----\n";
static const char server_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBzjCCAXSgAwIBAgIJAN5UP5TdFlvYMAoGCCqGSM49BAMCMB4xHDAaBgNVBAMM\n"
    "E2ljc2QgZGV2ZWxvcG1lbnQgQ0EwHhcNMjYxMTIyMDkxMjEzWhcNMjkwMjI0MDkx\n"
    "MjEzWjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjOPQMB\n"
    "BwNCAAQ1t75wxwnoF6JsVv6O/r8kvgOvWs/ygfuHZRb7XXPdqBSsBUsSg25NBwre\n"
    "uNcUlHEA7LY/DG0cYEU1NGVjpbpFo4GkMIGhMAwGA1UdEwEB/wQCMAAwDgYDVR0P\n"
    "AQH/BAQDAgeAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMCwGA1UdEQQlMCOCCWxvY2Fs\n"
    "aG9zdIcEfwAAAYcQAAAAAAAAAAAAAAAAAAAAATAdBgNVHQ4EFgQUt9y1lqmreuDz\n"
    "Lrc9vf//XXMFmvQwHwYDVR0jBBgwFoAUGk6TPsia0IiUqDEYHzBkFdAjRCUwCgYI\n"
    "KoZIzj0EAwIDSAAwRQIhAMQ9lL9hyqDt8UKsmlA4TgQrDEaE9460DsRX1/K8QyFY\n"
    "AiBrME0cl2YheGmKwNlHqZkHyPHDpmqsSGCpsbIrtJNv8w==\n"
    "-----END CERTIFICATE-----\n";
static const char server_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnKVdF1zlYAgk1wXw\n"
    "09ZkcZh/tFLnOIN7/XDxo99bKsShRANCAAQ1t75wxwnoF6JsVv6O/r8kvgOvWs/y\n"
    "gfuHZRb7XXPdqBSsBUsSg25NBwreuNcUlHEA7LY/DG0cYEU1NGVjpbpF\n"
    "-----END PRIVATE KEY-----\n";

static void write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(s, f) < 0 || fclose(f) != 0)
        abort();
}

static struct tls_ctx *make_ctx(void)
{
    char dir[] = "/tmp/ics_fuzz_tls.XXXXXX", ca[64], crt[64], key[64], err[256];
    if (!mkdtemp(dir))
        abort();
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(crt, sizeof crt, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    write_file(ca, ca_pem);
    write_file(crt, server_pem);
    write_file(key, server_key);
    struct tls_cfg cfg = { .cert_file = crt, .key_file = key, .ca_file = ca };
    struct tls_ctx *ctx = NULL;
    if (tls_ctx_create(&ctx, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tls_clienthello: %s\n", err);
        abort();
    }
    unlink(ca);                        /* read once; a reload is not fuzzed */
    unlink(crt);
    unlink(key);
    rmdir(dir);
    return ctx;
}

static void drain(struct tls_conn *c)
{
    const uint8_t *p;
    size_t n;
    while ((n = tls_conn_out(c, &p)) > 0)
        tls_conn_out_consume(c, n);
}

static void run(struct tls_ctx *ctx, const uint8_t *data, size_t size, size_t split)
{
    struct tls_conn *c = tls_conn_new(ctx);
    if (!c)
        abort();
    int rc = tls_conn_feed(c, data, split);
    drain(c);
    if (rc == 0)
        rc = tls_conn_feed(c, data + split, size - split);
    drain(c);
    FUZZ_CHECK(!tls_conn_ready(c));
    FUZZ_CHECK(rc <= 0);
    FUZZ_CHECK(rc == 0 || tls_conn_error(c)[0] != 0);
    uint8_t buf[256];
    FUZZ_CHECK(tls_conn_read(c, buf, sizeof buf) <= 0);
    FUZZ_CHECK(tls_conn_principal(c) == NULL);
    tls_conn_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One context for the process, as the server has one per listener. It
     * lives until exit on purpose (LeakSanitizer ignores reachable memory). */
    static struct tls_ctx *ctx;
    if (!ctx)
        ctx = make_ctx();
    run(ctx, data, size, size);
    if (size > 1)
        run(ctx, data, size, 1 + data[0] % (size - 1));
    return 0;
}
