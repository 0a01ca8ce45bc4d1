/*
 * tls_echo_server.c — a tiny blocking TLS server over net/tls, so that the
 * real `openssl s_client` can be tested against the module before the
 * io_uring loop wires it. One connection at a time, 127.0.0.1 only, a port
 * the OS picks (written to --port-file). It answers memcached-binary NOOP
 * with OK, QUIT with OK and a close, anything else with UNKNOWN_COMMAND,
 * and logs one line per connection on stdout:
 *   ready principal=NAME fp=HEX version=V cipher=C resumed=0|1
 *   refused: REASON (errno)
 * Usage: tls_echo_server CERT KEY CA [--crl F] [--allow12] --port-file F
 *                        [--conns N]   (exits 0 after N connections; default 1)
 * Bounded: every socket has a 10 s receive timeout and the whole run 60 s.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int send_all(int fd, struct tls_conn *c)
{
    const uint8_t *p;
    size_t n;
    while ((n = tls_conn_out(c, &p)) > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        tls_conn_out_consume(c, (size_t)w);
    }
    return 0;
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Answers every complete frame in buf[0..*len); returns 1 after QUIT,
 * -1 on a framing error, else 0. Consumed bytes are removed. */
static int answer(struct tls_conn *c, uint8_t *buf, size_t *len)
{
    size_t off = 0;
    int quit = 0;
    while (!quit && *len - off >= 24) {
        const uint8_t *h = buf + off;
        if (h[0] != 0x80)
            return -1;
        uint32_t body = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
        if (body > (1u << 20))
            return -1;
        if (*len - off < 24 + (size_t)body)
            break;
        uint8_t r[24] = { 0x81, h[1] };
        unsigned status = (h[1] == 0x0a || h[1] == 0x07) ? 0 : 0x0081;
        put16(r + 6, status);
        memcpy(r + 12, h + 12, 4);     /* opaque echoed */
        if (tls_conn_write(c, r, sizeof r) != 0)
            return -1;
        quit = h[1] == 0x07;
        off += 24 + body;
    }
    memmove(buf, buf + off, *len - off);
    *len -= off;
    return quit;
}

static void serve(struct tls_ctx *ctx, int fd)
{
    struct timeval tv = { .tv_sec = 10 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct tls_conn *c = tls_conn_new(ctx);
    if (!c) {
        printf("refused: out of memory\n");
        return;
    }
    static uint8_t in[65536], plain[1 << 21];
    size_t plen = 0;
    int announced = 0;
    for (;;) {
        ssize_t n = recv(fd, in, sizeof in, 0);
        if (n <= 0) {
            if (!announced)
                printf("refused: connection closed during the handshake\n");
            break;
        }
        int rc = tls_conn_feed(c, in, (size_t)n);
        if (rc < 0) {
            printf("refused: %s (%d)\n", tls_conn_error(c), rc);
            send_all(fd, c);           /* the alert */
            break;
        }
        if (tls_conn_ready(c) && !announced) {
            const char *p = tls_conn_principal(c);
            printf("ready principal=%s fp=%s version=%s cipher=%s resumed=%d\n",
                   p ? p : "(none)", tls_conn_fingerprint_hex(c), tls_conn_version(c),
                   tls_conn_cipher(c), tls_conn_resumed(c));
            announced = 1;
        }
        int quit = 0;
        ssize_t r;
        while ((r = tls_conn_read(c, plain + plen, sizeof plain - plen)) > 0) {
            plen += (size_t)r;
            quit = answer(c, plain, &plen);
            if (quit)
                break;
        }
        if (r < 0 || quit < 0) {
            if (r != -ENOTCONN)
                printf("closed: %s\n", r < 0 ? tls_conn_error(c) : "bad frame");
            break;
        }
        if (quit)
            tls_conn_shutdown(c);
        if (send_all(fd, c) != 0 || quit)
            break;
    }
    fflush(stdout);
    tls_conn_free(c);
}

int main(int argc, char **argv)
{
    struct tls_cfg cfg = { 0 };
    const char *port_file = NULL;
    int conns = 1;
    if (argc < 4) {
        fprintf(stderr, "usage: %s CERT KEY CA [--crl F] [--allow12] --port-file F [--conns N]\n",
                argv[0]);
        return 2;
    }
    cfg.cert_file = argv[1];
    cfg.key_file = argv[2];
    cfg.ca_file = argv[3];
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--crl") && i + 1 < argc)
            cfg.crl_file = argv[++i];
        else if (!strcmp(argv[i], "--allow12"))
            cfg.allow_tls12 = 1;
        else if (!strcmp(argv[i], "--port-file") && i + 1 < argc)
            port_file = argv[++i];
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
            conns = atoi(argv[++i]);
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    alarm(60);
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct tls_ctx *ctx;
    char err[256];
    if (tls_ctx_create(&ctx, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "tls: %s\n", err);
        return 1;
    }
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        perror("listen");
        return 1;
    }
    if (port_file) {
        FILE *f = fopen(port_file, "w");
        if (!f) {
            perror(port_file);
            return 1;
        }
        fprintf(f, "%u\n", ntohs(a.sin_port));
        fclose(f);
    }
    for (int i = 0; i < conns; i++) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            perror("accept");
            return 1;
        }
        serve(ctx, fd);
        close(fd);
    }
    close(ls);
    tls_ctx_destroy(ctx);
    return 0;
}
