/* core/thread on pthreads. */
#include "core/os/thread.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/base/alloc.h"

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(lcow_mutex), "lcow_mutex too small");
_Static_assert(sizeof(pthread_cond_t) <= sizeof(lcow_cond), "lcow_cond too small");

#define MUTEX(m) ((pthread_mutex_t *)(void *)&(m)->u)
#define COND(c) ((pthread_cond_t *)(void *)&(c)->u)

struct lcow_thread_handle {
    pthread_t id;
};

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "lcowsnap: %s failed (%d)\n", what, rc);
        abort();
    }
}

void lcow_mutex_init(lcow_mutex *m)
{
    check(pthread_mutex_init(MUTEX(m), NULL), "pthread_mutex_init");
}

void lcow_mutex_destroy(lcow_mutex *m)
{
    pthread_mutex_destroy(MUTEX(m));
}

void lcow_mutex_lock(lcow_mutex *m)
{
    check(pthread_mutex_lock(MUTEX(m)), "pthread_mutex_lock");
}

void lcow_mutex_unlock(lcow_mutex *m)
{
    check(pthread_mutex_unlock(MUTEX(m)), "pthread_mutex_unlock");
}

void lcow_cond_init(lcow_cond *c)
{
    check(pthread_cond_init(COND(c), NULL), "pthread_cond_init");
}

void lcow_cond_destroy(lcow_cond *c)
{
    pthread_cond_destroy(COND(c));
}

void lcow_cond_wait(lcow_cond *c, lcow_mutex *m)
{
    check(pthread_cond_wait(COND(c), MUTEX(m)), "pthread_cond_wait");
}

void lcow_cond_wait_ms(lcow_cond *c, lcow_mutex *m, unsigned ms)
{
    /* The condition variable waits on CLOCK_REALTIME (the default): a clock
     * step only makes one wait shorter or longer, and callers loop. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = pthread_cond_timedwait(COND(c), MUTEX(m), &ts);
    if (rc != ETIMEDOUT)
        check(rc, "pthread_cond_timedwait");
}

void lcow_cond_signal(lcow_cond *c)
{
    pthread_cond_signal(COND(c));
}

void lcow_cond_broadcast(lcow_cond *c)
{
    pthread_cond_broadcast(COND(c));
}

/* pthread_create with every signal blocked in the new thread. */
static int create_blocked(pthread_t *id, const pthread_attr_t *attr, lcow_thread_fn fn, void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(id, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

bool lcow_thread_create(lcow_thread *t, lcow_thread_fn fn, void *arg)
{
    struct lcow_thread_handle *h = lcow_malloc(sizeof *h);
    if (!h)
        return false;
    if (create_blocked(&h->id, NULL, fn, arg) != 0) {
        free(h);
        return false;
    }
    *t = h;
    return true;
}

bool lcow_thread_start_detached(lcow_thread_fn fn, void *arg, size_t stack_bytes)
{
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return false;
    pthread_t id;
    bool ok = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
              (stack_bytes == 0 || pthread_attr_setstacksize(&attr, stack_bytes) == 0) &&
              create_blocked(&id, &attr, fn, arg) == 0;
    pthread_attr_destroy(&attr);
    return ok;
}

void lcow_thread_join(lcow_thread t, void **result)
{
    void *r = NULL;
    pthread_join(t->id, &r);
    if (result)
        *result = r;
    free(t);
}

unsigned lcow_thread_cpu_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (unsigned)cpus : 1;
}
