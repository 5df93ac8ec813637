/* lcowsnap-msi-quote: the MSI's "quote the service's ImagePath" step (CWE-428).
 *
 *   lcowsnap-msi-quote.exe SERVICE EXE
 *
 * The MSI registers the service with its ServiceInstall row, and the
 * InstallServices action builds ImagePath as the key file's path, a space and
 * the Arguments. Wine's msiexec leaves that path unquoted:
 *   C:\Program Files\lcowsnap\lcowsnap.exe --run-service
 * and an unquoted path with a space lets Windows try C:\Program.exe first, as
 * LocalSystem (an unquoted search path). Arguments cannot fix it, so this
 * program runs as a deferred, non-impersonated custom action from the MSI's
 * Binary table right after InstallServices (installer/lcowsnap.wxs) and
 * rewrites ImagePath through the service control manager
 * (ChangeServiceConfigW, which also updates the SCM's own copy; a registry
 * write would not) as "EXE" followed by the arguments it had.
 *
 * ImagePath already starting with a quote is left alone (Windows Installer
 * itself may quote it). ImagePath that does not start with EXE is refused:
 * this step only ever quotes the exe the MSI installed.
 *
 * Exit codes: 0 quoted (or already quoted), 1 the service manager refused
 * (open, query or change), 2 usage, 3 ImagePath does not start with EXE. The
 * custom action's return is checked: an install that cannot quote the path
 * rolls back rather than leave an unquoted service path behind.
 */
#include <windows.h>

#include <shellapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

enum { EXIT_QUOTED = 0, EXIT_SCM = 1, EXIT_USAGE = 2, EXIT_NOT_OURS = 3 };

static QUERY_SERVICE_CONFIGW *query(SC_HANDLE service)
{
    DWORD needed = 0;
    QueryServiceConfigW(service, NULL, 0, &needed);
    if (GetLastError() != ERROR_INSUFFICIENT_BUFFER || needed == 0)
        return NULL;
    QUERY_SERVICE_CONFIGW *config = malloc(needed);
    if (config && !QueryServiceConfigW(service, config, needed, &needed)) {
        free(config);
        return NULL;
    }
    return config;
}

static int scm_error(const char *what, const wchar_t *name)
{
    printf("lcowsnap-msi-quote: %s %ls failed: error %lu\n", what, name,
           (unsigned long)GetLastError());
    return EXIT_SCM;
}

int main(void)
{
    int argc = 0;
    wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (!argv || argc != 3 || !*argv[1] || !*argv[2] || wcschr(argv[2], L'"')) {
        fprintf(stderr, "usage: lcowsnap-msi-quote SERVICE EXE\n"
                        "rewrites the service's ImagePath 'EXE ARGS' as '\"EXE\" ARGS'\n");
        return EXIT_USAGE;
    }
    const wchar_t *name = argv[1], *exe = argv[2];
    SC_HANDLE scm = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT);
    if (!scm)
        return scm_error("opening the service manager for", name);
    SC_HANDLE service = OpenServiceW(scm, name, SERVICE_QUERY_CONFIG | SERVICE_CHANGE_CONFIG);
    if (!service) {
        int rc = scm_error("opening service", name);
        CloseServiceHandle(scm);
        return rc;
    }
    int rc = EXIT_SCM;
    QUERY_SERVICE_CONFIGW *config = query(service);
    wchar_t *quoted = NULL;
    if (!config) {
        rc = scm_error("reading the configuration of service", name);
        goto done;
    }
    const wchar_t *path = config->lpBinaryPathName ? config->lpBinaryPathName : L"";
    if (path[0] == L'"') {
        printf("lcowsnap-msi-quote: %ls: ImagePath is already quoted: %ls\n", name, path);
        rc = EXIT_QUOTED;
        goto done;
    }
    size_t exe_len = wcslen(exe);
    if (_wcsnicmp(path, exe, exe_len) != 0 || (path[exe_len] != L'\0' && path[exe_len] != L' ')) {
        printf("lcowsnap-msi-quote: %ls: ImagePath '%ls' does not start with %ls; not changed\n",
               name, path, exe);
        rc = EXIT_NOT_OURS;
        goto done;
    }
    const wchar_t *rest = path + exe_len; /* "" or " ARGS" */
    size_t len = exe_len + wcslen(rest) + 3;
    quoted = malloc(len * sizeof *quoted);
    if (!quoted)
        goto done;
    swprintf(quoted, len, L"\"%ls\"%ls", exe, rest);
    if (!ChangeServiceConfigW(service, SERVICE_NO_CHANGE, SERVICE_NO_CHANGE, SERVICE_NO_CHANGE,
                              quoted, NULL, NULL, NULL, NULL, NULL, NULL)) {
        rc = scm_error("changing the ImagePath of service", name);
        goto done;
    }
    printf("lcowsnap-msi-quote: %ls: ImagePath is now %ls\n", name, quoted);
    rc = EXIT_QUOTED;
done:
    free(quoted);
    free(config);
    CloseServiceHandle(service);
    CloseServiceHandle(scm);
    return rc;
}
