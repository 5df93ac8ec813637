/* Tar reader with Go 1.19 archive/tar's interpretation (see tar.h). The
 * field layouts are the tar formats' own (V7, USTAR, GNU, star); where Go's
 * reader makes a choice (what ends an archive, how numbers parse, which
 * records apply) the choice is Go's, and the comment says so. */
#include "core/layer/tar.h"
#include "core/base/types.h"

#include <stdlib.h>
#include <string.h>

#define BLK 512u
#define MAX_SPECIAL (1u << 20) /* Go's maxSpecialFileSize: PAX data, GNU long names */
#define READ_BUF (64u * 1024)  /* small enough to stay in L2 until written out */

enum { F_UNKNOWN, F_V7, F_USTAR, F_GNU, F_STAR };

typedef struct frag {
    int64_t off, len;
} frag;

struct lcow_tar_reader {
    lcow_tar_source src;
    uint8_t *own;
    const uint8_t *chunk;
    size_t chunk_len, chunk_pos;
    bool eof;
    uint64_t offset;
    lcow_code failed;

    /* the current entry's data */
    int64_t nb;  /* physical bytes left */
    int64_t pad; /* zero padding after them */
    bool sparse;
    frag *holes; /* Go's sparseHoles: the gaps; the last one may be empty */
    size_t nholes, holes_cap, hole;
    int64_t spos; /* logical position in a sparse file */

    lcow_tar_header hdr;
    uint8_t blk[BLK];
    char *name, *link, *longname, *longlink, *pax, *smap;
    size_t name_cap, link_cap, longname_cap, longlink_cap, pax_cap, smap_cap;
    size_t longname_len, longlink_len, pax_len, smap_len;
    lcow_tar_record *recs;
    size_t nrecs, recs_cap;
    uint8_t *map1; /* GNU sparse 1.0 map text */
    size_t map1_cap;
};

static const uint8_t ZEROS[64 * 1024];

static size_t to_size(int64_t v)
{
    return (uint64_t)v > SIZE_MAX ? SIZE_MAX : (size_t)v;
}

/* ---- errors ---- */

#define SHOW(len) ((int)((len) > 200 ? 200 : (len)))

static lcow_code fail(lcow_tar_reader *r, lcow_code rc)
{
    if (rc != LCOW_OK && r->failed == LCOW_OK)
        r->failed = rc;
    return rc;
}

/* A malformed or truncated archive, naming the entry when there is one. */
static lcow_code bad(lcow_tar_reader *r, lcow_error *err, const char *what)
{
    if (r->hdr.name_len)
        return fail(
            r, lcow_error_set(err, LCOW_INVALID_ARGUMENT, "tar: %s (entry %.*s, offset %llu)", what,
                              SHOW(r->hdr.name_len), r->hdr.name, (unsigned long long)r->offset));
    return fail(r, lcow_error_set(err, LCOW_INVALID_ARGUMENT, "tar: %s (offset %llu)", what,
                                  (unsigned long long)r->offset));
}

static lcow_code oom(lcow_tar_reader *r, lcow_error *err)
{
    return fail(r, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "tar: out of memory"));
}

/* ---- input ---- */

static lcow_code in_fill(lcow_tar_reader *r, lcow_error *err)
{
    if (r->chunk_pos < r->chunk_len || r->eof)
        return LCOW_OK;
    size_t n = 0;
    lcow_code rc;
    if (r->src.view) {
        const void *d = NULL;
        rc = r->src.view(r->src.ctx, &d, &n, err);
        r->chunk = d;
    } else {
        rc = r->src.read(r->src.ctx, r->own, READ_BUF, &n, err);
        r->chunk = r->own;
    }
    if (rc != LCOW_OK)
        return fail(r, rc);
    r->chunk_len = n;
    r->chunk_pos = 0;
    if (n == 0)
        r->eof = true;
    return LCOW_OK;
}

/* Up to n bytes in place: *p points into the input, *got <= n (0 = end). */
static lcow_code in_view(lcow_tar_reader *r, size_t n, const uint8_t **p, size_t *got,
                         lcow_error *err)
{
    lcow_code rc = in_fill(r, err);
    if (rc != LCOW_OK)
        return rc;
    size_t k = r->chunk_len - r->chunk_pos;
    if (k > n)
        k = n;
    *p = r->chunk + r->chunk_pos;
    r->chunk_pos += k;
    r->offset += k;
    *got = k;
    return LCOW_OK;
}

/* Copies up to n bytes; *got < n only at the end of the stream. */
static lcow_code in_copy(lcow_tar_reader *r, void *dst, size_t n, size_t *got, lcow_error *err)
{
    size_t done = 0;
    while (done < n) {
        const uint8_t *p;
        size_t k;
        lcow_code rc = in_view(r, n - done, &p, &k, err);
        if (rc != LCOW_OK)
            return rc;
        if (k == 0)
            break;
        memcpy((uint8_t *)dst + done, p, k);
        done += k;
    }
    *got = done;
    return LCOW_OK;
}

