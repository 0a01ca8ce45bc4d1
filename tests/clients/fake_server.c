/*
 * fake_server.c — see fake_server.h. Behaviour by request:
 *   SASL_AUTH   OK when the secret is "s3cret", else AUTH_ERROR
 *   key "status:N"  answers wire status N (decimal) with message "canned N"
 *   key "drop"      closes the connection without answering
 *   key "dropread"  the first time: closes without answering; then answers
 *   QUIT        OK, then closes
 *   WATCH       OK, then one DEMAPPED event; every later MAP is preceded by
 *               a MAP_PENDING event on the same connection
 *   other ops   canned values (see answer()).
 */
#include "fake_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "icsc.h"

typedef struct obuf { uint8_t *p; size_t n, cap; } obuf;

static void put(obuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p)
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void u8(obuf *b, uint8_t v) { put(b, &v, 1); }
static void u16(obuf *b, uint16_t v) { uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v}; put(b, t, 2); }
static void u32(obuf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, t, 4);
}
static void u64(obuf *b, uint64_t v) { u32(b, (uint32_t)(v >> 32)); u32(b, (uint32_t)v); }
static void s16(obuf *b, const char *s) { u16(b, (uint16_t)strlen(s)); put(b, s, strlen(s)); }

static void frame(obuf *out, uint8_t magic, uint8_t op, uint16_t status, uint32_t opaque,
                  uint64_t cas, const void *key, size_t kl, const obuf *val)
{
    uint8_t h[ICSC_HDR_LEN];
    size_t vl = val ? val->n : 0;
    icsc_encode_header(h, magic, op, (uint16_t)kl, 0, status, (uint32_t)(kl + vl), opaque, cas);
    put(out, h, sizeof h);
    if (kl)
        put(out, key, kl);
    if (vl)
        put(out, val->p, vl);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                poll(&pf, 1, 100);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Returns 0 answered, 1 close now. */
static int answer(fake_server *s, const icsc_frame *rq, int *watching, obuf *out)
{
    obuf v = {0};
    uint16_t st = 0;
    uint64_t cas = 0;
    char key[256] = {0};
    memcpy(key, rq->key, rq->key_len < 255 ? rq->key_len : 255);
    int rc = 0;

    if (strcmp(key, "drop") == 0)
        return 1;
    if (strcmp(key, "dropread") == 0 && atomic_fetch_add(&s->dropped_reads, 1) == 0)
        return 1;
    if (strncmp(key, "status:", 7) == 0) {
        st = (uint16_t)atoi(key + 7);
        char msg[32];
        snprintf(msg, sizeof msg, "canned %u", st);
        put(&v, msg, strlen(msg));
        frame(out, ICSC_MAGIC_RES, rq->opcode, st, rq->opaque, 0, NULL, 0, &v);
        free(v.p);
        return 0;
    }
    switch (rq->opcode) {
    case ICSC_OP_SASL_AUTH: {
        static const char good[] = "\0admin\0s3cret";
        if (rq->value_len != sizeof good - 1 || memcmp(rq->value, good, sizeof good - 1)) {
            st = ICSC_S_AUTH_ERROR;
            put(&v, "bad credentials", 15);
        }
        break;
    }
    case ICSC_OP_NOOP: break;
    case ICSC_OP_QUIT: rc = 1; break;
    case ICSC_OP_VERSION: put(&v, "1.0.0 fake", 10); break;
    case ICSC_OP_STAT: {
        const char *names[] = {"pid", "rows"}, *vals[] = {"42", "7"};
        for (int i = 0; i < 2; i++) {
            obuf sv = {0};
            put(&sv, vals[i], strlen(vals[i]));
            frame(out, ICSC_MAGIC_RES, rq->opcode, 0, rq->opaque, 0, names[i], strlen(names[i]), &sv);
            free(sv.p);
        }
        break; /* then the empty-key terminator below */
    }
    case ICSC_OP_INQUIRE_DEVICE: case ICSC_OP_GET:
        if (strcmp(key, "dev1") && strcmp(key, "dropread")) {
            st = ICSC_S_NOT_FOUND;
            put(&v, "no such device", 14);
            break;
        }
        if (rq->opcode == ICSC_OP_GET) {
            /* memcached GET answers carry 4 bytes of flags in extras */
            uint8_t h[ICSC_HDR_LEN];
            obuf gv = {0};
            u32(&gv, 2);
            s16(&gv, "https://a.example/x"); s16(&gv, "uti-a"); u32(&gv, 0);
            s16(&gv, "https://b.example/y"); s16(&gv, "uti-b"); u32(&gv, 99);
            icsc_encode_header(h, ICSC_MAGIC_RES, rq->opcode, 0, 4, 0, (uint32_t)(4 + gv.n), rq->opaque, 3);
            put(out, h, sizeof h);
            u32(out, 0);
            put(out, gv.p, gv.n);
            free(gv.p);
            return 0;
        }
        u32(&v, 2);
        s16(&v, "https://a.example/x"); s16(&v, "uti-a"); u32(&v, 0);
        s16(&v, "https://b.example/y"); s16(&v, "uti-b"); u32(&v, 99);
        cas = 3;
        break;
    case ICSC_OP_INQUIRE_BINDING: put(&v, "dev1", 4); break;
    case ICSC_OP_MAP: case ICSC_OP_DEMAP: case ICSC_OP_MAP_CONFIRM: case ICSC_OP_PRINCIPAL_SET:
    case ICSC_OP_SNAPSHOT:
        if (rq->opcode == ICSC_OP_MAP && *watching) {
            obuf ev = {0};
            s16(&ev, "SER-1"); s16(&ev, "https://shop.example/o"); s16(&ev, "uti-9");
            frame(out, ICSC_MAGIC_EVT, ICSC_EV_MAP_PENDING, 0, 0, 0, "0123456789abcdef", 16, &ev);
            free(ev.p);
        }
        cas = ++s->lsn;
        break;
    case ICSC_OP_MAP_REQUEST: put(&v, "0123456789abcdef", 16); break;
    case ICSC_OP_DEMAP_DEVICE: case ICSC_OP_DEMAP_SERVICE: u32(&v, 5); break;
    case ICSC_OP_WATCH:
        *watching = 1;
        frame(out, ICSC_MAGIC_RES, rq->opcode, 0, rq->opaque, 0, NULL, 0, NULL);
        s16(&v, "https://a.example/x"); s16(&v, "uti-a");
        frame(out, ICSC_MAGIC_EVT, ICSC_EV_DEMAPPED, 0, 0, 11, "dev1", 4, &v);
        free(v.p);
        return 0;
    case ICSC_OP_EXPORT: {
        uint64_t cursor = 0;
        for (size_t i = 0; i < rq->key_len && i < 8; i++)
            cursor = cursor << 8 | rq->key[i];
        u64(&v, cursor == 0 ? 1 : 0);
        u32(&v, 1);
        s16(&v, cursor == 0 ? "devA" : "devB"); s16(&v, "https://a.example/x"); s16(&v, "u"); u32(&v, 0);
        break;
    }
    case ICSC_OP_KEY_ISSUE: {
        uint16_t n = (uint16_t)(rq->extras[0] << 8 | rq->extras[1]);
        if (n == 0 || n > 1000) {
            st = ICSC_S_EINVAL;
            put(&v, "count out of range", 18);
            break;
        }
        u64(&v, 1700000000); u8(&v, 1); u16(&v, n);
        for (int i = 0; i < n * 16 + 32; i++)
            u8(&v, (uint8_t)i);
        break;
    }
    case ICSC_OP_KEY_VALIDATE:
        if (rq->value_len < 32 || rq->value[rq->value_len - 1] != (uint8_t)(rq->value_len - 11 - 1))
            st = ICSC_S_BAD_SIGNATURE;
        break;
    case ICSC_OP_HISTORY:
        u32(&v, 1); u64(&v, 1234567); u8(&v, 3); s16(&v, "shop"); s16(&v, "https://a.example/x"); s16(&v, "uti-a");
        break;
    case ICSC_OP_WHOAMI: s16(&v, "admin"); s16(&v, "admin"); break;
    case ICSC_OP_PREFS_SET:
        if (rq->value_len <= sizeof s->prefs) {
            memcpy(s->prefs, rq->value, rq->value_len);
            s->prefs_len = rq->value_len;
        }
        cas = ++s->lsn;
        break;
    case ICSC_OP_PREFS_GET:
        if (!s->prefs_len)
            st = ICSC_S_NOT_FOUND;
        else
            put(&v, s->prefs, s->prefs_len);
        break;
    case ICSC_OP_PRINCIPAL_DEL: case ICSC_OP_MAP_REJECT: case ICSC_OP_DEMAP_BINDING: break;
    case ICSC_OP_PRINCIPAL_LIST:
        u32(&v, 2);
        s16(&v, "admin"); u8(&v, 1); u16(&v, 0);
        s16(&v, "fridge-maker"); u8(&v, 2); u16(&v, 2); s16(&v, "FRG-"); s16(&v, "FRX-");
        break;
    default:
        st = ICSC_S_UNKNOWN_COMMAND;
        put(&v, "unknown command", 15);
    }
    frame(out, ICSC_MAGIC_RES, rq->opcode, st, rq->opaque, cas, NULL, 0, &v);
    free(v.p);
    return rc;
}

/* Parses a request frame (magic 0x80) from buf: length, 0 need more. */
static int parse_request(const uint8_t *b, size_t n, icsc_frame *f)
{
    if (n < ICSC_HDR_LEN)
        return 0;
    uint32_t blen = (uint32_t)b[8] << 24 | (uint32_t)b[9] << 16 | (uint32_t)b[10] << 8 | b[11];
    if (n - ICSC_HDR_LEN < blen)
        return 0;
    f->magic = b[0];
    f->opcode = b[1];
    f->key_len = (size_t)(b[2] << 8 | b[3]);
    f->extras_len = b[4];
    f->opaque = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
    f->extras = b + ICSC_HDR_LEN;
    f->key = f->extras + f->extras_len;
    f->value = f->key + f->key_len;
    f->value_len = blen - f->extras_len - f->key_len;
    return (int)(ICSC_HDR_LEN + blen);
}

static void serve(fake_server *s, int fd)
{
    uint8_t *in = malloc(1 << 20);
    size_t have = 0;
    int watching = 0;
    obuf out = {0};
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        ssize_t r = recv(fd, in + have, (1 << 20) - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        if (s->mode == FAKE_SILENT) {
            have = 0;
            continue;
        }
        size_t pos = 0;
        int n, closing = 0;
        icsc_frame f;
        out.n = 0;
        while (!closing && (n = parse_request(in + pos, have - pos, &f)) > 0) {
            pos += (size_t)n;
            closing = answer(s, &f, &watching, &out);
        }
        memmove(in, in + pos, have - pos);
        have -= pos;
        if (out.n && write_all(fd, out.p, out.n))
            break;
        if (closing)
            break;
    }
    free(out.p);
    free(in);
    close(fd);
}

static void *run(void *arg)
{
    fake_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf = {.fd = s->lfd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->connections, 1);
        serve(s, fd);
    }
    return NULL;
}

int fake_start(fake_server *s, int mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 16) ||
        getsockname(s->lfd, (struct sockaddr *)&a, &al))
        return -errno;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->thr, NULL, run, s) ? -EAGAIN : 0;
}

void fake_stop(fake_server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thr, NULL);
    close(s->lfd);
}
