/*
 * test_principal.c — the principal registry without a store: PRINCIPAL_SET
 * decoding (every malformed field), principals-file lines, hash + verify,
 * revocation on replace and delete, PRINCIPAL_LIST never leaking a secret,
 * longest-prefix routing, and the first-start admin.
 */
#include <errno.h>
#include <string.h>

#include "buf.h"
#include "principal.h"
#include "test.h"

#define ITER 1000 /* PBKDF2 iterations: low so the test is fast */

struct val {
    uint8_t roles;
    const char *secret, *fp;
    int n;
    const char *scopes[4];
};

static void encode(struct buf *b, const struct val *v)
{
    buf_reset(b);
    buf_put_u8(b, v->roles);
    buf_put_str16(b, v->secret, strlen(v->secret));
    buf_put_str16(b, v->fp, strlen(v->fp));
    buf_put_u16(b, (uint16_t)v->n);
    for (int i = 0; i < v->n; i++)
        buf_put_str16(b, v->scopes[i], strlen(v->scopes[i]));
}

static const char *FP = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";

static void expect(const void *name, size_t nlen, const struct buf *b, int want, const char *why)
{
    static struct principal_def d;
    const char *msg = NULL;
    int rc = principal_decode_set(name, nlen, b->p, b->len, &d, &msg);
    if (rc != want || (want && (!msg || !strstr(msg, why)))) {
        fprintf(stderr, "decode: rc %d want %d msg '%s' want '%s'\n", rc, want,
                msg ? msg : "(null)", why);
        CHECK(0);
    }
}

static void test_decode(void)
{
    struct buf b = BUF_INIT;
    static struct principal_def d;
    const char *msg;
    struct val v = {PRINCIPAL_TPSP | PRINCIPAL_IOT_SP, "s3cret", "", 2, {"https://a/", "ACME-"}};
    encode(&b, &v);
    CHECK_EQ(principal_decode_set("t1", 2, b.p, b.len, &d, &msg), 0);
    CHECK_EQ(d.name.len, 2);
    CHECK_EQ(d.roles, 6);
    CHECK_EQ(d.secret.len, 6);
    CHECK_MEM(d.secret.p, "s3cret", 6);
    CHECK(!d.has_fp);
    CHECK_EQ(d.nscopes, 2);
    CHECK_MEM(d.scopes[1].p, "ACME-", 5);

    v.fp = FP;
    encode(&b, &v);
    CHECK_EQ(principal_decode_set("t1", 2, b.p, b.len, &d, &msg), 0);
    CHECK(d.has_fp);
    CHECK_EQ(d.fp[0], 0x00);
    CHECK_EQ(d.fp[10], 0xAA);
    CHECK_EQ(d.fp[31], 0xff);

    /* Every truncation is malformed. */
    for (size_t n = 0; n < b.len; n++) {
        CHECK_EQ(principal_decode_set("t1", 2, b.p, n, &d, &msg), -EINVAL);
        CHECK(strstr(msg, "truncated"));
    }
    /* Names. */
    char name[130];
    memset(name, 'n', sizeof(name));
    expect("", 0, &b, -EINVAL, "empty");
    expect(name, 129, &b, -E2BIG, "128");
    expect(name, 128, &b, 0, "");
    expect("a\0b", 3, &b, -EINVAL, "NUL");
    /* Roles. */
    struct val r = v;
    r.roles = 0;
    encode(&b, &r);
    expect("x", 1, &b, -EINVAL, "roles");
    r.roles = 0x20;
    encode(&b, &r);
    expect("x", 1, &b, -EINVAL, "roles");
    r.roles = 0x1f;
    encode(&b, &r);
    expect("x", 1, &b, 0, "");
    /* Secret. */
    static char big[1100];
    memset(big, 's', 1025);
    r = v;
    r.secret = big;
    encode(&b, &r);
    expect("x", 1, &b, -E2BIG, "secret");
    big[1024] = 0;
    encode(&b, &r);
    expect("x", 1, &b, 0, "");
    /* Fingerprint: wrong length, not hex. */
    r = v;
    r.fp = "abcd";
    encode(&b, &r);
    expect("x", 1, &b, -EINVAL, "fingerprint");
    char fp[65];
    memcpy(fp, FP, 65);
    fp[40] = 'g';
    r.fp = fp;
    encode(&b, &r);
    expect("x", 1, &b, -EINVAL, "fingerprint");
    /* Scopes: empty, NUL, too long, too many, trailing bytes. */
    r = v;
    r.scopes[0] = "";
    encode(&b, &r);
    expect("x", 1, &b, -EINVAL, "empty scope");
    r.scopes[0] = big;
    memset(big, 'p', 1025);
    big[1025] = 0;
    encode(&b, &r);
    expect("x", 1, &b, -E2BIG, "1024");
    buf_reset(&b);
    buf_put_u8(&b, 4);
    buf_put_str16(&b, "", 0);
    buf_put_str16(&b, "", 0);
    buf_put_u16(&b, 1);
    buf_put_str16(&b, "a\0", 2);
    expect("x", 1, &b, -EINVAL, "NUL");
    buf_reset(&b);
    buf_put_u8(&b, 4);
    buf_put_str16(&b, "", 0);
    buf_put_str16(&b, "", 0);
    buf_put_u16(&b, 257);
    for (int i = 0; i < 257; i++)
        buf_put_str16(&b, "p", 1);
    expect("x", 1, &b, -E2BIG, "256");
    buf_reset(&b);
    buf_put_u8(&b, 4);
    buf_put_str16(&b, "", 0);
    buf_put_str16(&b, "", 0);
    buf_put_u16(&b, 256);
    for (int i = 0; i < 256; i++)
        buf_put_str16(&b, "p", 1);
    expect("x", 1, &b, 0, "");
    buf_put_u8(&b, 0);
    expect("x", 1, &b, -EINVAL, "trailing");
    buf_free(&b);
}

