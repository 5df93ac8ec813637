/* The real virtdisk table (Windows). Needs a Windows host with the virtdisk
 * service: it cannot run under Wine 8, whose CreateVirtualDisk is a stub
 * that terminates the process, so lcow_vdisk_usable() rules Wine out by
 * looking for ntdll's wine_get_version export, never by calling virtdisk. */
#include "core/disk/vdisk.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <windows.h>
#include <virtdisk.h>

#include "core/os/win_str.h"

/* CREATE_VIRTUAL_DISK_PARAMETERS Version2 as in the Windows SDK. mingw-w64
 * 10 omits PhysicalSectorSizeInBytes, which shifts every later field and
 * makes the struct 8 bytes short of what virtdisk reads. */
typedef struct lcow_create_vdisk_params_v2 {
    ULONG Version; /* CREATE_VIRTUAL_DISK_VERSION_2 */
    struct {
        GUID UniqueId;
        ULONGLONG MaximumSize;
        ULONG BlockSizeInBytes;
        ULONG SectorSizeInBytes;
        ULONG PhysicalSectorSizeInBytes;
        PCWSTR ParentPath;
        PCWSTR SourcePath;
        ULONG OpenFlags;
        VIRTUAL_STORAGE_TYPE ParentVirtualStorageType;
        VIRTUAL_STORAGE_TYPE SourceVirtualStorageType;
        GUID ResiliencyGuid;
    } Version2;
} lcow_create_vdisk_params_v2;

static_assert(sizeof(lcow_create_vdisk_params_v2) == 128,
              "SDK size of CREATE_VIRTUAL_DISK_PARAMETERS");
static_assert(offsetof(lcow_create_vdisk_params_v2, Version2.ParentPath) == 48,
              "SDK offset of Version2.ParentPath");
static_assert(offsetof(lcow_create_vdisk_params_v2, Version2.ResiliencyGuid) == 108,
              "SDK offset of Version2.ResiliencyGuid");

/* VIRTUAL_STORAGE_TYPE_VENDOR_MICROSOFT, spelled out to avoid INITGUID. */
static const GUID vendor_microsoft = {
    0xEC984AEC, 0xA0F9, 0x47e9, {0x90, 0x1F, 0x71, 0x41, 0x5A, 0x66, 0x34, 0x5B}};

/* virtdisk.dll is resolved at run time (libuv's winapi.c style), so the exe
 * starts on hosts without it and the auto backend can fall back. */
typedef DWORD(WINAPI *create_fn)(PVIRTUAL_STORAGE_TYPE, PCWSTR, VIRTUAL_DISK_ACCESS_MASK,
                                 PSECURITY_DESCRIPTOR, CREATE_VIRTUAL_DISK_FLAG, ULONG,
                                 PCREATE_VIRTUAL_DISK_PARAMETERS, LPOVERLAPPED, PHANDLE);
typedef DWORD(WINAPI *attach_fn)(HANDLE, PSECURITY_DESCRIPTOR, ATTACH_VIRTUAL_DISK_FLAG, ULONG,
                                 PATTACH_VIRTUAL_DISK_PARAMETERS, LPOVERLAPPED);
typedef DWORD(WINAPI *detach_fn)(HANDLE, DETACH_VIRTUAL_DISK_FLAG, ULONG);
typedef DWORD(WINAPI *path_fn)(HANDLE, PULONG, PWSTR);

static struct {
    INIT_ONCE once;
    DWORD load_error;
    create_fn create;
    attach_fn attach;
    detach_fn detach;
    path_fn physical_path;
} virtdisk = {INIT_ONCE_STATIC_INIT};

