/*
 * config.h — icsd's settings: one struct, filled from the embedded
 * defaults, then a config file (--config FILE: `key = value` lines, the
 * keys being the long flag names without "--"), then the command line.
 *
 * config_set and config_parse are pure functions (no I/O, no allocation:
 * strings are copied into fixed arrays), so the fuzz driver
 * fuzz/fuzz_config.c runs them directly. Errors come back as -EINVAL with
 * a message "FILE:LINE: reason" (or "--flag: reason").
 */
#ifndef ICS_SERVER_CONFIG_H
#define ICS_SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_STR_MAX 512

struct icsd_config {
    char data[CONFIG_STR_MAX];      /* --data, default ./var/ics */
    char host[256];                 /* --listen HOST[:PORT], default 127.0.0.1 */
    uint32_t port;                  /* --port, default 11311; 0 = any */
    char port_file[CONFIG_STR_MAX]; /* --port-file */
    uint32_t threads;               /* --threads, 0 = one per core */
    int log_level;                  /* --log-level error|warn|info|debug (0..3) */
    uint32_t max_conns;             /* --max-conns */
    uint64_t max_conn_buffer;       /* --max-conn-buffer */
    uint32_t idle_timeout;          /* --idle-timeout seconds */
    uint64_t mem_limit;             /* --mem-limit bytes, 0 = none */
    int durability;                 /* --durability sync(0)|relaxed(1) */
    uint32_t relaxed_window_ms;     /* --relaxed-window-ms */
    char key_file[CONFIG_STR_MAX];  /* --key-file */
    int truncate_corrupt;           /* --truncate-corrupt */
    uint32_t history_len;           /* --history-len */
    uint64_t snapshot_log_bytes;    /* --snapshot-log-bytes */
    char anonymous[129];            /* --anonymous NAME */
    int allow_anonymous_remote;     /* --allow-anonymous-remote */
    int allow_plaintext_remote;     /* --allow-plaintext-remote */
    uint32_t pending_ttl;           /* --pending-ttl seconds */
    char tls_cert[CONFIG_STR_MAX];  /* --tls-cert, --tls-key, --tls-ca, --tls-crl */
    char tls_key[CONFIG_STR_MAX];
    char tls_ca[CONFIG_STR_MAX];
    char tls_crl[CONFIG_STR_MAX];
    uint32_t tls_port;              /* --tls-port, default 11312; 0 = any */
    int tls_only_13;                /* --tls-only-13 (default 1); false also allows TLS 1.2 */
    uint32_t key_rotate_interval;   /* --key-rotate-interval seconds, 0 = never */
    uint32_t auth_threads;          /* --auth-threads: SASL/PBKDF2 threads, default 1 */
    uint32_t busy_poll_us;          /* --busy-poll-us */
    uint32_t tls_handshake_timeout; /* --tls-handshake-timeout seconds, default 10 */
    char principals[CONFIG_STR_MAX]; /* --principals FILE: import at start (all or nothing) */
    uint32_t tls_max_handshakes;    /* --tls-max-handshakes per worker, default 256 */
};

void config_defaults(struct icsd_config *c);

/* Sets one setting by its long name (no "--"); value may be NULL for a
 * boolean flag. 0, or -EINVAL (unknown key, bad value) / -ENOENT (unknown
 * key) with err filled. */
int config_set(struct icsd_config *c, const char *key, const char *value, char *err,
               size_t errlen);

/* Whether a flag takes no value (booleans). */
int config_is_bool(const char *key);
/* 1 if key names a setting (config, the file's own flag, is not one). */
int config_known(const char *key);

/* Parses a whole config file text: `key = value` per line, '#' comments,
 * blank lines. Stops at the first bad line: -EINVAL with err =
 * "FILE:LINE: reason". */
int config_parse(struct icsd_config *c, const char *text, size_t len, const char *fname,
                 char *err, size_t errlen);

/* --help text. */
const char *config_usage(void);

#endif /* ICS_SERVER_CONFIG_H */
