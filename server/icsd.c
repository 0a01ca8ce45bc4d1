/*
 * icsd.c — the daemon: reads the configuration, opens the engine and the
 * store, recovers, creates the admin principal on first start, starts the
 * io_uring workers and waits for a signal.
 *
 * Shutdown (SIGTERM / SIGINT): stop accepting, let in-flight changes
 * become durable and their responses go out (loop_stop), then store_close
 * syncs and stops the store threads; exit 0.
 *
 * The one mutable global is `icsd`, the server struct (STYLE.md): the
 * signal thread and the store's listener reach the loop through it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "loop.h"
#include "prefs.h"
#include "principal.h"
#include "store.h"
#include "keys.h"
#include "mailbox.h"
#include "pending.h"
#include "tls.h"

static struct {
    struct icsd_config cfg;
    engine_t *engine;
    store_t *store;
    principal_reg_t *reg;
    _Atomic(loop_t *) loop;
    struct pending *pending;
    struct mailbox *mailbox;
    struct keys *keys;
    struct tls_ctx *tls;
} icsd;

static const char *level_name[] = {"ERROR", "WARN", "INFO", "DEBUG"};

static void vlog_at(int lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void vlog_at(int lvl, const char *fmt, va_list ap)
{
    if (lvl > icsd.cfg.log_level)
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* One write per line so threads' lines do not interleave. */
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_name[lvl], msg);
}

static void log_at(int lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_at(int lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_at(lvl, fmt, ap);
    va_end(ap);
}

static void store_log(void *ctx, enum store_log_level lvl, const char *msg)
{
    log_at((int)lvl, "store: %s", msg);
}

static void loop_logger(void *ctx, enum loop_log_level lvl, const char *msg)
{
    log_at((int)lvl, "%s", msg);
}

static void listener(void *arg, const struct store_change *c)
{
    /* Acquire: the loop is fully built before main publishes it. */
    loop_t *l = atomic_load_explicit(&icsd.loop, memory_order_acquire);
    if (l)
        loop_store_listener(l, c);
}

static int mkdir_p(const char *path)
{
    char tmp[CONFIG_STR_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno ? -errno : -EIO;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        if (cap >= (1u << 20)) {
            free(b);
            fclose(f);
            return -E2BIG;
        }
        char *nb = realloc(b, cap * 2);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    fclose(f);
    if (!b)
        return -ENOMEM;
    *out = b;
    *len = n;
    return 0;
}

/* Flags first look for --config (the file sets values the other flags
 * then override), whatever their order. */
static int parse_args(int argc, char **argv)
{
    config_defaults(&icsd.cfg);
    char err[512];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(config_usage(), stdout);
            exit(0);
        }
        const char *cf = NULL;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            cf = argv[++i];
        else if (!strncmp(argv[i], "--config=", 9))
            cf = argv[i] + 9;
        if (!cf)
            continue;
        char *text = NULL;
        size_t len = 0;
        int rc = read_file(cf, &text, &len);
        if (rc < 0) {
            fprintf(stderr, "icsd: %s: %s\n", cf, strerror(-rc));
            return -1;
        }
        rc = config_parse(&icsd.cfg, text, len, cf, err, sizeof err);
        free(text);
        if (rc < 0) {
            fprintf(stderr, "icsd: %s\n", err);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!a) /* argv[argc] is NULL; nothing before it is */
            break;
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "icsd: unexpected argument '%s' (see --help)\n", a);
            return -1;
        }
        char key[64];
        const char *val = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof key) {
            fprintf(stderr, "icsd: unknown option %s\n", a);
            return -1;
        }
        memcpy(key, a + 2, kl);
        key[kl] = 0;
        if (strcmp(key, "config") != 0 && !config_known(key)) {
            fprintf(stderr, "icsd: unknown flag --%s (icsd --help lists them)\n", key);
            return -1;
        }
        if (eq)
            val = eq + 1;
        else if (!config_is_bool(key)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "icsd: --%s needs a value\n", key);
                return -1;
            }
            val = argv[++i];
        }
        if (!strcmp(key, "config"))
            continue;
        if (config_set(&icsd.cfg, key, val, err, sizeof err) < 0) {
            fprintf(stderr, "icsd: --%s\n", err); /* err starts with the key */
            return -1;
        }
    }
    return 0;
}

