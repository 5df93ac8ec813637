/* --register-service / --unregister-service.
 *
 * Registration creates the service first (so a second registration fails
 * before anything changes), then configures it; if a required step fails the
 * service is deleted again, so a failed registration leaves nothing behind.
 * Setting the failure-actions flag is the one step that only warns: Wine
 * rejects it (and stores no failure actions at all), and the service works
 * without it. */
#include "service/scm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/cmdline.h"
#include "service/image_path.h"
#include "service/logging.h"
#include "service/svcapi.h"
#include "service/win_util.h"

#define STOP_WAIT_MS 30000u
#define STOP_POLL_MS 250u

static void win_error(DWORD code, char *buf, size_t size)
{
    lcow_win_error_text(code, buf, size);
}

bool lcow_image_path_unquoted_with_space(const wchar_t *image_path)
{
    if (!image_path || image_path[0] == L'"')
        return false;
    for (const wchar_t *p = image_path; *p; p++) {
        if (_wcsnicmp(p, L".exe", 4) == 0 && (p[4] == L'\0' || p[4] == L' '))
            return wmemchr(image_path, L' ', (size_t)(p - image_path)) != NULL;
    }
    return wcschr(image_path, L' ') != NULL; /* no ".exe": any space is ambiguous */
}

void lcow_check_own_image_path(const char *service_name)
{
    const lcow_svcapi *api = lcow_svcapi_get();
    wchar_t *wname = lcow_utf8_to_wide(service_name);
    SC_HANDLE scm = wname ? api->OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT) : NULL;
    SC_HANDLE service = scm ? api->OpenServiceW(scm, wname, SERVICE_QUERY_CONFIG) : NULL;
    QUERY_SERVICE_CONFIGW *config = NULL;
    DWORD needed = 0;
    if (service && !api->QueryServiceConfigW(service, NULL, 0, &needed) &&
        GetLastError() == ERROR_INSUFFICIENT_BUFFER && needed > 0) {
        config = malloc(needed);
        if (config && !api->QueryServiceConfigW(service, config, needed, &needed)) {
            free(config);
            config = NULL;
        }
    }
    if (!config) {
        LCOW_LOGD("service %s: could not read its ImagePath to check the quoting (error %lu)",
                  service_name, (unsigned long)GetLastError());
    } else if (lcow_image_path_unquoted_with_space(config->lpBinaryPathName)) {
        char *path = lcow_wide_to_utf8(config->lpBinaryPathName);
        /* The fix before the path: a long path must not push it out of the line. */
        LCOW_LOGW("service %s: its ImagePath is not quoted and the executable's path contains a "
                  "space, so Windows may run another program first as this service's account "
                  "(for C:\\Program Files\\... it tries C:\\Program.exe; CWE-428); quote the "
                  "executable's path (reinstall with the MSI, or --unregister-service then "
                  "--register-service, which both quote it). ImagePath: %s",
                  service_name, path ? path : "?");
        free(path);
    }
    free(config);
    if (service)
        api->CloseServiceHandle(service);
    if (scm)
        api->CloseServiceHandle(scm);
    free(wname);
}

static int not_admin(const char *what)
{
    LCOW_LOGE("%s needs administrator rights: run it from an elevated prompt "
              "(Run as administrator); nothing was changed",
              what);
    return LCOW_EXIT_NOT_ADMIN;
}

static wchar_t *eventlog_key(const char *service_name)
{
    size_t prefix = wcslen(LCOW_EVENTLOG_KEY_PREFIX);
    wchar_t *wname = lcow_utf8_to_wide(service_name);
    if (!wname)
        return NULL;
    wchar_t *key = malloc((prefix + wcslen(wname) + 1) * sizeof *key);
    if (key) {
        wcscpy(key, LCOW_EVENTLOG_KEY_PREFIX);
        wcscat(key, wname);
    }
    free(wname);
    return key;
}

static LSTATUS register_event_source(const lcow_svcapi *api, const char *service_name,
                                     const wchar_t *exe)
{
    wchar_t *key_path = eventlog_key(service_name);
    if (!key_path)
        return ERROR_NOT_ENOUGH_MEMORY;
    HKEY key = NULL;
    LSTATUS rc = api->RegCreateKeyExW(HKEY_LOCAL_MACHINE, key_path, 0, NULL,
                                      REG_OPTION_NON_VOLATILE, KEY_SET_VALUE, NULL, &key, NULL);
    free(key_path);
    if (rc != ERROR_SUCCESS)
        return rc;
    /* The exe carries the message table (lcowsnap_msg.mc). */
    rc = api->RegSetValueExW(key, L"EventMessageFile", 0, REG_EXPAND_SZ, (const BYTE *)exe,
                             (DWORD)((wcslen(exe) + 1) * sizeof *exe));
    DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE;
    if (rc == ERROR_SUCCESS)
        rc = api->RegSetValueExW(key, L"TypesSupported", 0, REG_DWORD, (const BYTE *)&types,
                                 sizeof types);
    api->RegCloseKey(key);
    return rc;
}