static lcow_code in_skip(lcow_tar_reader *r, uint64_t n, uint64_t *got, lcow_error *err)
{
    uint64_t done = 0;
    while (done < n) {
        const uint8_t *p;
        size_t k;
        uint64_t want = n - done;
        lcow_code rc = in_view(r, want > SIZE_MAX ? SIZE_MAX : (size_t)want, &p, &k, err);
        if (rc != LCOW_OK)
            return rc;
        if (k == 0)
            break;
        done += k;
    }
    *got = done;
    return LCOW_OK;
}

/* ---- Go's number and string parsing ---- */

typedef struct parser {
    bool err;
} parser;

/* parseString: up to the first NUL. */
static size_t cstr(const uint8_t *b, size_t n)
{
    const uint8_t *z = memchr(b, 0, n);
    return z ? (size_t)(z - b) : n;
}

/* parseOctal: spaces and NULs trimmed at both ends, cut at an inner NUL,
 * then strconv.ParseUint(s, 8, 64). */
static int64_t parse_octal(parser *p, const uint8_t *b, size_t n)
{
    while (n && (b[0] == ' ' || b[0] == 0)) {
        b++;
        n--;
    }
    while (n && (b[n - 1] == ' ' || b[n - 1] == 0))
        n--;
    if (n == 0)
        return 0;
    n = cstr(b, n);
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < '0' || b[i] > '7') {
            p->err = true;
            return 0;
        }
        if (x > (UINT64_MAX >> 3)) {
            p->err = true;
            return -1;
        }
        x = x << 3 | (uint64_t)(b[i] - '0');
    }
    return (int64_t)x;
}

/* parseNumeric: base-256 (two's complement, first bit set) or octal. */
static int64_t parse_numeric(parser *p, const uint8_t *b, size_t n)
{
    if (n > 0 && (b[0] & 0x80)) {
        uint8_t inv = (b[0] & 0x40) ? 0xff : 0;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = b[i] ^ inv;
            if (i == 0)
                c &= 0x7f;
            if (x >> 56) {
                p->err = true;
                return 0;
            }
            x = x << 8 | c;
        }
        if (x >> 63) {
            p->err = true;
            return 0;
        }
        return inv ? (int64_t)~x : (int64_t)x;
    }
    return parse_octal(p, b, n);
}

