/* lcowsnap-tar2ext4: hcsshim's tar2ext4 command line over lcowsnap's layer
 * converter (core/layer/apply.h), for people who use hcsshim's tool: the
 * same flags, the same image bytes, plus compressed input, -verity and
 * -roothash. The help text below is the reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"
#include "core/layer/apply.h"
#include "core/os/os.h"

#ifdef _WIN32
#include "core/os/win_str.h" /* lcow_utf8_argv for main() */
#endif

#define EXIT_FAILED 1
#define EXIT_USAGE 2

static const char help_text[] =
    "usage: lcowsnap-tar2ext4 [-i IN] -o OUT [-overlay] [-vhd] [-verity] [-inline]\n"
    "                         [-convert-slash] [-max-gb N] [-media-type T] [-digest D]\n"
    "       lcowsnap-tar2ext4 [-i IN] -roothash [-media-type T] [-digest D]\n"
    "\n"
    "Converts an OCI image layer into an ext4 image, byte for byte what hcsshim's\n"
    "tar2ext4 (commit 7c9ff7f) writes with the same flags. The input may be an\n"
    "uncompressed tar or a gzip or zstd compressed one (told apart by its first bytes).\n"
    "Two deliberate differences: a path that comes again as a file replaces the earlier\n"
    "one as `tar -x` does (tar2ext4 fails), and a \"..\" that would leave the root is\n"
    "refused (tar2ext4 drops it).\n"
    "\n"
    "  -i FILE         the layer; without -i (or with -i -) standard input, which is first\n"
    "                  copied to a temporary file beside the output\n"
    "  -o FILE         the image, written as a temporary file in FILE's directory, synced\n"
    "                  and renamed over FILE; on failure FILE is left as it was\n"
    "  -overlay        OCI whiteouts to overlayfs ones: .wh.NAME becomes a 0/0 character\n"
    "                  device NAME, .wh..wh..opq sets trusted.overlay.opaque=y\n"
    "  -vhd            append a fixed VHD footer (containerd's windows-lcow differ uses\n"
    "                  -overlay -vhd -max-gb 128)\n"
    "  -verity         append a dm-verity superblock and hash tree (sha256, 4096-byte\n"
    "                  blocks, zero salt: veritysetup's format) after the ext4 image\n"
    "  -inline         keep files of up to 136 bytes in their inode (not DAX-compatible)\n"
    "  -convert-slash  turn backslashes in names into slashes\n"
    "  -max-gb N       largest disk in GiB, which also sizes the metadata (default 16)\n"
    "  -roothash       write no image: print the dm-verity root hash of the image that\n"
    "                  -overlay -max-gb 128 makes (tar2ext4's ConvertAndComputeRootDigest),\n"
    "                  built in a temporary file in $TMPDIR (Windows: %TEMP%)\n"
    "  -media-type T   the layer's OCI media type instead of detection\n"
    "  -digest D       fail unless the input's SHA-256 is D (\"sha256:<64 hex digits>\")\n"
    "  -h, -help       this text\n"
    "\n"
    "Flags may start with - or -- and take their value as the next argument or after =.\n"
    "Exit status: 0 on success; 1 when the conversion fails (\"lcowsnap-tar2ext4: CODE:\n"
    "message\" on stderr, naming the tar entry where there is one); 2 for a bad command line.\n";

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "lcowsnap-tar2ext4: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    fputs("usage: lcowsnap-tar2ext4 [-i IN] -o OUT [-overlay] [-vhd] [-verity] [-inline] "
          "[-convert-slash] [-max-gb N] (-h for more)\n",
          stderr);
    return EXIT_USAGE;
}

static int failed(const lcow_error *err)
{
    fprintf(stderr, "lcowsnap-tar2ext4: %s: %s\n", lcow_code_name(err->code), err->message);
    return EXIT_FAILED;
}

/* Go's flag syntax: -name, --name, -name=value, -name value. */
static bool flag_is(const char *arg, const char *name, const char **value)
{
    const char *p = arg + (arg[1] == '-' ? 2 : 1);
    size_t n = strlen(name);
    if (strncmp(p, name, n) != 0)
        return false;
    if (p[n] == '\0') {
        if (value)
            *value = NULL;
        return true;
    }
    if (p[n] == '=' && value) {
        *value = p + n + 1;
        return true;
    }
    return false;
}

