/* core/os on Windows: UTF-8 at the contract, UTF-16 and W functions only at
 * the API. Absolute paths are normalised with GetFullPathNameW and, when
 * long, given the \\?\ prefix so MAX_PATH never applies. */
#include "core/os/os_internal.h"

#include <windows.h>
#include <winioctl.h>
/* RtlGenRandom is exported by advapi32 as SystemFunction036. */
#include <ntsecapi.h>
#include <aclapi.h>
#include <sddl.h>

#include <fcntl.h>
#include <io.h>
#include <process.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/types.h"
#include "core/os/win_str.h"

/* Paths at least this long get the \\?\ prefix (CreateDirectoryW's limit is
 * MAX_PATH - 12 = 248). */
#define LONG_PATH_THRESHOLD 248

struct lcow_file {
    HANDLE h;
    char *path;
};

bool lcow_path_is_absolute(const char *path)
{
    if (!path)
        return false;
    bool drive = ((path[0] >= 'A' && path[0] <= 'Z') || (path[0] >= 'a' && path[0] <= 'z')) &&
                 path[1] == ':' && (path[2] == '\\' || path[2] == '/');
    bool unc = (path[0] == '\\' || path[0] == '/') && (path[1] == '\\' || path[1] == '/');
    return drive || unc;
}

/* UTF-8 path -> UTF-16 for the W functions: '/' becomes '\', absolute paths
 * are normalised ("..", ".") and long ones prefixed with \\?\ (or \\?\UNC\).
 * Relative paths stay relative. NULL on invalid UTF-8 or no memory. */
static wchar_t *to_wide_path(const char *path)
{
    wchar_t *w = lcow_utf8_to_wide(path);
    if (!w)
        return NULL;
    for (wchar_t *p = w; *p; p++)
        if (*p == L'/')
            *p = L'\\';
    if (!lcow_path_is_absolute(path) || wcsncmp(w, L"\\\\?\\", 4) == 0)
        return w;
    DWORD n = GetFullPathNameW(w, 0, NULL, NULL);
    if (n == 0)
        return w;
    wchar_t *full = lcow_malloc(((size_t)n + 8) * sizeof *full);
    if (!full) {
        free(w);
        return NULL;
    }
    /* Leave room for the prefix in front. */
    DWORD got = GetFullPathNameW(w, n, full + 8, NULL);
    free(w);
    if (got == 0 || got >= n) {
        free(full);
        return NULL;
    }
    wchar_t *body = full + 8;
    if (got < LONG_PATH_THRESHOLD) {
        memmove(full, body, ((size_t)got + 1) * sizeof *full);
        return full;
    }
    if (body[0] == L'\\' && body[1] == L'\\') { /* \\server\share -> \\?\UNC\server\share */
        wchar_t *start = body - 6;
        memcpy(start, L"\\\\?\\UNC", 7 * sizeof *start);
        memmove(full, start, (wcslen(start) + 1) * sizeof *full);
        return full;
    }
    wchar_t *start = body - 4;
    memcpy(start, L"\\\\?\\", 4 * sizeof *start);
    memmove(full, start, (wcslen(start) + 1) * sizeof *full);
    return full;
}

/* ---- errors ---- */

#ifndef ERROR_DISK_QUOTA_EXCEEDED
#define ERROR_DISK_QUOTA_EXCEEDED 1295L
#endif

static lcow_code code_of_win32(DWORD e)
{
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_BAD_NETPATH:
    case ERROR_BAD_NET_NAME:
    case ERROR_INVALID_DRIVE:
    case ERROR_DIRECTORY:
        return LCOW_NOT_FOUND;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return LCOW_ALREADY_EXISTS;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
    case ERROR_DISK_QUOTA_EXCEEDED:
        return LCOW_RESOURCE_EXHAUSTED;
    default:
        return LCOW_INTERNAL;
    }
}

static void win32_message(DWORD e, char *out, size_t size)
{
    wchar_t buf[256];
    DWORD n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, e, 0,
                             buf, sizeof buf / sizeof buf[0], NULL);
    while (n > 0 &&
           (buf[n - 1] == L'\n' || buf[n - 1] == L'\r' || buf[n - 1] == L' ' || buf[n - 1] == L'.'))
        buf[--n] = 0;
    char *s = n ? lcow_wide_to_utf8(buf) : NULL;
    if (s)
        snprintf(out, size, "%s (error %lu)", s, (unsigned long)e);
    else
        snprintf(out, size, "Windows error %lu", (unsigned long)e);
    free(s);
}

static lcow_code win_fail_code(lcow_error *err, lcow_code code, DWORD e, const char *op,
                               const char *path)
{
    char msg[300];
    win32_message(e, msg, sizeof msg);
    return lcow_error_set(err, code, "%s %s: %s", op, path, msg);
}

static lcow_code win_fail(lcow_error *err, DWORD e, const char *op, const char *path)
{
    return win_fail_code(err, code_of_win32(e), e, op, path);
}

static lcow_code bad_path(lcow_error *err, const char *op, const char *path)
{
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                          "%s %s: path is not valid UTF-8 (or no memory)", op, path);
}

/* ---- realpath ---- */

/* Strips \\?\ from a final path when the result fits the classic limits, so
 * callers see "C:\x" (and "\\server\share" for \\?\UNC\). */
static void strip_verbatim_prefix(wchar_t *w)
{
    size_t len = wcslen(w);
    if (wcsncmp(w, L"\\\\?\\UNC\\", 8) == 0 && len - 6 < LONG_PATH_THRESHOLD) {
        memmove(w + 2, w + 8, (len - 8 + 1) * sizeof *w); /* keep the leading \\ */
    } else if (wcsncmp(w, L"\\\\?\\", 4) == 0 && w[5] == L':' && len - 4 < LONG_PATH_THRESHOLD) {
        memmove(w, w + 4, (len - 4 + 1) * sizeof *w);
    }
}

/* Wine answers GetFinalPathNameByHandleW only up to MAX_PATH: resolve the
 * parent instead (links in every ancestor are still followed) and append the
 * last component, which must not itself be a link. */
