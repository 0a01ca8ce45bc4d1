/*
 * tls_bench_server.c — net/tls behind a single-threaded epoll server, the
 * counterpart of `openssl s_server -WWW` for the handshake benchmark
 * (bench/tls/run.sh drives both with the same `openssl s_time` clients).
 * Answers "GET /PAGE" with the bytes of PAGE's file like s_server -WWW
 * does, then closes. On SIGTERM/SIGINT prints the handshakes it completed
 * (full, resumed) and its own CPU seconds, then exits.
 * Usage: tls_bench_server CERTDIR PORTFILE PAGEFILE
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    struct tls_conn *tls;
    size_t got;                        /* request bytes seen so far */
    char req[512];
    int counted, closing, want_out;
};

static volatile sig_atomic_t stop;
static char *page;
static size_t page_len;
static long full, resumed, refused;

static void on_signal(int sig)
{
    stop = 1;
}

static void conn_close(int ep, struct conn *c)
{
    close(c->fd);                      /* also leaves the epoll set */
    tls_conn_free(c->tls);
    free(c);
}

/* Sends what is queued; 1 if all of it went, 0 if the socket is full. */
static int flush_out(struct conn *c)
{
    const uint8_t *p;
    size_t n;
    while ((n = tls_conn_out(c->tls, &p)) > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN ? 0 : -1;
        tls_conn_out_consume(c->tls, (size_t)w);
    }
    return 1;
}

static int on_readable(struct conn *c)
{
    static uint8_t in[65536];
    for (;;) {
        ssize_t n = recv(c->fd, in, sizeof in, 0);
        if (n == 0)
            return -1;
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        int more = (size_t)n == sizeof in;  /* else drained: skip the EAGAIN recv */
        if (tls_conn_feed(c->tls, in, (size_t)n) < 0) {
            refused++;
            flush_out(c);
            return -1;
        }
        if (!tls_conn_ready(c->tls)) {
            if (more)
                continue;
            return 0;
        }
        if (!c->counted) {
            c->counted = 1;
            if (tls_conn_resumed(c->tls))
                resumed++;
            else
                full++;
        }
        ssize_t r;
        while ((r = tls_conn_read(c->tls, c->req + c->got, sizeof c->req - 1 - c->got)) > 0)
            c->got += (size_t)r;
        if (r < 0)
            return -1;
        c->req[c->got] = 0;
        if (!c->closing && strstr(c->req, "\r\n\r\n")) {
            static const char hdr[] = "HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n";
            if (tls_conn_write(c->tls, hdr, sizeof hdr - 1) != 0 ||
                tls_conn_write(c->tls, page, page_len) != 0)
                return -1;
            tls_conn_shutdown(c->tls);
            c->closing = 1;
        } else if (c->got == sizeof c->req - 1) {
            return -1;
        }
        if (!more)
            return 0;                  /* level-triggered epoll calls again */
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tls_bench_server CERTDIR PORTFILE PAGEFILE\n");
        return 2;
    }
    char cert[512], key[512], ca[512], err[256];
    snprintf(cert, sizeof cert, "%s/server.pem", argv[1]);
    snprintf(key, sizeof key, "%s/server.key", argv[1]);
    snprintf(ca, sizeof ca, "%s/ca.pem", argv[1]);
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    page = malloc(1 << 20);
    page_len = fread(page, 1, 1 << 20, f);
    fclose(f);

    struct tls_cfg cfg = { .cert_file = cert, .key_file = key, .ca_file = ca };
    struct tls_ctx *ctx;
    if (tls_ctx_create(&ctx, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "tls: %s\n", err);
        return 1;
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
        perror("listen");
        return 1;
    }
    f = fopen(argv[2], "w");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    fprintf(f, "%u\n", ntohs(a.sin_port));
    fclose(f);

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[64];
    while (!stop) {
        int n = epoll_wait(ep, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->tls = tls_conn_new(ctx);
                    struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                    if (!c->tls || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
                        close(fd);
                        tls_conn_free(c->tls);
                        free(c);
                    }
                }
                continue;
            }
            int rc = (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? on_readable(c) : 0;
            int fl = rc < 0 ? -1 : flush_out(c);
            if (rc < 0 || fl < 0 || (fl == 1 && c->closing)) {
                conn_close(ep, c);
                continue;
            }
            if ((fl == 0) != c->want_out) {     /* a syscall only on change */
                c->want_out = fl == 0;
                struct epoll_event cev = { .events = EPOLLIN | (c->want_out ? EPOLLOUT : 0),
                                           .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    printf("full=%ld resumed=%ld refused=%ld cpu_s=%.3f\n", full, resumed, refused, cpu);
    tls_ctx_destroy(ctx);
    return 0;
}