static LSTATUS remove_event_source(const lcow_svcapi *api, const char *service_name)
{
    wchar_t *key_path = eventlog_key(service_name);
    if (!key_path)
        return ERROR_NOT_ENOUGH_MEMORY;
    LSTATUS rc = api->RegDeleteKeyW(HKEY_LOCAL_MACHINE, key_path);
    free(key_path);
    return rc == ERROR_FILE_NOT_FOUND ? ERROR_SUCCESS : rc;
}

static LSTATUS write_delayed_autostart(const lcow_svcapi *api, const char *service_name)
{
    wchar_t *wname = lcow_utf8_to_wide(service_name);
    if (!wname)
        return ERROR_NOT_ENOUGH_MEMORY;
    wchar_t key_path[400];
    swprintf(key_path, 400, L"%ls%ls", LCOW_SERVICES_KEY_PREFIX, wname);
    free(wname);
    HKEY key = NULL;
    LSTATUS rc = api->RegCreateKeyExW(HKEY_LOCAL_MACHINE, key_path, 0, NULL,
                                      REG_OPTION_NON_VOLATILE, KEY_SET_VALUE, NULL, &key, NULL);
    if (rc != ERROR_SUCCESS)
        return rc;
    DWORD one = 1;
    rc =
        api->RegSetValueExW(key, L"DelayedAutostart", 0, REG_DWORD, (const BYTE *)&one, sizeof one);
    api->RegCloseKey(key);
    return rc;
}

/* The configuration steps after CreateServiceW. Returns false (with the
 * failing step logged) when the registration must be rolled back. */
static bool configure_service(const lcow_svcapi *api, SC_HANDLE service, const char *name)
{
    char text[256];
    SERVICE_DESCRIPTIONW description = {
        L"Snapshots and scratch disks for Linux containers on Windows (LCOW): the containerd "
        L"windows-lcow snapshotter, served over a named pipe."};
    if (!api->ChangeServiceConfig2W(service, SERVICE_CONFIG_DESCRIPTION, &description)) {
        win_error(GetLastError(), text, sizeof text);
        LCOW_LOGE("setting the description of service %s failed: %s", name, text);
        return false;
    }
    SERVICE_DELAYED_AUTO_START_INFO delayed = {TRUE};
    if (!api->ChangeServiceConfig2W(service, SERVICE_CONFIG_DELAYED_AUTO_START_INFO, &delayed)) {
        DWORD e = GetLastError();
        /* Wine's SCM does not know this level (ERROR_INVALID_LEVEL); Windows
         * keeps the setting as the DelayedAutostart value of the service
         * key, so write that directly. */
        LSTATUS rc = e == ERROR_INVALID_LEVEL ? write_delayed_autostart(api, name) : (LSTATUS)e;
        if (rc != ERROR_SUCCESS) {
            win_error((DWORD)rc, text, sizeof text);
            LCOW_LOGE("making service %s a delayed auto-start service failed: %s", name, text);
            return false;
        }
        LCOW_LOGW("service %s: the service manager rejected the delayed auto-start setting "
                  "(error %lu); wrote DelayedAutostart=1 to the service key instead",
                  name, (unsigned long)e);
    }
    SERVICE_PRESHUTDOWN_INFO preshutdown = {LCOW_PRESHUTDOWN_TIMEOUT_MS};
    if (!api->ChangeServiceConfig2W(service, SERVICE_CONFIG_PRESHUTDOWN_INFO, &preshutdown)) {
        win_error(GetLastError(), text, sizeof text);
        LCOW_LOGE("setting the preshutdown timeout of service %s failed: %s", name, text);
        return false;
    }
    SC_ACTION actions[3] = {
        {SC_ACTION_RESTART, LCOW_FAILURE_RESTART1_MS},
        {SC_ACTION_RESTART, LCOW_FAILURE_RESTART2_MS},
        {SC_ACTION_NONE, 0},
    };
    SERVICE_FAILURE_ACTIONSW failure = {
        .dwResetPeriod = LCOW_FAILURE_RESET_SECONDS,
        .lpRebootMsg = NULL,
        .lpCommand = NULL,
        .cActions = 3,
        .lpsaActions = actions,
    };
    if (!api->ChangeServiceConfig2W(service, SERVICE_CONFIG_FAILURE_ACTIONS, &failure)) {
        win_error(GetLastError(), text, sizeof text);
        LCOW_LOGE("setting the failure actions (restart after 5 s, 10 s) of service %s failed: %s",
                  name, text);
        return false;
    }
    SERVICE_FAILURE_ACTIONS_FLAG flag = {TRUE};
    if (!api->ChangeServiceConfig2W(service, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &flag)) {
        win_error(GetLastError(), text, sizeof text);
        LCOW_LOGW("service %s: the failure actions will apply only to crashes, not to a stop "
                  "with an error exit code (setting the failure-actions flag failed: %s)",
                  name, text);
    }
    return true;
}

