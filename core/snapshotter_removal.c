/* Deletion that survives held files (docs/reliability.md, "Held files").
 *
 * Remove and Cleanup delete directories that no record names any more. A
 * VM, a backup agent or a virus scanner may hold a file in one of them open
 * (Windows: a sharing violation; Linux: EBUSY; EACCES): the metadata change
 * stands, the directory (already renamed to its removal name rm-<id> by
 * Remove when the rename worked) joins this queue, and the reaper thread
 * retries it with a doubling backoff until it goes.
 *
 * The queue is durable without a file of its own: every entry is a
 * directory under snapshots/ that no record names, and the sweep at open
 * treats every such directory as an orphan, deletes it or, when it is still
 * held, queues it again. So a restart resumes the queue, and nothing is
 * reported removed while its files sit in snapshots/ outside the queue. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/os/os.h"
#include "core/snapshotter_internal.h"

static uint64_t backoff_ms(const lcow_snapshotter *s, unsigned attempts)
{
    uint64_t ms = s->removal_retry_ms ? s->removal_retry_ms : LCOW_REMOVAL_RETRY_MS;
    for (unsigned i = 1; i < attempts && ms < LCOW_REMOVAL_RETRY_MAX_MS; i++)
        ms *= 2;
    return ms < LCOW_REMOVAL_RETRY_MAX_MS ? ms : LCOW_REMOVAL_RETRY_MAX_MS;
}

static void drop_at(lcow_snapshotter *s, size_t i)
{
    free(s->removals[i].path);
    s->removals[i] = s->removals[--s->removal_count];
}

/* One pass: every entry due by now (all of them with force) is tried once,
 * outside the lock; a success leaves the queue, a failure waits longer. */
static void retry_due(lcow_snapshotter *s, bool force)
{
    lcow_mutex_lock(&s->removal_lock);
    uint64_t now = lcow_os_monotonic_ms();
    size_t n = 0;
    char **paths = s->removal_count ? lcow_calloc(s->removal_count, sizeof *paths) : NULL;
    for (size_t i = 0; paths && i < s->removal_count; i++)
        if (force || s->removals[i].due_ms <= now)
            if ((paths[n] = lcow_strdup(s->removals[i].path)) != NULL)
                n++;
    lcow_mutex_unlock(&s->removal_lock);
    for (size_t k = 0; k < n; k++) {
        lcow_error e;
        lcow_code rc = lcow_os_remove_all(paths[k], &e);
        lcow_mutex_lock(&s->removal_lock);
        for (size_t i = 0; i < s->removal_count; i++) {
            lcow_snapshotter_removal *r = &s->removals[i];
            if (strcmp(r->path, paths[k]) != 0)
                continue;
            if (rc == LCOW_OK) {
                LCOW_LOGI("removal queue: %s deleted after %u failed attempt(s)", r->path,
                          r->attempts);
                drop_at(s, i);
            } else {
                r->attempts++;
                r->due_ms = lcow_os_monotonic_ms() + backoff_ms(s, r->attempts);
                LCOW_LOGD("removal queue: %s still held (%s), attempt %u", r->path, e.message,
                          r->attempts);
            }
            break;
        }
        lcow_mutex_unlock(&s->removal_lock);
        free(paths[k]);
    }
    free(paths);
}

static void *reaper_main(void *arg)
{
    lcow_snapshotter *s = arg;
    lcow_mutex_lock(&s->removal_lock);
    while (!s->reaper_stop) {
        uint64_t now = lcow_os_monotonic_ms(), next = UINT64_MAX;
        for (size_t i = 0; i < s->removal_count; i++)
            if (s->removals[i].due_ms < next)
                next = s->removals[i].due_ms;
        if (next > now) {
            /* Nothing queued: sleep until something is (or a minute). */
            uint64_t wait = next == UINT64_MAX ? 60000 : next - now;
            lcow_cond_wait_ms(&s->removal_wake, &s->removal_lock,
                              (unsigned)(wait < 60000 ? wait : 60000));
            continue;
        }
        lcow_mutex_unlock(&s->removal_lock);
        retry_due(s, false);
        lcow_mutex_lock(&s->removal_lock);
    }
    lcow_mutex_unlock(&s->removal_lock);
    return NULL;
}

