/*
 * loop.h — the network side of icsd: io_uring workers serving wire-v1.
 *
 * Owns: the listening sockets, one worker thread per core (each with its
 * own io_uring, provided-buffer ring, listening socket bound with
 * SO_REUSEPORT and its own connections: shared-nothing), the per-request
 * dispatch (net/handlers.c), the two-phase flow's events and the WATCH
 * registry. With TLS (net/tls.h) a second set of listening sockets serves
 * the same protocol inside TLS 1.3: the loop moves ciphertext, a client
 * certificate naming a principal authenticates the connection. Depends on the engine (read directly, lock-free, by every
 * worker), the store (every change), the policy modules and TLS.
 *
 * Completion paths: a change is handed to the store with a heap message as
 * its done argument; the store thread pushes that message on the owning
 * worker's lock-free MPSC queue and wakes the worker through an eventfd the
 * worker keeps a read armed on. The message names the connection by
 * {slot, generation}, never by pointer, so a connection closed meanwhile
 * just drops it. SASL secrets are verified on an auth thread the same way.
 *
 * Threads: loop_create / loop_start / loop_stop / loop_destroy from one
 * control thread (the daemon's main). loop_store_listener is the store's
 * change listener (writer lane). Everything else runs on workers.
 */
#ifndef ICS_NET_LOOP_H
#define ICS_NET_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

struct principal_reg;
struct pending;
struct mailbox;
struct keys;
struct tls_ctx;

enum loop_log_level { LOOP_LOG_ERROR = 0, LOOP_LOG_WARN, LOOP_LOG_INFO, LOOP_LOG_DEBUG };

struct loop_config {
    const char *host;             /* listen address, default "127.0.0.1" */
    uint16_t port;                /* 0: the OS picks (loop_port tells) */
    unsigned threads;             /* workers; 0 = one per online CPU */
    uint32_t max_conns;           /* whole server; 0 = 4096 */
    size_t max_conn_buffer;       /* output bytes queued per connection; 0 = 8 MiB */
    uint32_t idle_timeout_s;      /* incomplete frame / stuck send; 0 = 60 */
    const char *anonymous;        /* principal an unauthenticated conn acts as, or NULL */
    int allow_anonymous_remote;
    int allow_plaintext_remote;
    uint32_t auth_threads;        /* SASL verifiers; 0 = 1 */
    uint32_t busy_poll_us;        /* adaptive polling bound (loop.c: poll_wait); 0: never (default) */
    /* TLS listener (when deps.tls is set): its own sockets, same workers. */
    const char *tls_host;         /* default: host */
    uint16_t tls_port;            /* 0: the OS picks (loop_tls_port tells) */
    uint32_t max_handshakes;      /* concurrent TLS handshakes per worker; 0 = 256 */
    uint32_t handshake_timeout_s; /* 0 = 10 */
    const char *version;          /* VERSION answer, e.g. "1.0.0" */
    void (*log)(void *ctx, enum loop_log_level lvl, const char *msg);
    void *log_ctx;
};

/* What the workers use; the daemon creates and owns each of these. */
struct loop_deps {
    engine_t *engine;
    store_t *store;
    struct principal_reg *reg;
    struct pending *pending;      /* NULL: MAP_REQUEST & co answer NOT_SUPPORTED */
    struct mailbox *mailbox;      /* NULL: events to non-watchers are dropped */
    struct keys *keys;            /* NULL: KEY_* answer NOT_SUPPORTED */
    struct tls_ctx *tls;          /* NULL: plaintext */
};

typedef struct loop loop_t;

/* Validates the configuration (plaintext on a non-loopback address needs
 * allow_plaintext_remote; anonymous likewise) and binds the listening
 * sockets. -EINVAL with a logged reason, -EADDRINUSE, -ENOMEM, ... */
int loop_create(loop_t **out, const struct loop_config *cfg, const struct loop_deps *deps);
uint16_t loop_port(const loop_t *l);      /* the bound port */
uint16_t loop_tls_port(const loop_t *l);  /* the TLS port, 0 without TLS */
int loop_start(loop_t *l);                /* starts the workers */
/* Stops accepting, lets in-flight changes finish and their responses go
 * out (bounded by a few seconds), closes every connection, joins. */
void loop_stop(loop_t *l);
void loop_destroy(loop_t *l);             /* after loop_stop; NULL ok */

/* The store's change listener (store_set_listener(s, loop_store_listener,
 * l)): DEMAPPED events to the watching owner iot_sp and tpsp. */
void loop_store_listener(void *arg, const struct store_change *c);

#ifdef __cplusplus
}
#endif
#endif /* ICS_NET_LOOP_H */
