/*
 * seal.c — AES-256-GCM through BoringSSL's EVP_AEAD interface.
 */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/aead.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "io.h"

int seal_init(struct seal *s, const struct store_io *io, const char *key_file,
              char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (!key_file)
        return 0;
    int fd = io->open(io->ctx, key_file, O_RDONLY, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open key file %s: %s", key_file, strerror(-fd));
        return fd;
    }
    uint8_t key[33];
    ssize_t n = io->pread(io->ctx, fd, key, sizeof(key), 0);
    io->close(io->ctx, fd);
    if (n != 32) {
        snprintf(err, errlen, "key file %s must hold exactly 32 bytes (AES-256), has %s%zd",
                 key_file, n > 32 ? "more than " : "", n > 32 ? (ssize_t)32 : n);
        OPENSSL_cleanse(key, sizeof(key));
        return -EINVAL;
    }
    EVP_AEAD_CTX *ctx = EVP_AEAD_CTX_new(EVP_aead_aes_256_gcm(), key, 32,
                                         EVP_AEAD_DEFAULT_TAG_LENGTH);
    OPENSSL_cleanse(key, sizeof(key));
    if (!ctx) {
        snprintf(err, errlen, "cannot set up AES-256-GCM");
        return -ENOMEM;
    }
    s->aead = ctx;
    s->on = 1;
    return 0;
}

void seal_fini(struct seal *s)
{
    if (s->aead)
        EVP_AEAD_CTX_free(s->aead);
    s->aead = NULL;
    s->on = 0;
}

static void nonce_of(uint8_t nonce[12], const uint8_t base[12], uint64_t ctr)
{
    memcpy(nonce, base, 12);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] ^= (uint8_t)(ctr >> (56 - 8 * i));
}

int seal_seal(const struct seal *s, const uint8_t base[12], uint64_t ctr,
              const uint8_t *ad, size_t adn, const uint8_t *in, size_t n,
              uint8_t *out)
{
    uint8_t nonce[12];
    size_t outn = 0;
    nonce_of(nonce, base, ctr);
    if (!EVP_AEAD_CTX_seal(s->aead, out, &outn, n + 16, nonce, 12, in, n, ad, adn))
        return -EIO;
    return 0;
}

int seal_open(const struct seal *s, const uint8_t base[12], uint64_t ctr,
              const uint8_t *ad, size_t adn, const uint8_t *in, size_t n,
              uint8_t *out)
{
    uint8_t nonce[12];
    size_t outn = 0;
    if (n < 16)
        return -EBADMSG;
    nonce_of(nonce, base, ctr);
    if (!EVP_AEAD_CTX_open(s->aead, out, &outn, n - 16, nonce, 12, in, n, ad, adn))
        return -EBADMSG;
    return 0;
}

void seal_random(uint8_t *p, size_t n) { RAND_bytes(p, n); }
