/* The failure-injection seam of core/os (SQLite test_vfs style): counters and
 * armed faults per operation, lock-free so any thread can hit the seam. */
#include "core/os/os_internal.h"

#include "core/base/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[LCOW_OS_OP_COUNT + 1] = {
    [LCOW_OS_OP_OPEN] = "open",     [LCOW_OS_OP_READ] = "read",
    [LCOW_OS_OP_WRITE] = "write",   [LCOW_OS_OP_TRUNCATE] = "truncate",
    [LCOW_OS_OP_SYNC] = "sync",     [LCOW_OS_OP_MKDIR] = "mkdir",
    [LCOW_OS_OP_RENAME] = "rename", [LCOW_OS_OP_REMOVE] = "remove",
    [LCOW_OS_OP_LIST] = "list",     [LCOW_OS_OP_LINK] = "link",
    [LCOW_OS_OP_COPY] = "copy",     [LCOW_OS_OP_ANY] = "any",
};

const char *lcow_os_op_name(lcow_os_op op)
{
    return (unsigned)op <= LCOW_OS_OP_COUNT ? op_names[op] : "unknown";
}

#ifdef LCOW_FAULT_INJECTION

/* Slot LCOW_OS_OP_ANY counts every call. A fault is armed by recording the
 * absolute call number at which it fires (0 = disarmed); each call takes a
 * unique number from its counter, so a one-shot fault fires exactly once even
 * under concurrency. */
typedef struct fault_slot {
    atomic_uint calls;
    atomic_uint fire_at;
    atomic_int fault;
    atomic_bool persistent;
} fault_slot;

static fault_slot slots[LCOW_OS_OP_COUNT + 1];

/* Test hooks per op (lcow_os_fault_set_hook). */
static _Atomic(lcow_os_hook_fn) hooks[LCOW_OS_OP_COUNT];
static void *_Atomic hook_ctx[LCOW_OS_OP_COUNT];

bool lcow_os_fault_set_hook(lcow_os_op op, lcow_os_hook_fn fn, void *ctx)
{
    if ((unsigned)op >= LCOW_OS_OP_COUNT)
        return false;
    atomic_store(&hooks[op], NULL);
    atomic_store(&hook_ctx[op], ctx);
    atomic_store(&hooks[op], fn);
    return true;
}

/* 0 = LCOW_FAULT not read yet, 1 = reading, 2 = done. */
static atomic_int env_state;

static void load_env_once(void)
{
    if (atomic_load(&env_state) == 2)
        return;
    int expected = 0;
    if (atomic_compare_exchange_strong(&env_state, &expected, 1)) {
        const char *spec = getenv("LCOW_FAULT");
        if (spec && *spec)
            lcow_os_fault_parse(spec);
        atomic_store(&env_state, 2);
        return;
    }
    while (atomic_load(&env_state) != 2) {
        /* another thread is parsing a short string: spin briefly */
    }
}

bool lcow_os_fault_arm(lcow_os_op op, unsigned nth, lcow_os_fault fault, bool persistent)
{
    if ((unsigned)op > LCOW_OS_OP_COUNT)
        return false;
    /* Arming explicitly wins over a later lazy read of the environment. */
    int expected = 0;
    atomic_compare_exchange_strong(&env_state, &expected, 2);
    fault_slot *s = &slots[op];
    if (nth == 0 || fault == LCOW_FAULT_NONE) {
        atomic_store(&s->fire_at, 0);
        return true;
    }
    atomic_store(&s->fault, (int)fault);
    atomic_store(&s->persistent, persistent);
    atomic_store(&s->fire_at, atomic_load(&s->calls) + nth);
    return true;
}

void lcow_os_fault_clear(void)
{
    int expected = 0;
    atomic_compare_exchange_strong(&env_state, &expected, 2);
    for (int i = 0; i <= LCOW_OS_OP_COUNT; i++) {
        atomic_store(&slots[i].fire_at, 0);
        atomic_store(&slots[i].calls, 0);
        atomic_store(&slots[i].persistent, false);
        atomic_store(&slots[i].fault, LCOW_FAULT_NONE);
    }
    for (int i = 0; i < LCOW_OS_OP_COUNT; i++)
        atomic_store(&hooks[i], NULL);
}

unsigned lcow_os_fault_calls(lcow_os_op op)
{
    if ((unsigned)op > LCOW_OS_OP_COUNT)
        return 0;
    return atomic_load(&slots[op].calls);
}

/* Returns the fault to inject for this call of slot s, or LCOW_FAULT_NONE. */
static lcow_os_fault slot_hit(fault_slot *s)
{
    unsigned n = atomic_fetch_add(&s->calls, 1) + 1;
    unsigned at = atomic_load(&s->fire_at);
    if (at == 0 || n < at)
        return LCOW_FAULT_NONE;
    if (n == at) {
        lcow_os_fault f = (lcow_os_fault)atomic_load(&s->fault);
        if (!atomic_load(&s->persistent)) {
            unsigned expect = at;
            atomic_compare_exchange_strong(&s->fire_at, &expect, 0);
        }
        return f;
    }
    return atomic_load(&s->persistent) ? (lcow_os_fault)atomic_load(&s->fault) : LCOW_FAULT_NONE;
}

