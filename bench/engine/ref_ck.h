/* ref_ck.h — ck_ht dual index for bench_engine (see ref_ck.c). */
#ifndef ICS_REF_CK_H
#define ICS_REF_CK_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
struct ref_ck_row { /* what an engine row holds (see RRow) */
    uint64_t lsn;
    uint32_t exp;
    uint16_t uri;
    char uti[36];
};
struct ref_ck_dev {
    struct ref_ck_row *rows;
    uint32_t n;
    uint8_t id_len;
    char id[];
};
struct ref_ck;
struct ref_ck *ref_ck_new(size_t hint);
int ref_ck_add(struct ref_ck *r, const void *dev, size_t dev_len,
               const void *bkey, size_t bkey_len, uint16_t uri,
               const void *uti, size_t uti_len, uint32_t exp, uint64_t lsn);
struct ref_ck_dev *ref_ck_dev_get(struct ref_ck *r, const void *dev, size_t n);
struct ref_ck_dev *ref_ck_bind_get(struct ref_ck *r, const void *key, size_t n);
void ref_ck_free(struct ref_ck *r);
#ifdef __cplusplus
}
#endif
#endif
