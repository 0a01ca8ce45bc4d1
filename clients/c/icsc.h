/*
 * icsc.h — the C client library for icsd (wire protocol v1, ITU-T Y.4462).
 *
 * What it owns: one TCP (optionally TLS 1.3) connection per `icsc` handle,
 * the frames in flight on it, and the events (WATCH) that arrive between
 * responses. The frame codec (icsc_decode_frame, icsc_rd_*) is pure: no
 * sockets, no allocation, safe on any bytes (fuzzed by fuzz_client_decode).
 *
 * Return values, everywhere: 0 = OK; > 0 = a wire status the server sent
 * (ICSC_S_NOT_FOUND ...); < 0 = a local or transport error: a negative errno
 * (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for a malformed frame, ...) or
 * ICSC_E_UNKNOWN_OUTCOME: a change (MAP, DEMAP, PRINCIPAL_SET, ...) was sent
 * but no answer came (connection broke or timed out), so it may or may not
 * have been applied. icsc_strerror() names every one of them.
 *
 * Invariants: responses are matched to requests by order and opaque; a
 * change is never re-sent by the library once any byte of it was written.
 * Reads (inquiries, WHOAMI, STAT, ...) are retried once on a fresh connection
 * when the old one broke. Every call is bounded by the handle's timeout; a
 * timed-out connection is closed (its late answer could not be matched) and
 * reopened by the next call when reconnect is on.
 *
 * Threads: a handle is NOT thread-safe. Use one connection per thread; the
 * library has no global state (BoringSSL initialises itself), so any number
 * of handles may be used concurrently from different threads. Callbacks run
 * on the calling thread, inside the call that read the event.
 *
 * Strings: device IDs, URIs, UTIs and names are NUL-terminated C strings in
 * the convenience calls; icsc_call() takes raw (pointer, length) fields for
 * values that contain NUL bytes. Returned memory is owned by the caller and
 * freed with the matching *_free (or free() where said).
 */
#ifndef ICSC_H
#define ICSC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- wire constants (shared/spec/wire-v1.md) ---------------------------- */
#define ICSC_HDR_LEN 24
#define ICSC_MAX_BODY (1u << 20)

enum icsc_magic { ICSC_MAGIC_REQ = 0x80, ICSC_MAGIC_RES = 0x81, ICSC_MAGIC_EVT = 0x82 };

enum icsc_op {
    ICSC_OP_GET = 0x00, ICSC_OP_QUIT = 0x07, ICSC_OP_QUITQ = 0x17, ICSC_OP_GETQ = 0x09, ICSC_OP_NOOP = 0x0A,
    ICSC_OP_VERSION = 0x0B, ICSC_OP_GETK = 0x0C, ICSC_OP_GETKQ = 0x0D, ICSC_OP_STAT = 0x10,
    ICSC_OP_SASL_LIST_MECHS = 0x20, ICSC_OP_SASL_AUTH = 0x21,
    ICSC_OP_MAP = 0xC0, ICSC_OP_MAP_REQUEST = 0xC1, ICSC_OP_MAP_CONFIRM = 0xC2,
    ICSC_OP_MAP_REJECT = 0xC3, ICSC_OP_DEMAP = 0xC4, ICSC_OP_DEMAP_DEVICE = 0xC5,
    ICSC_OP_DEMAP_BINDING = 0xC6, ICSC_OP_DEMAP_SERVICE = 0xC7,
    ICSC_OP_INQUIRE_DEVICE = 0xC8, ICSC_OP_INQUIRE_BINDING = 0xC9, ICSC_OP_WATCH = 0xCA,
    ICSC_OP_EXPORT = 0xCB, ICSC_OP_KEY_ISSUE = 0xD0, ICSC_OP_KEY_VALIDATE = 0xD1,
    ICSC_OP_HISTORY = 0xD2, ICSC_OP_SNAPSHOT = 0xD3, ICSC_OP_WHOAMI = 0xD4,
    ICSC_OP_PREFS_SET = 0xD5, ICSC_OP_PREFS_GET = 0xD6, ICSC_OP_PRINCIPAL_SET = 0xD7,
    ICSC_OP_PRINCIPAL_DEL = 0xD8, ICSC_OP_PRINCIPAL_LIST = 0xD9,
};

enum icsc_event_code { ICSC_EV_MAP_PENDING = 0xE0, ICSC_EV_MAP_RESULT = 0xE1, ICSC_EV_DEMAPPED = 0xE2 };
enum icsc_event_mask { ICSC_W_MAP_PENDING = 1, ICSC_W_MAP_RESULT = 2, ICSC_W_DEMAPPED = 4 };

