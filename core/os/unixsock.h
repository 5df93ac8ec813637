/* Unix-domain socket paths of any length (POSIX; core/os/unixsock_posix.c).
 *
 * struct sockaddr_un holds 107 bytes of path, so a socket under a deep
 * directory (a checkout at a long path, a deep --root) cannot be bound or
 * connected by name. These helpers take the whole path: one that fits is used
 * as it is; a longer one is reached through an open handle on its directory
 * (open(O_PATH | O_DIRECTORY)), as "/proc/self/fd/N/<name>", which the kernel
 * resolves through the handle: no chdir, safe with other threads running.
 * Only the file name itself must fit (LCOW_UNIX_NAME_MAX bytes).
 *
 * Both return 0, or -1 with errno set as bind(2)/connect(2) would set it
 * (ENAMETOOLONG when the name is too long, the open's errno when the
 * directory cannot be opened), so callers keep their errno handling. */
#ifndef LCOW_OS_UNIXSOCK_H
#define LCOW_OS_UNIXSOCK_H

/* 107 bytes of sun_path minus "/proc/self/fd/2147483647/". */
#define LCOW_UNIX_NAME_MAX 82

int lcow_os_unix_bind(int fd, const char *path);
int lcow_os_unix_connect(int fd, const char *path);

#endif
