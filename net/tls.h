/*
 * tls.h — TLS 1.3 with mutual X.509 authentication over memory buffers.
 *
 * Owns: the server side of TLS for icsd. BoringSSL does the protocol; this
 * module never touches a socket: the caller (the io_uring loop) moves
 * ciphertext, this module turns it into plaintext and back. A tls_ctx holds
 * the configuration (server cert/key, the CA that client certificates must
 * chain to, an optional CRL, the ticket keys); a tls_conn is one connection.
 *
 * Threads: a tls_ctx may be shared by every loop thread: tls_conn_new,
 * tls_conn_free, tls_ctx_reload and tls_ctx_rotate_tickets may be called
 * concurrently (a mutex guards the SSL_CTX swap and the ticket keys; the
 * only lock-free steps are reference counts, their orders named in tls.c).
 * A tls_conn belongs to one thread at a time. A busy connection keeps its
 * drained input buffer and output piece (16 + 32 KiB) from burst to burst;
 * tls_conn_trim frees them, so idle connections hold no buffers of this
 * module once the caller trims them (the loop does, from its tick).
 *
 * Per connection, in the loop (every call may queue ciphertext to send, so
 * after EACH of feed/read/write/shutdown check tls_conn_out):
 *
 *   c = tls_conn_new(ctx);                       NULL: -ENOMEM, refuse the fd
 *   on recv(buf, n > 0):
 *       r = tls_conn_feed(c, buf, n);            < 0: fatal; log tls_conn_error(c),
 *                                                send what tls_conn_out has (an
 *                                                alert), then close
 *       if (!tls_conn_ready(c)) goto send;       handshake still running; the
 *                                                caller bounds its duration and the
 *                                                number of concurrent handshakes
 *       once, when ready first becomes true:
 *           p = tls_conn_principal(c);           NULL: cert names no principal
 *           fp = tls_conn_fingerprint_hex(c);    compare to the principal's pin
 *           -> authenticate the connection as p (wire-v1 section 4)
 *       while ((r = tls_conn_read(c, plain, cap)) > 0)
 *           parse(plain, r) ...                  frames may straddle reads
 *       r < 0: -ENOTCONN = peer closed (close_notify), else fatal: close
 *       (or tls_conn_feed_lent(c, buf, n), the reads, then
 *       tls_conn_feed_end(c) before buf is reused: no copy of buf)
 *   to answer:   tls_conn_write(c, resp, n)      encrypts; never partial
 *   send:        n = tls_conn_out(c, &p); if (n) send(p, n);
 *                (or m = tls_conn_out_msg(c); sendmsg(m): one gathered
 *                send over every piece, e.g. IORING_OP_SENDMSG)
 *                on completion tls_conn_out_consume(c, sent)  (then repeat)
 *   quiet for a while (nothing in flight): tls_conn_trim(c)
 *   on recv == 0 / error / timeout: tls_conn_free(c)
 *
 * The pointer from tls_conn_out stays valid (it is never moved or freed)
 * until tls_conn_out_consume covers it or tls_conn_free, even if more
 * ciphertext is queued meanwhile: an asynchronous send may be in flight
 * while the connection keeps writing.
 *
 * Principal naming (docs/tls.md): the first subjectAltName URI of the form
 * "urn:ics:principal:NAME" names the principal NAME; without such a URI,
 * the subject CN does. NAME is 1..128 bytes without NUL; a URI or CN that
 * breaks this is ignored (no valid name at all: no principal).
 *
 * Reload (SIGHUP): tls_ctx_reload reads the files again and swaps in a new
 * SSL_CTX atomically; new connections use it, established connections keep
 * the SSL_CTX they started with (refcounted) until they are freed. On a
 * failed reload nothing changes. A reload also replaces the ticket keys, so
 * a session ticket issued before it (to a certificate maybe revoked since)
 * no longer resumes: its client does one full handshake.
 *
 * Errors: 0 or a negative errno, as everywhere in icsd. The reason a
 * handshake was refused ("certificate expired", "certificate revoked",
 * "certificate not trusted", "no client certificate", "protocol version
 * not allowed", "not TLS (plaintext client?)", ...) is a short static
 * string from tls_conn_error, meant for the log.
 */