lcow_code lcow_os_fault_check(lcow_os_op op, const char *what, lcow_error *err)
{
    load_env_once();
    lcow_os_hook_fn hook = atomic_load(&hooks[op]);
    if (hook)
        hook(atomic_load(&hook_ctx[op]), what);
    lcow_os_fault f = slot_hit(&slots[op]);
    lcow_os_fault any = slot_hit(&slots[LCOW_OS_OP_ANY]);
    if (f == LCOW_FAULT_NONE)
        f = any;
    switch (f) {
    case LCOW_FAULT_NONE:
        return LCOW_OK;
    case LCOW_FAULT_ENOSPC:
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "%s %s: no space left on device (injected)", lcow_os_op_name(op),
                              what ? what : "");
    case LCOW_FAULT_EACCES:
        return lcow_error_set(err, LCOW_INTERNAL, "%s %s: access denied (injected)",
                              lcow_os_op_name(op), what ? what : "");
    case LCOW_FAULT_EBUSY:
        return lcow_error_set(err, LCOW_INTERNAL, "%s %s: device or resource busy (injected)",
                              lcow_os_op_name(op), what ? what : "");
    case LCOW_FAULT_EIO:
    default:
        return lcow_error_set(err, LCOW_INTERNAL, "%s %s: input/output error (injected)",
                              lcow_os_op_name(op), what ? what : "");
    }
}

#else /* !LCOW_FAULT_INJECTION */

bool lcow_os_fault_arm(lcow_os_op op, unsigned nth, lcow_os_fault fault, bool persistent)
{
    (void)op, (void)nth, (void)fault, (void)persistent;
    return false;
}

void lcow_os_fault_clear(void) {}

bool lcow_os_fault_set_hook(lcow_os_op op, lcow_os_hook_fn fn, void *ctx)
{
    (void)op, (void)fn, (void)ctx;
    return false;
}

unsigned lcow_os_fault_calls(lcow_os_op op)
{
    (void)op;
    return 0;
}

lcow_code lcow_os_fault_check(lcow_os_op op, const char *what, lcow_error *err)
{
    (void)op, (void)what, (void)err;
    return LCOW_OK;
}

#endif

/* Where the next item of a spec starts (after the ',' ending this one). */
static const char *end_of_item(const char *p, size_t len)
{
    return p[len] == ',' ? p + len + 1 : p + len;
}

/* "op:nth:fault[:persist]" or "alloc:nth[:persist]"; several specs may be
 * separated by ','. */
bool lcow_os_fault_parse(const char *spec)
{
    if (!spec || !*spec)
        return false;
    static const struct {
        const char *name;
        lcow_os_fault fault;
    } faults[] = {{"enospc", LCOW_FAULT_ENOSPC},
                  {"eio", LCOW_FAULT_EIO},
                  {"eacces", LCOW_FAULT_EACCES},
                  {"ebusy", LCOW_FAULT_EBUSY}};
    const char *p = spec;
    bool ok = true;
    while (*p && ok) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return false;
        memcpy(item, p, len);
        item[len] = '\0';
        char *fields[4] = {0};
        int nfields = 0;
        for (char *tok = item, *colon; tok && nfields < 4; tok = colon ? colon + 1 : NULL) {
            colon = strchr(tok, ':');
            if (colon)
                *colon = '\0';
            fields[nfields++] = tok;
            if (!colon)
                break;
        }
        if (strcmp(fields[0], "alloc") == 0) {
            /* "alloc:nth[:persist]": the allocation seam of core/base/alloc.h */
            char *num_end = NULL;
            unsigned long n = fields[1] && fields[1][0] >= '0' && fields[1][0] <= '9'
                                  ? strtoul(fields[1], &num_end, 10)
                                  : 0;
            bool persist = nfields == 3 && strcmp(fields[2], "persist") == 0;
            if (!num_end || *num_end || n == 0 || n > 1000000000ul || nfields > 3 ||
                (nfields == 3 && !persist))
                return false;
            ok = lcow_alloc_fault_arm((unsigned)n, persist);
            p = end_of_item(p, len);
            continue;
        }
        if (nfields < 3)
            return false;
        int op = -1;
        for (int i = 0; i <= LCOW_OS_OP_COUNT; i++)
            if (strcmp(fields[0], op_names[i]) == 0)
                op = i;
        char *num_end = NULL;
        if (fields[1][0] < '0' || fields[1][0] > '9')
            return false;
        unsigned long nth = strtoul(fields[1], &num_end, 10);
        lcow_os_fault fault = LCOW_FAULT_NONE;
        for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
            if (strcmp(fields[2], faults[i].name) == 0)
                fault = faults[i].fault;
        bool persistent = false;
        if (nfields == 4) {
            if (strcmp(fields[3], "persist") != 0)
                return false;
            persistent = true;
        }
        if (op < 0 || *num_end || nth == 0 || nth > 1000000000ul || fault == LCOW_FAULT_NONE)
            return false;
        ok = lcow_os_fault_arm((lcow_os_op)op, (unsigned)nth, fault, persistent);
        p = end_of_item(p, len);
    }
    return ok;
}