static lcow_code realpath_by_parent(const char *path, char **out, lcow_error *err)
{
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "realpath", path);
    DWORD attrs = GetFileAttributesW(w);
    wchar_t *slash = wcsrchr(w, L'\\');
    if (attrs == INVALID_FILE_ATTRIBUTES || (attrs & FILE_ATTRIBUTE_REPARSE_POINT) || !slash ||
        slash[1] == 0) {
        free(w);
        return lcow_error_set(err, LCOW_INTERNAL,
                              "realpath %s: the final path is too long for this host", path);
    }
    *slash = 0;
    char *parent = lcow_wide_to_utf8(w), *name = lcow_wide_to_utf8(slash + 1);
    free(w);
    char *resolved = NULL;
    lcow_code rc = parent && name ? lcow_os_realpath(parent, &resolved, err)
                                  : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                                   "realpath %s: out of memory", path);
    if (rc == LCOW_OK) {
        *out = lcow_path_join(resolved, name);
        if (!*out)
            rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "realpath %s: out of memory", path);
    }
    free(resolved);
    free(parent);
    free(name);
    return rc;
}

/* The final path of an open handle, without the \\?\ prefix; 0 or the
 * Win32 error (ERROR_MORE_DATA: longer than 40000 characters). */
static DWORD final_path_of(HANDLE h, char **out)
{
    *out = NULL;
    /* The required size is a hint (Wine's can be short): grow until it fits. */
    DWORD cap = 512, got = 0, e = 0;
    wchar_t *final = NULL;
    for (int attempt = 0; attempt < 8; attempt++) {
        wchar_t *grown = lcow_realloc(final, (size_t)cap * sizeof *final);
        if (!grown) {
            e = ERROR_NOT_ENOUGH_MEMORY;
            break;
        }
        final = grown;
        got = GetFinalPathNameByHandleW(h, final, cap, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
        e = got == 0 ? GetLastError() : 0;
        if (got > 0 && got < cap)
            break;
        if (got == 0 && e != ERROR_MORE_DATA && e != ERROR_NOT_ENOUGH_MEMORY &&
            e != ERROR_INSUFFICIENT_BUFFER)
            break;
        cap = got >= cap ? got + 1 : cap * 2;
        if (cap > 40000)
            cap = 40000;
        got = 0;
    }
    if (got == 0) {
        free(final);
        return e ? e : ERROR_MORE_DATA;
    }
    strip_verbatim_prefix(final);
    *out = lcow_wide_to_utf8(final);
    free(final);
    return *out ? 0 : ERROR_NOT_ENOUGH_MEMORY;
}

lcow_code lcow_os_realpath(const char *path, char **out, lcow_error *err)
{
    *out = NULL;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "realpath", path);
    /* Backup semantics opens directories; without OPEN_REPARSE_POINT links and
     * junctions are followed to their final target. */
    HANDLE h = CreateFileW(w, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    free(w);
    if (h == INVALID_HANDLE_VALUE)
        return win_fail(err, GetLastError(), "realpath", path);
    DWORD e = final_path_of(h, out);
    CloseHandle(h);
    if (e == ERROR_MORE_DATA)
        return realpath_by_parent(path, out, err);
    if (e == ERROR_NOT_ENOUGH_MEMORY)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "realpath %s: out of memory", path);
    if (e)
        return win_fail(err, e, "realpath", path);
    return LCOW_OK;
}

/* ---- files ---- */

lcow_code lcow_file_open(const char *path, int flags, lcow_file **out, lcow_error *err)
{
    *out = NULL;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_OPEN, path, err);
    if (rc)
        return rc;
    DWORD access = 0;
    if (flags & LCOW_OPEN_READ)
        access |= GENERIC_READ;
    if (flags & LCOW_OPEN_WRITE)
        access |= GENERIC_WRITE;
    if (!access)
        access = GENERIC_READ;
    DWORD disposition;
    if (flags & LCOW_OPEN_CREATE) {
        if (flags & LCOW_OPEN_EXCLUSIVE)
            disposition = CREATE_NEW;
        else if (flags & LCOW_OPEN_TRUNCATE)
            disposition = CREATE_ALWAYS;
        else
            disposition = OPEN_ALWAYS;
    } else {
        disposition = (flags & LCOW_OPEN_TRUNCATE) ? TRUNCATE_EXISTING : OPEN_EXISTING;
    }
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "open", path);
    lcow_file *f = lcow_calloc(1, sizeof *f);
    if (!f || !(f->path = lcow_strdup(path))) {
        free(f);
        free(w);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "open %s: out of memory", path);
    }
    /* Sharing delete lets rename/remove of an open file work as on POSIX. */
    /* LCOW_OPEN_REGULAR: the reparse point itself, never its target. */
    DWORD attrs = FILE_ATTRIBUTE_NORMAL;
    if (flags & LCOW_OPEN_REGULAR)
        attrs |= FILE_FLAG_OPEN_REPARSE_POINT;
    DWORD share =
        (flags & LCOW_OPEN_SHARE_NONE) ? 0 : FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
    f->h = CreateFileW(w, access, share, NULL, disposition, attrs, NULL);
    free(w);
    if (f->h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        free(f->path);
        free(f);
        if ((flags & LCOW_OPEN_SHARE_NONE) &&
            (e == ERROR_SHARING_VIOLATION || e == ERROR_LOCK_VIOLATION))
            return win_fail_code(err, LCOW_FAILED_PRECONDITION, e, "open (in use)", path);
        return win_fail(err, e, "open", path);
    }
    if (flags & LCOW_OPEN_REGULAR) {
        BY_HANDLE_FILE_INFORMATION info;
        bool regular =
            GetFileType(f->h) == FILE_TYPE_DISK && GetFileInformationByHandle(f->h, &info) &&
            !(info.dwFileAttributes & (FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_REPARSE_POINT));
        if (!regular) {
            CloseHandle(f->h);
            free(f->path);
            free(f);
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "open %s: not a regular file (a device, pipe, directory or "
                                  "reparse point)",
                                  path);
        }
    }
    *out = f;
    return LCOW_OK;
}

static OVERLAPPED at_offset(uint64_t off)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.Offset = (DWORD)off;
    ov.OffsetHigh = (DWORD)(off >> 32);
    return ov;
}

lcow_code lcow_file_pread(lcow_file *f, void *buf, size_t len, uint64_t off, size_t *got,
                          lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_READ, f->path, err);
    if (rc)
        return rc;
    size_t done = 0;
    while (done < len) {
        size_t left = len - done;
        DWORD want = left > (1u << 30) ? (1u << 30) : (DWORD)left;
        OVERLAPPED ov = at_offset(off + done);
        DWORD n = 0;
        if (!ReadFile(f->h, (char *)buf + done, want, &n, &ov)) {
            DWORD e = GetLastError();
            if (e == ERROR_HANDLE_EOF)
                break;
            return win_fail(err, e, "read", f->path);
        }
        if (n == 0)
            break;
        done += n;
    }
    if (got)
        *got = done;
    else if (done < len)
        return lcow_error_set(
            err, LCOW_INTERNAL, "read %s: short read at offset %llu (%llu of %llu bytes)", f->path,
            (unsigned long long)off, (unsigned long long)done, (unsigned long long)len);
    return LCOW_OK;
}