/* strconv.ParseInt(s, 10, 64). */
static bool parse_int(const char *s, size_t n, int64_t *out)
{
    bool neg = false;
    if (n && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        s++;
        n--;
    }
    if (n == 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    if (!neg && x > (uint64_t)INT64_MAX)
        return false;
    if (neg && x > (uint64_t)INT64_MAX + 1)
        return false;
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return true;
}

/* time.Unix(sec, nsec): nsec folded into [0, 1e9), int64 wrap-around kept. */
static lcow_tar_time go_unix(int64_t sec, int64_t nsec)
{
    if (nsec < 0 || nsec >= 1000000000) {
        int64_t k = nsec / 1000000000;
        sec = (int64_t)((uint64_t)sec + (uint64_t)k);
        nsec -= k * 1000000000;
        if (nsec < 0) {
            nsec += 1000000000;
            sec = (int64_t)((uint64_t)sec - 1);
        }
    }
    return (lcow_tar_time){sec, (uint32_t)nsec, true};
}

/* parsePAXTime: "%d" or "%d.%d", up to nanoseconds, negative allowed. */
static bool parse_pax_time(const char *s, size_t n, lcow_tar_time *t)
{
    const char *dot = memchr(s, '.', n);
    size_t sl = dot ? (size_t)(dot - s) : n;
    int64_t secs;
    if (!parse_int(s, sl, &secs))
        return false;
    const char *f = dot ? dot + 1 : NULL;
    size_t fl = dot ? n - sl - 1 : 0;
    if (fl == 0) {
        *t = go_unix(secs, 0);
        return true;
    }
    int64_t ns = 0;
    for (size_t i = 0; i < fl; i++)
        if (f[i] < '0' || f[i] > '9')
            return false;
    for (size_t i = 0; i < 9; i++)
        ns = ns * 10 + (i < fl ? f[i] - '0' : 0);
    *t = go_unix(secs, sl > 0 && s[0] == '-' ? -ns : ns);
    return true;
}

/* ---- header blocks ---- */

static int block_format(const uint8_t *b)
{
    parser p = {false};
    int64_t want = parse_octal(&p, b + 148, 8);
    int64_t u = 0, s = 0;
    for (size_t i = 0; i < BLK; i++) {
        uint8_t c = (i >= 148 && i < 156) ? ' ' : b[i];
        u += c;
        s += (int8_t)c;
    }
    if (p.err || (want != u && want != s))
        return F_UNKNOWN;
    bool ustar = memcmp(b + 257, "ustar\0", 6) == 0;
    if (ustar && memcmp(b + 508, "tar\0", 4) == 0)
        return F_STAR;
    if (ustar)
        return F_USTAR;
    if (memcmp(b + 257, "ustar ", 6) == 0 && memcmp(b + 263, " \0", 2) == 0)
        return F_GNU;
    return F_V7;
}

static bool is_zero_block(const uint8_t *b)
{
    return b[0] == 0 && memcmp(b, b + 1, BLK - 1) == 0;
}

static bool header_only(uint8_t t)
{
    return t == '1' || t == '2' || t == '3' || t == '4' || t == '5' || t == '6';
}

static bool set_string(char **buf, size_t *cap, const void *a, size_t al, const void *b, size_t bl,
                       bool slash)
{
    size_t n = al + (slash ? 1 : 0) + bl;
    if (!lcow_grow(buf, cap, n + 1, 1))
        return false;
    if (al)
        memcpy(*buf, a, al);
    if (slash)
        (*buf)[al] = '/';
    if (bl)
        memcpy(*buf + al + (slash ? 1 : 0), b, bl);
    (*buf)[n] = 0;
    return true;
}

/* readHeader. *end: the archive ended (at a boundary, which Go accepts). */
static lcow_code read_header(lcow_tar_reader *r, bool *end, lcow_error *err)
{
    size_t got;
    *end = false;
    lcow_code rc = in_copy(r, r->blk, BLK, &got, err);
    if (rc != LCOW_OK)
        return rc;
    if (got == 0) {
        *end = true;
        return LCOW_OK;
    }
    if (got < BLK)
        return bad(r, err, "archive truncated inside a header");
    if (is_zero_block(r->blk)) {
        rc = in_copy(r, r->blk, BLK, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got == 0 || (got == BLK && is_zero_block(r->blk))) {
            *end = true;
            return LCOW_OK;
        }
        if (got < BLK)
            return bad(r, err, "archive truncated inside a header");
        return bad(r, err, "a zero block followed by a header");
    }
    int format = block_format(r->blk);
    if (format == F_UNKNOWN)
        return bad(r, err, "invalid header (checksum)");

    const uint8_t *b = r->blk;
    lcow_tar_header *h = &r->hdr;
    parser p = {false};
    h->typeflag = b[156];
    size_t nl = cstr(b, 100);
    size_t ll = cstr(b + 157, 100);
    h->size = parse_numeric(&p, b + 124, 12);
    h->mode = parse_numeric(&p, b + 100, 8);
    h->uid = parse_numeric(&p, b + 108, 8);
    h->gid = parse_numeric(&p, b + 116, 8);
    h->mtime = go_unix(parse_numeric(&p, b + 136, 12), 0);
    h->atime = h->ctime = (lcow_tar_time){0, 0, false};
    h->devmajor = h->devminor = 0;
    const uint8_t *prefix = NULL;
    size_t pl = 0;
    if (format != F_V7) {
        h->devmajor = parse_numeric(&p, b + 329, 8);
        h->devminor = parse_numeric(&p, b + 337, 8);
        if (format == F_USTAR) {
            prefix = b + 345;
            pl = cstr(prefix, 155);
        } else if (format == F_STAR) {
            prefix = b + 345;
            pl = cstr(prefix, 131);
            h->atime = go_unix(parse_numeric(&p, b + 476, 12), 0);
            h->ctime = go_unix(parse_numeric(&p, b + 488, 12), 0);
        } else { /* GNU: atime/ctime, or a pre-Go1.8 writer's prefix there */
            parser p2 = {false};
            if (b[345] != 0)
                h->atime = go_unix(parse_numeric(&p2, b + 345, 12), 0);
            if (b[357] != 0)
                h->ctime = go_unix(parse_numeric(&p2, b + 357, 12), 0);
            if (p2.err) {
                h->atime = h->ctime = (lcow_tar_time){0, 0, false};
                size_t l = cstr(b + 345, 155);
                bool ascii = true;
                for (size_t i = 0; i < l; i++)
                    ascii &= b[345 + i] < 0x80;
                if (ascii) {
                    prefix = b + 345;
                    pl = l;
                }
            }
        }
    }
    if (!set_string(&r->name, &r->name_cap, prefix, pl, b, nl, pl > 0) ||
        !set_string(&r->link, &r->link_cap, b + 157, ll, NULL, 0, false))
        return oom(r, err);
    h->name = r->name;
    h->name_len = pl + (pl > 0) + nl;
    h->linkname = r->link;
    h->linkname_len = ll;
    if (p.err)
        return bad(r, err, "invalid numeric field in header");
    return LCOW_OK;
}

/* handleRegularFile: the data section's size and padding. */
static lcow_code setup_data(lcow_tar_reader *r, lcow_error *err)
{
    int64_t nb = header_only(r->hdr.typeflag) ? 0 : r->hdr.size;
    if (nb < 0)
        return bad(r, err, "negative size");
    r->nb = nb;
    r->pad = (int64_t)((uint64_t)(-nb) & (BLK - 1));
    r->sparse = false;
    return LCOW_OK;
}

/* readSpecialFile: the whole data section of a PAX or GNU long-name header,
 * at most 1 MiB. */
static lcow_code read_special(lcow_tar_reader *r, char **buf, size_t *cap, size_t *len,
                              lcow_error *err)
{
    if (r->nb > (int64_t)MAX_SPECIAL)
        return bad(r, err, "PAX header or GNU long name larger than 1 MiB");
    size_t n = (size_t)r->nb;
    if (!lcow_grow(buf, cap, n + 1, 1))
        return oom(r, err);
    size_t got;
    lcow_code rc = in_copy(r, *buf, n, &got, err);
    if (rc != LCOW_OK)
        return rc;
    r->nb -= (int64_t)got;
    if (got < n)
        return bad(r, err, "archive truncated inside an extended header");
    (*buf)[n] = 0;
    *len = n;
    return LCOW_OK;
}

/* ---- PAX records ---- */

static int rec_cmp(const void *pa, const void *pb)
{
    const lcow_tar_record *a = pa, *b = pb;
    size_t m = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, m);
    if (c)
        return c;
    if (a->key_len != b->key_len)
        return a->key_len < b->key_len ? -1 : 1;
    /* same key: keep input order (the address in the PAX data) */
    return a->value < b->value ? -1 : a->value > b->value ? 1 : 0;
}

