/* core/thread on Win32: SRWLOCK, CONDITION_VARIABLE and _beginthreadex. */
#include "core/os/thread.h"

#include <windows.h>

#include <process.h>
#include <stdlib.h>

#include "core/base/alloc.h"

_Static_assert(sizeof(SRWLOCK) <= sizeof(lcow_mutex), "lcow_mutex too small");
_Static_assert(sizeof(CONDITION_VARIABLE) <= sizeof(lcow_cond), "lcow_cond too small");

#define LOCK(m) ((SRWLOCK *)(void *)&(m)->u)
#define COND(c) ((CONDITION_VARIABLE *)(void *)&(c)->u)

struct lcow_thread_handle {
    HANDLE h;
    lcow_thread_fn fn;
    void *arg;
    void *result;
};

void lcow_mutex_init(lcow_mutex *m)
{
    InitializeSRWLock(LOCK(m));
}

void lcow_mutex_destroy(lcow_mutex *m)
{
    (void)m; /* SRW locks need no cleanup */
}

void lcow_mutex_lock(lcow_mutex *m)
{
    AcquireSRWLockExclusive(LOCK(m));
}

void lcow_mutex_unlock(lcow_mutex *m)
{
    ReleaseSRWLockExclusive(LOCK(m));
}

void lcow_cond_init(lcow_cond *c)
{
    InitializeConditionVariable(COND(c));
}

void lcow_cond_destroy(lcow_cond *c)
{
    (void)c;
}

void lcow_cond_wait(lcow_cond *c, lcow_mutex *m)
{
    SleepConditionVariableSRW(COND(c), LOCK(m), INFINITE, 0);
}

void lcow_cond_wait_ms(lcow_cond *c, lcow_mutex *m, unsigned ms)
{
    SleepConditionVariableSRW(COND(c), LOCK(m), ms, 0);
}

void lcow_cond_signal(lcow_cond *c)
{
    WakeConditionVariable(COND(c));
}

void lcow_cond_broadcast(lcow_cond *c)
{
    WakeAllConditionVariable(COND(c));
}

static unsigned __stdcall trampoline(void *p)
{
    struct lcow_thread_handle *t = p;
    t->result = t->fn(t->arg);
    return 0;
}

bool lcow_thread_create(lcow_thread *t, lcow_thread_fn fn, void *arg)
{
    struct lcow_thread_handle *h = lcow_calloc(1, sizeof *h);
    if (!h)
        return false;
    h->fn = fn;
    h->arg = arg;
    uintptr_t th = _beginthreadex(NULL, 0, trampoline, h, 0, NULL);
    if (th == 0) {
        free(h);
        return false;
    }
    h->h = (HANDLE)th;
    *t = h;
    return true;
}

/* The trampoline frees the handle struct of a detached thread. */
static unsigned __stdcall detached_trampoline(void *arg)
{
    struct lcow_thread_handle *h = arg;
    lcow_thread_fn fn = h->fn;
    void *fn_arg = h->arg;
    free(h);
    fn(fn_arg);
    return 0;
}

bool lcow_thread_start_detached(lcow_thread_fn fn, void *arg, size_t stack_bytes)
{
    struct lcow_thread_handle *h = lcow_calloc(1, sizeof *h);
    if (!h)
        return false;
    h->fn = fn;
    h->arg = arg;
    uintptr_t th = _beginthreadex(NULL, (unsigned)stack_bytes, detached_trampoline, h,
                                  STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (th == 0) {
        free(h);
        return false;
    }
    CloseHandle((HANDLE)th);
    return true;
}

void lcow_thread_join(lcow_thread t, void **result)
{
    WaitForSingleObject(t->h, INFINITE);
    CloseHandle(t->h);
    if (result)
        *result = t->result;
    free(t);
}

unsigned lcow_thread_cpu_count(void)
{
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors > 0 ? (unsigned)si.dwNumberOfProcessors : 1;
}
