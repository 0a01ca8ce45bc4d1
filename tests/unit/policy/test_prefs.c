/*
 * test_prefs.c — PREFS_SET validation and every evaluation rule (allow,
 * deny, windows inside / outside / wrapping midnight, retention) with a
 * fixed clock.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "prefs.h"
#include "test.h"

/* 2024-01-01 00:00:00 UTC was a Monday. */
#define MONDAY 1704067200ull
#define AT(day, h, m) ((MONDAY + (uint64_t)(day) * 86400u + (uint64_t)(h) * 3600u + (uint64_t)(m) * 60u) * 1000000u)

struct win { uint8_t mask; uint16_t start, end; };

static void build(struct buf *b, uint32_t ret, const char **allow, int na, const char **deny,
                  int nd, const struct win *w, int nw)
{
    buf_reset(b);
    CHECK_EQ(buf_put_u32(b, ret), 0);
    CHECK_EQ(buf_put_u16(b, (uint16_t)na), 0);
    for (int i = 0; i < na; i++)
        CHECK_EQ(buf_put_str16(b, allow[i], strlen(allow[i])), 0);
    CHECK_EQ(buf_put_u16(b, (uint16_t)nd), 0);
    for (int i = 0; i < nd; i++)
        CHECK_EQ(buf_put_str16(b, deny[i], strlen(deny[i])), 0);
    CHECK_EQ(buf_put_u16(b, (uint16_t)nw), 0);
    for (int i = 0; i < nw; i++) {
        CHECK_EQ(buf_put_u8(b, w[i].mask), 0);
        CHECK_EQ(buf_put_u16(b, w[i].start), 0);
        CHECK_EQ(buf_put_u16(b, w[i].end), 0);
    }
}

static int allows(const struct buf *b, const char *uri, uint64_t now)
{
    return prefs_allows(b->p, b->len, uri, strlen(uri), now);
}