static void line_expect(const char *line, int want, const char *why)
{
    static struct principal_def d;
    char err[256] = "";
    int rc = principal_parse_line(line, strlen(line), 42, &d, err, sizeof(err));
    if (rc != want || (want < 0 && (strncmp(err, "42: ", 4) != 0 || !strstr(err, why)))) {
        fprintf(stderr, "line '%s': rc %d want %d err '%s' want '%s'\n", line, rc, want, err, why);
        CHECK(0);
    }
}

static void test_parse_line(void)
{
    static struct principal_def d;
    char err[256];
    const char *l = "  acme\troles=iot_sp,tpsp secret=pw fingerprint=" "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff"
                    " scopes=ACME-,https://acme/\r\n";
    CHECK_EQ(principal_parse_line(l, strlen(l), 1, &d, err, sizeof(err)), 0);
    CHECK_EQ(d.name.len, 4);
    CHECK_MEM(d.name.p, "acme", 4);
    CHECK_EQ(d.roles, PRINCIPAL_IOT_SP | PRINCIPAL_TPSP);
    CHECK_EQ(d.secret.len, 2);
    CHECK(d.has_fp);
    CHECK_EQ(d.fp[31], 0xff);
    CHECK_EQ(d.nscopes, 2);
    CHECK_EQ(d.scopes[1].len, 13);
    CHECK_MEM(d.scopes[1].p, "https://acme/", 13);

    line_expect("", 1, "");
    line_expect("   \t ", 1, "");
    line_expect("# a comment roles=admin", 1, "");
    line_expect("  # indented comment", 1, "");
    line_expect("root roles=admin", 0, "");
    line_expect("g roles=generator,validator", 0, "");
    line_expect("root", -EINVAL, "missing roles");
    line_expect("root secret=x", -EINVAL, "missing roles");
    line_expect("roles=admin", -EINVAL, "principal name");
    line_expect("root roles=admin,king", -EINVAL, "unknown role");
    line_expect("root roles=", -EINVAL, "unknown role");
    line_expect("root roles=admin,", -EINVAL, "unknown role");
    line_expect("root roles=admin roles=tpsp", -EINVAL, "duplicate");
    line_expect("root roles=admin colour=blue", -EINVAL, "unknown key");
    line_expect("root roles=admin stray", -EINVAL, "key=value");
    line_expect("root roles=admin fingerprint=abc", -EINVAL, "fingerprint");
    line_expect("root roles=admin secret=", -EINVAL, "empty secret");
    line_expect("t roles=tpsp scopes=a,,b", -EINVAL, "empty scope");
    line_expect("t roles=tpsp scopes=", -EINVAL, "empty scope");
    line_expect("t roles=tpsp scopes=a scopes=b", -EINVAL, "duplicate");
    char longname[200];
    memset(longname, 'n', 129);
    strcpy(longname + 129, " roles=admin");
    line_expect(longname, -E2BIG, "128");
    /* A NUL in the middle of a line (binary junk in a file). */
    CHECK_EQ(principal_parse_line("a\0b roles=admin", 15, 7, &d, err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "7: ", 3) == 0);
    /* No error buffer is fine. */
    CHECK_EQ(principal_parse_line("x", 1, 1, &d, NULL, 0), -EINVAL);
}