lcow_code lcow_file_pwrite(lcow_file *f, const void *buf, size_t len, uint64_t off, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_WRITE, f->path, err);
    if (rc)
        return rc;
    size_t done = 0;
    while (done < len) {
        size_t left = len - done;
        DWORD want = left > (1u << 30) ? (1u << 30) : (DWORD)left;
        OVERLAPPED ov = at_offset(off + done);
        DWORD n = 0;
        if (!WriteFile(f->h, (const char *)buf + done, want, &n, &ov))
            return win_fail(err, GetLastError(), "write", f->path);
        if (n == 0)
            return lcow_error_set(err, LCOW_INTERNAL, "write %s: no progress", f->path);
        done += n;
    }
    return LCOW_OK;
}

lcow_code lcow_file_size(lcow_file *f, uint64_t *size, lcow_error *err)
{
    LARGE_INTEGER li;
    if (!GetFileSizeEx(f->h, &li))
        return win_fail(err, GetLastError(), "stat", f->path);
    *size = (uint64_t)li.QuadPart;
    return LCOW_OK;
}

static BOOL set_length(HANDLE h, uint64_t size)
{
    FILE_END_OF_FILE_INFO eof;
    eof.EndOfFile.QuadPart = (LONGLONG)size;
    return SetFileInformationByHandle(h, FileEndOfFileInfo, &eof, sizeof eof);
}

lcow_code lcow_file_truncate(lcow_file *f, uint64_t size, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_TRUNCATE, f->path, err);
    if (rc)
        return rc;
    if (!set_length(f->h, size))
        return win_fail(err, GetLastError(), "truncate", f->path);
    return LCOW_OK;
}

lcow_code lcow_file_sync(lcow_file *f, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_SYNC, f->path, err);
    if (rc)
        return rc;
    if (!FlushFileBuffers(f->h))
        return win_fail(err, GetLastError(), "flush", f->path);
    return LCOW_OK;
}

/* NTFS has no asynchronous writeback hint worth the call; FlushFileBuffers
 * at lcow_file_sync does the work. */
void lcow_file_start_writeback(lcow_file *f, uint64_t off, uint64_t len)
{
    (void)f, (void)off, (void)len;
}

void lcow_file_close(lcow_file *f)
{
    if (!f)
        return;
    if (!CloseHandle(f->h))
        LCOW_LOGW("close %s: error %lu", f->path, (unsigned long)GetLastError());
    free(f->path);
    free(f);
}

/* ---- directories and names ---- */

static bool missing_error(DWORD e)
{
    return e == ERROR_FILE_NOT_FOUND || e == ERROR_PATH_NOT_FOUND || e == ERROR_INVALID_NAME ||
           e == ERROR_BAD_NETPATH || e == ERROR_DIRECTORY;
}

lcow_code lcow_os_stat(const char *path, lcow_stat *st, lcow_error *err)
{
    memset(st, 0, sizeof *st);
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "stat", path);
    WIN32_FILE_ATTRIBUTE_DATA data;
    BOOL ok = GetFileAttributesExW(w, GetFileExInfoStandard, &data);
    DWORD e = GetLastError();
    free(w);
    if (!ok) {
        if (missing_error(e))
            return LCOW_OK;
        return win_fail(err, e, "stat", path);
    }
    st->exists = true;
    st->is_link = (data.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT) != 0;
    st->is_dir = !st->is_link && (data.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) != 0;
    st->is_regular =
        !st->is_link && !st->is_dir && !(data.dwFileAttributes & FILE_ATTRIBUTE_DEVICE);
    st->size = ((uint64_t)data.nFileSizeHigh << 32) | data.nFileSizeLow;
    return LCOW_OK;
}

static bool sid_is_wk(PSID sid, WELL_KNOWN_SID_TYPE type)
{
    BYTE buf[SECURITY_MAX_SID_SIZE];
    DWORD size = sizeof buf;
    if (!CreateWellKnownSid(type, NULL, buf, &size))
        return false;
    return EqualSid(sid, (PSID)buf) != 0;
}

lcow_code lcow_os_check_private_dir(const char *path, lcow_error *err)
{
    lcow_stat st;
    lcow_code rc = lcow_os_stat(path, &st, err);
    if (rc != LCOW_OK)
        return rc;
    if (!st.exists)
        return lcow_error_set(err, LCOW_NOT_FOUND, "%s does not exist", path);
    if (!st.is_dir)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s is not a directory", path);
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "security of", path);
    PACL dacl = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD e = GetNamedSecurityInfoW(w, SE_FILE_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, &dacl,
                                    NULL, &sd);
    free(w);
    if (e != ERROR_SUCCESS)
        return win_fail(err, e, "reading the security of", path);
    static const struct {
        WELL_KNOWN_SID_TYPE type;
        const char *name;
    } others[] = {
        {WinWorldSid, "Everyone"},
        {WinBuiltinUsersSid, "Users"},
        {WinAuthenticatedUserSid, "Authenticated Users"},
        {WinAnonymousSid, "Anonymous"},
        {WinInteractiveSid, "Interactive"},
    };
    const ACCESS_MASK write_bits = GENERIC_ALL | GENERIC_WRITE | FILE_WRITE_DATA |
                                   FILE_APPEND_DATA | FILE_DELETE_CHILD | WRITE_DAC | WRITE_OWNER |
                                   DELETE;
    const char *who = NULL;
    if (!dacl)
        who = "everyone (the directory has no DACL)";
    for (DWORD i = 0; dacl && !who && i < dacl->AceCount; i++) {
        ACE_HEADER *ace = NULL;
        if (!GetAce(dacl, i, (LPVOID *)&ace) || ace->AceType != ACCESS_ALLOWED_ACE_TYPE)
            continue;
        ACCESS_ALLOWED_ACE *allowed = (ACCESS_ALLOWED_ACE *)ace;
        if (!(allowed->Mask & write_bits))
            continue;
        PSID sid = (PSID)&allowed->SidStart;
        for (size_t k = 0; k < sizeof others / sizeof others[0] && !who; k++)
            if (sid_is_wk(sid, others[k].type))
                who = others[k].name;
    }
    LocalFree(sd);
    if (who)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "%s can be written by %s: other users could plant, swap or remove "
                              "what lcowsnap keeps there; allow write only to SYSTEM, "
                              "Administrators and the owner (for example icacls \"%s\" "
                              "/inheritance:r /grant:r *S-1-5-18:(OI)(CI)F "
                              "*S-1-5-32-544:(OI)(CI)F)",
                              path, who, path);
    return LCOW_OK;
}

