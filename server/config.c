/*
 * config.c — defaults, the `key = value` file parser and the one table of
 * settings shared by the file and the command line (see config.h).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_defaults(struct icsd_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->data, sizeof c->data, "./var/ics");
    snprintf(c->host, sizeof c->host, "127.0.0.1");
    c->port = 11311;
    c->log_level = 2;
    c->max_conns = 4096;
    c->max_conn_buffer = 8u << 20;
    c->idle_timeout = 60;
    c->relaxed_window_ms = 10;
    c->history_len = 16;
    c->pending_ttl = 600;
    c->tls_port = 11312;
    c->tls_only_13 = 1;
    c->auth_threads = 1;
    c->tls_handshake_timeout = 10;
    c->tls_max_handshakes = 256;
}

enum kind { K_STR, K_U32, K_SIZE, K_BOOL, K_LEVEL, K_DURABILITY, K_LISTEN };

static const struct setting {
    const char *name;
    enum kind kind;
    size_t off, size;
    const char *help;
} settings[] = {
#define S(n, k, f, h) {n, k, offsetof(struct icsd_config, f), sizeof(((struct icsd_config *)0)->f), h}
    S("data", K_STR, data, "DIR   data directory (default ./var/ics)"),
    S("listen", K_LISTEN, host, "HOST[:PORT]   listen address (default 127.0.0.1:11311)"),
    S("port", K_U32, port, "N   listen port (0: any; see --port-file)"),
    S("port-file", K_STR, port_file, "FILE   write the bound port there once listening"),
    S("threads", K_U32, threads, "N   worker threads (default: one per core)"),
    S("log-level", K_LEVEL, log_level, "error|warn|info|debug   (default info)"),
    S("max-conns", K_U32, max_conns, "N   connections at most (default 4096)"),
    S("max-conn-buffer", K_SIZE, max_conn_buffer,
      "BYTES   output queued per connection before it is closed (default 8M)"),
    S("idle-timeout", K_U32, idle_timeout,
      "S   close a connection stuck on an incomplete frame or not reading (default 60)"),
    S("mem-limit", K_SIZE, mem_limit, "BYTES   engine memory limit: changes answer ENOMEM (0: none)"),
    S("durability", K_DURABILITY, durability, "sync|relaxed   (default sync: ack after fdatasync)"),
    S("relaxed-window-ms", K_U32, relaxed_window_ms, "MS   relaxed mode bound (default 10)"),
    S("key-file", K_STR, key_file, "FILE   32-byte key: encrypt the log and snapshots at rest"),
    S("truncate-corrupt", K_BOOL, truncate_corrupt, "   truncate the log at a corrupt record"),
    S("history-len", K_U32, history_len, "N   history entries kept per device (default 16)"),
    S("snapshot-log-bytes", K_SIZE, snapshot_log_bytes, "BYTES   snapshot when the log passes it"),
    S("anonymous", K_STR, anonymous, "NAME   unauthenticated connections act as NAME (loopback)"),
    S("allow-anonymous-remote", K_BOOL, allow_anonymous_remote, "   allow --anonymous off loopback"),
    S("allow-plaintext-remote", K_BOOL, allow_plaintext_remote,
      "   allow plaintext on a non-loopback address"),
    S("pending-ttl", K_U32, pending_ttl, "S   two-phase map requests expire (default 600)"),
    S("tls-cert", K_STR, tls_cert, "FILE   server certificate chain (PEM): enables TLS"),
    S("tls-key", K_STR, tls_key, "FILE   server private key (PEM)"),
    S("tls-ca", K_STR, tls_ca, "FILE   CA for client certificates (PEM)"),
    S("tls-crl", K_STR, tls_crl, "FILE   CRL of that CA (PEM)"),
    S("key-rotate-interval", K_U32, key_rotate_interval,
      "S   rotate the KEY_ISSUE signing key this often (0: never)"),
    S("busy-poll-us", K_U32, busy_poll_us,
      "US   poll, not sleep, for a lone client that turns around within this (default 0: never)"),
    S("auth-threads", K_U32, auth_threads,
      "N   threads verifying SASL secrets off the event loop (default 1)"),
    S("tls-handshake-timeout", K_U32, tls_handshake_timeout,
      "S   close a TLS connection whose handshake takes longer (default 10)"),
    S("tls-max-handshakes", K_U32, tls_max_handshakes,
      "N   TLS handshakes in progress per worker; more are refused (default 256)"),
    S("principals", K_STR, principals,
      "FILE   create or replace the principals listed there at start (all or nothing)"),
    S("tls-only-13", K_BOOL, tls_only_13,
      "   TLS 1.3 only (default); --tls-only-13=false also allows TLS 1.2"),
    S("tls-port", K_U32, tls_port, "N   TLS listener port on the listen host (default 11312; 0: any)"),
#undef S
};

#define NSET (sizeof settings / sizeof settings[0])

static const struct setting *find(const char *key)
{
    for (size_t i = 0; i < NSET; i++)
        if (strcmp(settings[i].name, key) == 0)
            return &settings[i];
    return NULL;
}

int config_known(const char *key)
{
    return find(key) != NULL;
}

int config_is_bool(const char *key)
{
    const struct setting *s = find(key);
    return s && s->kind == K_BOOL;
}

static int parse_u64(const char *v, uint64_t *out, int sizes)
{
    if (!v || !*v || !isdigit((unsigned char)*v))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno)
        return -EINVAL;
    uint64_t mul = 1;
    if (sizes && *end) {
        switch (toupper((unsigned char)*end)) {
        case 'K': mul = 1ull << 10; break;
        case 'M': mul = 1ull << 20; break;
        case 'G': mul = 1ull << 30; break;
        default: return -EINVAL;
        }
        end++;
        if (toupper((unsigned char)*end) == 'B' || toupper((unsigned char)*end) == 'I')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
    }
    if (*end)
        return -EINVAL;
    if (x > UINT64_MAX / mul)
        return -EINVAL;
    *out = x * mul;
    return 0;
}

int config_set(struct icsd_config *c, const char *key, const char *value, char *err,
               size_t errlen)
{
    const struct setting *s = find(key);
    if (!s) {
        snprintf(err, errlen, "unknown setting '%s'", key);
        return -ENOENT;
    }
    char *f = (char *)c + s->off;
    uint64_t u;
    switch (s->kind) {
    case K_STR:
        if (!value || strlen(value) >= s->size) {
            snprintf(err, errlen, "%s: value missing or too long", key);
            return -EINVAL;
        }
        memcpy(f, value, strlen(value) + 1);
        return 0;
    case K_U32:
        if (parse_u64(value, &u, 0) < 0 || u > UINT32_MAX) {
            snprintf(err, errlen, "%s: expected a number, got '%s'", key, value ? value : "");
            return -EINVAL;
        }
        if (strcmp(key, "auth-threads") == 0 && (u < 1 || u > 64)) {
            snprintf(err, errlen, "auth-threads: 1..64");
            return -EINVAL;
        }
        if ((strcmp(key, "port") == 0 || strcmp(key, "tls-port") == 0) && u > 65535) {
            snprintf(err, errlen, "port: %llu is not a TCP port", (unsigned long long)u);
            return -EINVAL;
        }
        *(uint32_t *)(void *)f = (uint32_t)u;
        return 0;
    case K_SIZE:
        if (parse_u64(value, &u, 1) < 0) {
            snprintf(err, errlen, "%s: expected a size (e.g. 64M), got '%s'", key,
                     value ? value : "");
            return -EINVAL;
        }
        *(uint64_t *)(void *)f = u;
        return 0;
    case K_BOOL:
        if (!value || !strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") ||
            !strcmp(value, "on"))
            *(int *)(void *)f = 1;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") ||
                 !strcmp(value, "off"))
            *(int *)(void *)f = 0;
        else {
            snprintf(err, errlen, "%s: expected true or false, got '%s'", key, value);
            return -EINVAL;
        }
        return 0;
    case K_LEVEL: {
        static const char *lv[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++)
            if (value && !strcmp(value, lv[i])) {
                *(int *)(void *)f = i;
                return 0;
            }
        snprintf(err, errlen, "log-level: expected error, warn, info or debug");
        return -EINVAL;
    }
    case K_DURABILITY:
        if (value && !strcmp(value, "sync"))
            c->durability = 0;
        else if (value && !strcmp(value, "relaxed"))
            c->durability = 1;
        else {
            snprintf(err, errlen, "durability: expected sync or relaxed");
            return -EINVAL;
        }
        return 0;
    case K_LISTEN: {
        if (!value || !*value) {
            snprintf(err, errlen, "listen: expected HOST[:PORT]");
            return -EINVAL;
        }
        const char *colon = strrchr(value, ':');
        size_t hl = strlen(value);
        const char *port = NULL;
        if (value[0] == '[') { /* [v6]:port */
            const char *rb = strchr(value, ']');
            if (!rb) {
                snprintf(err, errlen, "listen: missing ']'");
                return -EINVAL;
            }
            hl = (size_t)(rb - value - 1);
            value++;
            if (rb[1] == ':')
                port = rb + 2;
            else if (rb[1]) {
                snprintf(err, errlen, "listen: expected ':' after ']'");
                return -EINVAL;
            }
        } else if (colon && strchr(value, ':') == colon) {
            hl = (size_t)(colon - value);
            port = colon + 1;
        }
        if (hl == 0 || hl >= sizeof c->host) {
            snprintf(err, errlen, "listen: empty or too long host");
            return -EINVAL;
        }
        if (port) {
            if (parse_u64(port, &u, 0) < 0 || u > 65535) {
                snprintf(err, errlen, "listen: bad port '%s'", port);
                return -EINVAL;
            }
            c->port = (uint32_t)u;
        }
        memcpy(c->host, value, hl);
        c->host[hl] = 0;
        return 0;
    }
    }
    return -EINVAL;
}

