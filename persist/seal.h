/*
 * seal.h — encryption at rest: AES-256-GCM (BoringSSL EVP_AEAD) over WAL
 * record payloads and snapshot blocks.
 *
 * Nonce scheme: every file (WAL segment, snapshot) gets a fresh random
 * 96-bit nonce base from RAND_bytes when it is created, stored in its
 * header; the nonce of the i-th sealed item of the file is that base with
 * its last 8 bytes XORed with i (i = 0 is the header's key check). A file
 * is never appended to after a restart (the store always starts a new
 * segment), so a (base, i) pair is used once; two files share a base with
 * probability ~n^2/2^97. The key is 32 raw bytes read from a file.
 * Thread-safe after seal_init: sealing/opening only reads the context.
 */
#ifndef ICS_PERSIST_SEAL_H
#define ICS_PERSIST_SEAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct store_io;

struct seal {
    int on;
    void *aead;    /* EVP_AEAD_CTX *, opaque to keep BoringSSL out of users */
};

/* Reads a 32-byte key file; a missing or short file gets a clear message. */
int seal_init(struct seal *s, const struct store_io *io, const char *key_file,
              char *err, size_t errlen);
void seal_fini(struct seal *s);
/* out must hold n + 16 bytes. */
int seal_seal(const struct seal *s, const uint8_t base[12], uint64_t ctr,
              const uint8_t *ad, size_t adn, const uint8_t *in, size_t n,
              uint8_t *out);
/* in holds n bytes (ciphertext + tag); out gets n - 16. -EBADMSG if the
 * tag does not verify (wrong key or damage). */
int seal_open(const struct seal *s, const uint8_t base[12], uint64_t ctr,
              const uint8_t *ad, size_t adn, const uint8_t *in, size_t n,
              uint8_t *out);
/* Fresh random bytes (nonce bases). */
void seal_random(uint8_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