lcow_code lcow_os_mkdir_private_all(const char *path, lcow_error *err)
{
    lcow_stat st;
    lcow_code rc = lcow_os_stat(path, &st, err);
    if (rc != LCOW_OK || st.exists)
        return rc == LCOW_OK ? lcow_os_mkdir_all(path, err) : rc;
    /* The parents as usual, then the directory itself with its own DACL. */
    char *parent = lcow_strdup(path);
    if (!parent)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "mkdir %s: out of memory", path);
    size_t n = strlen(parent);
    while (n > 0 && parent[n - 1] != '\\' && parent[n - 1] != '/')
        n--;
    while (n > 1 && (parent[n - 1] == '\\' || parent[n - 1] == '/') && parent[n - 2] != ':')
        n--;
    parent[n] = '\0';
    rc = n > 0 ? lcow_os_mkdir_all(parent, err) : LCOW_OK;
    free(parent);
    if (rc != LCOW_OK)
        return rc;
    if ((rc = lcow_os_fault_check(LCOW_OS_OP_MKDIR, path, err)) != LCOW_OK)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "mkdir", path);
    PSECURITY_DESCRIPTOR sd = NULL;
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(
            L"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)", SDDL_REVISION_1, &sd, NULL)) {
        DWORD e = GetLastError();
        free(w);
        return win_fail(err, e, "mkdir (security descriptor)", path);
    }
    SECURITY_ATTRIBUTES sa = {sizeof sa, sd, FALSE};
    BOOL ok = CreateDirectoryW(w, &sa);
    DWORD e = GetLastError();
    LocalFree(sd);
    free(w);
    if (!ok && e != ERROR_ALREADY_EXISTS)
        return win_fail(err, e, "mkdir", path);
    return LCOW_OK;
}

lcow_code lcow_os_mkdir(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_MKDIR, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "mkdir", path);
    BOOL ok = CreateDirectoryW(w, NULL);
    DWORD e = GetLastError();
    free(w);
    if (!ok)
        return win_fail(err, e, "mkdir", path);
    return LCOW_OK;
}

/* Length of the root of a wide path that mkdir_all must not try to create:
 * "C:\", "\\?\C:\", "\\server\share\", "\\?\UNC\server\share\"; 0 if relative. */
static size_t root_length(const wchar_t *w)
{
    size_t i = 0;
    if (wcsncmp(w, L"\\\\?\\UNC\\", 8) == 0)
        i = 8;
    else if (wcsncmp(w, L"\\\\?\\", 4) == 0)
        i = 4;
    else if (w[0] == L'\\' && w[1] == L'\\')
        i = 2;
    if (i == 4 || i == 0) {
        if (w[i] && w[i + 1] == L':')
            return w[i + 2] == L'\\' ? i + 3 : i + 2;
        return i;
    }
    /* UNC: skip server and share. */
    for (int parts = 0; parts < 2; parts++) {
        while (w[i] && w[i] != L'\\')
            i++;
        if (w[i])
            i++;
    }
    return i;
}

lcow_code lcow_os_mkdir_all(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_MKDIR, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "mkdir", path);
    size_t len = wcslen(w);
    for (size_t i = root_length(w); i <= len; i++) {
        if (w[i] != L'\\' && w[i] != 0)
            continue;
        if (i == 0 || w[i - 1] == L'\\')
            continue;
        wchar_t saved = w[i];
        w[i] = 0;
        if (!CreateDirectoryW(w, NULL)) {
            DWORD e = GetLastError();
            DWORD attrs = GetFileAttributesW(w);
            /* Existing components (and roots refusing with access denied) are fine. */
            if (attrs == INVALID_FILE_ATTRIBUTES) {
                char *part = lcow_wide_to_utf8(w);
                rc = win_fail(err, e, "mkdir", part ? part : path);
                free(part);
                free(w);
                return rc;
            }
            if (!(attrs & FILE_ATTRIBUTE_DIRECTORY)) {
                free(w);
                return lcow_error_set(err, LCOW_ALREADY_EXISTS,
                                      "mkdir %s: exists and is not a directory", path);
            }
        }
        w[i] = saved;
    }
    free(w);
    return LCOW_OK;
}

lcow_code lcow_os_rename(const char *from, const char *to, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_RENAME, from, err);
    if (rc)
        return rc;
    wchar_t *wf = to_wide_path(from), *wt = to_wide_path(to);
    if (!wf || !wt) {
        free(wf);
        free(wt);
        return bad_path(err, "rename", from);
    }
    BOOL ok = MoveFileExW(wf, wt, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH);
    DWORD e = GetLastError();
    free(wf);
    free(wt);
    if (!ok) {
        char msg[300];
        win32_message(e, msg, sizeof msg);
        return lcow_error_set(err, code_of_win32(e), "rename %s -> %s: %s", from, to, msg);
    }
    return LCOW_OK;
}

/* Removes one entry given its attributes: directories and directory links
 * with RemoveDirectoryW, everything else with DeleteFileW; a read-only
 * attribute is cleared first (POSIX lets the directory owner delete it). */
static DWORD remove_entry(const wchar_t *w, DWORD attrs)
{
    if (attrs & FILE_ATTRIBUTE_READONLY)
        SetFileAttributesW(w, attrs & ~(DWORD)FILE_ATTRIBUTE_READONLY);
    BOOL ok = (attrs & FILE_ATTRIBUTE_DIRECTORY) ? RemoveDirectoryW(w) : DeleteFileW(w);
    return ok ? 0 : GetLastError();
}

lcow_code lcow_os_remove(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_REMOVE, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "remove", path);
    DWORD attrs = GetFileAttributesW(w);
    DWORD e = attrs == INVALID_FILE_ATTRIBUTES ? GetLastError() : remove_entry(w, attrs);
    free(w);
    if (e) {
        if (missing_error(e))
            e = ERROR_FILE_NOT_FOUND;
        return win_fail(err, e, "remove", path);
    }
    return LCOW_OK;
}

