/*
 * test_acl.c — the whole opcode x role matrix of wire-v1 3.1-3.3 and the
 * per-row rules of section 4 (a tpsp never sees another tpsp's row; an
 * iot_sp sees the devices it owns; admin sees all).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"
#include "test.h"

/* A principal built by hand: the ACL only reads fields. */
static struct principal *mk(const char *name, uint8_t roles, int n, ...)
{
    struct principal *p = calloc(1, sizeof(*p) + (size_t)n * sizeof(p->scopes[0]));
    CHECK(p);
    p->roles = roles;
    p->name_len = (uint16_t)strlen(name);
    memcpy(p->name, name, p->name_len);
    p->nscopes = (uint16_t)n;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *s = va_arg(ap, const char *);
        p->scopes[i].p = (const uint8_t *)s;
        p->scopes[i].len = (uint16_t)strlen(s);
    }
    va_end(ap);
    return p;
}

enum { A = 1, I = 2, T = 4, G = 8, V = 16, ANY = 32, PRE = 64 };

static const struct { uint8_t op; unsigned who; } matrix[] = {
    {0x00, A | I | T}, {0x09, A | I | T}, {0x0C, A | I | T}, {0x0D, A | I | T},
    {0x07, PRE}, {0x17, PRE}, {0x0A, PRE}, {0x0B, PRE}, {0x20, PRE}, {0x21, PRE}, {0x22, PRE},
    {0x10, ANY},
    {0xC0, A}, {0xC1, T}, {0xC2, I}, {0xC3, I}, {0xC4, A | I | T}, {0xC5, A | I},
    {0xC6, A | T}, {0xC7, A | T}, {0xC8, A | I | T}, {0xC9, A | I | T}, {0xCA, ANY},
    {0xCB, A},
    {0xD0, A | G}, {0xD1, A | V}, {0xD2, A | I | T}, {0xD3, A}, {0xD4, ANY},
    {0xD5, A | I}, {0xD6, A | I}, {0xD7, A}, {0xD8, A}, {0xD9, A},
    /* memcached opcodes ICS does not serve: reach the dispatcher
     * (NOT_SUPPORTED), never ACCESS_DENIED for an authenticated caller. */
    {0x01, ANY}, {0x04, ANY}, {0x05, ANY}, {0x42, ANY},
};

static void test_matrix(void)
{
    struct principal *role[5];
    const uint8_t bits[5] = {PRINCIPAL_ADMIN, PRINCIPAL_IOT_SP, PRINCIPAL_TPSP,
                             PRINCIPAL_GENERATOR, PRINCIPAL_VALIDATOR};
    for (int r = 0; r < 5; r++)
        role[r] = mk("p", bits[r], 0);
    struct principal *none = mk("n", 0, 0);

    for (size_t i = 0; i < sizeof(matrix) / sizeof(matrix[0]); i++) {
        uint8_t op = matrix[i].op;
        unsigned who = matrix[i].who;
        /* Before authentication. */
        if (acl_op_allowed(NULL, op) != ((who & PRE) != 0)) {
            fprintf(stderr, "op 0x%02x unauthenticated\n", op);
            CHECK(0);
        }
        for (int r = 0; r < 5; r++) {
            int want = (who & (PRE | ANY)) || (who & (1u << r));
            if (acl_op_allowed(role[r], op) != want) {
                fprintf(stderr, "op 0x%02x role %d: want %d\n", op, r, want);
                CHECK(0);
            }
        }
        /* A principal with no role: only what anyone may. */
        CHECK_EQ(acl_op_allowed(none, op), (who & (PRE | ANY)) != 0);
        unsigned roles = acl_op_roles(op);
        CHECK_EQ(roles, (who & (PRE | ANY)) ? 0 : who);
    }
    /* Roles add up: generator + validator may do both; a generator alone
     * cannot validate. */
    struct principal *gv = mk("gv", PRINCIPAL_GENERATOR | PRINCIPAL_VALIDATOR, 0);
    CHECK(acl_op_allowed(gv, ACL_OP_KEY_ISSUE));
    CHECK(acl_op_allowed(gv, ACL_OP_KEY_VALIDATE));
    CHECK(!acl_op_allowed(role[3], ACL_OP_KEY_VALIDATE));
    CHECK(!acl_op_allowed(role[2], ACL_OP_KEY_ISSUE));  /* a tpsp cannot issue */
    CHECK(!acl_op_allowed(gv, ACL_OP_INQUIRE_DEVICE));
    free(gv);
    for (int r = 0; r < 5; r++)
        free(role[r]);
    free(none);
}

static struct engine_row row(const char *dev, const char *owner, const char *uri)
{
    struct engine_row r;
    memset(&r, 0, sizeof(r));
    r.device = (const uint8_t *)dev;
    r.device_len = (uint16_t)strlen(dev);
    r.owner = (const uint8_t *)owner;
    r.owner_len = (uint16_t)(owner ? strlen(owner) : 0);
    r.uri = (const uint8_t *)uri;
    r.uri_len = (uint16_t)strlen(uri);
    r.uti = (const uint8_t *)"uti";
    r.uti_len = 3;
    return r;
}

