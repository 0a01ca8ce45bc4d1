/*
 * io.h — the file I/O seam of persist/ (SQLite's VFS in miniature).
 *
 * Owns: nothing; it is a table of function pointers. Every file operation
 * persist/ performs (open, read, write, sync, truncate, rename, unlink,
 * mkdir, directory sync) goes through a struct store_io, so a test can make
 * the Nth write, fsync or rename fail with EIO or ENOSPC and watch the store
 * turn read-only. Directory listing (readdir) is not a fault point and is
 * done directly.
 *
 * Every member returns 0 (or a byte count / fd) on success and a negative
 * errno on failure, never -1 + errno. Members may be called from any store
 * thread at once; an injected implementation must be thread-safe.
 * store_io_default() is the real thing (POSIX calls, EINTR retried, short
 * writes completed).
 */
#ifndef ICS_PERSIST_IO_H
#define ICS_PERSIST_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct store_io {
    int (*open)(void *ctx, const char *path, int flags, mode_t mode); /* fd */
    int (*close)(void *ctx, int fd);
    ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, uint64_t off);
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, uint64_t off);
    int (*fdatasync)(void *ctx, int fd);
    int (*fsync)(void *ctx, int fd);     /* files and directories */
    int (*ftruncate)(void *ctx, int fd, uint64_t size);
    int (*fsize)(void *ctx, int fd, uint64_t *size);
    int (*rename)(void *ctx, const char *from, const char *to);
    int (*unlink)(void *ctx, const char *path);
    int (*mkdir)(void *ctx, const char *path, mode_t mode);
    void *ctx;
    /* Optional (NULL: read into memory instead): maps size bytes of fd
     * read-only for recovery, which then reads snapshots and segments
     * without copying them. Returns NULL on failure. */
    void *(*map)(void *ctx, int fd, uint64_t size);
    void (*unmap)(void *ctx, void *p, uint64_t size);
};

const struct store_io *store_io_default(void);

/* Reads exactly n bytes at off (-EIO on a short file). */
int store_io_read_full(const struct store_io *io, int fd, void *buf, size_t n,
                       uint64_t off);

/* A whole file in memory, mapped or read (store_io_load / _unload). */
struct store_io_buf { uint8_t *p; uint64_t n; int mapped; };
int store_io_load(const struct store_io *io, const char *path, struct store_io_buf *b);
void store_io_unload(const struct store_io *io, struct store_io_buf *b);

/* The one durable-replace helper (write tmp, fsync, rename, fsync dir): the
 * caller has written and fsynced tmp; this renames it over final and fsyncs
 * the directory. Nothing else in persist/ calls rename. crash_point (may be
 * NULL) is called between the rename and the directory fsync. */
int store_io_replace(const struct store_io *io, const char *dir,
                     const char *tmp, const char *final,
                     void (*crash_point)(const char *where));

/* fsyncs a directory (after a create, rename or unlink in it). */
int store_io_sync_dir(const struct store_io *io, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