static const lcow_tar_record *rec_get(const lcow_tar_reader *r, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < r->nrecs; i++)
        if (r->recs[i].key_len == kl && memcmp(r->recs[i].key, key, kl) == 0)
            return &r->recs[i];
    return NULL;
}

static bool rec_is(const char *k, size_t kl, const char *key)
{
    return kl == strlen(key) && memcmp(k, key, kl) == 0;
}

static bool rec_value_is(const lcow_tar_record *rec, const char *v)
{
    return rec ? rec_is(rec->value, rec->value_len, v) : v[0] == 0;
}

/* parsePAX over r->pax: records into r->recs, a repeated key keeping its
 * later value; GNU sparse 0.0 offset/numbytes pairs joined into
 * GNU.sparse.map. */
static lcow_code parse_pax(lcow_tar_reader *r, lcow_error *err)
{
    r->nrecs = 0;
    r->smap_len = 0;
    size_t pairs = 0;
    const char *s = r->pax;
    size_t left = r->pax_len;
    while (left > 0) {
        const char *sp = memchr(s, ' ', left);
        int64_t n;
        if (!sp || !parse_int(s, (size_t)(sp - s), &n) || n < 5 || (uint64_t)n > left)
            return bad(r, err, "malformed PAX record");
        size_t body = (size_t)n - (size_t)(sp - s) - 1; /* key=value\n */
        if ((int64_t)body <= 0 || (size_t)n <= (size_t)(sp - s) + 1)
            return bad(r, err, "malformed PAX record");
        const char *rec = sp + 1;
        if (rec[body - 1] != '\n')
            return bad(r, err, "malformed PAX record");
        const char *eq = memchr(rec, '=', body - 1);
        if (!eq)
            return bad(r, err, "malformed PAX record");
        const char *k = rec, *v = eq + 1;
        size_t kl = (size_t)(eq - rec), vl = body - 1 - kl - 1;
        bool ustar_field = rec_is(k, kl, "path") || rec_is(k, kl, "linkpath") ||
                           rec_is(k, kl, "uname") || rec_is(k, kl, "gname");
        if (kl == 0 || memchr(ustar_field ? v : k, 0, ustar_field ? vl : kl))
            return bad(r, err, "malformed PAX record");
        s += n;
        left -= (size_t)n;
        bool off = rec_is(k, kl, "GNU.sparse.offset");
        if (off || rec_is(k, kl, "GNU.sparse.numbytes")) {
            if ((pairs % 2 == 0) != off || memchr(v, ',', vl))
                return bad(r, err, "malformed GNU sparse PAX records");
            if (!lcow_grow(&r->smap, &r->smap_cap, r->smap_len + vl + 2, 1))
                return oom(r, err);
            if (pairs)
                r->smap[r->smap_len++] = ',';
            memcpy(r->smap + r->smap_len, v, vl);
            r->smap_len += vl;
            pairs++;
            continue;
        }
        if (!lcow_grow(&r->recs, &r->recs_cap, r->nrecs + 1, sizeof *r->recs))
            return oom(r, err);
        r->recs[r->nrecs++] = (lcow_tar_record){k, kl, v, vl};
    }
    if (r->nrecs > 1) {
        /* A map in Go: the last value of a repeated key wins (values lie in
         * r->pax in input order, so their addresses order them). */
        qsort(r->recs, r->nrecs, sizeof *r->recs, rec_cmp);
        size_t k = 0;
        for (size_t i = 0; i < r->nrecs; i++) {
            if (i + 1 < r->nrecs && r->recs[i].key_len == r->recs[i + 1].key_len &&
                memcmp(r->recs[i].key, r->recs[i + 1].key, r->recs[i].key_len) == 0)
                continue;
            r->recs[k++] = r->recs[i];
        }
        r->nrecs = k;
    }
    if (pairs) {
        /* The joined 0.0 map replaces a literal GNU.sparse.map record. */
        static const char map_key[] = "GNU.sparse.map";
        for (size_t i = 0; i < r->nrecs; i++)
            if (rec_is(r->recs[i].key, r->recs[i].key_len, map_key)) {
                r->recs[i] = r->recs[--r->nrecs];
                break;
            }
        if (!lcow_grow(&r->recs, &r->recs_cap, r->nrecs + 1, sizeof *r->recs))
            return oom(r, err);
        r->recs[r->nrecs++] = (lcow_tar_record){map_key, sizeof map_key - 1, r->smap, r->smap_len};
    }
    return LCOW_OK;
}