static struct principal_def def(const char *name, uint8_t roles, const char *secret, int n,
                                const char **scopes)
{
    struct principal_def d;
    memset(&d, 0, sizeof(d));
    d.name.p = (const uint8_t *)name;
    d.name.len = (uint16_t)strlen(name);
    d.roles = roles;
    d.secret.p = (const uint8_t *)secret;
    d.secret.len = (uint16_t)(secret ? strlen(secret) : 0);
    d.nscopes = (uint16_t)n;
    for (int i = 0; i < n; i++) {
        d.scopes[i].p = (const uint8_t *)scopes[i];
        d.scopes[i].len = (uint16_t)strlen(scopes[i]);
    }
    return d;
}

static int done_calls;
static void on_done(void *arg, int status, uint64_t lsn)
{
    CHECK(arg == &done_calls);
    CHECK_EQ(status, 0);
    (void)lsn;
    done_calls++;
}

static void test_registry(void)
{
    principal_reg_t *reg;
    struct principal_config cfg = {.iterations = ITER};
    CHECK_EQ(principal_reg_create(&reg, &cfg), 0);
    static struct principal_def d;

    d = def("alice", PRINCIPAL_TPSP, "correct horse", 1, (const char *[]){"https://a/"});
    CHECK_EQ(principal_set(reg, NULL, &d, on_done, &done_calls), 0);
    CHECK_EQ(done_calls, 1);
    struct principal *p = principal_get(reg, "alice", 5);
    CHECK(p);
    CHECK(!principal_revoked(p));
    CHECK_EQ(p->roles, PRINCIPAL_TPSP);
    CHECK_EQ(p->iterations, ITER);
    CHECK(p->has_secret);
    CHECK_EQ(principal_verify_secret(p, "correct horse", 13), 0);
    CHECK_EQ(principal_verify_secret(p, "correct horsE", 13), -EACCES);
    CHECK_EQ(principal_verify_secret(p, "correct hors", 12), -EACCES);
    CHECK_EQ(principal_verify_secret(p, "", 0), -EACCES);
    CHECK_EQ(principal_verify_secret(NULL, "x", 1), -EACCES);
    /* The clear secret is nowhere in the record. */
    CHECK(memmem(p, sizeof(*p), "correct horse", 13) == NULL);
    CHECK(principal_get(reg, "alic", 4) == NULL);
    CHECK(principal_get(reg, "alice2", 6) == NULL);

    /* Same secret, two principals: different salts, different hashes. */
    d = def("bob", PRINCIPAL_TPSP, "correct horse", 0, NULL);
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    struct principal *b = principal_get(reg, "bob", 3);
    CHECK(memcmp(b->salt, p->salt, PRINCIPAL_SALT_LEN) != 0);
    CHECK(memcmp(b->hash, p->hash, PRINCIPAL_HASH_LEN) != 0);
    CHECK_EQ(principal_verify_secret(b, "correct horse", 13), 0);

    /* Replace: the old record is revoked at once, the holder still reads it. */
    d = def("alice", PRINCIPAL_TPSP | PRINCIPAL_GENERATOR, "new", 2,
            (const char *[]){"https://a/", "https://b/"});
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    CHECK(principal_revoked(p));
    CHECK_EQ(p->roles, PRINCIPAL_TPSP);
    struct principal *p2 = principal_get(reg, "alice", 5);
    CHECK(p2 && p2 != p && !principal_revoked(p2));
    CHECK_EQ(p2->nscopes, 2);
    CHECK_EQ(principal_verify_secret(p2, "correct horse", 13), -EACCES);
    CHECK_EQ(principal_verify_secret(p2, "new", 3), 0);
    principal_put(p);

    /* Certificate only: no secret verifies; the pin matches or not. */
    d = def("dev", PRINCIPAL_IOT_SP, NULL, 0, NULL);
    d.has_fp = true;
    memset(d.fp, 0xab, sizeof(d.fp));
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    struct principal *c = principal_get(reg, "dev", 3);
    CHECK(!c->has_secret);
    CHECK_EQ(principal_verify_secret(c, "", 0), -EACCES);
    uint8_t fp[32];
    memset(fp, 0xab, sizeof(fp));
    CHECK(principal_fp_matches(c, fp));
    fp[31] = 0;
    CHECK(!principal_fp_matches(c, fp));
    CHECK(!principal_fp_matches(c, NULL));
    CHECK(principal_fp_matches(b, fp)); /* no pin: any certificate naming it */
    principal_put(c);

    /* Delete: revoked, gone; a second delete is -ENOENT. */
    CHECK_EQ(principal_count(reg), 3);
    CHECK_EQ(principal_del(reg, NULL, "alice", 5, NULL, NULL), 0);
    CHECK(principal_revoked(p2));
    CHECK(principal_get(reg, "alice", 5) == NULL);
    CHECK_EQ(principal_del(reg, NULL, "alice", 5, NULL, NULL), -ENOENT);
    CHECK_EQ(principal_del(reg, NULL, "", 0, NULL, NULL), -EINVAL);
    CHECK_EQ(principal_count(reg), 2);
    principal_put(p2);

    /* Bad definitions are refused before anything happens. */
    d = def("x", 0, NULL, 0, NULL);
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), -EINVAL);
    d = def("", PRINCIPAL_ADMIN, NULL, 0, NULL);
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), -EINVAL);
    CHECK_EQ(principal_count(reg), 2);

    /* Destroying the registry revokes; a holder's reference stays valid. */
    principal_reg_destroy(reg);
    CHECK(principal_revoked(b));
    CHECK_EQ(b->name_len, 3);
    principal_put(b);
}

