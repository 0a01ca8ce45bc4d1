/*
 * test_principal_concurrency.c — readers hold and check principals while a
 * writer replaces and deletes them (TSan runs this: label concurrency).
 *
 * Invariant checked: every record a reader gets is whole (its scope count
 * equals the generation encoded in its roles), and once a reader sees its
 * record revoked, a fresh lookup returns a different record or none.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "principal.h"
#include "test.h"

#define READERS 2
#define ROUNDS 3000

static principal_reg_t *reg;
static atomic_int stop;
static atomic_long revocations_seen;

static const char *scopes[] = {"s0", "s1", "s2", "s3"};

static void set_gen(int gen)
{
    static struct principal_def d;
    memset(&d, 0, sizeof(d));
    d.name.p = (const uint8_t *)"hot";
    d.name.len = 3;
    /* roles and scope count move together: a torn record would show. */
    int n = gen % 4 + 1;
    d.roles = (uint8_t)(PRINCIPAL_TPSP | (n == 1 ? 0 : n == 2 ? PRINCIPAL_GENERATOR
                                          : n == 3 ? PRINCIPAL_VALIDATOR : PRINCIPAL_ADMIN));
    d.nscopes = (uint16_t)n;
    for (int i = 0; i < n; i++) {
        d.scopes[i].p = (const uint8_t *)scopes[i];
        d.scopes[i].len = 2;
    }
    CHECK_EQ(principal_set(reg, NULL, &d, NULL, NULL), 0);
}

static int expected_scopes(uint8_t roles)
{
    if (roles & PRINCIPAL_ADMIN)
        return 4;
    if (roles & PRINCIPAL_VALIDATOR)
        return 3;
    if (roles & PRINCIPAL_GENERATOR)
        return 2;
    return 1;
}

static void *reader(void *arg)
{
    (void)arg;
    struct principal *held = NULL;
    while (!atomic_load(&stop)) {
        if (!held) {
            held = principal_get(reg, "hot", 3);
            continue;
        }
        /* The per-request check a connection makes. */
        if (principal_revoked(held)) {
            struct principal *fresh = principal_get(reg, "hot", 3);
            CHECK(fresh != held);
            principal_put(held);
            held = fresh;
            atomic_fetch_add(&revocations_seen, 1);
            continue;
        }
        CHECK_EQ(held->nscopes, expected_scopes(held->roles));
        CHECK_MEM(held->scopes[held->nscopes - 1].p, scopes[held->nscopes - 1], 2);
        CHECK(held->name_len == 3 && memcmp(held->name, "hot", 3) == 0);
    }
    principal_put(held);
    return NULL;
}

int main(void)
{
    struct principal_config cfg = {.iterations = 1};
    CHECK_EQ(principal_reg_create(&reg, &cfg), 0);
    set_gen(0);
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, reader, NULL), 0);
    for (int g = 1; g <= ROUNDS; g++) {
        if (g % 10 == 0)
            CHECK_EQ(principal_del(reg, NULL, "hot", 3, NULL, NULL), 0);
        set_gen(g);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    /* The last record is current and not revoked. */
    struct principal *p = principal_get(reg, "hot", 3);
    CHECK(p && !principal_revoked(p));
    CHECK_EQ(p->nscopes, ROUNDS % 4 + 1);
    principal_put(p);
    principal_reg_destroy(reg);
    fprintf(stderr, "revocations seen by readers: %ld\n", atomic_load(&revocations_seen));
    return 0;
}
