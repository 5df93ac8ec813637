/* Heap allocation with a failure seam, beside core/os's file-fault seam.
 *
 * Code on the request path (rpc/, core/filter.c, core/os) allocates through
 * these so that a test can make the Nth allocation fail, as SQLite's
 * test_malloc does, and check that nothing crashes, every request is
 * answered (ResourceExhausted) or its connection closed with a log line, and
 * the store stays consistent. The seam is compiled in test builds
 * (LCOW_FAULT_INJECTION); otherwise these are plain malloc, calloc, realloc.
 *
 * The memory is ordinary heap memory: free() releases it, and memory from
 * malloc() may be passed to lcow_realloc (msgpack-c frees its buffers with
 * free()). Allocations made directly with malloc (LevelDB, msgpack-c's
 * unpacker, code not converted yet) are not counted and never fail here. */
#ifndef LCOW_BASE_ALLOC_H
#define LCOW_BASE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

void *lcow_malloc(size_t size);
void *lcow_calloc(size_t count, size_t size);
void *lcow_realloc(void *ptr, size_t size);
/* NULL when s is NULL or on failure. */
char *lcow_strdup(const char *s);
/* The first n bytes of s (at most up to its NUL), NUL-terminated. */
char *lcow_strndup(const char *s, size_t n);

/* ---- the seam (test builds) ---- */

/* Arms the seam: the nth allocation from now (1 = the next one) fails, and
 * with persistent every one after it too. Returns false when the seam is
 * not compiled in. nth = 0 disarms. */
bool lcow_alloc_fault_arm(unsigned nth, bool persistent);
/* Disarms and zeroes the counters. */
void lcow_alloc_fault_clear(void);
/* Allocations counted, and failures injected, since the last clear. */
unsigned lcow_alloc_fault_calls(void);
unsigned lcow_alloc_fault_injected(void);
/* The calling thread's allocations are neither counted nor failed while
 * exempt (a test's own client threads in the same process). */
void lcow_alloc_fault_exempt_thread(bool exempt);

#endif
