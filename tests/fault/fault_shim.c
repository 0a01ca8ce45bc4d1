/*
 * fault_shim.c — an LD_PRELOAD library that makes a real process's Nth
 * write, pwrite, fsync, fdatasync or rename fail, for tests of what icsd
 * does when its disk fails (persist/'s own tests use the store_io seam
 * instead; this one needs no cooperation from the process under test).
 *
 * Configured by the environment, read once at load:
 *   ICS_FAULT_OPS    comma list of write,pwrite,fsync,fdatasync,rename
 *                    (default "fsync,fdatasync")
 *   ICS_FAULT_NTH    the first failing call, 1-based, counted over the
 *                    matching calls only (default 1)
 *   ICS_FAULT_COUNT  how many calls fail from the Nth on; 0 = every one
 *                    after it, like a disk that stays broken (default 0)
 *   ICS_FAULT_ERRNO  EIO (default), ENOSPC, EDQUOT or a number
 *   ICS_FAULT_DIR    only files under this directory count (default: all
 *                    regular files; sockets, pipes and ttys never count, so
 *                    logging to stderr and eventfds are untouched)
 *   ICS_FAULT_ARM    counting starts only once this file exists, so a test
 *                    can let the process start up cleanly first
 *   ICS_FAULT_LOG    if set, each injected failure is reported on stderr
 * A failed call does nothing and returns -1 with errno set, as the kernel
 * would after a failed writeback.
 *
 * Thread-safe: the counter is one atomic add (relaxed: it only orders the
 * calls among themselves, it publishes no other memory); the armed flag is
 * a relaxed load/store (re-checking the trigger file twice is harmless).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_PWRITE = 2, OP_FSYNC = 4, OP_FDATASYNC = 8, OP_RENAME = 16 };

static struct {
    unsigned ops;
    unsigned long nth, count;
    int err;
    char dir[PATH_MAX];
    size_t dirlen;
    const char *arm;
    int log;
    int loaded;
} cfg;

static atomic_ulong calls;
static atomic_int armed;

static void load(void)
{
    if (cfg.loaded)
        return;
    const char *ops = getenv("ICS_FAULT_OPS");
    if (!ops)
        ops = "fsync,fdatasync";
    static const struct { const char *name; unsigned bit; } names[] = {
        { "write", OP_WRITE }, { "pwrite", OP_PWRITE }, { "fsync", OP_FSYNC },
        { "fdatasync", OP_FDATASYNC }, { "rename", OP_RENAME },
    };
    for (const char *p = ops; *p;) {
        size_t n = strcspn(p, ",");
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0)
                cfg.ops |= names[i].bit;
        p += n;
        if (*p == ',')
            p++;
    }
    const char *v = getenv("ICS_FAULT_NTH");
    cfg.nth = v ? strtoul(v, NULL, 10) : 1;
    if (cfg.nth == 0)
        cfg.nth = 1;
    v = getenv("ICS_FAULT_COUNT");
    cfg.count = v ? strtoul(v, NULL, 10) : 0;
    v = getenv("ICS_FAULT_ERRNO");
    cfg.err = EIO;
    if (v && strcmp(v, "ENOSPC") == 0)
        cfg.err = ENOSPC;
    else if (v && strcmp(v, "EDQUOT") == 0)
        cfg.err = EDQUOT;
    else if (v && v[0] >= '0' && v[0] <= '9')
        cfg.err = atoi(v);
    v = getenv("ICS_FAULT_DIR");
    if (v && (realpath(v, cfg.dir) || snprintf(cfg.dir, sizeof cfg.dir, "%s", v) > 0))
        cfg.dirlen = strlen(cfg.dir);
    cfg.arm = getenv("ICS_FAULT_ARM");
    cfg.log = getenv("ICS_FAULT_LOG") != NULL;
    atomic_store_explicit(&armed, cfg.arm == NULL, memory_order_relaxed);
    cfg.loaded = 1;
}

/* Runs before main, while the process is still single-threaded, so cfg is
 * written once before any thread can read it. */
__attribute__((constructor)) static void fault_shim_init(void) { load(); }

static int under_dir(const char *path)
{
    if (cfg.dirlen == 0)
        return 1;
    char buf[PATH_MAX];
    const char *p = path;
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return 0;
        if (snprintf(buf, sizeof buf, "%s/%s", cwd, path) >= (int)sizeof buf)
            return 0;
        p = buf;
    }
    return strncmp(p, cfg.dir, cfg.dirlen) == 0 &&
           (p[cfg.dirlen] == '/' || p[cfg.dirlen] == '\0');
}

static int fd_counts(int fd)
{
    struct stat st;
    /* fstat is not one of the intercepted calls, so no recursion. */
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
        return 0;
    if (cfg.dirlen == 0)
        return 1;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = '\0';
    return under_dir(path);
}

/* Decides whether this matching call fails; sets errno when it does. */
static int inject(unsigned op, const char *what)
{
    if (!(cfg.ops & op))
        return 0;
    if (!atomic_load_explicit(&armed, memory_order_relaxed)) {
        if (access(cfg.arm, F_OK) != 0)
            return 0;
        atomic_store_explicit(&armed, 1, memory_order_relaxed);
    }
    unsigned long k = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
    if (k < cfg.nth || (cfg.count != 0 && k >= cfg.nth + cfg.count))
        return 0;
    if (cfg.log)
        fprintf(stderr, "fault_shim: failing %s call #%lu with errno %d\n", what, k, cfg.err);
    errno = cfg.err;
    return 1;
}

/* The next definition of name (libc's), looked up once per function. */
#define REAL(name)                                                         \
    static __typeof__(name) *real_##name;                                  \
    if (!real_##name)                                                      \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (fd > 2 && (cfg.ops & OP_WRITE) && fd_counts(fd) && inject(OP_WRITE, "write"))
        return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if ((cfg.ops & OP_PWRITE) && fd_counts(fd) && inject(OP_PWRITE, "pwrite"))
        return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    REAL(pwrite64);
    if ((cfg.ops & OP_PWRITE) && fd_counts(fd) && inject(OP_PWRITE, "pwrite"))
        return -1;
    return real_pwrite64(fd, buf, n, off);
}

int fsync(int fd)
{
    REAL(fsync);
    if ((cfg.ops & OP_FSYNC) && fd_counts(fd) && inject(OP_FSYNC, "fsync"))
        return -1;
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    REAL(fdatasync);
    if ((cfg.ops & OP_FDATASYNC) && fd_counts(fd) && inject(OP_FDATASYNC, "fdatasync"))
        return -1;
    return real_fdatasync(fd);
}

int rename(const char *from, const char *to)
{
    REAL(rename);
    if ((cfg.ops & OP_RENAME) && under_dir(from) && inject(OP_RENAME, "rename"))
        return -1;
    return real_rename(from, to);
}

/* How many matching calls the shim has seen since it was armed (tests). */
unsigned long fault_shim_calls(void);
unsigned long fault_shim_calls(void)
{
    return atomic_load_explicit(&calls, memory_order_relaxed);
}
