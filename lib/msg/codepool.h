/* Invitation codes made ahead, on a thread of their own: what the command worker stores (the code's peppered
 * hash) and mails (the code sealed to the mailer's key), never the code itself.
 *
 * Sealing a code with crypto_box_seal (a fresh key pair and a key exchange, about 0.1 ms) was the largest
 * single cost of an InviteNewUser in the worker's own chain; code_seal now shares an ephemeral key over 256
 * codes (secret.h) and costs a few microseconds, and the pool still takes it and the hash off that chain:
 * its thread makes codes, at idle priority, while the chain waits for PostgreSQL and Kafka; a command takes
 * one ready. When the pool is empty (a burst larger than it, or no idle CPU), the code is made on the spot as
 * before: nothing waits for the pool. The plain code lives only on the pool thread's stack while it is hashed
 * and sealed, then is wiped. */
#ifndef RAIKOO_CODEPOOL_H
#define RAIKOO_CODEPOOL_H

#include <stddef.h>

#include "secret.h"

/* A code as the worker uses it: its hash (invitations.code_hash) and its sealed form (base64, the mail job's
 * sealed_code). */
typedef struct made_code {
    unsigned char hash[CODE_HASH_LEN];
    char sealed[SEALED_CODE_B64_MAX];
} made_code_t;

/* Makes one: a fresh random code, hashed with keys' pepper and sealed to keys' public key (the code is
 * wiped). -1 when sealing fails. */
int code_make(const secret_keys_t *keys, made_code_t *out);

typedef struct codepool codepool_t;

/* A pool of up to size codes made with keys (copied), its thread started. NULL when no thread can be made
 * (the caller then makes each code itself). */
codepool_t *codepool_new(const secret_keys_t *keys, size_t size);

/* A code: one from the pool when it has one (the thread is told to make another), else made now. 0, or -1
 * when sealing fails. pool may be NULL: made now. */
int codepool_take(codepool_t *pool, const secret_keys_t *keys, made_code_t *out);

/* Codes taken from the pool and made on the spot since it was made (NULL pool: zeros). */
void codepool_counts(codepool_t *pool, unsigned long *from_pool, unsigned long *made_on_spot);

/* Stops the thread and wipes the codes left. NULL is fine. */
void codepool_free(codepool_t *pool);

#endif