/* Wire status codes, returned as positive ints. */
enum icsc_status {
    ICSC_S_OK = 0x0000, ICSC_S_NOT_FOUND = 0x0001, ICSC_S_EXISTS = 0x0002,
    ICSC_S_TOO_LARGE = 0x0003, ICSC_S_EINVAL = 0x0004, ICSC_S_AUTH_ERROR = 0x0020,
    ICSC_S_ACCESS_DENIED = 0x0024, ICSC_S_UNKNOWN_COMMAND = 0x0081, ICSC_S_ENOMEM = 0x0082,
    ICSC_S_NOT_SUPPORTED = 0x0083, ICSC_S_INTERNAL = 0x0084, ICSC_S_TMPFAIL = 0x0086,
    ICSC_S_KEY_ROTATED = 0x00C1, ICSC_S_BAD_SIGNATURE = 0x00C2,
};

/* A change was sent but its outcome is unknown (no answer: broken or timed out). */
#define ICSC_E_UNKNOWN_OUTCOME (-10001)

enum icsc_role { ICSC_ROLE_ADMIN = 1, ICSC_ROLE_IOT_SP = 2, ICSC_ROLE_TPSP = 4,
                 ICSC_ROLE_GENERATOR = 8, ICSC_ROLE_VALIDATOR = 16 };

/* Names any return value of this library: 0, a wire status, or an error. */
const char *icsc_strerror(int rc);

/* ---- pure codec ---------------------------------------------------------- */

/* One decoded frame; pointers point into the caller's buffer. */
typedef struct icsc_frame {
    uint8_t magic, opcode; /* opcode: echoed opcode, or event code for 0x82 */
    uint16_t status;
    uint32_t opaque;
    uint64_t cas;
    const uint8_t *extras, *key, *value;
    size_t extras_len, key_len, value_len;
} icsc_frame;

/* Decodes one response or event frame from buf. Returns the frame's total
 * length (> 0) when complete, 0 when more bytes are needed, -EPROTO for bad
 * magic / data type / lengths, -EMSGSIZE for a body over max_body. Pure. */
int icsc_decode_frame(const uint8_t *buf, size_t len, size_t max_body, icsc_frame *f);

/* Writes a 24-byte request header. */
void icsc_encode_header(uint8_t out[ICSC_HDR_LEN], uint8_t magic, uint8_t opcode,
                        uint16_t key_len, uint8_t extras_len, uint16_t status,
                        uint32_t body_len, uint32_t opaque, uint64_t cas);

/* A bounds-checked reader over a value. Every read returns 0 or -EPROTO
 * (overrun); after an error every later read fails too. */
typedef struct icsc_rd { const uint8_t *p; size_t n; int err; } icsc_rd;
void icsc_rd_init(icsc_rd *r, const void *p, size_t n);
int icsc_rd_u8(icsc_rd *r, uint8_t *v);
int icsc_rd_u16(icsc_rd *r, uint16_t *v);
int icsc_rd_u32(icsc_rd *r, uint32_t *v);
int icsc_rd_u64(icsc_rd *r, uint64_t *v);
int icsc_rd_bytes(icsc_rd *r, size_t n, const uint8_t **p);
int icsc_rd_str16(icsc_rd *r, const uint8_t **p, size_t *len);

/* Validates a value of the given response opcode (or event code when
 * is_event) structurally: 0 or -EPROTO. Pure; used by the fuzzer and by
 * the library before it copies anything out. */
int icsc_validate_value(uint8_t opcode, int is_event, const uint8_t *v, size_t n);

/* ---- results ------------------------------------------------------------- */

typedef struct icsc_row {
    char *device;        /* set by EXPORT; NULL for INQUIRE_DEVICE */
    char *uri, *uti;     /* NUL-terminated copies */
    uint32_t expires_at; /* unix seconds, 0 = never */
} icsc_row;

typedef struct icsc_rows { size_t n; icsc_row *v; uint64_t next_cursor; uint64_t lsn; } icsc_rows;
void icsc_rows_free(icsc_rows *r);

typedef struct icsc_hist_entry {
    uint64_t micros; uint8_t event; /* 1 map 2 demap 3 inquiry 4 expiry */
    char *principal, *uri, *uti;
} icsc_hist_entry;
typedef struct icsc_history { size_t n; icsc_hist_entry *v; } icsc_hist;
void icsc_history_free(icsc_hist *h);

typedef struct icsc_principal { char *name; uint8_t roles; size_t nscopes; char **scopes; } icsc_principal;
typedef struct icsc_principals { size_t n; icsc_principal *v; } icsc_principals;
void icsc_principals_free(icsc_principals *p);

