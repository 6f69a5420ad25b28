/* Hashing, random tokens, constant-time comparison and PII encryption
 * (AES-256-GCM under a data key kept outside the database). */
#ifndef FL_CRYPTO_H
#define FL_CRYPTO_H
#include <stddef.h>
#include "arena.h"

/* sha256 of data into out[32]. */
void crypto_sha256(const void *data, size_t n, unsigned char out[32]);
/* Lower-case hex of sha256 into out[65]. */
void crypto_sha256_hex(const void *data, size_t n, char out[65]);
void crypto_hex(const unsigned char *in, size_t n, char *out);
/* 1 when equal, in time independent of where they differ. */
int crypto_equal(const void *a, const void *b, size_t n);
/* n random bytes as 2n hex characters (out holds 2n+1); 0 or -1. */
int crypto_random_hex(char *out, size_t nbytes);

/* Lower-case hex HMAC-SHA256(key, a || b || c) into out[65]; b and c may be
 * NULL.  The parts are hashed back to back, with nothing between them. */
void crypto_hmac_sha256_hex(const void *key, size_t keylen, const char *a, const char *b,
                            const char *c, size_t clen, char out[65]);

/* Loads the 32-byte data key from a file holding 64 hex characters; the key id
 * is the first 8 hex characters of sha256(key).  0 or -1. */
int crypto_pii_load(const char *path);
int crypto_pii_ready(void);
/* Loads an earlier data key that may still decrypt what it sealed (rotation):
 * FL_DATA_KEY_OLD_FILES lists them, colon-separated.  0 or -1. */
int crypto_pii_load_old(const char *path);
/* "v1:<keyid>:<base64(iv|ciphertext|tag)>" in the arena; NULL on failure. */
char *crypto_pii_encrypt(fl_arena *a, const char *plain);
/* The plain text in the arena; NULL when tampered, or when neither the
 * current key nor an old one has the key id the text was sealed with. */
char *crypto_pii_decrypt(fl_arena *a, const char *sealed);

#endif
