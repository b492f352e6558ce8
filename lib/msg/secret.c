/* Secrets: the mailer key pair and code pepper, one-time codes, their peppered hash and sealing. */
#include "secret.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int secret_init(char *errstr, size_t errstr_size) {
    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return -1;
    }
    return 0;
}

static int path_in(char *out, size_t out_size, const char *dir, const char *name) {
    return snprintf(out, out_size, "%s/%s", dir, name) < (int)out_size ? 0 : -1;
}

static int write_new(const char *path, const unsigned char *buf, size_t len, char *errstr,
                     size_t errstr_size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t w = write(fd, buf, len);
    int rc = (w == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
    if (rc != 0)
        snprintf(errstr, errstr_size, "%s: write failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int secret_keygen(const char *dir, char *errstr, size_t errstr_size) {
    static const char *names[] = {"mailer.pk", "mailer.sk", "code.pepper"};
    char path[3][4096];
    for (int i = 0; i < 3; i++) {
        if (path_in(path[i], sizeof(path[i]), dir, names[i]) != 0) {
            snprintf(errstr, errstr_size, "%s: path too long", dir);
            return -1;
        }
        if (access(path[i], F_OK) == 0) {
            snprintf(errstr, errstr_size, "%s exists: refusing to overwrite keys (move them away first)",
                     path[i]);
            return -1;
        }
    }
    /* mkdir -p with 0700 for the last component */
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
        snprintf(errstr, errstr_size, "%s: %s", dir, strerror(errno));
        return -1;
    }
    secret_keys_t k;
    crypto_box_keypair(k.pk, k.sk);
    crypto_generichash_keygen(k.pepper);
    int rc = -1;
    if (write_new(path[0], k.pk, sizeof(k.pk), errstr, errstr_size) == 0 &&
        write_new(path[1], k.sk, sizeof(k.sk), errstr, errstr_size) == 0 &&
        write_new(path[2], k.pepper, sizeof(k.pepper), errstr, errstr_size) == 0)
        rc = 0;
    sodium_memzero(&k, sizeof(k));
    return rc;
}

static int read_exact(const char *dir, const char *name, unsigned char *buf, size_t len, char *errstr,
                      size_t errstr_size) {
    char path[4096];
    path_in(path, sizeof(path), dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s (create the keys with `raikoo keygen`)", path, strerror(errno));
        return -1;
    }
    unsigned char extra;
    ssize_t r = read(fd, buf, len);
    ssize_t more = read(fd, &extra, 1);
    close(fd);
    if (r != (ssize_t)len || more != 0) {
        snprintf(errstr, errstr_size, "%s: not a %zu-byte key file", path, len);
        return -1;
    }
    return 0;
}

int secret_load(const char *dir, int need_sk, secret_keys_t *keys, char *errstr, size_t errstr_size) {
    memset(keys, 0, sizeof(*keys));
    if (read_exact(dir, "mailer.pk", keys->pk, sizeof(keys->pk), errstr, errstr_size) != 0 ||
        read_exact(dir, "code.pepper", keys->pepper, sizeof(keys->pepper), errstr, errstr_size) != 0)
        return -1;
    if (need_sk) {
        if (read_exact(dir, "mailer.sk", keys->sk, sizeof(keys->sk), errstr, errstr_size) != 0)
            return -1;
        keys->have_sk = 1;
    }
    return 0;
}

void code_generate(char out[CODE_LEN + 1]) {
    /* One draw for the whole code (a system call each, otherwise). 32 divides 256, so the low five bits
     * of a random byte pick each character with no bias. */
    unsigned char r[CODE_LEN];
    randombytes_buf(r, sizeof(r));
    for (int i = 0; i < CODE_LEN; i++)
        out[i] = crockford[r[i] & 31];
    out[CODE_LEN] = '\0';
    sodium_memzero(r, sizeof(r));
}

void code_display(const char *canon, char out[CODE_DISPLAY_LEN + 1]) {
    snprintf(out, CODE_DISPLAY_LEN + 1, "%.4s-%.4s-%.4s", canon, canon + 4, canon + 8);
}

int code_canonical(const char *input, char out[CODE_LEN + 1]) {
    int n = 0;
    for (const char *p = input; *p; p++) {
        char ch = (char)toupper((unsigned char)*p);
        if (ch == '-' || ch == ' ')
            continue;
        if (ch == 'O')
            ch = '0';
        else if (ch == 'I' || ch == 'L')
            ch = '1';
        if (!strchr(crockford, ch) || ch == '\0' || n == CODE_LEN)
            return -1;
        out[n++] = ch;
    }
    if (n != CODE_LEN)
        return -1;
    out[n] = '\0';
    return 0;
}

void code_hash(const secret_keys_t *keys, const char *canon, unsigned char out[CODE_HASH_LEN]) {
    crypto_generichash(out, CODE_HASH_LEN, (const unsigned char *)canon, CODE_LEN, keys->pepper,
                       sizeof(keys->pepper));
}

/* The sealed form (secret.h): an ephemeral public key, a nonce, and the code boxed (crypto_box: X25519,
 * XSalsa20-Poly1305) from the ephemeral key to the mailer's; or, as written before, crypto_box_seal's. */
#define SEALED_EPK 0
#define SEALED_NONCE crypto_box_PUBLICKEYBYTES
#define SEALED_BOX (SEALED_NONCE + crypto_box_NONCEBYTES)
#define SEALED_LEN (SEALED_BOX + crypto_box_MACBYTES + CODE_LEN)
#define SEALED_ANON_LEN (crypto_box_SEALBYTES + CODE_LEN)
_Static_assert(sodium_base64_ENCODED_LEN(SEALED_LEN, sodium_base64_VARIANT_ORIGINAL) ==
                       SEALED_CODE_B64_LEN + 1 &&
                   sodium_base64_ENCODED_LEN(SEALED_ANON_LEN, sodium_base64_VARIANT_ORIGINAL) ==
                       SEALED_CODE_ANON_B64_LEN + 1 &&
                   SEALED_CODE_B64_LEN < SEALED_CODE_B64_MAX,
               "the sealed forms' base64 lengths");

/* This thread's ephemeral key: its public half, the key it shares with recipient (crypto_box_beforenm; the
 * secret half is wiped once that is made), and how many codes it may still seal. */
typedef struct sealer {
    unsigned char recipient[crypto_box_PUBLICKEYBYTES];
    unsigned char epk[crypto_box_PUBLICKEYBYTES];
    unsigned char shared[crypto_box_BEFORENMBYTES];
    unsigned left;
} sealer_t;
static __thread sealer_t sealer;

/* A fresh ephemeral key for pk when this thread has none for it or has used it CODE_SEAL_KEY_USES times. */
static int sealer_ready(const unsigned char *pk) {
    if (sealer.left > 0 && sodium_memcmp(sealer.recipient, pk, crypto_box_PUBLICKEYBYTES) == 0)
        return 0;
    unsigned char esk[crypto_box_SECRETKEYBYTES];
    crypto_box_keypair(sealer.epk, esk);
    int rc = crypto_box_beforenm(sealer.shared, pk, esk);
    sodium_memzero(esk, sizeof(esk));
    if (rc != 0) {
        sodium_memzero(&sealer, sizeof(sealer));
        return -1;
    }
    memcpy(sealer.recipient, pk, crypto_box_PUBLICKEYBYTES);
    sealer.left = CODE_SEAL_KEY_USES;
    return 0;
}

void code_seal_forget(void) {
    sodium_memzero(&sealer, sizeof(sealer));
}

int code_seal(const secret_keys_t *keys, const char *canon, char *out, size_t out_size) {
    unsigned char ct[SEALED_LEN];
    if (out_size < sodium_base64_ENCODED_LEN(sizeof(ct), sodium_base64_VARIANT_ORIGINAL) ||
        sealer_ready(keys->pk) != 0)
        return -1;
    memcpy(ct + SEALED_EPK, sealer.epk, crypto_box_PUBLICKEYBYTES);
    randombytes_buf(ct + SEALED_NONCE, crypto_box_NONCEBYTES);
    if (crypto_box_easy_afternm(ct + SEALED_BOX, (const unsigned char *)canon, CODE_LEN, ct + SEALED_NONCE,
                                sealer.shared) != 0)
        return -1;
    if (--sealer.left == 0)
        sodium_memzero(&sealer, sizeof(sealer));
    sodium_bin2base64(out, out_size, ct, sizeof(ct), sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

int code_open(const secret_keys_t *keys, const char *b64, char out[CODE_LEN + 1]) {
    unsigned char ct[SEALED_LEN], plain[CODE_LEN];
    size_t len = 0;
    if (!keys->have_sk || sodium_base642bin(ct, sizeof(ct), b64, strlen(b64), NULL, &len, NULL,
                                            sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    int rc = -1;
    if (len == SEALED_LEN) {
        unsigned char shared[crypto_box_BEFORENMBYTES];
        rc = crypto_box_beforenm(shared, ct + SEALED_EPK, keys->sk) == 0 &&
                     crypto_box_open_easy_afternm(plain, ct + SEALED_BOX, crypto_box_MACBYTES + CODE_LEN,
                                                  ct + SEALED_NONCE, shared) == 0
                 ? 0
                 : -1;
        sodium_memzero(shared, sizeof(shared));
    } else if (len == SEALED_ANON_LEN) {
        rc = crypto_box_seal_open(plain, ct, SEALED_ANON_LEN, keys->pk, keys->sk);
    }
    if (rc != 0)
        return -1;
    memcpy(out, plain, CODE_LEN);
    out[CODE_LEN] = '\0';
    sodium_memzero(plain, sizeof(plain));
    char check[CODE_LEN + 1];
    return code_canonical(out, check);
}

int password_hash_acceptable(const char *s) {
    if (!s || strncmp(s, "$argon2id$", 10) != 0 || strlen(s) >= crypto_pwhash_STRBYTES)
        return 0;
    /* needs_rehash is -1 for a malformed string, but it also answers 1 for a hash stronger than the
     * limits, so the cost parameters are compared here. */
    if (crypto_pwhash_str_needs_rehash(s, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                       crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0)
        return 0;
    unsigned long m = 0, t = 0, par = 0;
    if (sscanf(s, "$argon2id$v=19$m=%lu,t=%lu,p=%lu$", &m, &t, &par) != 3)
        return 0;
    return m * 1024UL >= crypto_pwhash_MEMLIMIT_INTERACTIVE && t >= crypto_pwhash_OPSLIMIT_INTERACTIVE &&
           par >= 1;
}

/* Random bytes for UUIDs, drawn from the system 4 KiB at a time, per thread: one getrandom() per 256 UUIDs
 * rather than one each, and no snprintf (a command worker makes about ten UUIDs a command; the two were 5 %
 * of its CPU, profiled). UUIDs are identifiers, public once used, not secrets. A child of fork() must never
 * hand out its parent's next bytes: the buffer is emptied in the child. */
#define UUID_POOL 4096
static __thread unsigned char uuid_pool[UUID_POOL];
static __thread size_t uuid_left;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_forked(void) {
    uuid_left = 0; /* the child's only thread is the one that forked */
}

static void uuid_register(void) {
    pthread_atfork(NULL, NULL, uuid_forked);
}

void uuid_generate(char out[UUID_BUF]) {
    static const char hex[] = "0123456789abcdef";
    pthread_once(&uuid_once, uuid_register);
    if (uuid_left < 16) {
        randombytes_buf(uuid_pool, sizeof(uuid_pool));
        uuid_left = sizeof(uuid_pool);
    }
    unsigned char *b = uuid_pool + (sizeof(uuid_pool) - uuid_left);
    uuid_left -= 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

int uuid_valid(const char *s) {
    if (!s || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}
