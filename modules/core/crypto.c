#include "crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "log.h"

#define PII_OLD_KEYS 8

typedef struct pii_key_t {
    unsigned char key[32];
    char id[9];
} pii_key_t;

static pii_key_t pii_cur;                       /* seals and opens */
static pii_key_t pii_old[PII_OLD_KEYS];         /* open only: rotated-out keys */
static int pii_nold;
static int pii_loaded;
/* Keyed once with pii_cur and reused with a fresh IV per message: setting up
 * AES-GCM (the algorithm fetch, the key schedule) cost more than sealing an
 * SSN, three times per lead.  Workers are single-threaded. */
static EVP_CIPHER_CTX *seal_ctx;

/* One fetched digest and one context per process (workers are single-threaded):
 * SHA256() looks the algorithm up again on every call in OpenSSL 3, which cost
 * more than hashing an API key. */
void crypto_sha256(const void *data, size_t n, unsigned char out[32])
{
    static EVP_MD *md;
    static EVP_MD_CTX *ctx;
    if (md == NULL)
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (ctx == NULL)
        ctx = EVP_MD_CTX_new();
    if (md == NULL || ctx == NULL || !EVP_DigestInit_ex2(ctx, md, NULL)
        || !EVP_DigestUpdate(ctx, data, n) || !EVP_DigestFinal_ex(ctx, out, NULL))
        SHA256(data, n, out);
}

void crypto_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void crypto_sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char h[32];
    crypto_sha256(data, n, h);
    crypto_hex(h, 32, out);
}

int crypto_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

int crypto_random_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    if (nbytes > sizeof(buf) || RAND_bytes(buf, (int) nbytes) != 1)
        return -1;
    crypto_hex(buf, nbytes, out);
    return 0;
}

void crypto_hmac_sha256_hex(const void *key, size_t keylen, const char *a, const char *b,
                            const char *c, size_t clen, char out[65])
{
    unsigned char mac[32];
    unsigned int maclen = 32;
    size_t al = a ? strlen(a) : 0, bl = b ? strlen(b) : 0;
    unsigned char *msg = malloc(al + bl + (c ? clen : 0) + 1);
    if (msg == NULL) {
        out[0] = '\0';
        return;
    }
    if (al) memcpy(msg, a, al);
    if (bl) memcpy(msg + al, b, bl);
    if (c && clen) memcpy(msg + al + bl, c, clen);
    HMAC(EVP_sha256(), key, (int) keylen, msg, al + bl + (c ? clen : 0), mac, &maclen);
    free(msg);
    crypto_hex(mac, 32, out);
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned int v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char) v;
    }
    return 0;
}

static int load_key(const char *path, pii_key_t *k)
{
    char text[80] = {0};
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    int rc = (n == 64 && unhex(text, k->key, 32) == 0) ? 0 : -1;
    OPENSSL_cleanse(text, sizeof(text));
    if (rc < 0)
        return -1;
    char idhex[65];
    crypto_sha256_hex(k->key, 32, idhex);
    memcpy(k->id, idhex, 8);
    k->id[8] = '\0';
    return 0;
}

int crypto_pii_load(const char *path)
{
    EVP_CIPHER_CTX_free(seal_ctx);
    seal_ctx = NULL;
    if (load_key(path, &pii_cur) < 0)
        return -1;
    pii_loaded = 1;
    /* the rotated-out keys: a listed file that is not a key, or one past the 8th, is an error
     * in the log (the values it sealed would not open), not a silent gap */
    OPENSSL_cleanse(pii_old, sizeof(pii_old));
    pii_nold = 0;
    const char *old = getenv("FL_DATA_KEY_OLD_FILES");
    if (old != NULL && *old) {
        char *list = strdup(old), *save = NULL;
        for (char *p = list ? strtok_r(list, ":", &save) : NULL; p; p = strtok_r(NULL, ":", &save))
            if (crypto_pii_load_old(p) < 0)
                log_msg("error", NULL, "FL_DATA_KEY_OLD_FILES: %s is not loaded (%s): values sealed with it "
                        "cannot be opened", p, pii_nold == PII_OLD_KEYS ? "more than 8 old keys" : "not a data key file");
        free(list);
    }
    return 0;
}