/* mergePAX: records with a value override the header's fields. */
static lcow_code merge_pax(lcow_tar_reader *r, lcow_error *err)
{
    lcow_tar_header *h = &r->hdr;
    for (size_t i = 0; i < r->nrecs; i++) {
        const lcow_tar_record *rec = &r->recs[i];
        const char *k = rec->key, *v = rec->value;
        size_t kl = rec->key_len, vl = rec->value_len;
        if (vl == 0)
            continue;
        bool ok = true;
        if (rec_is(k, kl, "path")) {
            h->name = v;
            h->name_len = vl;
        } else if (rec_is(k, kl, "linkpath")) {
            h->linkname = v;
            h->linkname_len = vl;
        } else if (rec_is(k, kl, "uid")) {
            ok = parse_int(v, vl, &h->uid);
        } else if (rec_is(k, kl, "gid")) {
            ok = parse_int(v, vl, &h->gid);
        } else if (rec_is(k, kl, "atime")) {
            ok = parse_pax_time(v, vl, &h->atime);
        } else if (rec_is(k, kl, "mtime")) {
            ok = parse_pax_time(v, vl, &h->mtime);
        } else if (rec_is(k, kl, "ctime")) {
            ok = parse_pax_time(v, vl, &h->ctime);
        } else if (rec_is(k, kl, "size")) {
            ok = parse_int(v, vl, &h->size);
        }
        if (!ok)
            return bad(r, err, "invalid PAX record value");
    }
    return LCOW_OK;
}

/* ---- sparse files ---- */

static bool add_frag(frag **v, size_t *n, size_t *cap, int64_t off, int64_t len)
{
    if (!lcow_grow(v, cap, *n + 1, sizeof **v))
        return false;
    (*v)[(*n)++] = (frag){off, len};
    return true;
}

/* readOldGNUSparseMap: entries in the header, more in extension blocks. */
static lcow_code old_gnu_map(lcow_tar_reader *r, frag **v, size_t *n, size_t *cap, lcow_error *err)
{
    if (block_format(r->blk) != F_GNU)
        return bad(r, err, "old GNU sparse entry in a non-GNU header");
    parser p = {false};
    r->hdr.size = parse_numeric(&p, r->blk + 483, 12);
    if (p.err)
        return bad(r, err, "invalid GNU sparse size");
    const uint8_t *s = r->blk + 386;
    size_t max = 4;
    uint8_t ext = r->blk[482];
    for (;;) {
        for (size_t i = 0; i < max; i++) {
            const uint8_t *e = s + 24 * i;
            if (e[0] == 0)
                break;
            int64_t off = parse_numeric(&p, e, 12);
            int64_t len = parse_numeric(&p, e + 12, 12);
            if (p.err)
                return bad(r, err, "invalid GNU sparse map");
            if (!add_frag(v, n, cap, off, len))
                return oom(r, err);
        }
        if (ext == 0)
            return LCOW_OK;
        size_t got;
        lcow_code rc = in_copy(r, r->blk, BLK, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got < BLK)
            return bad(r, err, "archive truncated inside a GNU sparse header");
        s = r->blk;
        max = 21;
        ext = r->blk[504];
    }
}

