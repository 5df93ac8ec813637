#include "service/svcapi.h"

static const lcow_svcapi real_api = {
    .OpenSCManagerW = OpenSCManagerW,
    .CreateServiceW = CreateServiceW,
    .ChangeServiceConfig2W = ChangeServiceConfig2W,
    .DeleteService = DeleteService,
    .OpenServiceW = OpenServiceW,
    .CloseServiceHandle = CloseServiceHandle,
    .ControlService = ControlService,
    .QueryServiceStatusEx = QueryServiceStatusEx,
    .QueryServiceConfigW = QueryServiceConfigW,
    .StartServiceCtrlDispatcherW = StartServiceCtrlDispatcherW,
    .RegisterServiceCtrlHandlerExW = RegisterServiceCtrlHandlerExW,
    .SetServiceStatus = SetServiceStatus,
    .RegisterEventSourceW = RegisterEventSourceW,
    .ReportEventW = ReportEventW,
    .DeregisterEventSource = DeregisterEventSource,
    .RegCreateKeyExW = RegCreateKeyExW,
    .RegSetValueExW = RegSetValueExW,
    .RegDeleteKeyW = RegDeleteKeyW,
    .RegCloseKey = RegCloseKey,
    .GetModuleFileNameW = GetModuleFileNameW,
    .Sleep = Sleep,
};

static const lcow_svcapi *current_api = &real_api;

const lcow_svcapi *lcow_svcapi_get(void)
{
    return current_api;
}

void lcow_svcapi_install(const lcow_svcapi *api)
{
    current_api = api ? api : &real_api;
}