static uint16_t rd16(const uint8_t **p)
{
    uint16_t v = (uint16_t)((*p)[0] << 8 | (*p)[1]);
    *p += 2;
    return v;
}

static void test_list_and_route(void)
{
    principal_reg_t *reg;
    struct principal_config cfg = {.iterations = ITER};
    CHECK_EQ(principal_reg_create(&reg, &cfg), 0);
    static struct principal_def d;
    d = def("zeta", PRINCIPAL_IOT_SP, "zsecret", 1, (const char *[]){"ACME-"});
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    d = def("acme-eu", PRINCIPAL_IOT_SP, "esecret", 2, (const char *[]){"X-", "ACME-EU-"});
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    d = def("aaa", PRINCIPAL_IOT_SP, NULL, 1, (const char *[]){"ACME-"}); /* tie with zeta */
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
    d = def("shop", PRINCIPAL_TPSP, "tsecret", 1, (const char *[]){"ACME-EU-1"}); /* not iot_sp */
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);

    struct principal *r = principal_route_serial(reg, "ACME-EU-1234", 12);
    CHECK(r && r->name_len == 7 && memcmp(r->name, "acme-eu", 7) == 0);
    principal_put(r);
    r = principal_route_serial(reg, "ACME-US-1", 9);
    CHECK(r && r->name_len == 3 && memcmp(r->name, "aaa", 3) == 0); /* tie: smaller name */
    principal_put(r);
    r = principal_route_serial(reg, "ACME-EU-", 8);
    CHECK(r && r->name_len == 7);
    principal_put(r);
    CHECK(principal_route_serial(reg, "ACME", 4) == NULL);
    CHECK(principal_route_serial(reg, "OTHER-1", 7) == NULL);

    struct buf b = BUF_INIT;
    CHECK_EQ(buf_put_u8(&b, 0xEE), 0); /* appends after what is there */
    CHECK_EQ(principal_list_encode(reg, &b), 0);
    const uint8_t *q = b.p + 1;
    CHECK_EQ(((uint32_t)q[0] << 24 | q[1] << 16 | q[2] << 8 | q[3]), 4);
    q += 4;
    const char *names[] = {"aaa", "acme-eu", "shop", "zeta"};
    const int nsc[] = {1, 2, 1, 1};
    for (int i = 0; i < 4; i++) {
        uint16_t n = rd16(&q);
        CHECK_EQ(n, strlen(names[i]));
        CHECK_MEM(q, names[i], n);
        q += n;
        q++; /* roles */
        uint16_t m = rd16(&q);
        CHECK_EQ(m, nsc[i]);
        for (int j = 0; j < m; j++) {
            uint16_t l = rd16(&q);
            q += l;
        }
    }
    CHECK(q == b.p + b.len);
    /* Never a secret, nor its hash. */
    CHECK(memmem(b.p, b.len, "secret", 6) == NULL);
    struct principal *z = principal_get(reg, "zeta", 4);
    CHECK(memmem(b.p, b.len, z->hash, 8) == NULL);
    CHECK(memmem(b.p, b.len, z->salt, 8) == NULL);
    principal_put(z);
    buf_free(&b);
    principal_reg_destroy(reg);
}

