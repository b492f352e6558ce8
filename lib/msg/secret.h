/* Secrets: the mailer key pair and code pepper, one-time codes, their peppered hash and sealing. */
#ifndef RAIKOO_SECRET_H
#define RAIKOO_SECRET_H

#include <stddef.h>
#include <sodium.h>

#define CODE_LEN 12         /* Crockford base32 characters in a code */
#define CODE_DISPLAY_LEN 14 /* XXXX-XXXX-XXXX */
#define CODE_HASH_LEN 32
#define SEALED_CODE_B64_MAX 128

typedef struct secret_keys {
    unsigned char pk[crypto_box_PUBLICKEYBYTES];
    unsigned char sk[crypto_box_SECRETKEYBYTES];
    unsigned char pepper[crypto_generichash_KEYBYTES];
    int have_sk;
} secret_keys_t;

/* Initialises libsodium; call once before anything else here. */
int secret_init(char *errstr, size_t errstr_size);

/* Writes mailer.pk, mailer.sk and code.pepper (mode 0600) into dir, creating dir (0700). Refuses, without
 * touching anything, when any of them exists. */
int secret_keygen(const char *dir, char *errstr, size_t errstr_size);

/* Loads the public key and the pepper from dir, and the secret key too when need_sk. */
int secret_load(const char *dir, int need_sk, secret_keys_t *keys, char *errstr, size_t errstr_size);

/* A fresh random code in canonical form: CODE_LEN characters and a NUL. */
void code_generate(char out[CODE_LEN + 1]);

/* Formats a canonical code as XXXX-XXXX-XXXX. */
void code_display(const char *canon, char out[CODE_DISPLAY_LEN + 1]);

/* Reads what a user typed (any case, dashes and spaces ignored, O read as 0, I and L as 1) into
 * canonical form. -1 when it cannot be a code. */
int code_canonical(const char *input, char out[CODE_LEN + 1]);

/* The keyed BLAKE2b hash of a canonical code, as stored in invitations.code_hash. */
void code_hash(const secret_keys_t *keys, const char *canon, unsigned char out[CODE_HASH_LEN]);

/* Seals a canonical code to the mailer's public key; writes base64 (NUL-terminated, SEALED_CODE_B64_LEN
 * characters) into out. The sealed form is an ephemeral public key (32 bytes), a random nonce (24) and the
 * code boxed from the ephemeral key to the mailer's (crypto_box: 16 + 12). Each thread makes an ephemeral
 * key pair for CODE_SEAL_KEY_USES codes (its secret half wiped as soon as the shared key is made), so that
 * a code costs a nonce and a box, not two X25519 operations as crypto_box_seal's fresh key pair for every
 * code did (108 us a code, the largest cost of an invitation: docs/BENCHMARKS.md). */
int code_seal(const secret_keys_t *keys, const char *canon, char *out, size_t out_size);
#define CODE_SEAL_KEY_USES 256
#define SEALED_CODE_B64_LEN 112
/* crypto_box_seal's form (60 bytes), which mail jobs carried before: code_open reads it too. */
#define SEALED_CODE_ANON_B64_LEN 80

/* Wipes this thread's ephemeral key (a thread that sealed codes calls it before it ends). */
void code_seal_forget(void);

/* Opens a sealed code (base64, either form) with the secret key into canonical form. */
int code_open(const secret_keys_t *keys, const char *b64, char out[CODE_LEN + 1]);

/* 1 when s is a well-formed Argon2id hash string at least as costly as libsodium's interactive limits. */
int password_hash_acceptable(const char *s);

/* A UUID in text form: 36 characters ("8-4-4-4-12" hex digits); UUID_BUF with its NUL, the size of every
 * buffer that holds one (char id[UUID_BUF]). */
#define UUID_STR_LEN 36
#define UUID_BUF (UUID_STR_LEN + 1)

/* A random (version 4) UUID in its text form. */
void uuid_generate(char out[UUID_BUF]);

/* 1 when s is a UUID in canonical text form (any case). */
int uuid_valid(const char *s);

#endif
