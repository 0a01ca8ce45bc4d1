/* itest.c — see itest.h. */
#include "itest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ICSD_PATH
#error "ICSD_PATH must name the icsd binary"
#endif

#define DIE(...) do { fprintf(stderr, "itest: " __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void itest_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Servers still running when the test exits (a failed CHECK calls exit)
 * are killed, so a failing test never leaves an icsd behind. */
#define MAX_SRV 16
static pid_t live[MAX_SRV];

static void kill_live(void)
{
    for (int i = 0; i < MAX_SRV; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void track(pid_t pid, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_live);
        registered = 1;
    }
    for (int i = 0; i < MAX_SRV; i++)
        if (add ? live[i] == 0 : live[i] == pid) {
            live[i] = add ? pid : 0;
            return;
        }
}

static void read_cred(struct itest_srv *s)
{
    char path[400];
    snprintf(path, sizeof path, "%s/admin.cred", s->data);
    FILE *f = fopen(path, "r");
    if (!f)
        DIE("no %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        DIE("admin.cred mode %o is not 0600", st.st_mode & 0777);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "secret=", 7))
            snprintf(s->secret, sizeof s->secret, "%s", line + 7);
    }
    fclose(f);
    if (!s->secret[0])
        DIE("admin.cred without secret");
}

static void spawn(struct itest_srv *s, const char *const *extra)
{
    char portf[400], logf[400];
    snprintf(portf, sizeof portf, "%s/port", s->dir);
    snprintf(logf, sizeof logf, "%s/log", s->dir);
    unlink(portf);
    const char *argv[64];
    int n = 0;
    argv[n++] = ICSD_PATH;
    argv[n++] = "--data";
    argv[n++] = s->data;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = portf;
    argv[n++] = "--threads";
    argv[n++] = "2";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        DIE("fork: %s", strerror(errno));
    if (pid == 0) {
        /* And if the test is killed (ctest timeout), the server dies too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execv(ICSD_PATH, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    track(pid, 1);
    uint64_t t0 = now_ms();
    for (;;) {
        FILE *f = fopen(portf, "r");
        unsigned p = 0;
        if (f) {
            int ok = fscanf(f, "%u", &p) == 1;
            fclose(f);
            if (ok && p) {
                s->port = (uint16_t)p;
                break;
            }
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            char cmd[500];
            snprintf(cmd, sizeof cmd, "cat %s >&2", logf);
            if (system(cmd) < 0) {}
            DIE("icsd exited during start (status %d)", st);
        }
        if (now_ms() - t0 > 20000)
            DIE("icsd did not write its port file in 20 s");
        usleep(10000);
    }
    read_cred(s);
}

void itest_start(struct itest_srv *s, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/icsd-itest-XXXXXX");
    if (!mkdtemp(s->dir))
        DIE("mkdtemp: %s", strerror(errno));
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    itest_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    spawn(s, extra);
}

void itest_restart(struct itest_srv *s, const char *const *extra)
{
    spawn(s, extra);
}

int itest_stop(struct itest_srv *s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    uint64_t t0 = now_ms();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            track(s->pid, 0);
            break;
        }
        if (now_ms() - t0 > 20000) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            track(s->pid, 0);
            s->pid = 0;
            fprintf(stderr, "itest: icsd did not stop within 20 s of SIGTERM\n");
            return -1;
        }
        usleep(10000);
    }
    s->pid = 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    fprintf(stderr, "itest: icsd died by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return -1;
}

void itest_kill(struct itest_srv *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        track(s->pid, 0);
        s->pid = 0;
    }
}

void itest_cleanup(struct itest_srv *s)
{
    if (s->pid > 0)
        itest_kill(s);
    if (s->dir[0] && !getenv("ITEST_KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) < 0) {}
    }
}

int itest_connect(const struct itest_srv *s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        DIE("socket: %s", strerror(errno));
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        DIE("connect 127.0.0.1:%u: %s", s->port, strerror(errno));
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int itest_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int itest_req(int fd, uint8_t op, uint32_t opaque, uint64_t cas, const void *ext, uint8_t el,
              const void *key, uint16_t kl, const void *val, uint32_t vl)
{
    struct buf b = BUF_INIT;
    int rc = wire_put_request(&b, op, opaque, cas, ext, el, key, kl, val, vl);
    if (rc == 0)
        rc = itest_send(fd, b.p, b.len);
    buf_free(&b);
    return rc;
}

static int read_full(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

void itest_resp_free(struct itest_resp *r)
{
    free(r->value);
    r->value = NULL;
}

int itest_read(int fd, struct itest_resp *r)
{
    uint8_t h[24];
    free(r->value);
    r->value = NULL;
    if (read_full(fd, h, 24) < 0)
        return -1;
    r->magic = h[0];
    r->opcode = h[1];
    r->keylen = wire_be16(h + 2);
    r->extlen = h[4];
    r->status = wire_be16(h + 6);
    uint32_t body = wire_be32(h + 8);
    r->opaque = wire_be32(h + 12);
    r->cas = wire_be64(h + 16);
    if (r->magic < 0x81 || r->magic > 0x82 || body > (64u << 20) ||
        (uint32_t)r->extlen + r->keylen > body || r->keylen > sizeof r->key)
        return -1;
    if (read_full(fd, r->ext, r->extlen) < 0 || read_full(fd, r->key, r->keylen) < 0)
        return -1;
    r->value_len = body - r->extlen - r->keylen;
    r->value = malloc(r->value_len + 1);
    if (!r->value || read_full(fd, r->value, r->value_len) < 0)
        return -1;
    r->value[r->value_len] = 0;
    return 0;
}

int itest_call(int fd, struct itest_resp *r, uint8_t op, uint64_t cas, const void *ext,
               uint8_t el, const void *key, uint16_t kl, const void *val, uint32_t vl)
{
    static uint32_t opaque = 1000;
    uint32_t o = ++opaque;
    if (itest_req(fd, op, o, cas, ext, el, key, kl, val, vl) < 0)
        return -1;
    for (;;) {
        if (itest_read(fd, r) < 0)
            return -1;
        if (r->magic == WIRE_MAGIC_EVT)
            continue; /* events may interleave; tests reading them use itest_read */
        if (r->opcode != op || r->opaque != o) {
            fprintf(stderr, "itest: response op %02x opaque %u, expected %02x %u\n", r->opcode,
                    r->opaque, op, o);
            return -1;
        }
        return r->status;
    }
}

