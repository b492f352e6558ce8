/* Unit tests of the secrets: codes, their hash and sealing, password hash checks, UUIDs, keygen. */
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codepool.h"
#include "secret.h"
#include "unit.h"

static void codes_are_crockford_and_read_leniently(void) {
    char a[CODE_LEN + 1], b[CODE_LEN + 1], shown[CODE_DISPLAY_LEN + 1], back[CODE_LEN + 1];
    code_generate(a);
    code_generate(b);
    CHECK(strlen(a) == CODE_LEN && strcmp(a, b) != 0);
    CHECK(strspn(a, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") == CODE_LEN);
    code_display(a, shown);
    CHECK(shown[4] == '-' && shown[9] == '-' && strlen(shown) == CODE_DISPLAY_LEN);
    CHECK(code_canonical(shown, back) == 0);
    CHECK_STR(back, a);
    CHECK(code_canonical("abcd-efgh-jkmn", back) == 0);
    CHECK_STR(back, "ABCDEFGHJKMN");
    CHECK(code_canonical("o0il-1111-2222", back) == 0);
    CHECK_STR(back, "0011"
                    "11112222");
    CHECK(code_canonical("ABCD-EFGH-JKM", back) == -1);
    CHECK(code_canonical("ABCD-EFGH-JKMNP", back) == -1);
    CHECK(code_canonical("ABCD-EFGH-JKMU", back) == -1);
}

static void hash_depends_on_pepper_and_seal_round_trips(void) {
    secret_keys_t k1, k2;
    crypto_box_keypair(k1.pk, k1.sk);
    crypto_generichash_keygen(k1.pepper);
    k1.have_sk = 1;
    k2 = k1;
    crypto_generichash_keygen(k2.pepper);
    unsigned char h1[CODE_HASH_LEN], h2[CODE_HASH_LEN], h3[CODE_HASH_LEN];
    code_hash(&k1, "ABCDEFGHJKMN", h1);
    code_hash(&k2, "ABCDEFGHJKMN", h2);
    code_hash(&k1, "ABCDEFGHJKMN", h3);
    CHECK(memcmp(h1, h2, CODE_HASH_LEN) != 0);
    CHECK(memcmp(h1, h3, CODE_HASH_LEN) == 0);
    char sealed[SEALED_CODE_B64_MAX], opened[CODE_LEN + 1];
    CHECK(code_seal(&k1, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    CHECK(strstr(sealed, "ABCDEFGHJKMN") == NULL);
    CHECK(code_open(&k1, sealed, opened) == 0);
    CHECK_STR(opened, "ABCDEFGHJKMN");
    secret_keys_t other;
    crypto_box_keypair(other.pk, other.sk);
    other.have_sk = 1;
    CHECK(code_open(&other, sealed, opened) == -1);
}

/* The ephemeral public key a sealed code (the current form) starts with. */
static void sealed_epk(const char *sealed, unsigned char epk[crypto_box_PUBLICKEYBYTES]) {
    unsigned char bin[128];
    size_t len = 0;
    CHECK(sodium_base642bin(bin, sizeof(bin), sealed, strlen(sealed), NULL, &len, NULL,
                            sodium_base64_VARIANT_ORIGINAL) == 0);
    CHECK(len == 84);
    memcpy(epk, bin, crypto_box_PUBLICKEYBYTES);
}

static void *seal_in_thread(void *arg) {
    const secret_keys_t *k = arg;
    static char sealed[SEALED_CODE_B64_MAX];
    return code_seal(k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0 ? sealed : NULL;
}

/* A thread's ephemeral key seals CODE_SEAL_KEY_USES codes, then another is made; another thread and another
 * recipient get their own; every code opens, tampering is caught, and crypto_box_seal's form (jobs written
 * before) still opens. */
static void sealed_codes_share_a_thread_key_for_a_while_and_both_forms_open(void) {
    secret_keys_t k, k2;
    crypto_box_keypair(k.pk, k.sk);
    k.have_sk = 1;
    crypto_box_keypair(k2.pk, k2.sk);
    k2.have_sk = 1;
    char sealed[SEALED_CODE_B64_MAX], opened[CODE_LEN + 1], code[CODE_LEN + 1];
    unsigned char first[crypto_box_PUBLICKEYBYTES], epk[crypto_box_PUBLICKEYBYTES];
    /* A fresh key for k2 first, so that k's first code starts a key of its own. */
    CHECK(code_seal(&k2, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    sealed_epk(sealed, epk);
    int changes = 0;
    for (int i = 0; i < 2 * CODE_SEAL_KEY_USES + 1; i++) {
        code_generate(code);
        CHECK(code_seal(&k, code, sealed, sizeof(sealed)) == 0);
        CHECK(strlen(sealed) == SEALED_CODE_B64_LEN);
        CHECK(code_open(&k, sealed, opened) == 0);
        CHECK_STR(opened, code);
        unsigned char now[crypto_box_PUBLICKEYBYTES];
        sealed_epk(sealed, now);
        if (i == 0)
            CHECK(memcmp(now, epk, sizeof(now)) != 0); /* k2's key is not k's */
        else
            changes += memcmp(now, epk, sizeof(now)) != 0;
        CHECK((i % CODE_SEAL_KEY_USES == 0) == (memcmp(now, epk, sizeof(now)) != 0));
        memcpy(epk, now, sizeof(epk));
        if (i == 0)
            memcpy(first, now, sizeof(first));
    }
    CHECK(changes == 2);
    /* Another thread has its own key. */
    pthread_t t;
    void *other = NULL;
    CHECK(pthread_create(&t, NULL, seal_in_thread, &k) == 0 && pthread_join(t, &other) == 0 && other);
    sealed_epk(other, epk);
    CHECK(memcmp(epk, first, sizeof(epk)) != 0);
    CHECK(code_open(&k, other, opened) == 0);
    CHECK_STR(opened, "ABCDEFGHJKMN");
    /* A changed byte anywhere (key, nonce, box) fails to open; so does the other key. */
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    CHECK(code_open(&k2, sealed, opened) == -1);
    for (size_t at = 0; at < SEALED_CODE_B64_LEN; at += 7) {
        char bad[SEALED_CODE_B64_MAX];
        memcpy(bad, sealed, sizeof(bad));
        bad[at] = bad[at] == 'A' ? 'B' : 'A';
        CHECK(code_open(&k, bad, opened) == -1);
    }
    /* crypto_box_seal's form. */
    unsigned char anon[crypto_box_SEALBYTES + CODE_LEN];
    CHECK(crypto_box_seal(anon, (const unsigned char *)"ABCDEFGHJKMN", CODE_LEN, k.pk) == 0);
    sodium_bin2base64(sealed, sizeof(sealed), anon, sizeof(anon), sodium_base64_VARIANT_ORIGINAL);
    CHECK(strlen(sealed) == SEALED_CODE_ANON_B64_LEN);
    CHECK(code_open(&k, sealed, opened) == 0);
    CHECK_STR(opened, "ABCDEFGHJKMN");
    CHECK(code_open(&k2, sealed, opened) == -1);
    /* Neither length: refused. */
    sealed[SEALED_CODE_ANON_B64_LEN - 4] = '\0';
    CHECK(code_open(&k, sealed, opened) == -1);
    /* Forgotten (a thread that sealed wipes its key before it ends): the next code has a new key. */
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    sealed_epk(sealed, first);
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    sealed_epk(sealed, epk);
    CHECK(memcmp(epk, first, sizeof(epk)) == 0);
    code_seal_forget();
    CHECK(code_seal(&k, "ABCDEFGHJKMN", sealed, sizeof(sealed)) == 0);
    sealed_epk(sealed, epk);
    CHECK(memcmp(epk, first, sizeof(epk)) != 0);
    CHECK(code_open(&k, sealed, opened) == 0);
    code_seal_forget();
}

static void password_hash_needs_argon2id_at_interactive_cost(void) {
    char h[crypto_pwhash_STRBYTES];
    CHECK(crypto_pwhash_str(h, "pw", 2, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                            crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0);
    CHECK(password_hash_acceptable(h));
    CHECK(crypto_pwhash_str(h, "pw", 2, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN) == 0);
    CHECK(!password_hash_acceptable(h));
    CHECK(!password_hash_acceptable("$argon2id$v=19$m=65536,t=2,p=1$bm90YXNhbHQ$bm90YWhhc2g"));
    CHECK(!password_hash_acceptable("hunter2"));
    CHECK(!password_hash_acceptable("$2b$12$abcdefghijklmnopqrstuv"));
}

static void uuids_are_v4_and_validated(void) {
    char u[UUID_BUF];
    uuid_generate(u);
    CHECK(uuid_valid(u));
    CHECK(u[14] == '4');
    CHECK(!uuid_valid("not-a-uuid"));
    CHECK(!uuid_valid("0123456789abcdef0123456789abcdef0123"));
    CHECK(uuid_valid("0F6B0C5E-8E7A-4B5C-9D3E-2A1B0C9D8E7F"));
}

static int uuid_cmp(const void *a, const void *b) {
    return strcmp(a, b);
}

/* Past several refills of the per-thread pool (256 a refill): every one a v4 UUID (version and variant
 * bits), all distinct, lower-case hex. */
static void uuids_stay_v4_and_distinct_across_refills(void) {
    enum { N = 2000 };
    char(*u)[UUID_BUF] = calloc(N, UUID_BUF);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uuid_generate(u[i]);
        bad += !uuid_valid(u[i]) || u[i][14] != '4' || !strchr("89ab", u[i][19]) ||
               strspn(u[i], "0123456789abcdef-") != UUID_STR_LEN;
    }
    CHECK(bad == 0);
    qsort(u, N, UUID_BUF, uuid_cmp);
    int dup = 0;
    for (int i = 1; i < N; i++)
        dup += strcmp(u[i - 1], u[i]) == 0;
    CHECK(dup == 0);
    free(u);
}

/* A child of fork() never makes the UUID its parent makes next (the pool is emptied in the child). */
static void a_forked_child_makes_other_uuids_than_its_parent(void) {
    char first[UUID_BUF], parent[UUID_BUF], child[UUID_BUF] = "";
    uuid_generate(first); /* the pool holds bytes now */
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        char c[UUID_BUF];
        uuid_generate(c);
        ssize_t w = write(fds[1], c, UUID_BUF);
        _exit(w == UUID_BUF ? 0 : 1);
    }
    uuid_generate(parent);
    CHECK(read(fds[0], child, UUID_BUF) == UUID_BUF);
    int st = 0;
    waitpid(pid, &st, 0);
    close(fds[0]);
    close(fds[1]);
    CHECK(uuid_valid(child) && strcmp(child, parent) != 0 && strcmp(child, first) != 0);
}

static void keygen_refuses_to_overwrite(void) {
    char dir[] = "/tmp/raikoo-keys-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sub[64], err[512];
    snprintf(sub, sizeof(sub), "%s/k", dir);
    CHECK(secret_keygen(sub, err, sizeof(err)) == 0);
    secret_keys_t k;
    CHECK(secret_load(sub, 1, &k, err, sizeof(err)) == 0);
    CHECK(secret_keygen(sub, err, sizeof(err)) == -1);
    CHECK(strstr(err, "refusing to overwrite") != NULL);
    secret_keys_t again;
    CHECK(secret_load(sub, 1, &again, err, sizeof(err)) == 0);
    CHECK(memcmp(k.sk, again.sk, sizeof(k.sk)) == 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Every code taken (from the pool, or made on the spot once it is empty) opens with the secret key to a code
 * whose hash is the one given, and no two are the same. */
static void code_pool_gives_distinct_codes_that_open_to_their_hash(void) {
    enum { SIZE = 8, TAKE = 40 };
    secret_keys_t k;
    crypto_box_keypair(k.pk, k.sk);
    crypto_generichash_keygen(k.pepper);
    k.have_sk = 1;
    codepool_t *pool = codepool_new(&k, SIZE);
    CHECK(pool != NULL);
    made_code_t got[TAKE];
    unsigned long from_pool = 0, on_spot = 0;
    /* The thread fills the pool meanwhile, at idle priority: wait (up to 60 s on a busy machine) until a take
     * comes from it. */
    for (int tries = 0; tries < 6000 && from_pool == 0; tries++) {
        usleep(10000);
        CHECK(codepool_take(pool, &k, &got[0]) == 0);
        codepool_counts(pool, &from_pool, &on_spot);
    }
    CHECK(from_pool == 1);
    for (int i = 1; i < TAKE; i++) /* faster than the thread seals: some made on the spot */
        CHECK(codepool_take(pool, &k, &got[i]) == 0);
    codepool_counts(pool, &from_pool, &on_spot);
    CHECK(from_pool >= 1 && from_pool + on_spot >= TAKE);
    for (int i = 0; i < TAKE; i++) {
        char code[CODE_LEN + 1];
        unsigned char h[CODE_HASH_LEN];
        CHECK(code_open(&k, got[i].sealed, code) == 0);
        code_hash(&k, code, h);
        CHECK(memcmp(h, got[i].hash, CODE_HASH_LEN) == 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(got[i].sealed, got[j].sealed) != 0 &&
                  memcmp(got[i].hash, got[j].hash, CODE_HASH_LEN));
    }
    codepool_free(pool);
    /* Without a pool: made on the spot. */
    CHECK(codepool_take(NULL, &k, &got[0]) == 0);
    char code[CODE_LEN + 1];
    CHECK(code_open(&k, got[0].sealed, code) == 0);
    codepool_free(NULL);
}

const unit_test_t secret_tests[] = {
    {"secret: codes are crockford and read leniently", codes_are_crockford_and_read_leniently},
    {"secret: hash depends on pepper and seal round-trips", hash_depends_on_pepper_and_seal_round_trips},
    {"secret: sealed codes share a thread key for a while and both forms open",
     sealed_codes_share_a_thread_key_for_a_while_and_both_forms_open},
    {"secret: password hash needs argon2id at interactive cost",
     password_hash_needs_argon2id_at_interactive_cost},
    {"secret: uuids are v4 and validated", uuids_are_v4_and_validated},
    {"secret: uuids stay v4 and distinct across refills", uuids_stay_v4_and_distinct_across_refills},
    {"secret: a forked child makes other uuids than its parent",
     a_forked_child_makes_other_uuids_than_its_parent},
    {"secret: keygen refuses to overwrite", keygen_refuses_to_overwrite},
    {"secret: code pool gives distinct codes that open to their hash",
     code_pool_gives_distinct_codes_that_open_to_their_hash},
    {NULL, NULL},
};