static int write_cred(const char *secret, uint16_t port)
{
    char path[CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/admin.cred", icsd.cfg.data);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    fchmod(fd, 0600);
    char buf[512];
    const char *host = icsd.cfg.host;
    if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
        host = "127.0.0.1";
    int n = snprintf(buf, sizeof buf, "host=%s\nport=%u\nprincipal=admin\nsecret=%s\n", host,
                     port, secret);
    int rc = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* admin.cred names the port; keep it right when the port changes. */
static void update_cred_port(uint16_t port)
{
    char path[CONFIG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/admin.cred", icsd.cfg.data);
    char *text = NULL;
    size_t len = 0;
    if (read_file(path, &text, &len) < 0 || !text)
        return;
    char secret[256] = "";
    char *s = NULL;
    text[len < 4095 ? len : 4095] = 0;
    char want[16];
    snprintf(want, sizeof want, "\nport=%u\n", port);
    if (strstr(text, want)) { /* already right (a restart on the same port) */
        free(text);
        return;
    }
    if ((s = strstr(text, "secret="))) {
        s += 7;
        size_t l = strcspn(s, "\n");
        if (l < sizeof secret) {
            memcpy(secret, s, l);
            secret[l] = 0;
        }
    }
    free(text);
    if (secret[0])
        write_cred(secret, port);
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    struct icsd_config *cfg = &icsd.cfg;
    if (!cfg->tls_cert[0] && (cfg->tls_key[0] || cfg->tls_ca[0] || cfg->tls_crl[0])) {
        /* They would be ignored: no TLS listener starts without a certificate. */
        fprintf(stderr, "icsd: --tls-key, --tls-ca and --tls-crl need --tls-cert\n");
        return 2;
    }
    /* Block the signals in every thread; main waits for them in sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Many connections need many descriptors: raise the soft limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int rc = mkdir_p(cfg->data);
    if (rc < 0) {
        log_at(0, "data directory %s: %s", cfg->data, strerror(-rc));
        return 1;
    }
    struct engine_config ec = {0};
    ec.mem_limit = cfg->mem_limit;
    ec.history_len = cfg->history_len;
    if ((rc = engine_create(&icsd.engine, &ec)) < 0) {
        log_at(0, "engine: %s", strerror(-rc));
        return 1;
    }
    struct store_config sc = {0};
    sc.dir = cfg->data;
    sc.durability = cfg->durability ? STORE_RELAXED : STORE_SYNC;
    sc.relaxed_window_ms = cfg->relaxed_window_ms;
    sc.key_file = cfg->key_file[0] ? cfg->key_file : NULL;
    sc.snapshot_log_bytes = cfg->snapshot_log_bytes;
    sc.truncate_corrupt = cfg->truncate_corrupt;
    sc.log = store_log;
    char err[512] = "";
    if ((rc = store_open(&icsd.store, icsd.engine, &sc, err, sizeof err)) < 0) {
        log_at(0, "store: %s", err[0] ? err : strerror(-rc));
        return 1;
    }
    struct principal_config pc = {0};
    pc.log = store_log;
    if ((rc = principal_reg_create(&icsd.reg, &pc)) < 0 ||
        (rc = principal_register_aux(icsd.reg, icsd.store)) < 0) {
        log_at(0, "principals: %s", strerror(-rc));
        return 1;
    }
    struct keys_config kc = {0};
    kc.rotate_interval_s = cfg->key_rotate_interval;
    if ((rc = keys_create(&icsd.keys, &kc)) < 0 ||
        (rc = keys_register_aux(icsd.keys, icsd.store)) < 0) {
        log_at(0, "keys: %s", strerror(-rc));
        return 1;
    }
    store_set_listener(icsd.store, listener, NULL);
    /* A tpsp's DEMAP_SERVICE removes only what the devices' preferences let
     * it see (wire-v1 section 4), live and on replay. */
    store_set_prefs_filter(icsd.store, prefs_allows);
    if ((rc = store_recover(icsd.store, err, sizeof err)) < 0) {
        log_at(0, "recovery: %s", err[0] ? err : strerror(-rc));
        return 1;
    }
    if ((rc = store_start(icsd.store)) < 0) {
        log_at(0, "store start: %s", strerror(-rc));
        return 1;
    }
    char secret[64] = "";
    if (principal_count(icsd.reg) == 0) {
        rc = principal_bootstrap_admin(icsd.reg, icsd.store, "admin", secret, sizeof secret);
        if (rc < 0) {
            log_at(0, "creating the admin principal: %s", strerror(-rc));
            return 1;
        }
        /* Written at once, with the configured port (the listener's comes
         * later): the admin is durable now, and a start that fails further
         * on (a bad --principals file, TLS files, the listener) must not
         * leave an admin whose secret nobody has. */
        if ((rc = write_cred(secret, (uint16_t)cfg->port)) < 0) {
            log_at(0, "writing %s/admin.cred: %s", cfg->data, strerror(-rc));
            return 1;
        }
        log_at(2, "first start: created principal 'admin'; credential in %s/admin.cred",
               cfg->data);
        explicit_bzero(secret, sizeof secret);
    }
    if (cfg->principals[0]) {
        /* Config as code: every line parses or nothing is applied. */
        char *text = NULL;
        size_t len = 0;
        if ((rc = read_file(cfg->principals, &text, &len)) < 0) {
            log_at(0, "%s: %s", cfg->principals, strerror(-rc));
            return 1;
        }
        char perr[256] = "";
        rc = principal_import(icsd.reg, icsd.store, text, len, perr, sizeof perr);
        if (text) /* read_file sets it on success; the analyzer cannot see that */
            explicit_bzero(text, len);
        free(text);
        if (rc < 0) {
            log_at(0, "%s:%s", cfg->principals, perr[0] ? perr : strerror(-rc));
            return 1;
        }
        log_at(2, "%s: %d principals set", cfg->principals, rc);
    }
    if ((rc = keys_maybe_rotate(icsd.keys, icsd.store, (uint64_t)time(NULL))) < 0)
        log_at(1, "signing key: %s", strerror(-rc));
    struct pending_config pdc = {.ttl_s = cfg->pending_ttl};
    if ((rc = pending_create_table(&icsd.pending, &pdc)) < 0) {
        log_at(0, "pending: %s", strerror(-rc));
        return 1;
    }
    struct mailbox_config mc = {0};
    mc.log = store_log;
    if ((rc = mailbox_create(&icsd.mailbox, &mc)) < 0) {
        log_at(0, "mailbox: %s", strerror(-rc));
        return 1;
    }
    if (cfg->tls_cert[0]) {
        struct tls_cfg tc = {0};
        tc.cert_file = cfg->tls_cert;
        tc.key_file = cfg->tls_key[0] ? cfg->tls_key : NULL;
        tc.ca_file = cfg->tls_ca[0] ? cfg->tls_ca : NULL;
        tc.crl_file = cfg->tls_crl[0] ? cfg->tls_crl : NULL;
        tc.allow_tls12 = !cfg->tls_only_13;
        if ((rc = tls_ctx_create(&icsd.tls, &tc, err, sizeof err)) < 0) {
            log_at(0, "TLS: %s", err[0] ? err : strerror(-rc));
            return 1;
        }
    }

    struct loop_config lc = {0};
    lc.host = cfg->host;
    lc.port = (uint16_t)cfg->port;
    lc.threads = cfg->threads;
    lc.max_conns = cfg->max_conns;
    lc.max_conn_buffer = (size_t)cfg->max_conn_buffer;
    lc.idle_timeout_s = cfg->idle_timeout;
    lc.anonymous = cfg->anonymous[0] ? cfg->anonymous : NULL;
    lc.allow_anonymous_remote = cfg->allow_anonymous_remote;
    lc.allow_plaintext_remote = cfg->allow_plaintext_remote;
    lc.version = "1.0.0";
    lc.tls_port = (uint16_t)cfg->tls_port;
    lc.auth_threads = cfg->auth_threads;
    lc.busy_poll_us = cfg->busy_poll_us;
    lc.handshake_timeout_s = cfg->tls_handshake_timeout;
    lc.max_handshakes = cfg->tls_max_handshakes;
    lc.log = loop_logger;
    struct loop_deps ld = {icsd.engine, icsd.store, icsd.reg, icsd.pending, icsd.mailbox,
                           icsd.keys, icsd.tls};
    loop_t *l = NULL;
    if ((rc = loop_create(&l, &lc, &ld)) < 0) {
        log_at(0, "listener: %s", strerror(-rc));
        loop_destroy(l);
        store_close(icsd.store);
        return 1;
    }
    uint16_t port = loop_port(l);
    update_cred_port(port);
    if (cfg->port_file[0]) {
        char tmp[CONFIG_STR_MAX + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg->port_file);
        FILE *f = fopen(tmp, "w");
        /* Line 1: the port; line 2 (with TLS): "tls=PORT". */
        uint16_t tport = loop_tls_port(l);
        int bad = !f || fprintf(f, "%u\n", port) < 0 || (tport && fprintf(f, "tls=%u\n", tport) < 0);
        if (f && fclose(f) != 0)
            bad = 1;
        if (bad || rename(tmp, cfg->port_file)) {
            log_at(0, "port file %s: %s", cfg->port_file, strerror(errno));
            return 1;
        }
    }
    atomic_store_explicit(&icsd.loop, l, memory_order_release);
    if ((rc = loop_start(l)) < 0) {
        log_at(0, "starting workers: %s", strerror(-rc));
        return 1;
    }
    for (;;) {
        /* Once a second without a signal: the signing key's schedule
         * (keys_maybe_rotate waits for durability, so not on a worker). */
        struct timespec one = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &one);
        if (sig < 0) {
            if (errno == EAGAIN && cfg->key_rotate_interval) {
                rc = keys_maybe_rotate(icsd.keys, icsd.store, (uint64_t)time(NULL));
                if (rc == 1)
                    log_at(2, "signing key rotated (id %d)", keys_current_id(icsd.keys));
                else if (rc < 0)
                    log_at(1, "signing key rotation: %s", strerror(-rc));
            }
            continue;
        }
        if (sig == SIGHUP) {
            if (icsd.tls) {
                char e[256] = "";
                if (tls_ctx_reload(icsd.tls, e, sizeof e) < 0)
                    log_at(1, "SIGHUP: TLS reload failed, keeping the old files: %s", e);
                else
                    log_at(2, "SIGHUP: TLS certificate, key, CA and CRL reloaded");
                continue;
            }
            log_at(2, "SIGHUP: nothing to reload (TLS not configured)");
            continue;
        }
        log_at(2, "%s: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    loop_stop(l);
    atomic_store_explicit(&icsd.loop, NULL, memory_order_release);
    store_close(icsd.store);
    loop_destroy(l);
    mailbox_destroy(icsd.mailbox);
    pending_destroy_table(icsd.pending);
    keys_destroy(icsd.keys);
    principal_reg_destroy(icsd.reg);
    tls_ctx_destroy(icsd.tls);
    engine_destroy(icsd.engine);
    log_at(2, "stopped");
    return 0;
}
