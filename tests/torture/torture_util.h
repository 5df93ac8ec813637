/* Shared helpers of the torture campaigns (POSIX: they start, kill and
 * restart the real lcowsnap executable): service processes, the store
 * checker (raw metadata scan + lcow_snapshotter_check), qemu-img checks,
 * random numbers and the summary file that `make test` prints. */
#ifndef LCOW_TORTURE_UTIL_H
#define LCOW_TORTURE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tsvc {
    pid_t pid;
    char exe[1024];
    char root[1024];
    char address[1024];
    char log[1024];
    int status; /* wait status after exit */
} tsvc;

/* Starts exe --root root --address address [extra...] with stdout/stderr to
 * log (appended) and, when fault is non-NULL, LCOW_FAULT=fault in its
 * environment; waits up to 15 s until a Version call answers. 0 on success;
 * -1 when the process exited (status in s->status) or never answered. */
int tsvc_start(tsvc *s, const char *fault, const char *const *extra);
/* Sends sig and waits for the exit (SIGKILL after timeout_ms). Returns the
 * wait status. */
int tsvc_stop(tsvc *s, int sig, unsigned timeout_ms);

/* Store check of a stopped service's root: every directory in snapshots/
 * has a record (before any open would sweep it), every record's disk file
 * exists; then lcow_snapshotter_open + lcow_snapshotter_check. Collects the
 * canonical disk paths (own disks, retained shared disks, templates in the
 * root) into *disks (malloc'd array of malloc'd strings). 0 when clean;
 * otherwise -1 with the first violation in msg. */
int tstore_check(const char *root, char ***disks, size_t *disk_count, char *msg, size_t msg_len);
void tstrv_free(char **v, size_t n);

/* qemu-img check -f vhdx path: 0 when clean (the tool from LCOW_QEMU_IMG or
 * PATH); 1 when it reports a problem (output in msg); 2 when it cannot run. */
int tqemu_check(const char *path, char *msg, size_t msg_len);

uint64_t tnow_ns(void);
void tsleep_ms(unsigned ms);
/* xorshift64* (lb_rand of tests/support/layerblob.h) */
uint64_t trand(uint64_t *state);
/* uniform in [0, n) */
uint32_t trand_below(uint64_t *state, uint32_t n);

/* Prints line to stdout and appends it to $LCOW_TORTURE_SUMMARY (if set). */
void tsummary(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* rm -rf path (best effort) and mkdir -p path. */
int tfresh_dir(const char *path);

#endif
