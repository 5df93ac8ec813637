/* The real store in a fresh directory, for the snapshotter's own tests
 * (test_snapshotter.c, test_snapshotter_lcow.c): open, check at teardown,
 * and the store's ids and directories. */
#ifndef LCOW_TEST_SNAPSHOTTER_FIXTURE_H
#define LCOW_TEST_SNAPSHOTTER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/os.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h"
#include "unit/snapshotter_contract.h"
#include "unit/testlib.h"

/* The LCOW labels, spelled out (not taken from core/scratch.h). */
#define LABEL_SIZE "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb"
#define LABEL_REUSE "containerd.io/snapshot/io.microsoft.container.storage.reuse-scratch"
#define LABEL_OWNER "containerd.io/snapshot/io.microsoft.owner.key"

typedef struct fixture {
    char *root;
    lcow_snapshotter *s;
} fixture;

/* Metadata only: no scratch disks (actives get an empty directory). */
static inline lcow_snapshotter *open_at(const char *root)
{
    lcow_snapshotter_config c = {.root = root, .no_scratch = true};
    lcow_snapshotter *s = NULL;
    lcow_error err;
    lcow_code rc = lcow_snapshotter_open(&c, &s, &err);
    if (rc != LCOW_OK)
        fail_msg("open %s: %s", root, err.message);
    return s;
}

static inline int setup(void **state)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "sn%d", n++);
    fixture *f = calloc(1, sizeof *f);
    f->root = test_fresh_dir(name);
    f->s = open_at(f->root);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    lcow_os_fault_clear();
    if (f->s) {
        lcow_error err;
        lcow_code rc = lcow_snapshotter_check(f->s, &err);
        if (rc != LCOW_OK && rc != LCOW_UNAVAILABLE)
            fail_msg("check at teardown: %s", err.message);
    }
    lcow_snapshotter_free(f->s);
    lcow_error err;
    lcow_os_remove_all(f->root, &err);
    free(f->root);
    free(f);
    return 0;
}

static inline void check(lcow_snapshotter *s)
{
    lcow_error err;
    ok(lcow_snapshotter_check(s, &err), &err);
}

/* The id in snapshots/<id> of a mount's source. */
static inline uint64_t source_id(const lcow_mount *m)
{
    const char *p = m->source + strlen(m->source);
    while (p > m->source && p[-1] != '/' && p[-1] != '\\')
        p--;
    return strtoull(p, NULL, 10);
}

static inline uint64_t id_of(lcow_snapshotter *s, const char *active_key)
{
    lcow_mounts m;
    lcow_error err;
    ok(lcow_snapshotter_mounts(s, active_key, &m, &err), &err);
    uint64_t id = source_id(&m.items[0]);
    lcow_mounts_free(&m);
    return id;
}

static inline bool dir_exists(lcow_snapshotter *s, uint64_t id)
{
    char *dir = lcow_snapshotter_dir_of(s, id);
    bool is_dir = test_stat(dir).is_dir;
    free(dir);
    return is_dir;
}

#endif