static void test_bootstrap(void)
{
    principal_reg_t *reg;
    struct principal_config cfg = {.iterations = ITER};
    CHECK_EQ(principal_reg_create(&reg, &cfg), 0);
    char secret[33], small[8];
    CHECK_EQ(principal_bootstrap_admin(reg, NULL, "admin", small, sizeof(small)), -EINVAL);
    CHECK_EQ(principal_bootstrap_admin(reg, NULL, "admin", secret, sizeof(secret)), 0);
    CHECK_EQ(strlen(secret), 32);
    for (int i = 0; i < 32; i++)
        CHECK(strchr("0123456789abcdef", secret[i]));
    struct principal *a = principal_get(reg, "admin", 5);
    CHECK(a && a->roles == PRINCIPAL_ADMIN);
    CHECK_EQ(principal_verify_secret(a, secret, 32), 0);
    principal_put(a);
    char again[33];
    CHECK_EQ(principal_bootstrap_admin(reg, NULL, "admin", again, sizeof(again)), -EEXIST);
    principal_reg_destroy(reg);
}

static void test_import(void)
{
    principal_reg_t *reg;
    struct principal_config cfg = {.iterations = ITER};
    CHECK_EQ(principal_reg_create(&reg, &cfg), 0);
    char err[256];
    const char *file = "# principals of the test\n"
                       "admin roles=admin secret=a1\n"
                       "\n"
                       "acme roles=iot_sp scopes=ACME-\r\n"
                       "shop roles=tpsp secret=s1 scopes=https://shop/,https://shop2/";
    CHECK_EQ(principal_import(reg, NULL, file, strlen(file), err, sizeof(err)), 3);
    CHECK_EQ(principal_count(reg), 3);
    struct principal *p = principal_get(reg, "shop", 4);
    CHECK(p && p->nscopes == 2 && principal_verify_secret(p, "s1", 2) == 0);

    /* A bad line anywhere: nothing is set, the error names the line. */
    const char *bad = "new1 roles=tpsp\nnew2 roles=tpsp\nnew3 roles=wizard\n";
    CHECK_EQ(principal_import(reg, NULL, bad, strlen(bad), err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "3: unknown role", 15) == 0);
    CHECK(principal_get(reg, "new1", 4) == NULL);
    /* A name twice: refused too. */
    const char *dup = "x roles=tpsp\n# c\nx roles=admin\n";
    CHECK_EQ(principal_import(reg, NULL, dup, strlen(dup), err, sizeof(err)), -EINVAL);
    CHECK(strncmp(err, "3: principal named twice", 24) == 0);
    CHECK_EQ(principal_count(reg), 3);

    /* Re-importing replaces (and revokes) what the file names, keeps the rest. */
    const char *again = "shop roles=tpsp secret=s2 scopes=https://shop/";
    CHECK_EQ(principal_import(reg, NULL, again, strlen(again), err, sizeof(err)), 1);
    CHECK(principal_revoked(p));
    principal_put(p);
    p = principal_get(reg, "shop", 4);
    CHECK(p && p->nscopes == 1 && principal_verify_secret(p, "s2", 2) == 0);
    principal_put(p);
    CHECK_EQ(principal_count(reg), 3);
    CHECK_EQ(principal_import(reg, NULL, "", 0, err, sizeof(err)), 0);
    principal_reg_destroy(reg);
}

int main(void)
{
    test_import();
    test_decode();
    test_parse_line();
    test_registry();
    test_list_and_route();
    test_bootstrap();
    return 0;
}