static wchar_t *wide_join(const wchar_t *dir, const wchar_t *name)
{
    size_t a = wcslen(dir), b = wcslen(name);
    bool sep = a > 0 && dir[a - 1] != L'\\';
    wchar_t *out = lcow_malloc((a + sep + b + 1) * sizeof *out);
    if (!out)
        return NULL;
    memcpy(out, dir, a * sizeof *out);
    if (sep)
        out[a] = L'\\';
    memcpy(out + a + sep, name, (b + 1) * sizeof *out);
    return out;
}

static bool dot_or_dotdot(const wchar_t *n)
{
    return (n[0] == L'.' && n[1] == 0) || (n[0] == L'.' && n[1] == L'.' && n[2] == 0);
}

/* Removes the tree at w; links (reparse points) are removed, never entered. */
static DWORD remove_tree(const wchar_t *w)
{
    DWORD attrs = GetFileAttributesW(w);
    if (attrs == INVALID_FILE_ATTRIBUTES) {
        DWORD e = GetLastError();
        return missing_error(e) ? 0 : e;
    }
    if ((attrs & FILE_ATTRIBUTE_DIRECTORY) && !(attrs & FILE_ATTRIBUTE_REPARSE_POINT)) {
        wchar_t *pattern = wide_join(w, L"*");
        if (!pattern)
            return ERROR_NOT_ENOUGH_MEMORY;
        WIN32_FIND_DATAW fd;
        HANDLE find =
            FindFirstFileExW(pattern, FindExInfoBasic, &fd, FindExSearchNameMatch, NULL, 0);
        free(pattern);
        if (find == INVALID_HANDLE_VALUE) {
            DWORD e = GetLastError();
            if (e != ERROR_FILE_NOT_FOUND)
                return e;
        } else {
            DWORD e = 0;
            do {
                if (dot_or_dotdot(fd.cFileName))
                    continue;
                wchar_t *child = wide_join(w, fd.cFileName);
                e = child ? remove_tree(child) : ERROR_NOT_ENOUGH_MEMORY;
                free(child);
            } while (!e && FindNextFileW(find, &fd));
            if (!e && GetLastError() != ERROR_NO_MORE_FILES)
                e = GetLastError();
            FindClose(find);
            if (e)
                return e;
        }
    }
    DWORD e = remove_entry(w, attrs);
    return missing_error(e) ? 0 : e;
}

lcow_code lcow_os_remove_all(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_REMOVE, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "remove", path);
    DWORD e = remove_tree(w);
    free(w);
    if (e)
        return win_fail(err, e, "remove tree", path);
    return LCOW_OK;
}

lcow_code lcow_os_sync_dir(const char *dir, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_SYNC, dir, err);
    if (rc)
        return rc;
    /* NTFS journals directory changes: nothing to flush, but keep the POSIX
     * contract that a missing directory is an error. */
    lcow_stat st;
    rc = lcow_os_stat(dir, &st, err);
    if (rc)
        return rc;
    if (!st.exists)
        return lcow_error_set(err, LCOW_NOT_FOUND, "sync directory %s: not found", dir);
    return LCOW_OK;
}

lcow_code lcow_os_list_dir(const char *dir, lcow_dir_fn fn, void *ctx, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LIST, dir, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(dir);
    wchar_t *pattern = w ? wide_join(w, L"*") : NULL;
    free(w);
    if (!pattern)
        return bad_path(err, "list", dir);
    WIN32_FIND_DATAW fd;
    HANDLE find = FindFirstFileExW(pattern, FindExInfoBasic, &fd, FindExSearchNameMatch, NULL, 0);
    free(pattern);
    if (find == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        if (e == ERROR_FILE_NOT_FOUND) /* an empty volume root has no "." */
            return LCOW_OK;
        return win_fail(err, e, "list", dir);
    }
    do {
        if (dot_or_dotdot(fd.cFileName))
            continue;
        char *name = lcow_wide_to_utf8(fd.cFileName);
        if (!name) {
            FindClose(find);
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "list %s: out of memory", dir);
        }
        /* Like lstat: a directory link or junction is not a directory. */
        bool is_dir = (fd.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) &&
                      !(fd.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT);
        int stop = fn(ctx, name, is_dir);
        free(name);
        if (stop) {
            FindClose(find);
            return LCOW_OK;
        }
    } while (FindNextFileW(find, &fd));
    DWORD e = GetLastError();
    FindClose(find);
    if (e != ERROR_NO_MORE_FILES)
        return win_fail(err, e, "list", dir);
    return LCOW_OK;
}

/* ---- links ---- */

lcow_code lcow_os_symlink(const char *target, const char *link_path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, link_path, err);
    if (rc)
        return rc;
    wchar_t *wt = to_wide_path(target), *wl = to_wide_path(link_path);
    if (!wt || !wl) {
        free(wt);
        free(wl);
        return bad_path(err, "symlink", link_path);
    }
    /* Wine's CreateSymbolicLinkW reports success without doing anything, so
     * the result is verified below; an existing entry must be caught first. */
    if (GetFileAttributesW(wl) != INVALID_FILE_ATTRIBUTES) {
        free(wt);
        free(wl);
        return lcow_error_set(err, LCOW_ALREADY_EXISTS, "symlink %s -> %s: %s already exists",
                              link_path, target, link_path);
    }
    DWORD attrs = GetFileAttributesW(wt);
    DWORD flags = SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE;
    if (attrs != INVALID_FILE_ATTRIBUTES && (attrs & FILE_ATTRIBUTE_DIRECTORY))
        flags |= SYMBOLIC_LINK_FLAG_DIRECTORY;
    BOOL ok = CreateSymbolicLinkW(wl, wt, flags);
    DWORD e = ok ? 0 : GetLastError();
    if (!ok && e == ERROR_INVALID_PARAMETER) {
        /* Windows before 10 1703 rejects the unprivileged flag. */
        ok = CreateSymbolicLinkW(wl, wt,
                                 flags & ~(DWORD)SYMBOLIC_LINK_FLAG_ALLOW_UNPRIVILEGED_CREATE);
        e = ok ? 0 : GetLastError();
    }
    free(wt);
    free(wl);
    if (!ok) {
        /* No privilege, or a file system / host (Wine) without symlinks: the
         * caller falls back to a hard link. */
        bool unavailable = e == ERROR_PRIVILEGE_NOT_HELD || e == ERROR_NOT_SUPPORTED ||
                           e == ERROR_INVALID_FUNCTION || e == ERROR_CALL_NOT_IMPLEMENTED ||
                           e == ERROR_INVALID_PARAMETER;
        char msg[300];
        win32_message(e, msg, sizeof msg);
        return lcow_error_set(err, unavailable ? LCOW_NOT_IMPLEMENTED : code_of_win32(e),
                              "symlink %s -> %s: %s", link_path, target, msg);
    }
    lcow_stat st;
    if (lcow_os_stat(link_path, &st, NULL) == LCOW_OK && !(st.exists && st.is_link))
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                              "symlink %s -> %s: reported success but no link exists", link_path,
                              target);
    return LCOW_OK;
}