typedef struct icsc_window { uint8_t weekdays; uint16_t start_min, end_min; } icsc_window;
typedef struct icsc_prefs {
    uint32_t retention_s;
    size_t nallow, ndeny, nwindows;
    char **allow, **deny;
    icsc_window *windows;
} icsc_prefs;
void icsc_prefs_free(icsc_prefs *p);

typedef struct icsc_event {
    uint8_t code;          /* ICSC_EV_* */
    uint16_t status;       /* MAP_RESULT outcome */
    uint64_t lsn;
    uint8_t key[128]; size_t key_len; /* request ID (16 bytes) or device ID */
    char *a, *b, *c;       /* PENDING: serial, uri, uti; RESULT: device/reason; DEMAPPED: uri, uti */
} icsc_event;
void icsc_event_clear(icsc_event *e);

/* ---- connection ---------------------------------------------------------- */

typedef struct icsc icsc;

typedef struct icsc_opts {
    const char *host;       /* default "127.0.0.1" */
    uint16_t port;          /* default 11311 */
    const char *user;       /* SASL PLAIN authcid; NULL: no SASL (TLS cert or anonymous) */
    const char *secret;
    const char *tls_ca;     /* PEM CA file: non-NULL turns TLS on */
    const char *tls_cert;   /* client certificate (PEM), optional */
    const char *tls_key;    /* its private key (PEM) */
    const char *tls_server_name; /* SNI / name checked; default host */
    int timeout_ms;         /* per call; 0 = 5000; < 0 = none */
    int no_reconnect;       /* 1: report a broken connection instead of reopening */
} icsc_opts;

/* Connects, and authenticates when opts->user is set. *out is NULL on error. */
int icsc_connect(icsc **out, const icsc_opts *opts);
void icsc_close(icsc *c);
/* The server's message of the last non-OK response (may be ""). */
const char *icsc_last_message(const icsc *c);
/* The CAS (LSN) of the last response. */
uint64_t icsc_last_lsn(const icsc *c);
void icsc_set_timeout(icsc *c, int timeout_ms);
/* How many times the handle reopened its connection. */
unsigned icsc_reconnects(const icsc *c);

/* Generic call: raw fields in, the response value copied to *value (malloc'd,
 * NUL-appended, caller frees) when value != NULL. Returns as above. */
int icsc_call(icsc *c, uint8_t opcode, const void *extras, size_t extras_len,
              const void *key, size_t key_len, const void *val, size_t val_len,
              uint64_t cas, uint8_t **value, size_t *value_len);

int icsc_noop(icsc *c);
int icsc_version(icsc *c, char **version);                 /* free() it */
int icsc_sasl_plain(icsc *c, const char *user, const char *secret);
/* STAT: calls cb once per stat; group may be NULL. */
int icsc_stat(icsc *c, const char *group,
              void (*cb)(void *arg, const char *name, const char *value), void *arg);
int icsc_get(icsc *c, const char *device, icsc_rows *rows);  /* memcached GET */

/* cas: 0, or apply only if the row's LSN equals it. owner may be NULL. *lsn may be NULL. */
int icsc_map(icsc *c, const char *device, const char *uri, const char *uti,
             uint32_t ttl_s, const char *owner, uint64_t cas, uint64_t *lsn);
int icsc_map_request(icsc *c, const char *serial, const char *uri, const char *uti,
                     uint32_t ttl_s, uint8_t request_id[16]);
int icsc_map_confirm(icsc *c, const uint8_t request_id[16], const char *device, uint64_t *lsn);
int icsc_map_reject(icsc *c, const uint8_t request_id[16], const char *reason);
int icsc_demap(icsc *c, const char *device, const char *uri, const char *uti, uint64_t cas,
               uint64_t *lsn);
int icsc_demap_device(icsc *c, const char *device, uint32_t *removed);
int icsc_demap_binding(icsc *c, const char *uri, const char *uti);
int icsc_demap_service(icsc *c, const char *uri, uint32_t *removed);
int icsc_inquire_device(icsc *c, const char *device, icsc_rows *rows);
int icsc_inquire_binding(icsc *c, const char *uri, const char *uti, char **device); /* free() */
int icsc_export(icsc *c, uint64_t cursor, uint32_t max_rows, icsc_rows *rows);
int icsc_key_issue(icsc *c, uint16_t count, uint8_t **batch, size_t *batch_len); /* free() */
int icsc_key_validate(icsc *c, const uint8_t *batch, size_t batch_len);
int icsc_history(icsc *c, const char *device, uint32_t max, icsc_hist *h);
int icsc_snapshot(icsc *c, uint64_t *lsn);
int icsc_whoami(icsc *c, char **principal, char **role);      /* free() both */
int icsc_prefs_set(icsc *c, const char *device, const icsc_prefs *p);
int icsc_prefs_get(icsc *c, const char *device, icsc_prefs *p);
/* scopes: nscopes strings; secret/fingerprint may be NULL (empty). */
int icsc_principal_set(icsc *c, const char *name, uint8_t roles, const char *secret,
                       const char *fingerprint, const char *const *scopes, size_t nscopes);