/* The directory where a temporary file for path goes (malloc'd). */
static char *dir_of(const char *path)
{
    const char *slash = NULL;
    for (const char *p = path; *p; p++)
        if (*p == '/' || (LCOW_PATH_SEP == '\\' && *p == '\\'))
            slash = p;
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

/* A fresh file name in dir: "<dir>/.lcowsnap-tar2ext4-<what>-<random>". */
static lcow_code temp_name(const char *dir, const char *what, char **out, lcow_error *err)
{
    uint8_t r[8];
    lcow_code rc = lcow_os_random(r, sizeof r, err);
    if (rc != LCOW_OK)
        return rc;
    char name[96];
    int at = snprintf(name, sizeof name, ".lcowsnap-tar2ext4-%s-", what);
    for (size_t i = 0; i < sizeof r; i++)
        at += snprintf(name + at, sizeof name - (size_t)at, "%02x", r[i]);
    *out = lcow_path_join(dir, name);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

/* Standard input into a new file at path (the blob reader reads files by
 * offset, which a pipe cannot do). */
static lcow_code spool_stdin(const char *path, lcow_error *err)
{
    lcow_os_stdin_binary();
    lcow_file *f;
    lcow_code rc =
        lcow_file_open(path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &f, err);
    if (rc != LCOW_OK)
        return rc;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf)
        rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    uint64_t off = 0;
    while (rc == LCOW_OK) {
        size_t n = fread(buf, 1, cap, stdin);
        if (n)
            rc = lcow_file_pwrite(f, buf, n, off, err);
        off += n;
        if (n < cap) {
            if (ferror(stdin))
                rc = lcow_error_set(err, LCOW_INTERNAL, "reading standard input failed");
            break;
        }
    }
    free(buf);
    lcow_file_close(f);
    return rc;
}

static int run(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *media_type = NULL, *digest = NULL;
    lcow_layer_apply_format fmt = {0};
    bool roothash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (a[0] != '-' || a[1] == '\0')
            return usage_error("unexpected argument", a);
        /* flags with a value */
        const char **target = NULL;
        const char *max_gb = NULL;
        if (flag_is(a, "i", &v))
            target = &in;
        else if (flag_is(a, "o", &v))
            target = &out;
        else if (flag_is(a, "media-type", &v))
            target = &media_type;
        else if (flag_is(a, "digest", &v))
            target = &digest;
        else if (flag_is(a, "max-gb", &v))
            target = &max_gb;
        if (target) {
            if (!v) {
                if (i + 1 >= argc)
                    return usage_error("flag needs an argument", a);
                v = argv[++i];
            }
            *target = v;
            if (max_gb) {
                char *end;
                unsigned long long gb = strtoull(max_gb, &end, 10);
                if (!*max_gb || *end || max_gb[0] == '-' || gb > (16ull << 10))
                    return usage_error("-max-gb wants a number of GiB up to 16384, got", max_gb);
                fmt.max_disk_size = gb << 30;
            }
            continue;
        }
        if (flag_is(a, "overlay", NULL))
            fmt.convert_whiteouts = true;
        else if (flag_is(a, "vhd", NULL))
            fmt.vhd_footer = true;
        else if (flag_is(a, "verity", NULL))
            fmt.verity = true;
        else if (flag_is(a, "inline", NULL))
            fmt.inline_data = true;
        else if (flag_is(a, "convert-slash", NULL))
            fmt.convert_backslash = true;
        else if (flag_is(a, "roothash", NULL))
            roothash = true;
        else if (flag_is(a, "h", NULL) || flag_is(a, "help", NULL)) {
            fputs(help_text, stdout);
            return 0;
        } else
            return usage_error("unknown flag", a);
    }
    if (!roothash && (!out || !*out))
        return usage_error("-o OUT is required (or -roothash)", NULL);
    if (roothash && out)
        return usage_error("-roothash writes no image: drop -o", NULL);

    lcow_error err;
    lcow_code rc = LCOW_OK;
    char *work_dir = roothash ? lcow_os_temp_dir() : dir_of(out);
    char *spooled = NULL, *image = NULL;
    if (!work_dir)
        rc = lcow_error_set(&err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    if (rc == LCOW_OK && (!in || strcmp(in, "-") == 0)) {
        rc = temp_name(work_dir, "stdin", &spooled, &err);
        if (rc == LCOW_OK)
            rc = spool_stdin(spooled, &err);
        in = spooled;
    }
    lcow_layer_apply_options o = {.media_type = media_type, .digest = digest, .replace = true};
    lcow_layer_apply_result r;
    if (rc == LCOW_OK && roothash) {
        /* tar2ext4's ConvertAndComputeRootDigest: whiteouts converted, 128 GiB */
        lcow_layer_apply_format rh = {
            .convert_whiteouts = true, .verity = true, .max_disk_size = 128ull << 30};
        rc = temp_name(work_dir, "roothash", &image, &err);
        if (rc == LCOW_OK)
            rc = lcow_layer_apply_file(in, image, &rh, &o, &r, &err);
        if (rc == LCOW_OK) {
            char hex[LCOW_SHA256_HEX_SIZE];
            lcow_sha256_hex(r.root_hash, hex);
            puts(hex);
            lcow_os_remove(image, NULL);
        }
    } else if (rc == LCOW_OK) {
        rc = lcow_layer_apply_file(in, out, &fmt, &o, &r, &err);
    }
    if (spooled)
        lcow_os_remove(spooled, NULL);
    free(spooled);
    free(image);
    free(work_dir);
    if (rc != LCOW_OK)
        return failed(&err);
    return fflush(stdout) == 0 ? 0 : EXIT_FAILED;
}

#ifdef _WIN32
/* Arguments arrive as UTF-16 and are used as UTF-8 inside. */
int main(void)
{
    int argc;
    char **argv;
    if (!lcow_utf8_argv(&argc, &argv))
        return EXIT_USAGE;
    int rc = run(argc, argv);
    lcow_utf8_argv_free(argc, argv);
    return rc;
}
#else
int main(int argc, char **argv)
{
    return run(argc, argv);
}
#endif
