/* Allocation wrappers and their failure seam. See alloc.h. */
#include "core/base/alloc.h"

#include <stdlib.h>
#include <string.h>

#ifdef LCOW_FAULT_INJECTION

#include <stdatomic.h>

/* Each counted allocation takes a unique number; the armed one (and with
 * persistent every later one) fails, so a one-shot failure fires exactly
 * once even with many threads allocating. */
static atomic_uint calls;
static atomic_uint fire_at; /* 0 = disarmed */
static atomic_bool persistent;
static atomic_uint injected;
static _Thread_local bool exempt;

bool lcow_alloc_fault_arm(unsigned nth, bool persist)
{
    if (nth == 0) {
        atomic_store(&fire_at, 0);
        return true;
    }
    atomic_store(&persistent, persist);
    atomic_store(&fire_at, atomic_load(&calls) + nth);
    return true;
}

void lcow_alloc_fault_clear(void)
{
    atomic_store(&fire_at, 0);
    atomic_store(&persistent, false);
    atomic_store(&calls, 0);
    atomic_store(&injected, 0);
}

unsigned lcow_alloc_fault_calls(void)
{
    return atomic_load(&calls);
}

unsigned lcow_alloc_fault_injected(void)
{
    return atomic_load(&injected);
}

void lcow_alloc_fault_exempt_thread(bool on)
{
    exempt = on;
}

/* True when this allocation is to fail. */
static bool should_fail(void)
{
    if (exempt)
        return false;
    unsigned n = atomic_fetch_add(&calls, 1) + 1;
    unsigned at = atomic_load(&fire_at);
    if (at == 0 || n < at || (n > at && !atomic_load(&persistent)))
        return false;
    atomic_fetch_add(&injected, 1);
    return true;
}

#else

bool lcow_alloc_fault_arm(unsigned nth, bool persist)
{
    (void)nth, (void)persist;
    return false;
}

void lcow_alloc_fault_clear(void) {}

unsigned lcow_alloc_fault_calls(void)
{
    return 0;
}

unsigned lcow_alloc_fault_injected(void)
{
    return 0;
}

void lcow_alloc_fault_exempt_thread(bool on)
{
    (void)on;
}

static bool should_fail(void)
{
    return false;
}

#endif

void *lcow_malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *lcow_calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : calloc(count, size);
}

void *lcow_realloc(void *ptr, size_t size)
{
    return should_fail() ? NULL : realloc(ptr, size);
}

char *lcow_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = 0;
    while (len < n && s[len])
        len++;
    char *copy = lcow_malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

char *lcow_strdup(const char *s)
{
    return s ? lcow_strndup(s, strlen(s)) : NULL;
}
