/* test_icsd_badinput.c — wire-v1 1.1 against a real icsd: truncated
 * headers, wrong magic, huge lengths, malformed frames, field overruns, a
 * slow client one byte at a time, idle timeouts, thousands of idle
 * connections and a client that never reads. Each gets its documented
 * error or limit, and a fresh client's NOOP still works afterwards. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "test.h"

static struct itest_srv srv;
static struct itest_resp r;

static void fresh_noop(void)
{
    int fd = itest_connect(&srv);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    close(fd);
}

static void hdr(uint8_t *h, uint8_t magic, uint8_t op, uint16_t kl, uint8_t el, uint32_t bl)
{
    memset(h, 0, 24);
    h[0] = magic;
    h[1] = op;
    buf_be16(h + 2, kl);
    h[4] = el;
    buf_be32(h + 8, bl);
    buf_be32(h + 12, 0xABCD);
}

static void test_framing_errors(void)
{
    uint8_t h[64];
    /* Truncated header, then the client goes away. */
    int fd = itest_connect(&srv);
    hdr(h, 0x80, WIRE_OP_NOOP, 0, 0, 0);
    CHECK_EQ(itest_send(fd, h, 10), 0);
    close(fd);
    fresh_noop();

    /* Wrong magic: EINVAL with a message, then the server closes. */
    fd = itest_connect(&srv);
    hdr(h, 0x42, WIRE_OP_VERSION, 0, 0, 0);
    CHECK_EQ(itest_send(fd, h, 24), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_EINVAL);
    CHECK(r.value_len > 0);
    CHECK_EQ(r.opcode, WIRE_OP_VERSION); /* echoed, as in every response */
    CHECK_EQ(r.opaque, 0xABCD);
    CHECK(itest_closed(fd, 3000));
    close(fd);
    /* An ASCII memcached command, shorter than a header: refused at once
     * (the client gets an answer and a close, not a timeout). */
    fd = itest_connect(&srv);
    CHECK_EQ(itest_send(fd, "version\r\n", 9), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_EINVAL);
    CHECK(itest_closed(fd, 3000));
    close(fd);
    /* A response magic from a client is wrong too. */
    fd = itest_connect(&srv);
    hdr(h, 0x81, WIRE_OP_NOOP, 0, 0, 0);
    CHECK_EQ(itest_send(fd, h, 24), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_EINVAL);
    CHECK(itest_closed(fd, 3000));
    close(fd);

    /* Huge body length: TOO_LARGE then close, without waiting for it. */
    fd = itest_connect(&srv);
    hdr(h, 0x80, WIRE_OP_GET, 4, 0, 0xFFFFFFF0u);
    CHECK_EQ(itest_send(fd, h, 24), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_TOO_LARGE);
    CHECK_EQ(r.opaque, 0xABCD);
    CHECK(itest_closed(fd, 3000));
    close(fd);
    fd = itest_connect(&srv);
    hdr(h, 0x80, WIRE_OP_GET, 4, 0, (1u << 20) + 1);
    CHECK_EQ(itest_send(fd, h, 24), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_TOO_LARGE);
    CHECK(itest_closed(fd, 3000));
    close(fd);

    /* Framed but malformed: EINVAL, and the connection goes on. */
    fd = itest_connect(&srv);
    hdr(h, 0x80, WIRE_OP_NOOP, 0, 0, 0);
    h[5] = 1; /* data type */
    CHECK_EQ(itest_send(fd, h, 24), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_EINVAL);
    hdr(h, 0x80, WIRE_OP_GET, 9, 0, 4); /* key longer than the body */
    memcpy(h + 24, "abcd", 4);
    CHECK_EQ(itest_send(fd, h, 28), 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.status, WIRE_S_EINVAL);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    CHECK_EQ(itest_auth(fd, "admin", srv.secret), 0);
    /* Field overruns inside a value. */
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_MAP, 0, NULL, 0, "d", 1, "\x01\x00" "abc", 5), WIRE_S_EINVAL);
    CHECK(r.value_len > 0);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_MAP, 0, NULL, 0, "d", 1, "\x00\x03" "abc" "\x00\x09" "u", 8),
             WIRE_S_EINVAL);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_INQUIRE_BINDING, 0, NULL, 0, "https://x", 9, "\xff\xff",
                        2), WIRE_S_EINVAL);
    /* A URI over 1024 bytes: TOO_LARGE. */
    static char big[1100];
    memset(big, 'u', sizeof big);
    struct buf v = BUF_INIT;
    buf_put_str16(&v, big, 1025);
    itest_s16(&v, "uti");
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_MAP, 0, NULL, 0, "d", 1, v.p, (uint32_t)v.len),
             WIRE_S_TOO_LARGE);
    /* A 1 MiB body is framed fine (reassembled across many reads) and
     * judged by its decoder. */
    static uint8_t mib[1u << 20];
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_KEY_VALIDATE, 0, NULL, 0, NULL, 0, mib, 1u << 20),
             WIRE_S_EINVAL);
    CHECK_EQ(itest_call(fd, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    buf_free(&v);
    close(fd);

    /* Random garbage. */
    srand(42);
    for (int i = 0; i < 20; i++) {
        uint8_t g[512];
        for (size_t j = 0; j < sizeof g; j++)
            g[j] = (uint8_t)rand();
        if (i % 2)
            g[0] = 0x80;
        fd = itest_connect(&srv);
        itest_send(fd, g, sizeof g);
        close(fd);
    }
    fresh_noop();
}

static void test_slow_client(void)
{
    int fd = itest_login(&srv, NULL, NULL);
    struct buf b = BUF_INIT, v = BUF_INIT;
    itest_s16(&v, "https://slow.example/");
    itest_s16(&v, "slow-uti");
    wire_put_request(&b, WIRE_OP_MAP, 5, 0, NULL, 0, "slow-dev", 8, v.p, (uint32_t)v.len);
    wire_put_request(&b, WIRE_OP_INQUIRE_DEVICE, 6, 0, NULL, 0, "slow-dev", 8, NULL, 0);
    for (size_t i = 0; i < b.len; i++) {
        CHECK_EQ(itest_send(fd, b.p + i, 1), 0);
        usleep(2000);
    }
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.opaque, 5);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(itest_read(fd, &r), 0);
    CHECK_EQ(r.opaque, 6);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(wire_be32(r.value), 1);
    buf_free(&b);
    buf_free(&v);
    close(fd);
}

