/* Fuzzes what users type and what messages carry as secrets: code_canonical (codes typed in AcceptInvitation
 * and ActivateAccount), code_open (sealed codes of mail jobs), password_hash_acceptable (password hashes of
 * CreateUser and ActivateAccount) and uuid_valid. Invariants: a canonical code is CODE_LEN Crockford
 * characters, stable under display and reading again; a sealed code opens only to a canonical code, and a
 * code sealed here opens to itself; an acceptable hash is an Argon2id string libsodium reads. */
#include <ctype.h>
#include <sodium.h>

#include "fuzz.h"
#include "secret.h"

static secret_keys_t keys;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char err[128];
    if (secret_init(err, sizeof(err)) != 0)
        exit(1);
    /* A fixed key pair, so that a crash input reproduces. */
    unsigned char seed[crypto_box_SEEDBYTES];
    memset(seed, 7, sizeof(seed));
    crypto_box_seed_keypair(keys.pk, keys.sk, seed);
    memset(keys.pepper, 9, sizeof(keys.pepper));
    keys.have_sk = 1;
    return 0;
}

static void check_canonical(const char *c) {
    static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    FUZZ_ASSERT(strlen(c) == CODE_LEN, "canonical code of %zu characters", strlen(c));
    for (const char *p = c; *p; p++)
        FUZZ_ASSERT(strchr(crockford, *p), "character %c in a canonical code", *p);
    char shown[CODE_DISPLAY_LEN + 1], again[CODE_LEN + 1];
    code_display(c, shown);
    FUZZ_ASSERT(strlen(shown) == CODE_DISPLAY_LEN, "display form of %zu characters", strlen(shown));
    FUZZ_ASSERT(code_canonical(shown, again) == 0 && strcmp(again, c) == 0,
                "display form does not read back");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = fuzz_cstr(data, size);
    char canon[CODE_LEN + 1];
    if (code_canonical(in, canon) == 0) {
        check_canonical(canon);
        char sealed[SEALED_CODE_B64_MAX], opened[CODE_LEN + 1];
        FUZZ_ASSERT(code_seal(&keys, canon, sealed, sizeof(sealed)) == 0, "cannot seal a canonical code");
        FUZZ_ASSERT(code_open(&keys, sealed, opened) == 0 && strcmp(opened, canon) == 0,
                    "a sealed code does not open");
        unsigned char h1[CODE_HASH_LEN], h2[CODE_HASH_LEN];
        code_hash(&keys, canon, h1);
        code_hash(&keys, canon, h2);
        FUZZ_ASSERT(memcmp(h1, h2, sizeof(h1)) == 0, "code_hash is not a function");
    }
    char opened[CODE_LEN + 1];
    if (code_open(&keys, in, opened) == 0)
        check_canonical(opened);
    if (password_hash_acceptable(in)) {
        FUZZ_ASSERT(strncmp(in, "$argon2id$", 10) == 0, "an acceptable hash that is not Argon2id");
        FUZZ_ASSERT(strlen(in) < crypto_pwhash_STRBYTES, "an acceptable hash too long to store");
    }
    if (uuid_valid(in)) {
        FUZZ_ASSERT(strlen(in) == 36, "a UUID of %zu characters", strlen(in));
        for (int i = 0; i < 36; i++)
            FUZZ_ASSERT((i == 8 || i == 13 || i == 18 || i == 23) ? in[i] == '-'
                                                                  : isxdigit((unsigned char)in[i]),
                        "a UUID with %c at %d", in[i], i);
    }
    free(in);
    return 0;
}
