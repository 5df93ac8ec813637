#include "service/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *lcow_svc_path_normalize(const char *path)
{
    char *out = strdup(path);
    if (!out)
        return NULL;
    size_t len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    return out;
}

char *lcow_svc_cwd(void)
{
    return getcwd(NULL, 0);
}

char *lcow_svc_default_root(void)
{
    char *cwd = lcow_svc_cwd();
    if (!cwd)
        return NULL;
    size_t len = strlen(cwd) + sizeof "/var/lcowsnap";
    char *root = malloc(len);
    if (root)
        snprintf(root, len, "%s%svar/lcowsnap", cwd, strcmp(cwd, "/") == 0 ? "" : "/");
    free(cwd);
    return root;
}

lcow_code lcow_svc_probe_writable(const char *dir, lcow_error *err)
{
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.lcowsnap-write-probe-%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "cannot write in %s: %s", dir,
                              strerror(e));
    }
    ssize_t n = write(fd, "probe", 5);
    int e = errno;
    close(fd);
    unlink(probe);
    if (n != 5)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "cannot write in %s: %s", dir,
                              n < 0 ? strerror(e) : "short write");
    return LCOW_OK;
}

FILE *lcow_svc_fopen(const char *path, const char *mode)
{
    return fopen(path, mode);
}

void lcow_svc_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void lcow_svc_timestamp(char *buf, size_t size)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);
}

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;

void lcow_svc_log_lock(void)
{
    pthread_mutex_lock(&log_mutex);
}

void lcow_svc_log_unlock(void)
{
    pthread_mutex_unlock(&log_mutex);
}

const char *lcow_svc_platform_name(void)
{
    return "linux, foreground only";
}