/* Adds path to the queue (once); true when it was not queued before. The
 * caller holds removal_lock. */
static bool enqueue_locked(lcow_snapshotter *s, const char *path, lcow_error *err, bool *added)
{
    *added = false;
    for (size_t i = 0; i < s->removal_count; i++)
        if (strcmp(s->removals[i].path, path) == 0)
            return true;
    char *copy = lcow_strdup(path);
    if (!copy ||
        !lcow_grow(&s->removals, &s->removal_cap, s->removal_count + 1, sizeof *s->removals)) {
        free(copy);
        lcow_snapshotter_oom(err);
        return false;
    }
    s->removals[s->removal_count++] = (lcow_snapshotter_removal){
        .path = copy, .attempts = 1, .due_ms = lcow_os_monotonic_ms() + backoff_ms(s, 1)};
    if (!s->reaper_started && !s->reaper_stop)
        s->reaper_started = lcow_thread_create(&s->reaper, reaper_main, s);
    if (!s->reaper_started)
        LCOW_LOGW("removal queue: no retry thread; Cleanup and the next start retry %s", path);
    lcow_cond_signal(&s->removal_wake);
    *added = true;
    return true;
}

lcow_code lcow_snapshotter_delete_or_queue(lcow_snapshotter *s, const char *path, lcow_error *err)
{
    lcow_error e;
    if (lcow_os_remove_all(path, &e) == LCOW_OK)
        return LCOW_OK;
    lcow_mutex_lock(&s->removal_lock);
    bool added;
    bool ok = enqueue_locked(s, path, err, &added);
    lcow_mutex_unlock(&s->removal_lock);
    if (!ok) {
        LCOW_LOGW("deleting %s failed (%s) and it could not be queued; the next Cleanup or start "
                  "retries it",
                  path, e.message);
        return LCOW_RESOURCE_EXHAUSTED;
    }
    if (added) {
        LCOW_LOGD("removal queue: %s queued: %s", path, e.message);
        if (s->on_removal_queued)
            s->on_removal_queued(s->removal_ctx, path, e.message);
        else
            LCOW_LOGW("deleting %s failed (%s); queued, retried in the background", path,
                      e.message);
    }
    return LCOW_OK;
}

size_t lcow_snapshotter_pending_removals(lcow_snapshotter *s)
{
    lcow_mutex_lock(&s->removal_lock);
    size_t n = s->removal_count;
    lcow_mutex_unlock(&s->removal_lock);
    return n;
}

size_t lcow_snapshotter_retry_removals(lcow_snapshotter *s)
{
    retry_due(s, true);
    return lcow_snapshotter_pending_removals(s);
}

bool lcow_snapshotter_removal_queued(lcow_snapshotter *s, const char *path)
{
    bool found = false;
    lcow_mutex_lock(&s->removal_lock);
    for (size_t i = 0; i < s->removal_count && !found; i++)
        found = strcmp(s->removals[i].path, path) == 0;
    lcow_mutex_unlock(&s->removal_lock);
    return found;
}

void lcow_snapshotter_removal_stop(lcow_snapshotter *s)
{
    lcow_mutex_lock(&s->removal_lock);
    s->reaper_stop = true;
    bool join = s->reaper_started;
    s->reaper_started = false;
    lcow_cond_broadcast(&s->removal_wake);
    lcow_mutex_unlock(&s->removal_lock);
    if (join)
        lcow_thread_join(s->reaper, NULL);
    if (s->removal_count)
        LCOW_LOGI("removal queue: %zu deletion(s) left for the next start", s->removal_count);
}

void lcow_snapshotter_removal_free(lcow_snapshotter *s)
{
    for (size_t i = 0; i < s->removal_count; i++)
        free(s->removals[i].path);
    free(s->removals);
    s->removals = NULL;
    s->removal_count = s->removal_cap = 0;
}