static BOOL CALLBACK load_virtdisk(PINIT_ONCE once, PVOID param, PVOID *context)
{
    HMODULE m = LoadLibraryExW(L"virtdisk.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
    if (!m) {
        virtdisk.load_error = GetLastError();
        return TRUE;
    }
    virtdisk.create = (create_fn)(void (*)(void))GetProcAddress(m, "CreateVirtualDisk");
    virtdisk.attach = (attach_fn)(void (*)(void))GetProcAddress(m, "AttachVirtualDisk");
    virtdisk.detach = (detach_fn)(void (*)(void))GetProcAddress(m, "DetachVirtualDisk");
    virtdisk.physical_path =
        (path_fn)(void (*)(void))GetProcAddress(m, "GetVirtualDiskPhysicalPath");
    if (!virtdisk.create || !virtdisk.attach || !virtdisk.detach || !virtdisk.physical_path)
        virtdisk.load_error = ERROR_PROC_NOT_FOUND;
    return TRUE;
}

static bool virtdisk_loaded(void)
{
    InitOnceExecuteOnce(&virtdisk.once, load_virtdisk, NULL, NULL);
    return virtdisk.load_error == 0;
}

static lcow_code win_fail(lcow_error *err, DWORD code, const char *what)
{
    lcow_code c = LCOW_INTERNAL;
    if (code == ERROR_FILE_EXISTS || code == ERROR_ALREADY_EXISTS)
        c = LCOW_ALREADY_EXISTS;
    else if (code == ERROR_FILE_NOT_FOUND || code == ERROR_PATH_NOT_FOUND)
        c = LCOW_NOT_FOUND;
    else if (code == ERROR_DISK_FULL || code == ERROR_HANDLE_DISK_FULL)
        c = LCOW_RESOURCE_EXHAUSTED;
    else if (code == ERROR_ACCESS_DENIED || code == ERROR_PRIVILEGE_NOT_HELD ||
             code == ERROR_NOT_SUPPORTED || code == ERROR_CALL_NOT_IMPLEMENTED)
        c = LCOW_UNAVAILABLE;
    return lcow_error_set(err, c, "%s failed (error %lu)", what, (unsigned long)code);
}

static lcow_code sys_create(void *ctx, const char *path, const lcow_disk_geometry *p, void **disk,
                            lcow_error *err)
{
    if (!virtdisk_loaded())
        return win_fail(err, virtdisk.load_error, "loading virtdisk.dll");
    wchar_t *wpath = lcow_utf8_to_wide(path);
    if (!wpath)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "path is not valid UTF-8");
    VIRTUAL_STORAGE_TYPE type = {VIRTUAL_STORAGE_TYPE_DEVICE_VHDX, vendor_microsoft};
    lcow_create_vdisk_params_v2 params;
    memset(&params, 0, sizeof params);
    params.Version = CREATE_VIRTUAL_DISK_VERSION_2;
    params.Version2.MaximumSize = p->size_bytes;
    params.Version2.BlockSizeInBytes = p->block_size;
    params.Version2.SectorSizeInBytes = p->logical_sector_size;
    params.Version2.PhysicalSectorSizeInBytes = p->physical_sector_size;
    HANDLE h = INVALID_HANDLE_VALUE;
    /* CREATE_VIRTUAL_DISK_FLAG_NONE: a dynamic disk, not marked sparse. */
    DWORD rc =
        virtdisk.create(&type, wpath, VIRTUAL_DISK_ACCESS_NONE, NULL, CREATE_VIRTUAL_DISK_FLAG_NONE,
                        0, (PCREATE_VIRTUAL_DISK_PARAMETERS)&params, NULL, &h);
    free(wpath);
    if (rc != ERROR_SUCCESS)
        return win_fail(err, rc, "CreateVirtualDisk");
    *disk = h;
    return LCOW_OK;
}

static lcow_code sys_attach(void *ctx, void *disk, lcow_error *err)
{
    ATTACH_VIRTUAL_DISK_PARAMETERS params;
    memset(&params, 0, sizeof params);
    params.Version = ATTACH_VIRTUAL_DISK_VERSION_1;
    DWORD rc = virtdisk.attach((HANDLE)disk, NULL, ATTACH_VIRTUAL_DISK_FLAG_NO_DRIVE_LETTER, 0,
                               &params, NULL);
    return rc == ERROR_SUCCESS ? LCOW_OK : win_fail(err, rc, "AttachVirtualDisk");
}

