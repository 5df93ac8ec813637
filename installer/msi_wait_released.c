/* lcowsnap-msi-wait: the MSI's "wait until the old lcowsnap.exe has let go" step.
 *
 *   lcowsnap-msi-wait.exe PATH [TIMEOUT_MS]
 *
 * The MSI stops the service (StopServices) and then removes and copies files. A
 * stopped service's process can still be running for a moment after the stop
 * control returns (it drains, closes the store, exits), and while it runs its
 * image is mapped: a write to PATH fails with ERROR_SHARING_VIOLATION. Windows
 * Installer would then schedule the replacement for the next reboot; Wine's
 * msiexec does the same and returns 3010, and its StopServices does not wait at
 * all. This program runs from the MSI's Binary table as a deferred custom action
 * between StopServices and DeleteServices (installer/lcowsnap.wxs) and polls until
 * PATH can be opened for writing (nothing maps it any more), or it is absent, or
 * TIMEOUT_MS (default 30000, the Service Control Manager's usual stop wait) passed.
 * Opening for write with full sharing changes nothing in the file.
 *
 * Exit codes: 0 released (or absent, or an error that is not "in use": the
 * installer's own copy reports those), 1 still in use at the timeout, 2 usage.
 * The custom action is Return="ignore": on 1 the installer goes on and handles the
 * busy file its usual way (FilesInUse, reboot), so this step can only help.
 */
#include <windows.h>

#include <shellapi.h>
#include <stdio.h>
#include <wchar.h>

#define DEFAULT_TIMEOUT_MS 30000u
#define POLL_MS 100u

enum { EXIT_RELEASED = 0, EXIT_STILL_IN_USE = 1, EXIT_USAGE = 2 };

static int in_use_error(DWORD err)
{
    return err == ERROR_SHARING_VIOLATION || err == ERROR_LOCK_VIOLATION ||
           err == ERROR_USER_MAPPED_FILE;
}

/* 0 released, 1 in use, 2 absent, -1 another error (in *err). */
static int probe(const wchar_t *path, DWORD *err)
{
    HANDLE h =
        CreateFileW(path, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                    NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (h != INVALID_HANDLE_VALUE) {
        CloseHandle(h);
        return 0;
    }
    *err = GetLastError();
    if (*err == ERROR_FILE_NOT_FOUND || *err == ERROR_PATH_NOT_FOUND)
        return 2;
    return in_use_error(*err) ? 1 : -1;
}

static int parse_timeout(const wchar_t *s, DWORD *out)
{
    wchar_t *end = NULL;
    unsigned long v;
    if (!*s || *s == L'-')
        return 0;
    v = wcstoul(s, &end, 10);
    if (*end || v > 3600000ul)
        return 0;
    *out = (DWORD)v;
    return 1;
}

int main(void)
{
    int argc = 0;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    DWORD timeout = DEFAULT_TIMEOUT_MS, err = 0, start, waited;
    int state;

    if (!argv || argc < 2 || argc > 3 || !*argv[1] ||
        (argc == 3 && !parse_timeout(argv[2], &timeout))) {
        fprintf(stderr,
                "usage: lcowsnap-msi-wait PATH [TIMEOUT_MS (0..3600000, default "
                "%u)]\n"
                "waits until no process has PATH mapped (it can be opened for "
                "writing)\n",
                DEFAULT_TIMEOUT_MS);
        return EXIT_USAGE;
    }
    start = GetTickCount();
    for (;;) {
        state = probe(argv[1], &err);
        waited = GetTickCount() - start;
        if (state == 2) {
            printf("lcowsnap-msi-wait: %ls is absent, nothing to wait for\n", argv[1]);
            return EXIT_RELEASED;
        }
        if (state == 0) {
            printf("lcowsnap-msi-wait: %ls is free (waited %lu ms)\n", argv[1],
                   (unsigned long)waited);
            return EXIT_RELEASED;
        }
        if (state < 0) {
            printf("lcowsnap-msi-wait: %ls: error %lu opening it, not waiting\n", argv[1],
                   (unsigned long)err);
            return EXIT_RELEASED;
        }
        if (waited >= timeout) {
            printf("lcowsnap-msi-wait: %ls still in use after %lu ms\n", argv[1],
                   (unsigned long)waited);
            return EXIT_STILL_IN_USE;
        }
        Sleep(POLL_MS);
    }
}