#define VIS(p, r) (acl_row_via((p), (r), 0) != ACL_VIA_NONE)

static void test_rows(void)
{
    struct principal *admin = mk("root", PRINCIPAL_ADMIN, 0);
    struct principal *acme = mk("acme", PRINCIPAL_IOT_SP, 1, "ACME-");
    struct principal *acme2 = mk("acme2", PRINCIPAL_IOT_SP, 1, "ACME-");
    struct principal *t1 = mk("t1", PRINCIPAL_TPSP, 2, "https://one.example/", "https://shared/a");
    struct principal *t2 = mk("t2", PRINCIPAL_TPSP, 1, "https://two.example/");
    struct principal *both = mk("both", PRINCIPAL_IOT_SP | PRINCIPAL_TPSP, 1, "https://b/");
    struct principal *gen = mk("gen", PRINCIPAL_GENERATOR, 1, "https://one.example/");

    struct engine_row r1 = row("dev1", "acme", "https://one.example/app");
    struct engine_row r2 = row("dev1", "acme", "https://two.example/app");
    struct engine_row r3 = row("dev2", NULL, "https://one.example/x");
    struct engine_row r4 = row("dev3", "both", "https://z/");

    CHECK(acl_row_via(admin, &r1, 0) == ACL_VIA_ADMIN && VIS(admin, &r2) && VIS(admin, &r3) &&
          VIS(admin, &r4));
    /* iot_sp: its devices only, by owner name (not by serial prefix). */
    CHECK(acl_row_via(acme, &r1, 0) == ACL_VIA_OWNER && VIS(acme, &r2));
    CHECK(!VIS(acme, &r3));
    CHECK(!VIS(acme2, &r1));          /* same prefix, other owner */
    /* tpsp: rows of its URIs only. */
    CHECK(acl_row_via(t1, &r1, 0) == ACL_VIA_TPSP && !VIS(t1, &r2));
    CHECK(VIS(t1, &r3));
    CHECK(!VIS(t2, &r1) && VIS(t2, &r2));
    CHECK(!VIS(t2, &r3));
    /* Both roles add up. */
    CHECK(VIS(both, &r4));
    struct engine_row r5 = row("dev9", "acme", "https://b/svc");
    CHECK(VIS(both, &r5));
    CHECK(!VIS(both, &r1));
    /* Scopes of a role that has no URI rights count for nothing. */
    CHECK(!VIS(gen, &r1));
    CHECK(!VIS(NULL, &r1));

    /* The device's preferences: a tpsp the deny list names sees nothing of
     * the row (wire-v1 section 4); the owner and admin still see it, and
     * another tpsp's rows of the same device are untouched. */
    static const uint8_t deny_one[] = {
        0, 0, 0, 0, /* retention */          0, 0, /* no allow list */
        0, 1, 0, 20, 'h', 't', 't', 'p', 's', ':', '/', '/', 'o', 'n', 'e', '.', 'e', 'x', 'a',
        'm', 'p', 'l', 'e', '/',             0, 0, /* no windows */
    };
    struct engine_row r6 = row("dev1", "acme", "https://one.example/app");
    struct engine_row r7 = row("dev1", "acme", "https://two.example/app");
    r6.prefs = r7.prefs = deny_one;
    r6.prefs_len = r7.prefs_len = sizeof deny_one;
    CHECK(acl_row_via(t1, &r6, 0) == ACL_VIA_NONE);
    CHECK(acl_row_via(acme, &r6, 0) == ACL_VIA_OWNER);
    CHECK(acl_row_via(admin, &r6, 0) == ACL_VIA_ADMIN);
    CHECK(acl_row_via(t2, &r7, 0) == ACL_VIA_TPSP);

    CHECK(acl_uri_in_scope(t1, "https://shared/a", 16));
    CHECK(!acl_uri_in_scope(t1, "https://shared/", 15));
    CHECK(acl_uri_in_scope(admin, "anything", 8));
    CHECK(!acl_uri_in_scope(acme, "ACME-1", 6));
    CHECK(!acl_uri_in_scope(NULL, "x", 1));

    CHECK(acl_owns_device(acme, "acme", 4));
    CHECK(!acl_owns_device(acme, "acm", 3));
    CHECK(!acl_owns_device(acme, "", 0));
    CHECK(acl_owns_device(admin, "", 0));
    CHECK(!acl_owns_device(t1, "t1", 2));  /* a tpsp owns no device */

    CHECK(acl_serial_in_scope(acme, "ACME-0001", 9));
    CHECK(!acl_serial_in_scope(acme, "ACM", 3));
    CHECK(!acl_serial_in_scope(t1, "https://one.example/", 20));

    CHECK(strcmp(acl_role_name(admin), "admin") == 0);
    CHECK(strcmp(acl_role_name(both), "iot_sp") == 0);
    CHECK(strcmp(acl_role_name(t1), "tpsp") == 0);
    CHECK(strcmp(acl_role_name(gen), "generator") == 0);
    CHECK(strcmp(acl_role_name(NULL), "none") == 0);
    free(admin); free(acme); free(acme2); free(t1); free(t2); free(both); free(gen);
}

int main(void)
{
    test_matrix();
    test_rows();
    return 0;
}