static void test_validate(void)
{
    struct buf b = BUF_INIT;
    const char *msg = NULL;
    const char *allow[] = {"https://a.example/"};
    const char *deny[] = {"https://a.example/ads"};
    struct win w[] = {{0x1f, 540, 1020}, {0x60, 1320, 120}};
    build(&b, 3600, allow, 1, deny, 1, w, 2);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), 0);

    /* Every truncation of a valid value is malformed. */
    for (size_t n = 0; n < b.len; n++)
        CHECK_EQ(prefs_validate(b.p, n, &msg), -EINVAL);
    /* Trailing byte. */
    CHECK_EQ(buf_put_u8(&b, 0), 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    CHECK(strstr(msg, "trailing"));

    /* The smallest value: no lists, no windows. */
    build(&b, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(b.len, 10);
    CHECK_EQ(prefs_validate(b.p, b.len, NULL), 0);

    struct { struct win w; const char *why; } bad[] = {
        {{0x00, 0, 60}, "mask"}, {{0x80, 0, 60}, "mask"}, {{0x81, 0, 60}, "mask"},
        {{0x01, 1440, 60}, "start"}, {{0x01, 0, 0}, "end"}, {{0x01, 0, 1441}, "end"},
        {{0x01, 300, 300}, "empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        build(&b, 0, NULL, 0, NULL, 0, &bad[i].w, 1);
        msg = NULL;
        CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
        CHECK(msg && strstr(msg, bad[i].why));
    }
    /* Edges that are fine: a whole day, and the last minute. */
    struct win ok[] = {{0x7f, 0, 1440}, {0x01, 1439, 1440}, {0x01, 1439, 0 + 1}};
    build(&b, 0, NULL, 0, NULL, 0, ok, 3);
    CHECK_EQ(prefs_validate(b.p, b.len, NULL), 0);

    /* Prefixes: empty, NUL inside, longer than a URI may be. */
    const char *empty[] = {""};
    build(&b, 0, empty, 1, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    build(&b, 0, NULL, 0, empty, 1, NULL, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    buf_reset(&b);
    buf_put_u32(&b, 0);
    buf_put_u16(&b, 1);
    buf_put_str16(&b, "a\0b", 3);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    CHECK(strstr(msg, "NUL"));
    static char big[1026];
    memset(big, 'u', 1025);
    const char *bigs[] = {big};
    build(&b, 0, bigs, 1, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    big[1024] = 0;
    build(&b, 0, bigs, 1, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), 0);
    /* A count larger than what follows. */
    buf_reset(&b);
    buf_put_u32(&b, 0);
    buf_put_u16(&b, 2);
    buf_put_str16(&b, "x", 1);
    buf_put_u16(&b, 0);
    buf_put_u16(&b, 0);
    CHECK_EQ(prefs_validate(b.p, b.len, &msg), -EINVAL);
    CHECK_EQ(prefs_validate(NULL, 0, &msg), -EINVAL);
    buf_free(&b);
}

static void test_lists(void)
{
    struct buf b = BUF_INIT;
    uint64_t now = AT(0, 12, 0);
    /* No prefs at all: everything allowed. */
    CHECK(prefs_allows(NULL, 0, "https://x/", 10, now));

    const char *allow[] = {"https://a.example/", "https://b.example/svc"};
    build(&b, 0, allow, 2, NULL, 0, NULL, 0);
    CHECK(allows(&b, "https://a.example/", now));
    CHECK(allows(&b, "https://a.example/x/y", now));
    CHECK(allows(&b, "https://b.example/svc2", now));
    CHECK(!allows(&b, "https://b.example/", now));      /* shorter than the prefix */
    CHECK(!allows(&b, "https://c.example/", now));
    CHECK(!allows(&b, "https://a.example", now));

    /* Empty allow list: everything not denied. */
    const char *deny[] = {"https://a.example/ads", "https://evil."};
    build(&b, 0, NULL, 0, deny, 2, NULL, 0);
    CHECK(allows(&b, "https://a.example/", now));
    CHECK(allows(&b, "https://c.example/", now));
    CHECK(!allows(&b, "https://a.example/ads/1", now));
    CHECK(!allows(&b, "https://evil.example/", now));

    /* Deny wins over allow. */
    build(&b, 0, allow, 2, deny, 2, NULL, 0);
    CHECK(allows(&b, "https://a.example/app", now));
    CHECK(!allows(&b, "https://a.example/ads", now));
    CHECK(!allows(&b, "https://c.example/", now));
    buf_free(&b);
}

static void test_windows(void)
{
    struct buf b = BUF_INIT;
    /* Weekdays 09:00-17:00. */
    struct win office = {0x1f, 9 * 60, 17 * 60};
    build(&b, 0, NULL, 0, NULL, 0, &office, 1);
    CHECK(allows(&b, "u", AT(0, 9, 0)));    /* Monday, first minute in */
    CHECK(allows(&b, "u", AT(0, 16, 59)));
    CHECK(!allows(&b, "u", AT(0, 17, 0)));  /* end is exclusive */
    CHECK(!allows(&b, "u", AT(0, 8, 59)));
    CHECK(allows(&b, "u", AT(4, 12, 0)));   /* Friday */
    CHECK(!allows(&b, "u", AT(5, 12, 0)));  /* Saturday */
    CHECK(!allows(&b, "u", AT(6, 12, 0)));  /* Sunday */
    CHECK(allows(&b, "u", AT(7, 12, 0)));   /* next Monday */

    /* Friday 22:00 until Saturday 02:00: wraps midnight. */
    struct win night = {0x10, 22 * 60, 2 * 60};
    build(&b, 0, NULL, 0, NULL, 0, &night, 1);
    CHECK(allows(&b, "u", AT(4, 22, 0)));
    CHECK(allows(&b, "u", AT(4, 23, 59)));
    CHECK(allows(&b, "u", AT(5, 0, 0)));
    CHECK(allows(&b, "u", AT(5, 1, 59)));
    CHECK(!allows(&b, "u", AT(5, 2, 0)));
    CHECK(!allows(&b, "u", AT(4, 21, 59)));
    CHECK(!allows(&b, "u", AT(3, 23, 0)));  /* Thursday night: not masked */
    CHECK(!allows(&b, "u", AT(4, 1, 0)));   /* Friday early: Thursday's morning part */
    CHECK(!allows(&b, "u", AT(5, 23, 0)));  /* Saturday night */

    /* Sunday night into Monday wraps the week too. */
    struct win sun = {0x40, 23 * 60, 60};
    build(&b, 0, NULL, 0, NULL, 0, &sun, 1);
    CHECK(allows(&b, "u", AT(6, 23, 30)));
    CHECK(allows(&b, "u", AT(7, 0, 30)));
    CHECK(!allows(&b, "u", AT(7, 1, 0)));
    CHECK(!allows(&b, "u", AT(0, 23, 30)));

    /* Several windows: any one suffices; lists still apply inside. */
    struct win two[] = {{0x01, 60, 120}, {0x02, 600, 660}};
    const char *deny[] = {"bad"};
    build(&b, 0, NULL, 0, deny, 1, two, 2);
    CHECK(allows(&b, "u", AT(0, 1, 30)));
    CHECK(allows(&b, "u", AT(1, 10, 30)));
    CHECK(!allows(&b, "u", AT(1, 1, 30)));
    CHECK(!allows(&b, "bad/x", AT(0, 1, 30)));
    /* Seconds inside the minute do not matter; microseconds neither. */
    CHECK(allows(&b, "u", AT(0, 1, 59) + 59999999u));
    CHECK(!allows(&b, "u", AT(0, 1, 59) + 60000000u));
    buf_free(&b);
}

static void test_retention_and_malformed(void)
{
    struct buf b = BUF_INIT;
    build(&b, 86400, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_retention(b.p, b.len), 86400);
    CHECK_EQ(prefs_retention(NULL, 0), 0);
    CHECK_EQ(prefs_retention(b.p, 3), 0);
    build(&b, 0, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_retention(b.p, b.len), 0);
    /* No retention: the row's own expiry stands. */
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, 1000, 0), 0);
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, 1000, 5000), 5000);
    CHECK_EQ(prefs_cap_expiry(NULL, 0, 1000, 7), 7);
    build(&b, 600, NULL, 0, NULL, 0, NULL, 0);
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, 1000, 0), 1600);    /* never -> bounded */
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, 1000, 5000), 1600); /* later -> bounded */
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, 1000, 1200), 1200); /* earlier stays */
    CHECK_EQ(prefs_cap_expiry(b.p, b.len, UINT32_MAX - 10, 0), UINT32_MAX);
    build(&b, 0, NULL, 0, NULL, 0, NULL, 0);
    /* A malformed blob denies (fail closed). */
    CHECK(!prefs_allows(b.p, 5, "u", 1, AT(0, 0, 0)));
    uint8_t junk[] = {0, 0, 0, 0, 0, 9};
    CHECK(!prefs_allows(junk, sizeof(junk), "u", 1, AT(0, 0, 0)));
    buf_free(&b);
}

int main(void)
{
    test_validate();
    test_lists();
    test_windows();
    test_retention_and_malformed();
    return 0;
}
