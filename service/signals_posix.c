/* SIGINT / SIGTERM -> graceful shutdown, through a self-pipe so the handler
 * only does async-signal-safe work. */
#include "service/shutdown.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int pipe_fds[2] = {-1, -1};
static volatile sig_atomic_t requested;

static void on_signal(int sig)
{
    if (requested) {
        static const char msg[] = "lcowsnap: second signal during shutdown, exiting now\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)ignored;
        _exit(128 + sig);
    }
    requested = 1;
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    ssize_t ignored = write(pipe_fds[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

lcow_code lcow_shutdown_init(lcow_error *err)
{
    if (pipe_fds[0] < 0) {
        if (pipe(pipe_fds) != 0)
            return lcow_error_set(err, LCOW_INTERNAL, "pipe: %s", strerror(errno));
        for (int i = 0; i < 2; i++)
            fcntl(pipe_fds[i], F_SETFD, FD_CLOEXEC);
    }
    requested = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: the wait below must return from poll() with EINTR, as
     * ThreadSanitizer runs a handler only when the interrupted call returns
     * (every other thread blocks these signals, see core/os/thread.h). */
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        return lcow_error_set(err, LCOW_INTERNAL, "sigaction: %s", strerror(errno));
    /* A client that disconnects mid-write must not kill the service. */
    signal(SIGPIPE, SIG_IGN);
    return LCOW_OK;
}

static const char *wait_ms(int timeout_ms)
{
    unsigned char byte = 0;
    for (;;) {
        struct pollfd p = {pipe_fds[0], POLLIN, 0};
        int ready = poll(&p, 1, timeout_ms);
        if (ready == 0)
            return NULL;
        if (ready < 0) {
            if (errno == EINTR)
                continue; /* the handler has written the pipe: look again */
            return "shutdown pipe failed";
        }
        ssize_t n = read(pipe_fds[0], &byte, 1);
        if (n == 1)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        return "shutdown pipe closed";
    }
    switch (byte) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    default:
        return "shutdown request";
    }
}

const char *lcow_shutdown_wait(void)
{
    return wait_ms(-1);
}

const char *lcow_shutdown_wait_for(unsigned timeout_ms)
{
    return wait_ms(timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms);
}

void lcow_shutdown_request(void)
{
    requested = 1;
    unsigned char byte = 0;
    ssize_t ignored = write(pipe_fds[1], &byte, 1);
    (void)ignored;
}

void lcow_shutdown_done(void) {}

void lcow_shutdown_cleanup(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    requested = 0;
}
