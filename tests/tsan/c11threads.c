/* For the ThreadSanitizer build only (make tsan): C11 threads over the POSIX calls ThreadSanitizer intercepts.
 *
 * librdkafka creates its threads and takes its locks with glibc's C11 threads (thrd_create, mtx_lock, ...),
 * which call into glibc's POSIX threads internally, past ThreadSanitizer's interceptors: a thread made that
 * way has no ThreadSanitizer state, and its first malloc crashes the process (seen in rdk:broker threads,
 * getaddrinfo). Defined in the executable, these definitions take the place of glibc's for every library,
 * so that ThreadSanitizer sees those threads and their synchronisation. glibc's mtx_t and cnd_t have the size
 * and layout of pthread_mutex_t and pthread_cond_t (glibc implements them with those), and thrd_t is a
 * pthread_t. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is not a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is not a pthread_cond_t");
_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is not a pthread_t");

typedef struct start {
    thrd_start_t fn;
    void *arg;
} start_t;

static void *start_thread(void *p) {
    start_t s = *(start_t *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

static int verdict(int rc) {
    return rc == 0 ? thrd_success : rc == ENOMEM ? thrd_nomem : rc == ETIMEDOUT ? thrd_timedout : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg) {
    start_t *s = malloc(sizeof(*s));
    if (!s)
        return thrd_nomem;
    s->fn = fn;
    s->arg = arg;
    int rc = pthread_create((pthread_t *)thr, NULL, start_thread, s);
    if (rc != 0)
        free(s);
    return verdict(rc);
}

int thrd_join(thrd_t thr, int *res) {
    void *out = NULL;
    int rc = pthread_join((pthread_t)thr, &out);
    if (rc == 0 && res)
        *res = (int)(intptr_t)out;
    return verdict(rc);
}

thrd_t thrd_current(void) {
    return (thrd_t)pthread_self();
}

int mtx_init(mtx_t *m, int type) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return verdict(rc);
}

int mtx_lock(mtx_t *m) {
    return verdict(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_unlock(mtx_t *m) {
    return verdict(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m) {
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c) {
    return verdict(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c) {
    return verdict(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c) {
    return verdict(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m) {
    return verdict(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict until) {
    return verdict(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, until));
}

void cnd_destroy(cnd_t *c) {
    pthread_cond_destroy((pthread_cond_t *)c);
}

void call_once(once_flag *flag, void (*fn)(void)) {
    pthread_once((pthread_once_t *)flag, fn);
}