lcow_code lcow_os_hardlink(const char *existing, const char *link_path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, link_path, err);
    if (rc)
        return rc;
    wchar_t *we = to_wide_path(existing), *wl = to_wide_path(link_path);
    if (!we || !wl) {
        free(we);
        free(wl);
        return bad_path(err, "hard link", link_path);
    }
    BOOL ok = CreateHardLinkW(wl, we, NULL);
    DWORD e = GetLastError();
    free(we);
    free(wl);
    if (!ok) {
        char msg[300];
        win32_message(e, msg, sizeof msg);
        return lcow_error_set(err, code_of_win32(e), "hard link %s -> %s: %s", link_path, existing,
                              msg);
    }
    return LCOW_OK;
}

lcow_code lcow_os_file_id(const char *path, lcow_file_id *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "file id", path);
    HANDLE h = CreateFileW(
        w, FILE_READ_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
        OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    DWORD e = GetLastError();
    free(w);
    if (h == INVALID_HANDLE_VALUE)
        return win_fail(err, e, "file id", path);
    BY_HANDLE_FILE_INFORMATION fi;
    BOOL ok = GetFileInformationByHandle(h, &fi);
    e = GetLastError();
    CloseHandle(h);
    if (!ok)
        return win_fail(err, e, "file id", path);
    out->volume = fi.dwVolumeSerialNumber;
    out->index = ((uint64_t)fi.nFileIndexHigh << 32) | fi.nFileIndexLow;
    out->links = fi.nNumberOfLinks;
    return LCOW_OK;
}

/* ---- space ---- */

typedef struct file_id {
    DWORD volume, high, low;
} file_id;

typedef struct id_set {
    size_t count, cap;
    file_id *items;
} id_set;

static int id_set_add(id_set *set, file_id id)
{
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i].volume == id.volume && set->items[i].high == id.high &&
            set->items[i].low == id.low)
            return 0;
    if (!lcow_grow(&set->items, &set->cap, set->count + 1, sizeof *set->items))
        return -1;
    set->items[set->count++] = id;
    return 1;
}

/* Allocated bytes and link identity of one entry (links not followed). */
static DWORD entry_usage(const wchar_t *w, id_set *seen, int64_t *bytes, int64_t *inodes)
{
    HANDLE h = CreateFileW(
        w, FILE_READ_ATTRIBUTES, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
        OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    if (h == INVALID_HANDLE_VALUE)
        return GetLastError();
    BY_HANDLE_FILE_INFORMATION info;
    FILE_STANDARD_INFO std;
    DWORD e = 0;
    if (!GetFileInformationByHandle(h, &info) ||
        !GetFileInformationByHandleEx(h, FileStandardInfo, &std, sizeof std)) {
        e = GetLastError();
        CloseHandle(h);
        return e;
    }
    CloseHandle(h);
    if (!(info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) && info.nNumberOfLinks > 1) {
        file_id id = {info.dwVolumeSerialNumber, info.nFileIndexHigh, info.nFileIndexLow};
        int added = id_set_add(seen, id);
        if (added < 0)
            return ERROR_NOT_ENOUGH_MEMORY;
        if (added == 0)
            return 0;
    }
    *bytes += std.AllocationSize.QuadPart;
    *inodes += 1;
    return 0;
}

static DWORD usage_walk(const wchar_t *w, id_set *seen, int64_t *bytes, int64_t *inodes)
{
    DWORD e = entry_usage(w, seen, bytes, inodes);
    if (e)
        return e;
    DWORD attrs = GetFileAttributesW(w);
    if (attrs == INVALID_FILE_ATTRIBUTES)
        return GetLastError();
    if (!(attrs & FILE_ATTRIBUTE_DIRECTORY) || (attrs & FILE_ATTRIBUTE_REPARSE_POINT))
        return 0;
    wchar_t *pattern = wide_join(w, L"*");
    if (!pattern)
        return ERROR_NOT_ENOUGH_MEMORY;
    WIN32_FIND_DATAW fd;
    HANDLE find = FindFirstFileExW(pattern, FindExInfoBasic, &fd, FindExSearchNameMatch, NULL, 0);
    free(pattern);
    if (find == INVALID_HANDLE_VALUE)
        return GetLastError() == ERROR_FILE_NOT_FOUND ? 0 : GetLastError();
    do {
        if (dot_or_dotdot(fd.cFileName))
            continue;
        wchar_t *child = wide_join(w, fd.cFileName);
        e = child ? usage_walk(child, seen, bytes, inodes) : ERROR_NOT_ENOUGH_MEMORY;
        free(child);
    } while (!e && FindNextFileW(find, &fd));
    if (!e && GetLastError() != ERROR_NO_MORE_FILES)
        e = GetLastError();
    FindClose(find);
    return e;
}

lcow_code lcow_os_usage(const char *path, int64_t *bytes, int64_t *inodes, lcow_error *err)
{
    *bytes = 0;
    *inodes = 0;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LIST, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "usage", path);
    id_set seen = {0};
    int64_t b = 0, n = 0;
    DWORD e = usage_walk(w, &seen, &b, &n);
    free(seen.items);
    free(w);
    if (e)
        return win_fail(err, missing_error(e) ? ERROR_FILE_NOT_FOUND : e, "usage", path);
    *bytes = b;
    *inodes = n;
    return LCOW_OK;
}

/* Allocated ranges of src within [0, size): FSCTL_QUERY_ALLOCATED_RANGES,
 * or the whole file where the file system cannot answer. malloc'd. */
