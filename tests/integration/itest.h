/*
 * itest.h — helpers for the integration tests: start the build's icsd on a
 * temporary data directory with --port 0 --port-file, read its admin.cred,
 * talk raw wire-v1 frames over real sockets, stop it with SIGTERM and
 * check it exits 0. Every wait is bounded (a hung server fails the test,
 * never hangs it).
 */
#ifndef ICS_ITEST_H
#define ICS_ITEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "wire.h"

struct itest_srv {
    pid_t pid;
    char dir[256];       /* temp dir: data/, log, port */
    char data[300];
    uint16_t port;
    char secret[256];    /* admin secret from admin.cred */
};

/* Starts icsd with a fresh temp dir (or the existing s->dir if reuse) and
 * extra args (NULL-terminated, may be NULL). Exits 1 on failure. */
void itest_start(struct itest_srv *s, const char *const *extra);
void itest_restart(struct itest_srv *s, const char *const *extra);
/* SIGTERM and wait (bounded); returns the exit status (0 = clean). */
int itest_stop(struct itest_srv *s);
void itest_kill(struct itest_srv *s);          /* SIGKILL (crash) */
void itest_cleanup(struct itest_srv *s);       /* rm -rf the temp dir */
void itest_raise_nofile(void);

struct itest_resp {
    uint8_t magic, opcode, extlen;
    uint16_t status, keylen;
    uint32_t opaque, value_len;
    uint64_t cas;
    uint8_t ext[256];
    uint8_t key[1100];
    uint8_t *value;      /* malloc'd, NUL-terminated; freed by the next read */
};

int itest_connect(const struct itest_srv *s);  /* exits 1 on failure */
/* Connects and authenticates as name/secret (admin if name NULL). */
int itest_login(const struct itest_srv *s, const char *name, const char *secret);
int itest_send(int fd, const void *p, size_t n);
int itest_req(int fd, uint8_t op, uint32_t opaque, uint64_t cas, const void *ext, uint8_t el,
              const void *key, uint16_t kl, const void *val, uint32_t vl);
/* Reads one frame (any magic); 0, or -1 on EOF/timeout/garbage. */
int itest_read(int fd, struct itest_resp *r);
/* Request then response; returns the status (or -1). */
int itest_call(int fd, struct itest_resp *r, uint8_t op, uint64_t cas, const void *ext,
               uint8_t el, const void *key, uint16_t kl, const void *val, uint32_t vl);
/* 1 if the peer closed the connection within ms milliseconds. */
int itest_closed(int fd, int ms);
int itest_auth(int fd, const char *name, const char *secret);

/* Value builders. */
void itest_s16(struct buf *b, const char *s);
/* MAP as admin: device, URI, UTI (owner may be NULL); returns status. */
int itest_map(int fd, const char *dev, const char *uri, const char *uti, const char *owner,
              uint64_t *lsn);
/* PRINCIPAL_SET: roles, secret, scopes (NULL-terminated); returns status. */
int itest_principal(int fd, const char *name, uint8_t roles, const char *secret,
                    const char *const *scopes);
void itest_resp_free(struct itest_resp *r);

#endif