/* readGNUSparseMap1x0: "count\n" then "offset\nlength\n" pairs at the start
 * of the data, in whole 512-byte blocks. */
static lcow_code gnu_map_1x0(lcow_tar_reader *r, frag **v, size_t *n, size_t *cap, lcow_error *err)
{
    size_t len = 0, pos = 0;
    int64_t count = -1, done = 0, off = 0;
    bool have_off = false;
    for (;;) {
        /* next token, if a whole one is buffered */
        const uint8_t *nl = pos < len ? memchr(r->map1 + pos, '\n', len - pos) : NULL;
        if (nl) {
            size_t tl = (size_t)(nl - (r->map1 + pos));
            int64_t x;
            bool ok = parse_int((const char *)r->map1 + pos, tl, &x);
            pos += tl + 1;
            if (count < 0) {
                if (!ok || x < 0 || x > INT64_MAX / 2)
                    return bad(r, err, "invalid GNU sparse 1.0 map");
                count = x;
            } else if (!have_off) {
                if (!ok)
                    return bad(r, err, "invalid GNU sparse 1.0 map");
                off = x;
                have_off = true;
            } else {
                if (!ok)
                    return bad(r, err, "invalid GNU sparse 1.0 map");
                if (!add_frag(v, n, cap, off, x))
                    return oom(r, err);
                have_off = false;
                done++;
            }
            if (count >= 0 && done == count)
                return LCOW_OK;
            continue;
        }
        /* feedTokens: another block of the data (the map counts as data) */
        if (pos > 0) {
            memmove(r->map1, r->map1 + pos, len - pos);
            len -= pos;
            pos = 0;
        }
        if (r->nb < (int64_t)BLK)
            return bad(r, err, "archive truncated inside a GNU sparse 1.0 map");
        if (!lcow_grow(&r->map1, &r->map1_cap, len + BLK, 1))
            return oom(r, err);
        size_t got;
        lcow_code rc = in_copy(r, r->map1 + len, BLK, &got, err);
        if (rc != LCOW_OK)
            return rc;
        r->nb -= (int64_t)got;
        if (got < BLK)
            return bad(r, err, "archive truncated inside a GNU sparse 1.0 map");
        len += BLK;
    }
}

/* readGNUSparseMap0x1: GNU.sparse.numblocks and GNU.sparse.map. */
static lcow_code gnu_map_0x1(lcow_tar_reader *r, frag **v, size_t *n, size_t *cap, lcow_error *err)
{
    const lcow_tar_record *nb = rec_get(r, "GNU.sparse.numblocks");
    const lcow_tar_record *m = rec_get(r, "GNU.sparse.map");
    int64_t count;
    if (!nb || !parse_int(nb->value, nb->value_len, &count) || count < 0 || count > INT64_MAX / 2)
        return bad(r, err, "invalid GNU sparse 0.1 map");
    const char *s = m ? m->value : "";
    size_t left = m ? m->value_len : 0;
    /* strings.Split(map, ","): an empty map is no fields */
    uint64_t fields = 0;
    if (left > 0) {
        fields = 1;
        for (size_t i = 0; i < left; i++)
            fields += s[i] == ',';
    }
    if (fields != (uint64_t)count * 2)
        return bad(r, err, "invalid GNU sparse 0.1 map");
    for (int64_t i = 0; i < count; i++) {
        int64_t x[2];
        for (int j = 0; j < 2; j++) {
            const char *c = memchr(s, ',', left);
            size_t l = c ? (size_t)(c - s) : left;
            if (!parse_int(s, l, &x[j]))
                return bad(r, err, "invalid GNU sparse 0.1 map");
            s += l + (c ? 1 : 0);
            left -= l + (c ? 1 : 0);
        }
        if (!add_frag(v, n, cap, x[0], x[1]))
            return oom(r, err);
    }
    return LCOW_OK;
}

/* handleSparseFile: for a sparse entry, hdr.size becomes the logical size
 * and reads go through the map. */
