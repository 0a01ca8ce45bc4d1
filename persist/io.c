/*
 * io.c — the real file I/O behind the store_io seam: POSIX calls with
 * negative-errno returns, EINTR retried and short writes completed.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int d_open(void *ctx, const char *path, int flags, mode_t mode)
{
    int fd;
    do fd = open(path, flags | O_CLOEXEC, mode); while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int d_close(void *ctx, int fd) { return close(fd) < 0 ? -errno : 0; }

static ssize_t d_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off)
{
    ssize_t r;
    do r = pread(fd, buf, n, (off_t)off); while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static ssize_t d_pwrite(void *ctx, int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* A failed fsync is reported once and never retried (fsyncgate): the pages
 * it failed to write may already be marked clean. */
static int d_fdatasync(void *ctx, int fd) { return fdatasync(fd) < 0 ? -errno : 0; }
static int d_fsync(void *ctx, int fd) { return fsync(fd) < 0 ? -errno : 0; }
static int d_ftruncate(void *ctx, int fd, uint64_t size)
{
    return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}
static int d_fsize(void *ctx, int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}
static int d_rename(void *ctx, const char *a, const char *b)
{
    return rename(a, b) < 0 ? -errno : 0;
}
static int d_unlink(void *ctx, const char *p) { return unlink(p) < 0 ? -errno : 0; }
static int d_mkdir(void *ctx, const char *p, mode_t m)
{
    return mkdir(p, m) < 0 ? -errno : 0;
}

/* MAP_POPULATE: recovery reads every byte once, in order; faulting the
 * pages in up front is cheaper than one fault per page. */
static void *d_map(void *ctx, int fd, uint64_t size)
{
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    /* Unmapped by d_unmap through store_io_unload. */
    // cppcheck-suppress memleak
    return p;
}
static void d_unmap(void *ctx, void *p, uint64_t size) { munmap(p, (size_t)size); }

static const struct store_io default_io = {
    d_open, d_close, d_pread, d_pwrite, d_fdatasync, d_fsync, d_ftruncate,
    d_fsize, d_rename, d_unlink, d_mkdir, NULL, d_map, d_unmap,
};

const struct store_io *store_io_default(void) { return &default_io; }

int store_io_read_full(const struct store_io *io, int fd, void *buf, size_t n,
                       uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = io->pread(io->ctx, fd, (char *)buf + done, n - done, off + done);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return -EIO;
        done += (size_t)r;
    }
    return 0;
}

int store_io_sync_dir(const struct store_io *io, const char *dir)
{
    int fd = io->open(io->ctx, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return fd;
    int r = io->fsync(io->ctx, fd);
    io->close(io->ctx, fd);
    return r;
}

int store_io_replace(const struct store_io *io, const char *dir,
                     const char *tmp, const char *final,
                     void (*crash_point)(const char *where))
{
    int r = io->rename(io->ctx, tmp, final);
    if (r < 0)
        return r;
    if (crash_point)
        crash_point("between rename and directory fsync");
    return store_io_sync_dir(io, dir);
}

int store_io_load(const struct store_io *io, const char *path, struct store_io_buf *b)
{
    b->p = NULL;
    b->n = 0;
    b->mapped = 0;
    int fd = io->open(io->ctx, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    int r = io->fsize(io->ctx, fd, &b->n);
    if (r == 0 && b->n && io->map && (b->p = io->map(io->ctx, fd, b->n)) != NULL) {
        b->mapped = 1;
    } else if (r == 0) {
        b->p = malloc(b->n ? b->n : 1);
        r = b->p ? store_io_read_full(io, fd, b->p, b->n, 0) : -ENOMEM;
    }
    io->close(io->ctx, fd);
    if (r < 0)
        store_io_unload(io, b);
    return r;
}

void store_io_unload(const struct store_io *io, struct store_io_buf *b)
{
    if (b->mapped)
        io->unmap(io->ctx, b->p, b->n);
    else
        free(b->p);
    b->p = NULL;
    b->n = 0;
    b->mapped = 0;
}