int crypto_pii_load_old(const char *path)
{
    if (pii_nold == PII_OLD_KEYS || load_key(path, &pii_old[pii_nold]) < 0)
        return -1;
    pii_nold++;
    return 0;
}

int crypto_pii_ready(void)
{
    return pii_loaded;
}

char *crypto_pii_encrypt(fl_arena *a, const char *plain)
{
    size_t n = strlen(plain);
    unsigned char *raw = arena_alloc(a, 12 + n + 16);
    char *out = NULL;
    int len = 0, fin = 0;
    EVP_CIPHER_CTX *ctx = NULL;

    if (!pii_loaded || raw == NULL || RAND_bytes(raw, 12) != 1)
        return NULL;
    if (seal_ctx == NULL) {
        EVP_CIPHER *gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        seal_ctx = EVP_CIPHER_CTX_new();
        int ok = gcm != NULL && seal_ctx != NULL
            && EVP_EncryptInit_ex(seal_ctx, gcm, NULL, pii_cur.key, NULL) == 1;
        EVP_CIPHER_free(gcm);           /* the context keeps its own reference */
        if (!ok)
            goto out;
    }
    ctx = seal_ctx;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, raw) != 1
        || EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *) pii_cur.id, 8) != 1
        || EVP_EncryptUpdate(ctx, raw + 12, &len, (const unsigned char *) plain, (int) n) != 1
        || EVP_EncryptFinal_ex(ctx, raw + 12 + len, &fin) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, raw + 12 + n) != 1)
        goto out;
    size_t rawlen = 12 + n + 16;
    size_t b64 = 4 * ((rawlen + 2) / 3);
    out = arena_alloc(a, 3 + 8 + 1 + b64 + 1);
    if (out == NULL)
        goto out;
    memcpy(out, "v1:", 3);
    memcpy(out + 3, pii_cur.id, 8);
    out[11] = ':';
    EVP_EncodeBlock((unsigned char *) out + 12, raw, (int) rawlen);
    return out;
out:
    /* a failed step leaves the shared context in an unknown state: key it again next time */
    EVP_CIPHER_CTX_free(seal_ctx);
    seal_ctx = NULL;
    return NULL;
}

char *crypto_pii_decrypt(fl_arena *a, const char *sealed)
{
    size_t n = strlen(sealed);
    char *out = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int len = 0, fin = 0;

    const pii_key_t *k = NULL;
    if (!pii_loaded || n < 12 || memcmp(sealed, "v1:", 3) != 0 || sealed[11] != ':')
        return NULL;
    if (memcmp(sealed + 3, pii_cur.id, 8) == 0)
        k = &pii_cur;
    for (int i = 0; k == NULL && i < pii_nold; i++)
        if (memcmp(sealed + 3, pii_old[i].id, 8) == 0)
            k = &pii_old[i];
    if (k == NULL)
        return NULL;
    const char *b64 = sealed + 12;
    size_t blen = n - 12;
    if (blen % 4 != 0)
        return NULL;
    unsigned char *raw = arena_alloc(a, blen / 4 * 3 + 1);
    if (raw == NULL)
        return NULL;
    int rawlen = EVP_DecodeBlock(raw, (const unsigned char *) b64, (int) blen);
    if (rawlen < 0)
        return NULL;
    if (blen >= 1 && b64[blen - 1] == '=') rawlen--;
    if (blen >= 2 && b64[blen - 2] == '=') rawlen--;
    if (rawlen < 28)
        return NULL;
    size_t ctlen = (size_t) rawlen - 28;
    out = arena_alloc(a, ctlen + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (out == NULL || ctx == NULL
        || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k->key, raw) != 1
        || EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *) k->id, 8) != 1
        || EVP_DecryptUpdate(ctx, (unsigned char *) out, &len, raw + 12, (int) ctlen) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, raw + 12 + ctlen) != 1
        || EVP_DecryptFinal_ex(ctx, (unsigned char *) out + len, &fin) != 1) {
        out = NULL;
    } else {
        out[ctlen] = '\0';
    }
    EVP_CIPHER_CTX_free(ctx);
    return out;
}