static lcow_code setup_sparse(lcow_tar_reader *r, lcow_error *err)
{
    frag *data = NULL;
    size_t n = 0, cap = 0;
    bool sparse = false;
    lcow_code rc = LCOW_OK;
    if (r->hdr.typeflag == 'S') {
        sparse = true;
        rc = old_gnu_map(r, &data, &n, &cap, err);
    } else {
        const lcow_tar_record *major = rec_get(r, "GNU.sparse.major");
        const lcow_tar_record *minor = rec_get(r, "GNU.sparse.minor");
        const lcow_tar_record *map = rec_get(r, "GNU.sparse.map");
        bool v1 = false;
        if (rec_value_is(major, "0") && (rec_value_is(minor, "0") || rec_value_is(minor, "1")))
            sparse = true;
        else if (rec_value_is(major, "1") && rec_value_is(minor, "0"))
            sparse = v1 = true;
        else if (!rec_value_is(major, "") || !rec_value_is(minor, ""))
            sparse = false; /* an unknown version: a plain file */
        else
            sparse = map && map->value_len > 0;
        if (sparse) {
            const lcow_tar_record *name = rec_get(r, "GNU.sparse.name");
            if (name && name->value_len) {
                r->hdr.name = name->value;
                r->hdr.name_len = name->value_len;
            }
            const lcow_tar_record *size = rec_get(r, "GNU.sparse.size");
            if (!size || !size->value_len)
                size = rec_get(r, "GNU.sparse.realsize");
            if (size && size->value_len && !parse_int(size->value, size->value_len, &r->hdr.size))
                rc = bad(r, err, "invalid GNU sparse size");
            if (rc == LCOW_OK)
                rc = v1 ? gnu_map_1x0(r, &data, &n, &cap, err)
                        : gnu_map_0x1(r, &data, &n, &cap, err);
        }
    }
    if (rc != LCOW_OK || !sparse) {
        free(data);
        return rc;
    }
    /* validateSparseEntries, then invertSparseEntries into holes */
    int64_t size = r->hdr.size;
    bool ok = !header_only(r->hdr.typeflag) && size >= 0;
    int64_t prev_end = 0;
    for (size_t i = 0; i < n && ok; i++) {
        if (data[i].off < 0 || data[i].len < 0 || data[i].off > INT64_MAX - data[i].len ||
            data[i].off + data[i].len > size || prev_end > data[i].off)
            ok = false;
        else
            prev_end = data[i].off + data[i].len;
    }
    if (!ok) {
        free(data);
        return bad(r, err, "invalid sparse map");
    }
    r->nholes = 0;
    int64_t pre_off = 0;
    for (size_t i = 0; i < n; i++) {
        if (data[i].len == 0)
            continue;
        int64_t gap = data[i].off - pre_off;
        if (gap > 0 && !add_frag(&r->holes, &r->nholes, &r->holes_cap, pre_off, gap)) {
            free(data);
            return oom(r, err);
        }
        pre_off = data[i].off + data[i].len;
    }
    free(data);
    if (!add_frag(&r->holes, &r->nholes, &r->holes_cap, pre_off, size - pre_off))
        return oom(r, err);
    r->sparse = true;
    r->hole = 0;
    r->spos = 0;
    return LCOW_OK;
}

/* ---- entries ---- */

lcow_code lcow_tar_next(lcow_tar_reader *r, const lcow_tar_header **out, lcow_error *err)
{
    *out = NULL;
    if (r->failed != LCOW_OK)
        return lcow_error_set(err, r->failed, "tar: an earlier call failed");
    r->nrecs = 0;
    r->pax_len = 0;
    bool have_pax = false;
    r->longname_len = r->longlink_len = 0;
    bool first = true;
    for (;;) {
        /* Go's discard of the unread data (an error if cut short), then the
         * padding (the end of the stream there is a clean end). */
        uint64_t got;
        lcow_code rc = in_skip(r, (uint64_t)r->nb, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got < (uint64_t)r->nb)
            return bad(r, err, "archive truncated inside an entry's data");
        r->nb = 0;
        rc = in_skip(r, (uint64_t)r->pad, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got < (uint64_t)r->pad) {
            r->pad = 0;
            return LCOW_OK;
        }
        r->pad = 0;
        r->sparse = false;
        if (first)
            r->hdr.offset = r->offset;
        first = false;
        r->hdr.name_len = 0; /* errors name an entry only once its header is read */
        bool end;
        rc = read_header(r, &end, err);
        if (rc != LCOW_OK)
            return rc;
        if (end)
            return LCOW_OK;
        rc = setup_data(r, err);
        if (rc != LCOW_OK)
            return rc;
        uint8_t t = r->hdr.typeflag;
        if (t == 'x' || t == 'g') {
            rc = read_special(r, &r->pax, &r->pax_cap, &r->pax_len, err);
            if (rc == LCOW_OK)
                rc = parse_pax(r, err);
            if (rc != LCOW_OK)
                return rc;
            have_pax = true;
            if (t == 'g') {
                /* Go returns the global header as an entry: its name (or
                 * PAX path), its records, nothing else. */
                lcow_tar_header *h = &r->hdr;
                if (merge_pax(r, err) != LCOW_OK) {
                    /* Go ignores that error and drops the records. */
                    r->failed = LCOW_OK;
                    r->nrecs = 0;
                }
                const char *name = h->name;
                size_t name_len = h->name_len;
                uint64_t offset = h->offset;
                memset(h, 0, sizeof *h);
                h->typeflag = 'g';
                h->name = name;
                h->name_len = name_len;
                h->linkname = "";
                h->offset = offset;
                h->records = r->recs;
                h->record_count = r->nrecs;
                r->nb = 0;
                *out = h;
                return LCOW_OK;
            }
            continue;
        }
        if (t == 'L' || t == 'K') {
            char **buf = t == 'L' ? &r->longname : &r->longlink;
            size_t *cap = t == 'L' ? &r->longname_cap : &r->longlink_cap;
            size_t *len = t == 'L' ? &r->longname_len : &r->longlink_len;
            rc = read_special(r, buf, cap, len, err);
            if (rc != LCOW_OK)
                return rc;
            *len = cstr((const uint8_t *)*buf, *len);
            continue;
        }
        if (!have_pax)
            r->nrecs = 0;
        rc = merge_pax(r, err);
        if (rc != LCOW_OK)
            return rc;
        lcow_tar_header *h = &r->hdr;
        if (r->longname_len) {
            h->name = r->longname;
            h->name_len = r->longname_len;
        }
        if (r->longlink_len) {
            h->linkname = r->longlink;
            h->linkname_len = r->longlink_len;
        }
        if (h->typeflag == 0)
            h->typeflag = h->name_len && h->name[h->name_len - 1] == '/' ? '5' : '0';
        rc = setup_data(r, err);
        if (rc == LCOW_OK)
            rc = setup_sparse(r, err);
        if (rc != LCOW_OK)
            return rc;
        h->records = r->recs;
        h->record_count = r->nrecs;
        *out = h;
        return LCOW_OK;
    }
}

