/*
 * test.h — the few assertions every C test here uses. A failed check prints
 * file:line and the expression, and the test exits 1 (ctest: failed);
 * tests exit 77 to be reported as skipped.
 */
#ifndef ICS_TEST_H
#define ICS_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
                    __LINE__, #cond);                                      \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                     \
    do {                                                                   \
        long long _a = (long long)(a), _b = (long long)(b);                \
        if (_a != _b) {                                                    \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld)\n", \
                    __FILE__, __LINE__, #a, #b, _a, _b);                   \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

#define CHECK_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

#define TEST_SKIP(...)                                                     \
    do {                                                                   \
        fprintf(stderr, "skipped: " __VA_ARGS__);                          \
        fputc('\n', stderr);                                               \
        exit(77);                                                          \
    } while (0)

#endif