static DWORD allocated_ranges(HANDLE src, uint64_t size, FILE_ALLOCATED_RANGE_BUFFER **out,
                              size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 64, n = 0;
    FILE_ALLOCATED_RANGE_BUFFER *ranges = lcow_malloc(cap * sizeof *ranges);
    if (!ranges)
        return ERROR_NOT_ENOUGH_MEMORY;
    FILE_ALLOCATED_RANGE_BUFFER query;
    query.FileOffset.QuadPart = 0;
    query.Length.QuadPart = (LONGLONG)size;
    while (size > 0) {
        DWORD got = 0;
        BOOL ok = DeviceIoControl(src, FSCTL_QUERY_ALLOCATED_RANGES, &query, sizeof query,
                                  ranges + n, (DWORD)((cap - n) * sizeof *ranges), &got, NULL);
        DWORD e = ok ? 0 : GetLastError();
        if (!ok && e != ERROR_MORE_DATA) {
            /* Not supported here: copy everything. */
            ranges[0].FileOffset.QuadPart = 0;
            ranges[0].Length.QuadPart = (LONGLONG)size;
            n = 1;
            break;
        }
        size_t added = got / sizeof *ranges;
        n += added;
        if (ok)
            break;
        if (added == 0 && n == cap) {
            /* grow below */
        } else if (added == 0) {
            ranges[0].FileOffset.QuadPart = 0; /* no progress: copy everything */
            ranges[0].Length.QuadPart = (LONGLONG)size;
            n = 1;
            break;
        }
        if (n > 0) {
            FILE_ALLOCATED_RANGE_BUFFER *last = &ranges[n - 1];
            uint64_t next = (uint64_t)last->FileOffset.QuadPart + (uint64_t)last->Length.QuadPart;
            query.FileOffset.QuadPart = (LONGLONG)next;
            query.Length.QuadPart = (LONGLONG)(size > next ? size - next : 0);
            if (query.Length.QuadPart == 0)
                break;
        }
        if (n == cap) {
            cap *= 2;
            void *p = lcow_realloc(ranges, cap * sizeof *ranges);
            if (!p) {
                free(ranges);
                return ERROR_NOT_ENOUGH_MEMORY;
            }
            ranges = p;
        }
    }
    *out = ranges;
    *count = n;
    return 0;
}

static DWORD copy_ranges(HANDLE in, HANDLE out, const FILE_ALLOCATED_RANGE_BUFFER *ranges,
                         size_t count, uint64_t size)
{
    enum { BUF = 1 << 20 };
    char *buf = lcow_malloc(BUF);
    if (!buf)
        return ERROR_NOT_ENOUGH_MEMORY;
    DWORD e = 0;
    for (size_t i = 0; i < count && !e; i++) {
        uint64_t off = (uint64_t)ranges[i].FileOffset.QuadPart;
        uint64_t end = off + (uint64_t)ranges[i].Length.QuadPart;
        if (end > size)
            end = size;
        while (off < end && !e) {
            DWORD want = end - off > BUF ? BUF : (DWORD)(end - off);
            OVERLAPPED ov = at_offset(off);
            DWORD got = 0;
            if (!ReadFile(in, buf, want, &got, &ov)) {
                e = GetLastError();
                break;
            }
            if (got == 0) {
                e = ERROR_HANDLE_EOF;
                break;
            }
            for (DWORD done = 0; done < got && !e;) {
                OVERLAPPED wov = at_offset(off + done);
                DWORD put = 0;
                if (!WriteFile(out, buf + done, got - done, &put, &wov))
                    e = GetLastError();
                else if (put == 0)
                    e = ERROR_WRITE_FAULT;
                done += put;
            }
            off += got;
        }
    }
    free(buf);
    return e;
}

/* lcow_file_copy_sparse after the seam. */
lcow_code lcow_os_copy_open_files(lcow_file *src, lcow_file *dst, lcow_error *err)
{
    /* A normal (not sparse) destination: Windows refuses to attach sparse
     * VHDX files, so only the reads skip the holes. */
    const char *step = "size";
    DWORD e = 0;
    LARGE_INTEGER size;
    FILE_ALLOCATED_RANGE_BUFFER *ranges = NULL;
    size_t count = 0;
    if (!GetFileSizeEx(src->h, &size))
        e = GetLastError();
    if (!e) {
        step = "extend";
        if (!set_length(dst->h, (uint64_t)size.QuadPart))
            e = GetLastError();
    }
    if (!e) {
        step = "query allocated ranges of";
        e = allocated_ranges(src->h, (uint64_t)size.QuadPart, &ranges, &count);
    }
    if (!e) {
        step = "copy data to";
        e = copy_ranges(src->h, dst->h, ranges, count, (uint64_t)size.QuadPart);
    }
    if (!e) {
        step = "flush";
        if (!FlushFileBuffers(dst->h))
            e = GetLastError();
    }
    free(ranges);
    if (e) {
        char msg[300];
        win32_message(e, msg, sizeof msg);
        return lcow_error_set(err, code_of_win32(e), "copy %s -> %s: %s %s: %s", src->path,
                              dst->path, step, dst->path, msg);
    }
    return LCOW_OK;
}

lcow_code lcow_file_copy_sparse(lcow_file *src, lcow_file *dst, lcow_error *err)
{
    /* The seam (and the tests' hook) before anything is read: the source
     * is already open, so whatever its name leads to from here on is not
     * what gets copied. */
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_COPY, dst->path, err);
    return rc ? rc : lcow_os_copy_open_files(src, dst, err);
}

void lcow_os_remove_partial(const char *path)
{
    wchar_t *wd = to_wide_path(path);
    if (!wd || (!DeleteFileW(wd) && GetLastError() != ERROR_FILE_NOT_FOUND))
        LCOW_LOGW("%s: a partial file could not be removed (error %lu)", path,
                  wd ? (unsigned long)GetLastError() : 0ul);
    free(wd);
}

lcow_time lcow_os_time_now(void)
{
    /* 100 ns ticks since 1601. */
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    uint64_t ticks = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    ticks -= 116444736000000000ULL;
    return (lcow_time){.sec = (int64_t)(ticks / 10000000ULL),
                       .nsec = (uint32_t)(ticks % 10000000ULL) * 100};
}

uint64_t lcow_os_monotonic_ms(void)
{
    return GetTickCount64();
}

uint64_t lcow_os_monotonic_us(void)
{
    LARGE_INTEGER now, freq;
    if (!QueryPerformanceCounter(&now) || !QueryPerformanceFrequency(&freq) || freq.QuadPart <= 0)
        return GetTickCount64() * 1000u;
    uint64_t t = (uint64_t)now.QuadPart, f = (uint64_t)freq.QuadPart;
    return t / f * 1000000u + t % f * 1000000u / f;
}

