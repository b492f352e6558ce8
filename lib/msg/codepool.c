/* Invitation codes made ahead on a thread of their own (codepool.h). */
#include "codepool.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct codepool {
    secret_keys_t keys; /* a copy: public key and pepper only */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t want; /* signalled when a code was taken, or to stop */
    made_code_t *codes;  /* codes[0..n) ready */
    size_t n, size;
    int stop;
    atomic_ulong taken, on_spot; /* codes taken from the pool, made by takers themselves */
};

int code_make(const secret_keys_t *keys, made_code_t *out) {
    char code[CODE_LEN + 1];
    code_generate(code);
    code_hash(keys, code, out->hash);
    int rc = code_seal(keys, code, out->sealed, sizeof(out->sealed));
    sodium_memzero(code, sizeof(code));
    return rc;
}

static void *pool_fill(void *arg) {
    codepool_t *p = arg;
    made_code_t one;
    /* Codes are made with CPU time nobody else wants (SCHED_IDLE): the thread never delays the worker,
     * PostgreSQL or the broker; on a machine with no idle time the pool stays empty and each code is made on
     * the spot, as without it. Lowering one's own policy needs no privilege, but a system call filter may
     * refuse it (the systemd unit allows it): the thread then runs at normal priority, and says so. */
    struct sched_param idle = {0};
    int refused = pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    if (refused)
        log_warn(NULL, "codes made ahead at normal priority: SCHED_IDLE refused (%s)", strerror(refused));
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (p->n == p->size) {
            pthread_cond_wait(&p->want, &p->mu);
            continue;
        }
        pthread_mutex_unlock(&p->mu); /* made outside the lock: takers never wait for a seal */
        int rc = code_make(&p->keys, &one);
        pthread_mutex_lock(&p->mu);
        if (rc != 0) /* cannot happen with a valid key; the takers then make their own (and see why) */
            break;
        if (p->n < p->size)
            p->codes[p->n++] = one;
    }
    pthread_mutex_unlock(&p->mu);
    sodium_memzero(&one, sizeof(one));
    code_seal_forget();
    return NULL;
}

codepool_t *codepool_new(const secret_keys_t *keys, size_t size) {
    codepool_t *p = calloc(1, sizeof(*p));
    if (!p || size == 0 || !(p->codes = calloc(size, sizeof(*p->codes)))) {
        free(p);
        return NULL;
    }
    memcpy(p->keys.pk, keys->pk, sizeof(p->keys.pk));
    memcpy(p->keys.pepper, keys->pepper, sizeof(p->keys.pepper));
    p->size = size;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->want, NULL);
    /* The thread takes no signal: they go to the threads that wait for them (as librdkafka's threads). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int made = pthread_create(&p->thread, NULL, pool_fill, p) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!made) {
        pthread_cond_destroy(&p->want);
        pthread_mutex_destroy(&p->mu);
        sodium_memzero(&p->keys, sizeof(p->keys));
        free(p->codes);
        free(p);
        return NULL;
    }
    return p;
}

int codepool_take(codepool_t *p, const secret_keys_t *keys, made_code_t *out) {
    /* trylock: the thread, at idle priority, may be descheduled holding the lock for as long as the
     * machine is busy; the worker then makes its code rather than wait for it. */
    if (p && pthread_mutex_trylock(&p->mu) == 0) {
        int got = p->n > 0;
        if (got) {
            *out = p->codes[--p->n];
            sodium_memzero(&p->codes[p->n], sizeof(p->codes[p->n]));
            atomic_fetch_add(&p->taken, 1);
            pthread_cond_signal(&p->want);
        }
        pthread_mutex_unlock(&p->mu);
        if (got)
            return 0;
    }
    if (p)
        atomic_fetch_add(&p->on_spot, 1);
    return code_make(keys, out);
}

void codepool_counts(codepool_t *p, unsigned long *from_pool, unsigned long *made_on_spot) {
    *from_pool = *made_on_spot = 0;
    if (!p)
        return;
    *from_pool = atomic_load(&p->taken);
    *made_on_spot = atomic_load(&p->on_spot);
}

void codepool_free(codepool_t *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->want);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->want);
    pthread_mutex_destroy(&p->mu);
    sodium_memzero(p->codes, p->size * sizeof(*p->codes));
    sodium_memzero(&p->keys, sizeof(p->keys));
    free(p->codes);
    free(p);
}