int itest_closed(int fd, int ms)
{
    uint64_t t0 = now_ms();
    uint8_t b[4096];
    while (now_ms() - t0 < (uint64_t)ms) {
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, 50);
        if (n > 0) {
            ssize_t r = recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return 1;
        }
    }
    return 0;
}

int itest_auth(int fd, const char *name, const char *secret)
{
    char v[512];
    int n = snprintf(v, sizeof v, "%c%s%c%s", 0, name, 0, secret);
    struct itest_resp r = {0};
    int st = itest_call(fd, &r, WIRE_OP_SASL_AUTH, 0, NULL, 0, "PLAIN", 5, v, (uint32_t)n);
    itest_resp_free(&r);
    return st;
}

int itest_login(const struct itest_srv *s, const char *name, const char *secret)
{
    int fd = itest_connect(s);
    int st = itest_auth(fd, name ? name : "admin", name ? secret : s->secret);
    if (st != 0)
        DIE("login as %s: status %d", name ? name : "admin", st);
    return fd;
}

void itest_s16(struct buf *b, const char *s)
{
    if (buf_put_str16(b, s, strlen(s)) < 0)
        DIE("buf");
}

int itest_map(int fd, const char *dev, const char *uri, const char *uti, const char *owner,
              uint64_t *lsn)
{
    struct buf v = BUF_INIT;
    itest_s16(&v, uri);
    itest_s16(&v, uti);
    if (owner)
        itest_s16(&v, owner);
    struct itest_resp r = {0};
    int st = itest_call(fd, &r, WIRE_OP_MAP, 0, NULL, 0, dev, (uint16_t)strlen(dev), v.p,
                        (uint32_t)v.len);
    if (lsn)
        *lsn = r.cas;
    itest_resp_free(&r);
    buf_free(&v);
    return st;
}

int itest_principal(int fd, const char *name, uint8_t roles, const char *secret,
                    const char *const *scopes)
{
    struct buf v = BUF_INIT;
    buf_put_u8(&v, roles);
    itest_s16(&v, secret ? secret : "");
    itest_s16(&v, "");
    uint16_t n = 0;
    while (scopes && scopes[n])
        n++;
    buf_put_u16(&v, n);
    for (uint16_t i = 0; i < n; i++)
        itest_s16(&v, scopes[i]);
    struct itest_resp r = {0};
    int st = itest_call(fd, &r, WIRE_OP_PRINCIPAL_SET, 0, NULL, 0, name, (uint16_t)strlen(name),
                        v.p, (uint32_t)v.len);
    if (st != 0)
        fprintf(stderr, "itest: PRINCIPAL_SET %s: %d %s\n", name, st, r.value ? (char *)r.value : "");
    if (st == 0 && r.cas == 0) { /* wire-v1 3.3: CAS = the change's LSN */
        fprintf(stderr, "itest: PRINCIPAL_SET %s answered CAS 0, not its LSN\n", name);
        st = -1;
    }
    itest_resp_free(&r);
    buf_free(&v);
    return st;
}
