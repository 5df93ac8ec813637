/* The SCM, Event Log and registry calls of the service layer, as a table of
 * function pointers (the shape of libuv's src/win/winapi.c). The real table
 * points at advapi32/kernel32; tests install a fake to exercise what Wine
 * only stubs: failure actions, PRESHUTDOWN delivery, Event Log contents,
 * missing rights. Windows builds only. */
#ifndef LCOW_SERVICE_SVCAPI_H
#define LCOW_SERVICE_SVCAPI_H

#include <windows.h>

typedef struct lcow_svcapi {
    /* Service control manager */
    SC_HANDLE(WINAPI *OpenSCManagerW)(LPCWSTR machine, LPCWSTR database, DWORD access);
    SC_HANDLE(WINAPI *CreateServiceW)
    (SC_HANDLE scm, LPCWSTR name, LPCWSTR display_name, DWORD access, DWORD service_type,
     DWORD start_type, DWORD error_control, LPCWSTR binary_path, LPCWSTR load_order_group,
     LPDWORD tag_id, LPCWSTR dependencies, LPCWSTR account, LPCWSTR password);
    BOOL(WINAPI *ChangeServiceConfig2W)(SC_HANDLE service, DWORD info_level, LPVOID info);
    BOOL(WINAPI *DeleteService)(SC_HANDLE service);
    SC_HANDLE(WINAPI *OpenServiceW)(SC_HANDLE scm, LPCWSTR name, DWORD access);
    BOOL(WINAPI *CloseServiceHandle)(SC_HANDLE handle);
    BOOL(WINAPI *ControlService)(SC_HANDLE service, DWORD control, LPSERVICE_STATUS status);
    BOOL(WINAPI *QueryServiceStatusEx)
    (SC_HANDLE service, SC_STATUS_TYPE level, LPBYTE buffer, DWORD size, LPDWORD needed);
    BOOL(WINAPI *QueryServiceConfigW)
    (SC_HANDLE service, LPQUERY_SERVICE_CONFIGW config, DWORD size, LPDWORD needed);

    /* Service process side */
    BOOL(WINAPI *StartServiceCtrlDispatcherW)(const SERVICE_TABLE_ENTRYW *table);
    SERVICE_STATUS_HANDLE(WINAPI *RegisterServiceCtrlHandlerExW)
    (LPCWSTR name, LPHANDLER_FUNCTION_EX handler, LPVOID context);
    BOOL(WINAPI *SetServiceStatus)(SERVICE_STATUS_HANDLE handle, LPSERVICE_STATUS status);

    /* Event Log */
    HANDLE(WINAPI *RegisterEventSourceW)(LPCWSTR server, LPCWSTR source);
    BOOL(WINAPI *ReportEventW)
    (HANDLE log, WORD type, WORD category, DWORD event_id, PSID user, WORD string_count,
     DWORD data_size, LPCWSTR *strings, LPVOID data);
    BOOL(WINAPI *DeregisterEventSource)(HANDLE log);

    /* Registry (the Event Log source key) */
    LSTATUS(WINAPI *RegCreateKeyExW)
    (HKEY key, LPCWSTR subkey, DWORD reserved, LPWSTR klass, DWORD options, REGSAM sam,
     LPSECURITY_ATTRIBUTES security, PHKEY result, LPDWORD disposition);
    LSTATUS(WINAPI *RegSetValueExW)
    (HKEY key, LPCWSTR name, DWORD reserved, DWORD type, const BYTE *data, DWORD size);
    LSTATUS(WINAPI *RegDeleteKeyW)(HKEY key, LPCWSTR subkey);
    LSTATUS(WINAPI *RegCloseKey)(HKEY key);

    /* Process */
    DWORD(WINAPI *GetModuleFileNameW)(HMODULE module, LPWSTR buffer, DWORD size);
    void(WINAPI *Sleep)(DWORD ms);
} lcow_svcapi;

/* The table in use: the real one unless a test installed another. */
const lcow_svcapi *lcow_svcapi_get(void);
/* Installs api (NULL restores the real table). Not thread-safe: tests only. */
void lcow_svcapi_install(const lcow_svcapi *api);

/* Registry path of the Event Log source for a service name (under HKLM). */
#define LCOW_SERVICES_KEY_PREFIX L"SYSTEM\\CurrentControlSet\\Services\\"
#define LCOW_EVENTLOG_KEY_PREFIX L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\"

/* Fixed registration parameters (register_win.c), exposed for tests. */
#define LCOW_PRESHUTDOWN_TIMEOUT_MS 30000u
#define LCOW_FAILURE_RESET_SECONDS 86400u
#define LCOW_FAILURE_RESTART1_MS 5000u
#define LCOW_FAILURE_RESTART2_MS 10000u

#endif