/* The device handle travels with the sink, so freeing the sink closes it. */
typedef struct device_sink {
    lcow_block_sink base;
    lcow_block_sink *inner;
    HANDLE device;
} device_sink;

static lcow_code device_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                              lcow_error *err)
{
    return lcow_block_sink_write(((device_sink *)s)->inner, off, buf, len, err);
}

static lcow_code device_finish(lcow_block_sink *s, lcow_error *err)
{
    return lcow_block_sink_finish(((device_sink *)s)->inner, err);
}

static void device_destroy(lcow_block_sink *s)
{
    device_sink *d = (device_sink *)s;
    lcow_block_sink_free(d->inner);
    CloseHandle(d->device);
    free(d);
}

static const lcow_block_sink_ops device_ops = {device_write, device_finish, device_destroy};

static lcow_code sys_open_device(void *ctx, void *disk, uint64_t size, uint32_t sector_size,
                                 lcow_block_sink **sink, lcow_error *err)
{
    wchar_t path[MAX_PATH];
    ULONG bytes = sizeof path;
    DWORD rc = virtdisk.physical_path((HANDLE)disk, &bytes, path);
    if (rc != ERROR_SUCCESS)
        return win_fail(err, rc, "GetVirtualDiskPhysicalPath");
    HANDLE dev = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE,
                             NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (dev == INVALID_HANDLE_VALUE)
        return win_fail(err, GetLastError(), "opening the attached disk");
    device_sink *d = calloc(1, sizeof *d);
    lcow_code c = d ? lcow_block_sink_win_handle(dev, size, sector_size, &d->inner, err)
                    : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    if (c) {
        free(d);
        CloseHandle(dev);
        return c;
    }
    d->base.ops = &device_ops;
    d->base.size = size;
    d->device = dev;
    *sink = &d->base;
    return LCOW_OK;
}

static lcow_code sys_detach(void *ctx, void *disk, lcow_error *err)
{
    DWORD rc = virtdisk.detach((HANDLE)disk, DETACH_VIRTUAL_DISK_FLAG_NONE, 0);
    return rc == ERROR_SUCCESS ? LCOW_OK : win_fail(err, rc, "DetachVirtualDisk");
}

static void sys_close(void *ctx, void *disk)
{
    CloseHandle((HANDLE)disk);
}

static lcow_code sys_remove(void *ctx, const char *path, lcow_error *err)
{
    wchar_t *wpath = lcow_utf8_to_wide(path);
    if (!wpath)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "path is not valid UTF-8");
    BOOL ok = DeleteFileW(wpath);
    DWORD code = GetLastError();
    free(wpath);
    return ok ? LCOW_OK : win_fail(err, code, "DeleteFileW");
}

static const lcow_vdisk_ops system_ops = {NULL,       sys_create, sys_attach, sys_open_device,
                                          sys_detach, sys_close,  sys_remove};

const lcow_vdisk_ops *lcow_vdisk_system(void)
{
    return &system_ops;
}

bool lcow_vdisk_usable(char *why, size_t why_len)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    FARPROC wine = ntdll ? GetProcAddress(ntdll, "wine_get_version") : NULL;
    if (wine) {
        const char *(*version)(void) = (const char *(*)(void))(void (*)(void))wine;
        if (why && why_len)
            snprintf(why, why_len, "running under Wine %s, whose CreateVirtualDisk is a stub",
                     version());
        return false;
    }
    if (!virtdisk_loaded()) {
        if (why && why_len)
            snprintf(why, why_len, "virtdisk.dll or one of its functions is missing (error %lu)",
                     (unsigned long)virtdisk.load_error);
        return false;
    }
    return true;
}
