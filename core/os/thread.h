/* A tiny portable thread wrapper: mutex, condition variable, thread create /
 * join, once. C11 <threads.h> is missing in mingw-w64, so thread_posix.c uses
 * pthreads and thread_win.c uses SRWLOCK / CONDITION_VARIABLE / Win32 threads.
 * The types are opaque-sized storage so callers can embed them in structs. */
#ifndef LCOW_THREAD_H
#define LCOW_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Large and aligned enough for pthread_mutex_t / pthread_cond_t (glibc: 40 /
 * 48 bytes) and for SRWLOCK / CONDITION_VARIABLE (one pointer each). */
typedef struct lcow_mutex {
    union {
        void *align;
        uint64_t storage[8];
    } u;
} lcow_mutex;

typedef struct lcow_cond {
    union {
        void *align;
        uint64_t storage[8];
    } u;
} lcow_cond;

typedef struct lcow_thread_handle *lcow_thread;

typedef void *(*lcow_thread_fn)(void *arg);

/* Initialisation cannot fail on Windows; on POSIX a failure aborts (it means
 * the process is out of memory before doing any work). */
void lcow_mutex_init(lcow_mutex *m);
void lcow_mutex_destroy(lcow_mutex *m);
void lcow_mutex_lock(lcow_mutex *m);
void lcow_mutex_unlock(lcow_mutex *m);

void lcow_cond_init(lcow_cond *c);
void lcow_cond_destroy(lcow_cond *c);
/* Atomically releases m and waits; m is held again on return. Spurious
 * wake-ups happen: always wait in a loop on the predicate. */
void lcow_cond_wait(lcow_cond *c, lcow_mutex *m);
/* lcow_cond_wait for at most ms milliseconds (a timeout is not an error:
 * the caller re-checks its predicate and its deadline). */
void lcow_cond_wait_ms(lcow_cond *c, lcow_mutex *m, unsigned ms);
void lcow_cond_signal(lcow_cond *c);
void lcow_cond_broadcast(lcow_cond *c);

/* Starts fn(arg) on a new thread; false if the thread could not be created.
 * On POSIX the thread starts with every signal blocked, so SIGINT/SIGTERM
 * reach the thread that waits for them (the main thread) and never one
 * blocked in a system call of its own. */
bool lcow_thread_create(lcow_thread *t, lcow_thread_fn fn, void *arg);
/* The same for a thread nobody joins (its resources go when fn returns),
 * with a stack of stack_bytes (0 = the platform default). */
bool lcow_thread_start_detached(lcow_thread_fn fn, void *arg, size_t stack_bytes);
/* Waits for t and frees it; stores fn's return value in *result if non-NULL. */
void lcow_thread_join(lcow_thread t, void **result);

/* Processors online (at least 1). */
unsigned lcow_thread_cpu_count(void);

#endif