static void test_idle_timeout(void)
{
    /* This server closes an incomplete frame after 1 s of silence. */
    int quiet = itest_connect(&srv);
    int partial = itest_connect(&srv);
    uint8_t h[24];
    hdr(h, 0x80, WIRE_OP_GET, 4, 0, 4);
    CHECK_EQ(itest_send(partial, h, 24), 0); /* body never comes */
    CHECK(itest_closed(partial, 5000));
    close(partial);
    /* A connection with no partial frame stays (e.g. WATCH). */
    CHECK_EQ(itest_call(quiet, &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    close(quiet);
    fresh_noop();
}

static void test_never_reads(void)
{
    /* --max-conn-buffer 64K: a client that pipelines without reading is
     * closed once its unsent answers pass the bound. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    close(fd);
    fd = itest_connect(&srv);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    CHECK_EQ(itest_auth(fd, "admin", srv.secret), 0);
    struct buf b = BUF_INIT;
    for (int i = 0; i < 2000; i++)
        wire_put_request(&b, WIRE_OP_STAT, (uint32_t)i, 0, NULL, 0, "wal", 3, NULL, 0);
    int closed = 0;
    time_t t0 = time(NULL);
    while (!closed && time(NULL) - t0 < 30) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t w = send(fd, b.p + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0) {
                if (errno == EAGAIN) {
                    usleep(10000);
                    break;
                }
                closed = 1;
                break;
            }
            off += (size_t)w;
        }
        usleep(20000);
    }
    CHECK(closed || itest_closed(fd, 5000));
    close(fd);
    buf_free(&b);
    fresh_noop();
    int adm = itest_login(&srv, NULL, NULL);
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_STAT, 0, NULL, 0, "conns", 5, NULL, 0), 0);
    uint64_t overflow = 0;
    while (r.keylen) {
        if (r.keylen == 15 && !memcmp(r.key, "closed_overflow", 15))
            overflow = strtoull((char *)r.value, NULL, 10);
        CHECK_EQ(itest_read(adm, &r), 0);
    }
    CHECK(overflow >= 1);
    close(adm);
}

static void test_many_idle(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    int want = 2000;
    if (rl.rlim_cur < (rlim_t)want + 100)
        want = (int)rl.rlim_cur - 100;
    if (want < 100) {
        fprintf(stderr, "skipping many-idle: RLIMIT_NOFILE %llu\n",
                (unsigned long long)rl.rlim_cur);
        return;
    }
    int *fds = calloc((size_t)want, sizeof *fds);
    for (int i = 0; i < want; i++)
        fds[i] = itest_connect(&srv);
    /* A fresh client still gets through, and the server counts them all. */
    int adm = itest_login(&srv, NULL, NULL);
    uint64_t curr = 0;
    for (int tries = 0; tries < 50 && curr < (uint64_t)want; tries++) {
        CHECK_EQ(itest_call(adm, &r, WIRE_OP_STAT, 0, NULL, 0, "conns", 5, NULL, 0), 0);
        while (r.keylen) {
            if (r.keylen == 16 && !memcmp(r.key, "curr_connections", 16))
                curr = strtoull((char *)r.value, NULL, 10);
            CHECK_EQ(itest_read(adm, &r), 0);
        }
        if (curr < (uint64_t)want)
            usleep(100000);
    }
    CHECK(curr >= (uint64_t)want);
    /* Some of them work too. */
    for (int i = 0; i < want; i += want / 10)
        CHECK_EQ(itest_call(fds[i], &r, WIRE_OP_NOOP, 0, NULL, 0, NULL, 0, NULL, 0), 0);
    for (int i = 0; i < want; i++)
        close(fds[i]);
    free(fds);
    close(adm);
    fresh_noop();
}

static void test_burst(void)
{
    /* Many connections each sending more than one provided buffer at
     * once: the server runs out of receive buffers for a moment (ENOBUFS)
     * and must re-arm, not stall or drop anyone. */
    enum { N = 300, BODY = 40000 };
    static uint8_t body[BODY];
    struct buf b = BUF_INIT;
    wire_put_request(&b, WIRE_OP_KEY_VALIDATE, 7, 0, NULL, 0, NULL, 0, body, BODY);
    wire_put_request(&b, WIRE_OP_NOOP, 8, 0, NULL, 0, NULL, 0, NULL, 0);
    int *fds = calloc(N, sizeof *fds);
    for (int i = 0; i < N; i++)
        fds[i] = itest_connect(&srv);
    for (int i = 0; i < N; i++)
        CHECK_EQ(itest_send(fds[i], b.p, b.len), 0);
    for (int i = 0; i < N; i++) {
        CHECK_EQ(itest_read(fds[i], &r), 0);
        CHECK_EQ(r.opaque, 7);
        CHECK_EQ(r.status, WIRE_S_AUTH_ERROR);
        CHECK_EQ(itest_read(fds[i], &r), 0);
        CHECK_EQ(r.opaque, 8);
        CHECK_EQ(r.status, 0);
        close(fds[i]);
    }
    free(fds);
    buf_free(&b);
    fresh_noop();
    int adm = itest_login(&srv, NULL, NULL);
    CHECK_EQ(itest_call(adm, &r, WIRE_OP_STAT, 0, NULL, 0, "conns", 5, NULL, 0), 0);
    while (r.keylen) {
        if (r.keylen == 11 && !memcmp(r.key, "recv_nobufs", 11))
            fprintf(stderr, "burst: %s receives found no buffer\n", (char *)r.value);
        CHECK_EQ(itest_read(adm, &r), 0);
    }
    close(adm);
}

int main(void)
{
    const char *args[] = {"--idle-timeout", "1", "--max-conn-buffer", "64K", NULL};
    itest_start(&srv, args);
    test_framing_errors();
    test_slow_client();
    test_idle_timeout();
    test_never_reads();
    test_many_idle();
    test_burst();
    CHECK_EQ(itest_stop(&srv), 0);
    itest_cleanup(&srv);
    itest_resp_free(&r);
    return 0;
}