#ifndef ICS_NET_TLS_H
#define ICS_NET_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tls_ctx;
struct tls_conn;
struct msghdr;

#define TLS_PRINCIPAL_MAX 128          /* bytes, as the wire's principal names */
#define TLS_FINGERPRINT_HEX_LEN 64     /* SHA-256, lowercase hex, plus a NUL */
#define TLS_OUT_IOV_MAX 8              /* pieces per tls_conn_out_msg (256 KiB) */

struct tls_cfg {
    const char *cert_file;   /* PEM: server certificate, then its chain */
    const char *key_file;    /* PEM: server private key */
    const char *ca_file;     /* PEM: the CA(s) client certificates must chain to */
    const char *crl_file;    /* PEM CRL(s) of that CA, or NULL: no revocation check */
    int allow_tls12;         /* 0 (default): TLS 1.3 only; 1: also TLS 1.2 */
    unsigned ticket_rotate_s;/* ticket key lifetime before rotation; 0 = 3600.
                                A ticket decrypts for up to 2 periods, then
                                the client falls back to a full handshake */
    int no_tickets;          /* 1: no session resumption at all */
    /* Allocation seam (tests fail the Nth allocation, as SQLite's do):
     * realloc semantics, n == 0 frees. NULL: libc. Covers this module's own
     * memory (contexts, connections, buffers), not BoringSSL's. */
    void *(*realloc_fn)(void *arg, void *p, size_t n);
    void *alloc_arg;
};

/* Makes a context from cfg (files are read now; cfg need not outlive the
 * call, its paths are copied for reload). On failure returns a negative
 * errno (-ENOENT, -EINVAL for a bad PEM or a key not matching the cert,
 * -ENOMEM) and, if err != NULL, a reason in err. */
int tls_ctx_create(struct tls_ctx **out, const struct tls_cfg *cfg,
                   char *err, size_t errlen);

/* SIGHUP: re-reads cert, key, CA and CRL from the configured paths. 0: new
 * connections use them; < 0: nothing changed, reason in err. */
int tls_ctx_reload(struct tls_ctx *ctx, char *err, size_t errlen);

/* Starts a new ticket key now; the previous one still decrypts, the one
 * before is forgotten. Also happens by itself every ticket_rotate_s seconds
 * (checked when a ticket is issued or presented); the loop need not call it. */
void tls_ctx_rotate_tickets(struct tls_ctx *ctx);

/* Frees the context once every connection made from it is freed too (the
 * BoringSSL objects are refcounted); no tls_conn_new may follow. */
void tls_ctx_destroy(struct tls_ctx *ctx);

/* A new server-side connection in the handshake state, or NULL (no memory). */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx);
void tls_conn_free(struct tls_conn *c);

/* Takes n bytes of ciphertext received from the peer (copied) and advances
 * the handshake. The bytes wait in the connection until tls_conn_read takes
 * them, so read after every feed (back-pressure is the caller's).
 * Returns 0, or negative: fatal, close after sending tls_conn_out:
 * -EACCES the client certificate was refused, -EPROTO not TLS / protocol
 * violation / version refused, -ENOMEM; tls_conn_error says why. */
int tls_conn_feed(struct tls_conn *c, const void *in, size_t n);

/* The same as tls_conn_feed without the copy, for a caller whose receive
 * buffer stays put for a moment: the tls_conn_read calls that follow read
 * the bytes where they are, and tls_conn_feed_end, which must come before
 * in is reused (and before any other feed), copies what they left unread
 * (a partial record). When unread input already waits, the bytes are
 * copied at once, as by tls_conn_feed. Same returns as tls_conn_feed. */