int icsc_principal_del(icsc *c, const char *name);
int icsc_principal_list(icsc *c, icsc_principals *out);

/* ---- WATCH --------------------------------------------------------------- */

typedef void (*icsc_event_cb)(void *arg, const icsc_event *ev);
/* With a callback set, events are delivered to it (during any call) instead
 * of being queued for icsc_poll_event. The event is valid during the call. */
void icsc_set_event_cb(icsc *c, icsc_event_cb cb, void *arg);
/* Asks for events (mask of ICSC_W_*); re-armed automatically on reconnect. */
int icsc_watch(icsc *c, uint32_t mask);
/* Waits up to timeout_ms (< 0: the handle's timeout) for one event.
 * 0 and *ev filled (icsc_event_clear it), -ETIMEDOUT, or an error. */
int icsc_poll_event(icsc *c, icsc_event *ev, int timeout_ms);

/* ---- pipelining ---------------------------------------------------------- */

/* A batch queues requests, sends them all at once and collects every result
 * in order, without a round trip each. Bound to one connection. A batch is
 * never re-sent on reconnect: if the connection breaks mid-batch, results
 * not received are ICSC_E_UNKNOWN_OUTCOME (changes) or -ECONNRESET (reads). */
typedef struct icsc_batch icsc_batch;
icsc_batch *icsc_batch_new(icsc *c);
void icsc_batch_free(icsc_batch *b);
void icsc_batch_reset(icsc_batch *b);  /* forget requests and results */
/* Queues a raw request; returns its index (>= 0) or -ENOMEM / -EMSGSIZE. */
int icsc_batch_add(icsc_batch *b, uint8_t opcode, const void *extras, size_t extras_len,
                   const void *key, size_t key_len, const void *val, size_t val_len,
                   uint64_t cas);
int icsc_batch_add_map(icsc_batch *b, const char *device, const char *uri, const char *uti,
                       uint32_t ttl_s);
int icsc_batch_add_inquire_device(icsc_batch *b, const char *device);
int icsc_batch_add_inquire_binding(icsc_batch *b, const char *uri, const char *uti);
int icsc_batch_add_demap(icsc_batch *b, const char *device, const char *uri, const char *uti);
/* Sends everything queued and reads every response. Returns 0 when the
 * exchange completed (each result has its own status), or an error. */
int icsc_batch_flush(icsc_batch *b);
size_t icsc_batch_count(const icsc_batch *b);
/* Result i: status (as a call returns), LSN, and the value (valid until reset/free). */
int icsc_batch_status(const icsc_batch *b, size_t i);
uint64_t icsc_batch_lsn(const icsc_batch *b, size_t i);
const uint8_t *icsc_batch_value(const icsc_batch *b, size_t i, size_t *len);

/* ---- streaming pipeline ---------------------------------------------------- */

/* For a steady stream (load generators, bulk loaders): keep N requests in
 * flight and take answers one by one in request order, sending more as
 * answers come. icsc_pipe_send queues a request (written as the socket
 * accepts it) and returns 0 or an error; icsc_pipe_recv
 * returns 0 and the next response in *f (pointers valid until the next
 * icsc_pipe_recv or call), writing queued requests while it waits. No
 * retry and no reconnect here: on a transport error every request in flight
 * is lost (changes among them have an unknown outcome) and the connection
 * is closed; the next ordinary call reopens it. Do not mix with ordinary
 * calls while requests are in flight. */
int icsc_pipe_send(icsc *c, uint8_t opcode, const void *extras, size_t extras_len,
                   const void *key, size_t key_len, const void *val, size_t val_len, uint64_t cas);
int icsc_pipe_recv(icsc *c, icsc_frame *f, int timeout_ms);
size_t icsc_pipe_in_flight(const icsc *c);

/* ---- helpers ------------------------------------------------------------- */
/* Parses "admin,iot_sp,..." into a role mask: >= 0, or -EINVAL. */
int icsc_roles_parse(const char *s);

#ifdef __cplusplus
}
#endif
#endif