static wchar_t *module_path(const lcow_svcapi *api)
{
    DWORD cap = 32768;
    wchar_t *buf = malloc(cap * sizeof *buf);
    if (!buf)
        return NULL;
    DWORD n = api->GetModuleFileNameW(NULL, buf, cap);
    if (n == 0 || n >= cap) {
        free(buf);
        return NULL;
    }
    return buf;
}

int lcow_register_service(const lcow_svc_config *cfg)
{
    const lcow_svcapi *api = lcow_svcapi_get();
    const char *name = cfg->service_name;
    char text[256];

    wchar_t *exe = module_path(api);
    char *exe_utf8 = lcow_wide_to_utf8(exe);
    char *command = exe_utf8
                        ? lcow_cmdline_for_service(exe_utf8, (const char *const *)cfg->service_args,
                                                   cfg->service_arg_count)
                        : NULL;
    wchar_t *wcommand = lcow_utf8_to_wide(command);
    wchar_t *wname = lcow_utf8_to_wide(name);
    wchar_t wdisplay[400];
    if (strcmp(name, LCOW_DEFAULT_SERVICE_NAME) == 0)
        swprintf(wdisplay, 400, L"lcowsnap LCOW snapshotter");
    else
        swprintf(wdisplay, 400, L"lcowsnap LCOW snapshotter (%ls)", wname ? wname : L"");
    int exit_code = LCOW_EXIT_SCM;
    SC_HANDLE scm = NULL, service = NULL;
    if (!exe || !wcommand || !wname) {
        LCOW_LOGE("cannot build the service command line (executable path unknown)");
        exit_code = LCOW_EXIT_INTERNAL;
        goto done;
    }

    scm = api->OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE);
    if (!scm) {
        DWORD e = GetLastError();
        if (e == ERROR_ACCESS_DENIED) {
            exit_code = not_admin("--register-service");
            goto done;
        }
        win_error(e, text, sizeof text);
        LCOW_LOGE("cannot open the service control manager: %s", text);
        goto done;
    }
    service = api->CreateServiceW(
        scm, wname, wdisplay, SERVICE_ALL_ACCESS, SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START,
        SERVICE_ERROR_NORMAL, wcommand, NULL, NULL, NULL, NULL /* LocalSystem */, NULL);
    if (!service) {
        DWORD e = GetLastError();
        if (e == ERROR_SERVICE_EXISTS || e == ERROR_DUPLICATE_SERVICE_NAME) {
            LCOW_LOGE("service %s is already registered; nothing was changed (run "
                      "--unregister-service first, or pick another --service-name)",
                      name);
        } else if (e == ERROR_SERVICE_MARKED_FOR_DELETE) {
            LCOW_LOGE("service %s is still marked for deletion; close the Services console and "
                      "any `sc` handles, then try again (nothing was changed)",
                      name);
        } else if (e == ERROR_ACCESS_DENIED) {
            exit_code = not_admin("--register-service");
        } else {
            win_error(e, text, sizeof text);
            LCOW_LOGE("creating service %s failed: %s", name, text);
        }
        goto done;
    }
    bool ok = configure_service(api, service, name);
    LSTATUS rc = ERROR_SUCCESS;
    if (ok) {
        rc = register_event_source(api, name, exe);
        if (rc != ERROR_SUCCESS) {
            win_error((DWORD)rc, text, sizeof text);
            LCOW_LOGE("registering the Event Log source %s failed: %s", name, text);
            ok = false;
        }
    }
    if (!ok) {
        if (!api->DeleteService(service)) {
            win_error(GetLastError(), text, sizeof text);
            LCOW_LOGE("rolling back: deleting the half-registered service %s failed too: %s; "
                      "remove it with `sc delete %s`",
                      name, text, name);
        } else {
            LCOW_LOGE("registration of service %s rolled back; nothing was changed", name);
        }
        goto done;
    }
    exit_code = LCOW_EXIT_OK;
    lcow_log_event(LCOW_EVENT_REGISTERED, LCOW_LOG_INFO,
                   "registered service %s (automatic, delayed start, LocalSystem, restart after "
                   "5 s and 10 s on failure): %s; start it with `sc start %s`",
                   name, command, name);