int tls_conn_feed_lent(struct tls_conn *c, const void *in, size_t n);

/* Ends a tls_conn_feed_lent: 0, or -ENOMEM (fatal, as from a feed), or the
 * error the connection already failed with. */
int tls_conn_feed_end(struct tls_conn *c);

/* Decrypts into out (cap bytes; one copy from the decrypted record). Returns bytes
 * (> 0), 0 when no complete record is waiting, -ENOTCONN once the peer
 * sent close_notify, or another negative errno (fatal). */
ssize_t tls_conn_read(struct tls_conn *c, void *out, size_t cap);

/* Encrypts n plaintext bytes (all of them, as full 16 KiB records) into the
 * outgoing ciphertext queue, after any post-handshake message BoringSSL
 * owes the peer (a KeyUpdate answer goes out ahead of the next write). 0, -EAGAIN before the handshake is complete,
 * or another negative errno (fatal). */
int tls_conn_write(struct tls_conn *c, const void *plain, size_t n);

/* Queues a close_notify alert (then send tls_conn_out and close). */
void tls_conn_shutdown(struct tls_conn *c);

/* Ciphertext waiting to be sent is a list of pieces (each up to 32 KiB, or
 * one big write). tls_conn_out sets *p to the first piece and returns its
 * length, 0 when nothing waits; after consuming it, call again. */
size_t tls_conn_out(struct tls_conn *c, const uint8_t **p);

/* The same as up to max iovecs, for one sendmsg/writev (io_uring
 * IORING_OP_SENDMSG); returns how many were filled. */
int tls_conn_out_iov(struct tls_conn *c, struct iovec *iov, int max);

/* One gathered send: a msghdr owned by c whose iovecs cover the first
 * pieces queued (up to TLS_OUT_IOV_MAX), NULL when nothing waits. It and
 * the bytes it points at stay valid, untouched, until the next
 * tls_conn_out_consume or tls_conn_free, even if more is written meanwhile,
 * so it may be handed to an asynchronous sendmsg (IORING_OP_SENDMSG reads
 * the msghdr when it runs). Call it again only after that send completed
 * and was consumed: each call refills the same msghdr. */
const struct msghdr *tls_conn_out_msg(struct tls_conn *c);

/* Total bytes queued (all pieces), e.g. for back-pressure. */
size_t tls_conn_out_pending(const struct tls_conn *c);

/* n bytes were sent, counted from the start of the queue (may span pieces;
 * more than is queued counts as all). */
void tls_conn_out_consume(struct tls_conn *c, size_t n);

/* Frees the input buffer and the output piece if nothing waits in them
 * (what a quiet connection would otherwise keep); never fails, and the
 * connection works on as before. Safe at any time: bytes not yet consumed
 * (a send in flight) stay where they are. */
void tls_conn_trim(struct tls_conn *c);

/* 1 once the handshake is complete (and the client certificate verified). */
int tls_conn_ready(const struct tls_conn *c);

/* 1 if the handshake resumed a session from a ticket (no certificate was
 * sent again: principal and fingerprint come from the ticket's session). */
int tls_conn_resumed(const struct tls_conn *c);

/* After ready: the principal named by the client certificate (see above),
 * NUL-terminated, owned by c; NULL if it names none. */
const char *tls_conn_principal(const struct tls_conn *c);

/* After ready: SHA-256 of the client's DER leaf certificate in lowercase
 * hex (64 chars + NUL), owned by c; NULL before. */
const char *tls_conn_fingerprint_hex(const struct tls_conn *c);

/* The negotiated version as "TLSv1.3" / "TLSv1.2", and cipher suite name. */
const char *tls_conn_version(const struct tls_conn *c);
const char *tls_conn_cipher(const struct tls_conn *c);

/* Why the connection failed, a static string; "" while nothing failed. */
const char *tls_conn_error(const struct tls_conn *c);

#ifdef __cplusplus
}
#endif
#endif