lcow_code lcow_os_random(void *buf, size_t len, lcow_error *err)
{
    unsigned char *p = buf;
    while (len) {
        ULONG n = len > 0x10000000u ? 0x10000000u : (ULONG)len;
        if (!RtlGenRandom(p, n))
            return lcow_error_set(err, LCOW_INTERNAL, "RtlGenRandom failed (error %lu)",
                                  (unsigned long)GetLastError());
        p += n;
        len -= n;
    }
    return LCOW_OK;
}

void lcow_os_tune_allocator(void)
{
    /* The Windows heap uses the low-fragmentation heap by default. */
}

void lcow_os_release_free_memory(void)
{
    /* The Windows heap decommits free memory by itself. */
}

char *lcow_os_temp_dir(void)
{
    wchar_t w[MAX_PATH + 2];
    DWORD n = GetTempPathW((DWORD)(sizeof w / sizeof w[0]), w);
    if (n == 0 || n >= sizeof w / sizeof w[0])
        return strdup(".");
    if (n > 3 && (w[n - 1] == L'\\' || w[n - 1] == L'/'))
        w[n - 1] = L'\0'; /* "C:\Temp\" -> "C:\Temp"; "C:\" stays */
    return lcow_wide_to_utf8(w);
}

void lcow_os_stdin_binary(void)
{
    _setmode(_fileno(stdin), _O_BINARY);
}

/* ---- directory handles ---- */

struct lcow_dir {
    HANDLE h;
    char *path;
};

lcow_code lcow_dir_open(const char *path, lcow_dir **out, lcow_error *err)
{
    *out = NULL;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_OPEN, path, err);
    if (rc)
        return rc;
    wchar_t *w = to_wide_path(path);
    if (!w)
        return bad_path(err, "open directory", path);
    lcow_dir *d = lcow_calloc(1, sizeof *d);
    if (!d || !(d->path = lcow_strdup(path))) {
        free(d);
        free(w);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "open %s: out of memory", path);
    }
    /* No FILE_SHARE_DELETE: nobody renames or removes it (or a directory
     * above it) while it is held; the reparse point itself, never its
     * target. */
    d->h = CreateFileW(w, FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES,
                       FILE_SHARE_READ | FILE_SHARE_WRITE, NULL, OPEN_EXISTING,
                       FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT, NULL);
    free(w);
    if (d->h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        free(d->path);
        free(d);
        return win_fail(err, e, "open directory", path);
    }
    BY_HANDLE_FILE_INFORMATION info;
    if (!GetFileInformationByHandle(d->h, &info) ||
        (info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT) ||
        !(info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) {
        lcow_dir_close(d);
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "open directory %s: not a directory (a file or reparse point)", path);
    }
    *out = d;
    return LCOW_OK;
}

lcow_code lcow_dir_real_path(lcow_dir *d, char **out, lcow_error *err)
{
    DWORD e = final_path_of(d->h, out);
    if (e == ERROR_NOT_ENOUGH_MEMORY)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "%s: out of memory", d->path);
    if (e)
        return win_fail(err, e, "where is directory", d->path);
    return LCOW_OK;
}

const char *lcow_dir_path(const lcow_dir *d)
{
    return d->path;
}

static bool one_component(const char *name)
{
    return name[0] && !strchr(name, '/') && !strchr(name, '\\') && !strchr(name, ':') &&
           strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* The held directory cannot move, so its path names it. */
static char *dir_child(lcow_dir *d, const char *name)
{
    return one_component(name) ? lcow_path_join(d->path, name) : NULL;
}

lcow_code lcow_dir_file_open(lcow_dir *d, const char *name, int flags, lcow_file **out,
                             lcow_error *err)
{
    *out = NULL;
    char *path = dir_child(d, name);
    if (!path)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: not a single file name", name);
    lcow_code rc = lcow_file_open(path, flags | LCOW_OPEN_REGULAR, out, err);
    free(path);
    return rc;
}

typedef lcow_code (*path_pair_op)(const char *a, const char *b, lcow_error *err);

/* op(<dir>\from, <dir>\to): both names of entries in the directory. */
static lcow_code children_op(lcow_dir *d, const char *from, const char *to, path_pair_op op,
                             const char *what, lcow_error *err)
{
    char *a = dir_child(d, from), *b = dir_child(d, to);
    lcow_code rc = a && b ? op(a, b, err)
                          : lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                           "%s %s -> %s: not single file names", what, from, to);
    free(a);
    free(b);
    return rc;
}

/* op(source, <dir>\name): a new entry made from a path or link text. */
static lcow_code child_from_op(lcow_dir *d, const char *source, const char *name, path_pair_op op,
                               const char *what, lcow_error *err)
{
    char *path = dir_child(d, name);
    lcow_code rc = path ? op(source, path, err)
                        : lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                         "%s %s: not a single file name", what, name);
    free(path);
    return rc;
}

lcow_code lcow_dir_link(lcow_dir *d, const char *from, const char *to, lcow_error *err)
{
    return children_op(d, from, to, lcow_os_hardlink, "link", err);
}

lcow_code lcow_dir_symlink(lcow_dir *d, const char *target, const char *name, lcow_error *err)
{
    return child_from_op(d, target, name, lcow_os_symlink, "symlink", err);
}

lcow_code lcow_dir_hardlink_from(lcow_dir *d, const char *existing, const char *name,
                                 lcow_error *err)
{
    return child_from_op(d, existing, name, lcow_os_hardlink, "hard link", err);
}

lcow_code lcow_dir_rename(lcow_dir *d, const char *from, const char *to, lcow_error *err)
{
    return children_op(d, from, to, lcow_os_rename, "rename", err);
}

lcow_code lcow_dir_remove(lcow_dir *d, const char *name, lcow_error *err)
{
    char *path = dir_child(d, name);
    lcow_code rc = path ? lcow_os_remove(path, err)
                        : lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                         "remove %s: not a single file name", name);
    free(path);
    return rc;
}

lcow_code lcow_dir_sync(lcow_dir *d, lcow_error *err)
{
    return lcow_os_fault_check(LCOW_OS_OP_SYNC, d->path, err);
}

void lcow_dir_close(lcow_dir *d)
{
    if (!d)
        return;
    CloseHandle(d->h);
    free(d->path);
    free(d);
}