lcow_code lcow_tar_read(lcow_tar_reader *r, const void **data, size_t *len, lcow_error *err)
{
    *data = NULL;
    *len = 0;
    if (r->failed != LCOW_OK)
        return lcow_error_set(err, r->failed, "tar: an earlier call failed");
    const uint8_t *p;
    size_t got;
    if (!r->sparse) {
        if (r->nb == 0)
            return LCOW_OK;
        lcow_code rc = in_view(r, to_size(r->nb), &p, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got == 0)
            return bad(r, err, "archive truncated inside an entry's data");
        r->nb -= (int64_t)got;
        *data = p;
        *len = got;
        return LCOW_OK;
    }
    const frag *last = &r->holes[r->nholes - 1];
    int64_t logical_end = last->off + last->len;
    if (r->spos >= logical_end) {
        if (r->nb > 0)
            return bad(r, err, "sparse entry has data its map does not reference");
        return LCOW_OK;
    }
    const frag *h = &r->holes[r->hole];
    int64_t want;
    if (r->spos < h->off) { /* data */
        want = h->off - r->spos;
        if (r->nb == 0)
            return bad(r, err, "sparse entry has less data than its map says");
        if (want > r->nb)
            want = r->nb;
        lcow_code rc = in_view(r, to_size(want), &p, &got, err);
        if (rc != LCOW_OK)
            return rc;
        if (got == 0)
            return bad(r, err, "archive truncated inside an entry's data");
        r->nb -= (int64_t)got;
    } else { /* hole */
        want = h->off + h->len - r->spos;
        got = (uint64_t)want > sizeof ZEROS ? sizeof ZEROS : (size_t)want;
        p = ZEROS;
    }
    r->spos += (int64_t)got;
    if (r->spos >= h->off + h->len && r->hole + 1 < r->nholes)
        r->hole++;
    *data = p;
    *len = got;
    return LCOW_OK;
}

uint64_t lcow_tar_offset(const lcow_tar_reader *r)
{
    return r->offset;
}

lcow_code lcow_tar_reader_create(const lcow_tar_source *src, lcow_tar_reader **out, lcow_error *err)
{
    *out = NULL;
    if (!src || (!src->read && !src->view))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "tar: no source");
    lcow_tar_reader *r = calloc(1, sizeof *r);
    if (!r)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "tar: out of memory");
    r->src = *src;
    if (!src->view) {
        r->own = malloc(READ_BUF);
        if (!r->own) {
            free(r);
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "tar: out of memory");
        }
    }
    *out = r;
    return LCOW_OK;
}

void lcow_tar_reader_free(lcow_tar_reader *r)
{
    if (!r)
        return;
    free(r->own);
    free(r->holes);
    free(r->name);
    free(r->link);
    free(r->longname);
    free(r->longlink);
    free(r->pax);
    free(r->smap);
    free(r->recs);
    free(r->map1);
    free(r);
}
