/*
 * test_fault_shim.c — checks the LD_PRELOAD fault shim itself: re-executes
 * this program under the shim with one configuration per scenario, and the
 * child checks which calls failed. Without this, a shim that silently failed
 * nothing would make every fault test pass for the wrong reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#ifndef ICS_FAULT_SHIM
#error "ICS_FAULT_SHIM (path of the shim) must be defined by the build"
#endif

static int open_in(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    return fd;
}

/* Each returns 0 or -errno, so a result sequence is easy to compare. */
static int r_fdatasync(int fd) { return fdatasync(fd) == 0 ? 0 : -errno; }
static int r_fsync(int fd) { return fsync(fd) == 0 ? 0 : -errno; }
static int r_pwrite(int fd, const char *s)
{
    ssize_t n = pwrite(fd, s, strlen(s), 0);
    return n == (ssize_t)strlen(s) ? 0 : -errno;
}

static int child(int scenario, const char *dir, const char *other)
{
    switch (scenario) {
    case 1: { /* fdatasync, 3rd fails once, only under dir */
        int fd = open_in(dir, "a"), fo = open_in(other, "b");
        CHECK_EQ(r_fdatasync(fd), 0);
        CHECK_EQ(r_fdatasync(fo), 0);          /* outside dir: not counted */
        CHECK_EQ(r_fdatasync(fd), 0);
        CHECK_EQ(r_fsync(fd), 0);              /* not a configured op */
        CHECK_EQ(r_fdatasync(fd), -EIO);       /* the 3rd matching call */
        CHECK_EQ(r_fdatasync(fd), 0);          /* COUNT=1: recovered */
        return 0;
    }
    case 2: { /* pwrite and rename, 2nd on fails forever with ENOSPC */
        int fd = open_in(dir, "c");
        char from[4096], to[4096], buf[8] = { 0 };
        CHECK_EQ(r_pwrite(fd, "first"), 0);
        CHECK_EQ(r_pwrite(fd, "SECOND"), -ENOSPC);
        CHECK_EQ(pread(fd, buf, 5, 0), 5);
        CHECK(memcmp(buf, "first", 5) == 0);   /* the failed write did nothing */
        snprintf(from, sizeof from, "%s/c", dir);
        snprintf(to, sizeof to, "%s/d", dir);
        CHECK_EQ(rename(from, to), -1);
        CHECK_EQ(errno, ENOSPC);
        CHECK(access(from, F_OK) == 0 && access(to, F_OK) != 0);
        return 0;
    }
    case 3: { /* armed by a file: nothing fails before it exists */
        int fd = open_in(dir, "e");
        char arm[4096];
        CHECK_EQ(r_fsync(fd), 0);
        CHECK_EQ(r_fsync(fd), 0);
        snprintf(arm, sizeof arm, "%s/arm", other);
        close(open(arm, O_CREAT | O_WRONLY, 0600));
        CHECK_EQ(r_fsync(fd), -EIO);
        CHECK_EQ(r_fsync(fd), -EIO);           /* COUNT=0: stays broken */
        return 0;
    }
    case 4: { /* write: pipes and stderr never count, files do */
        int p[2], fd = open_in(dir, "f");
        CHECK(pipe(p) == 0);
        CHECK_EQ(write(p[1], "x", 1), 1);
        CHECK_EQ(write(fd, "y", 1), -1);
        CHECK_EQ(errno, EIO);
        return 0;
    }
    }
    return 1;
}

static void run(int scenario, const char *env[], const char *dir, const char *other)
{
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        setenv("LD_PRELOAD", ICS_FAULT_SHIM, 1);
        for (int i = 0; env[i]; i += 2)
            setenv(env[i], env[i + 1], 1);
        char sc[16];
        snprintf(sc, sizeof sc, "%d", scenario);
        execl("/proc/self/exe", "test_fault_shim", "child", sc, dir, other, (char *)NULL);
        _exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "scenario %d failed (status %d)\n", scenario, st);
        exit(1);
    }
    printf("scenario %d: ok\n", scenario);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "child") == 0)
        return child(atoi(argv[2]), argv[3], argv[4]);

    char dir[] = "/tmp/ics-fault-XXXXXX", other[] = "/tmp/ics-fault-o-XXXXXX";
    CHECK(mkdtemp(dir) && mkdtemp(other));
    char arm[4096];
    snprintf(arm, sizeof arm, "%s/arm", other);

    const char *e1[] = { "ICS_FAULT_OPS", "fdatasync", "ICS_FAULT_NTH", "3",
                         "ICS_FAULT_COUNT", "1", "ICS_FAULT_DIR", dir, NULL };
    const char *e2[] = { "ICS_FAULT_OPS", "pwrite,rename", "ICS_FAULT_NTH", "2",
                         "ICS_FAULT_ERRNO", "ENOSPC", "ICS_FAULT_DIR", dir, NULL };
    const char *e3[] = { "ICS_FAULT_OPS", "fsync", "ICS_FAULT_ARM", arm, NULL };
    const char *e4[] = { "ICS_FAULT_OPS", "write", "ICS_FAULT_DIR", dir, NULL };
    run(1, e1, dir, other);
    run(2, e2, dir, other);
    run(3, e3, dir, other);
    run(4, e4, dir, other);

    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, other);
    CHECK(system(cmd) == 0);
    return 0;
}