int config_parse(struct icsd_config *c, const char *text, size_t len, const char *fname,
                 char *err, size_t errlen)
{
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len) {
        size_t e = pos;
        while (e < len && text[e] != '\n')
            e++;
        lineno++;
        char line[1024];
        size_t ll = e - pos;
        if (ll >= sizeof line) {
            snprintf(err, errlen, "%s:%u: line too long", fname, lineno);
            return -EINVAL;
        }
        memcpy(line, text + pos, ll);
        line[ll] = 0;
        pos = e + 1;
        if (memchr(line, 0, ll)) {
            snprintf(err, errlen, "%s:%u: NUL byte in line", fname, lineno);
            return -EINVAL;
        }
        char *s = line;
        while (*s && isspace((unsigned char)*s))
            s++;
        char *end = s + strlen(s);
        while (end > s && isspace((unsigned char)end[-1]))
            *--end = 0;
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        char *key = s, *val = NULL;
        if (eq) {
            *eq = 0;
            val = eq + 1;
            while (*val && isspace((unsigned char)*val))
                val++;
        }
        char *ke = key + strlen(key);
        while (ke > key && isspace((unsigned char)ke[-1]))
            *--ke = 0;
        if (!*key) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", fname, lineno);
            return -EINVAL;
        }
        if (!eq && !config_is_bool(key)) {
            snprintf(err, errlen, "%s:%u: expected 'key = value'", fname, lineno);
            return -EINVAL;
        }
        if (!strcmp(key, "config")) {
            snprintf(err, errlen, "%s:%u: 'config' cannot be nested", fname, lineno);
            return -EINVAL;
        }
        char why[256];
        if (config_set(c, key, val, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%u: %s", fname, lineno, why);
            return -EINVAL;
        }
    }
    return 0;
}

const char *config_usage(void)
{
    static char text[4096];
    if (text[0])
        return text;
    size_t n = (size_t)snprintf(text, sizeof text,
                                "usage: icsd [--config FILE] [--help] [options]\n"
                                "Every option may also be a line 'name = value' in the config "
                                "file.\n\n");
    for (size_t i = 0; i < NSET && n < sizeof text; i++) {
        const char *h = settings[i].help;
        const char *sp = strstr(h, "   ");
        int al = sp ? (int)(sp - h) : 0;
        n += (size_t)snprintf(text + n, sizeof text - n, "  --%s %.*s\n      %s\n",
                              settings[i].name, al, h, sp ? sp + 3 : h);
    }
    return text;
}
