/* test_config.c — server/config.c: defaults, every kind of value, the
 * FILE:LINE error messages, flags overriding nothing they should not. */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "test.h"

static int parse(struct icsd_config *c, const char *text, char *err)
{
    return config_parse(c, text, strlen(text), "t.conf", err, 256);
}

int main(void)
{
    struct icsd_config c;
    char err[256];
    config_defaults(&c);
    CHECK(strcmp(c.host, "127.0.0.1") == 0);
    CHECK_EQ(c.port, 11311);
    CHECK(strcmp(c.data, "./var/ics") == 0);
    CHECK_EQ(c.idle_timeout, 60);
    CHECK_EQ(c.durability, 0);
    CHECK_EQ(c.pending_ttl, 600);

    const char *good = "# comment\n\n  data = /srv/ics  \nlisten = 0.0.0.0:9000\n"
                       "threads=4\nmax-conn-buffer = 2M\nmem-limit = 1GiB\n"
                       "durability = relaxed\ntruncate-corrupt\nallow-plaintext-remote = yes\n"
                       "log-level = debug\nanonymous = bench\n";
    CHECK_EQ(parse(&c, good, err), 0);
    CHECK(strcmp(c.data, "/srv/ics") == 0);
    CHECK(strcmp(c.host, "0.0.0.0") == 0);
    CHECK_EQ(c.port, 9000);
    CHECK_EQ(c.threads, 4);
    CHECK_EQ(c.max_conn_buffer, 2u << 20);
    CHECK_EQ(c.mem_limit, 1ull << 30);
    CHECK_EQ(c.durability, 1);
    CHECK_EQ(c.truncate_corrupt, 1);
    CHECK_EQ(c.allow_plaintext_remote, 1);
    CHECK_EQ(c.log_level, 3);
    CHECK(strcmp(c.anonymous, "bench") == 0);

    CHECK_EQ(config_set(&c, "listen", "[::1]:7000", err, sizeof err), 0);
    CHECK(strcmp(c.host, "::1") == 0);
    CHECK_EQ(c.port, 7000);
    CHECK_EQ(config_set(&c, "listen", "localhost", err, sizeof err), 0);
    CHECK_EQ(c.port, 7000); /* no port: keeps the one set */

    /* Errors name the file and the line. */
    CHECK_EQ(parse(&c, "threads = 2\nthreads = two\n", err), -EINVAL);
    CHECK(strncmp(err, "t.conf:2: ", 10) == 0);
    CHECK_EQ(parse(&c, "\n\nnosuch = 1\n", err), -EINVAL);
    CHECK(strncmp(err, "t.conf:3: unknown setting", 25) == 0);
    CHECK_EQ(parse(&c, "port = 65536\n", err), -EINVAL);
    CHECK(strncmp(err, "t.conf:1:", 9) == 0);
    CHECK_EQ(parse(&c, "data\n", err), -EINVAL);
    CHECK_EQ(parse(&c, "= x\n", err), -EINVAL);
    CHECK_EQ(parse(&c, "durability = maybe\n", err), -EINVAL);
    CHECK_EQ(parse(&c, "mem-limit = 12Q\n", err), -EINVAL);
    CHECK_EQ(parse(&c, "mem-limit = 99999999999999999999\n", err), -EINVAL);
    CHECK_EQ(parse(&c, "config = other.conf\n", err), -EINVAL);
    CHECK_EQ(config_set(&c, "nosuch", "1", err, sizeof err), -ENOENT);
    CHECK_EQ(c.tls_only_13, 1);
    CHECK_EQ(parse(&c, "tls-only-13 = false\n", err), 0);
    CHECK_EQ(c.tls_only_13, 0);
    CHECK(config_is_bool("truncate-corrupt"));
    CHECK(!config_is_bool("data"));
    CHECK(strstr(config_usage(), "--idle-timeout") != NULL);
    return 0;
}
