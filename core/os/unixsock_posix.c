/* Unix-domain socket paths of any length: see unixsock.h. */
#include "core/os/unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef O_PATH
#define O_PATH O_RDONLY
#endif

/* Fills *sa for path; *dir_fd is the directory handle the address goes
 * through (-1 when the path fits as it is). 0, or -1 with errno set. */
static int unix_addr(const char *path, struct sockaddr_un *sa, int *dir_fd)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    *dir_fd = -1;
    size_t len = strlen(path);
    if (len < sizeof sa->sun_path) {
        memcpy(sa->sun_path, path, len + 1);
        return 0;
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!slash || name[0] == '\0' || strlen(name) > LCOW_UNIX_NAME_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (!dir) {
        errno = ENOMEM;
        return -1;
    }
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int saved = errno;
    free(dir);
    if (dfd < 0) {
        errno = saved;
        return -1;
    }
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "/proc/self/fd/%d/%s", dfd, name);
    if (n < 0 || (size_t)n >= sizeof sa->sun_path) {
        close(dfd);
        errno = ENAMETOOLONG;
        return -1;
    }
    *dir_fd = dfd;
    return 0;
}

static int unix_call(int fd, const char *path, int bind_it)
{
    struct sockaddr_un sa;
    int dir_fd;
    if (unix_addr(path, &sa, &dir_fd) != 0)
        return -1;
    int rc = bind_it ? bind(fd, (struct sockaddr *)&sa, sizeof sa)
                     : connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int saved = errno;
    if (dir_fd >= 0)
        close(dir_fd);
    errno = saved;
    return rc;
}

int lcow_os_unix_bind(int fd, const char *path)
{
    return unix_call(fd, path, 1);
}

int lcow_os_unix_connect(int fd, const char *path)
{
    return unix_call(fd, path, 0);
}