done:
    if (service)
        api->CloseServiceHandle(service);
    if (scm)
        api->CloseServiceHandle(scm);
    free(exe);
    free(exe_utf8);
    free(command);
    free(wcommand);
    free(wname);
    return exit_code;
}

static bool query_state(const lcow_svcapi *api, SC_HANDLE service, DWORD *state)
{
    SERVICE_STATUS_PROCESS st;
    DWORD needed = 0;
    if (!api->QueryServiceStatusEx(service, SC_STATUS_PROCESS_INFO, (LPBYTE)&st, sizeof st,
                                   &needed))
        return false;
    *state = st.dwCurrentState;
    return true;
}

int lcow_unregister_service(const lcow_svc_config *cfg)
{
    const lcow_svcapi *api = lcow_svcapi_get();
    const char *name = cfg->service_name;
    char text[256];
    int exit_code = LCOW_EXIT_SCM;
    SC_HANDLE scm = NULL, service = NULL;
    wchar_t *wname = lcow_utf8_to_wide(name);
    if (!wname) {
        LCOW_LOGE("service name %s is not valid UTF-8", name);
        return LCOW_EXIT_BAD_CONFIG;
    }
    scm = api->OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT);
    if (!scm) {
        DWORD e = GetLastError();
        if (e == ERROR_ACCESS_DENIED) {
            exit_code = not_admin("--unregister-service");
            goto done;
        }
        win_error(e, text, sizeof text);
        LCOW_LOGE("cannot open the service control manager: %s", text);
        goto done;
    }
    service = api->OpenServiceW(scm, wname, SERVICE_STOP | SERVICE_QUERY_STATUS | DELETE);
    if (!service) {
        DWORD e = GetLastError();
        if (e == ERROR_SERVICE_DOES_NOT_EXIST) {
            LCOW_LOGE("service %s is not registered; nothing was changed", name);
        } else if (e == ERROR_ACCESS_DENIED) {
            exit_code = not_admin("--unregister-service");
        } else {
            win_error(e, text, sizeof text);
            LCOW_LOGE("opening service %s failed: %s", name, text);
        }
        goto done;
    }

    DWORD state = SERVICE_STOPPED;
    if (query_state(api, service, &state) && state != SERVICE_STOPPED) {
        LCOW_LOGI("stopping service %s before deleting it", name);
        SERVICE_STATUS st;
        if (!api->ControlService(service, SERVICE_CONTROL_STOP, &st)) {
            DWORD e = GetLastError();
            if (e != ERROR_SERVICE_NOT_ACTIVE) {
                win_error(e, text, sizeof text);
                LCOW_LOGW("stopping service %s failed: %s; deleting it anyway (it goes away "
                          "when it stops)",
                          name, text);
            }
        }
        for (unsigned waited = 0; waited < STOP_WAIT_MS; waited += STOP_POLL_MS) {
            if (!query_state(api, service, &state) || state == SERVICE_STOPPED)
                break;
            api->Sleep(STOP_POLL_MS);
        }
        if (state != SERVICE_STOPPED)
            LCOW_LOGW("service %s did not stop within %u s; it is deleted once it stops", name,
                      STOP_WAIT_MS / 1000);
    }
    if (!api->DeleteService(service)) {
        DWORD e = GetLastError();
        win_error(e, text, sizeof text);
        if (e == ERROR_SERVICE_MARKED_FOR_DELETE)
            LCOW_LOGE("service %s is already marked for deletion", name);
        else
            LCOW_LOGE("deleting service %s failed: %s", name, text);
        goto done;
    }
    LSTATUS rc = remove_event_source(api, name);
    if (rc != ERROR_SUCCESS) {
        win_error((DWORD)rc, text, sizeof text);
        LCOW_LOGW("service %s deleted, but removing its Event Log source failed: %s", name, text);
    }
    exit_code = LCOW_EXIT_OK;
    lcow_log_event(LCOW_EVENT_UNREGISTERED, LCOW_LOG_INFO,
                   "unregistered service %s and its Event Log source; its state directory is "
                   "left in place",
                   name);
done:
    if (service)
        api->CloseServiceHandle(service);
    if (scm)
        api->CloseServiceHandle(scm);
    free(wname);
    return exit_code;
}
