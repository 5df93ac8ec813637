/* containerd's pkg/filters in C: a scanner and parser that reproduce Go's
 * token rules quirk for quirk, and a matcher for the snapshot-info adaptor
 * (and any other object through a field callback).
 *
 * Regexes (~=) are compiled once, at parse time, with PCRE2. PCRE2
 * backtracks, where Go's RE2 is linear, so every match runs under limits: the
 * unanchored search is compiled as one anchored pattern `(?s:.*?)(?:P)`, which
 * makes the match limit bound the whole search rather than each start
 * position, and a match that hits a limit counts as "no match". Compiled
 * patterns and the match context are read-only after parsing; every match
 * call uses its own match data, which makes matching thread-safe. */
#include "core/filter.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "core/base/alloc.h"
#include "core/base/compiler.h"

/* Scanner results that are not runes (Go's scanner mixes both in one int). */
enum {
    TOK_EOF = -1,
    TOK_QUOTED = -2,
    TOK_VALUE = -3,
    TOK_FIELD = -4,
    TOK_SEPARATOR = -5,
    TOK_OPERATOR = -6,
    TOK_ILLEGAL = -7,
};

#define RUNE_ERROR 0xFFFD

/* Regex resource limits (docs/filters.md): enough for any sane pattern over a
 * 4 KiB label, and a hostile one gives up within tens of milliseconds. */
#define FILTER_MATCH_LIMIT 100000u
#define FILTER_DEPTH_LIMIT 20000u
#define FILTER_HEAP_LIMIT_KIB 16384u

/* Excerpt of the input shown around an error position, in bytes each side. */
#define EXCERPT_BYTES 40

typedef enum filter_op {
    OP_PRESENT,
    OP_EQUAL,
    OP_NOT_EQUAL,
    OP_MATCHES,
} filter_op;

/* Which field of lcow_info the path names (only path[0] decides). */
typedef enum info_field {
    FIELD_OTHER,
    FIELD_NAME,
    FIELD_PARENT,
    FIELD_KIND,
    FIELD_LABELS,
} info_field;

/* A byte string that may hold an escaped NUL; always NUL-terminated too. */
typedef struct fstr {
    char *bytes;
    size_t len;
} fstr;

typedef struct selector {
    size_t path_count;
    char **path; /* path_count strings */
    size_t *path_lens;
    filter_op op;
    fstr value;
    pcre2_code *re; /* OP_MATCHES with a valid regex, else NULL */
    info_field field;
    fstr label_key;         /* FIELD_LABELS: path[1..] joined by '.' */
    bool label_key_has_nul; /* such a key is in no label map */
} selector;

/* One filter string: the AND of its selectors. */
typedef struct conjunction {
    size_t count;
    selector *selectors;
} conjunction;

struct lcow_filter {
    bool match_all;
    size_t count;
    conjunction *alternatives; /* OR */
    pcre2_match_context *match_context;
};

/* ---- UTF-8 and rune classes (Go's unicode package semantics) ---- */

/* Go's utf8.DecodeRune: an invalid or truncated sequence is (RuneError, 1). */
static int32_t decode_rune(const unsigned char *s, size_t n, size_t *width)
{
    *width = 1;
    if (n == 0)
        return RUNE_ERROR;
    unsigned b0 = s[0];
    if (b0 < 0x80)
        return (int32_t)b0;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    int32_t r;
    if (b0 < 0xC2) {
        return RUNE_ERROR;
    } else if (b0 < 0xE0) {
        need = 2;
        r = (int32_t)(b0 & 0x1F);
    } else if (b0 < 0xF0) {
        need = 3;
        r = (int32_t)(b0 & 0x0F);
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 < 0xF5) {
        need = 4;
        r = (int32_t)(b0 & 0x07);
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        return RUNE_ERROR;
    }
    if (n < need)
        return RUNE_ERROR;
    for (size_t i = 1; i < need; i++) {
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return RUNE_ERROR;
        r = (r << 6) | (int32_t)(b & 0x3F);
    }
    *width = need;
    return r;
}

/* Go's utf8.EncodeRune: surrogates and out-of-range runes become U+FFFD. */
static size_t encode_rune(char *out, int32_t r)
{
    if (r < 0 || r > 0x10FFFF || (r >= 0xD800 && r <= 0xDFFF))
        r = RUNE_ERROR;
    unsigned char *o = (unsigned char *)out;
    if (r < 0x80) {
        o[0] = (unsigned char)r;
        return 1;
    }
    if (r < 0x800) {
        o[0] = (unsigned char)(0xC0 | (r >> 6));
        o[1] = (unsigned char)(0x80 | (r & 0x3F));
        return 2;
    }
    if (r < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (r >> 12));
        o[1] = (unsigned char)(0x80 | ((r >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (r & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (r >> 18));
    o[1] = (unsigned char)(0x80 | ((r >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((r >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (r & 0x3F));
    return 4;
}

/* Go's unicode.IsSpace: Latin-1 spaces plus the White_Space property. */
static bool is_space(int32_t r)
{
    switch (r) {
    case '\t':
    case '\n':
    case '\v':
    case '\f':
    case '\r':
    case ' ':
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return r >= 0x2000 && r <= 0x200A;
    }
}

static bool is_field_rune(int32_t r)
{
    return r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9');
}

static bool is_operator_rune(int32_t r)
{
    return r == '=' || r == '!' || r == '~';
}

static bool is_quote_rune(int32_t r)
{
    return r == '"' || r == '/' || r == '|';
}

static bool is_separator_rune(int32_t r)
{
    return r == ',' || r == '.';
}

static int digit_value(int32_t r)
{
    if (r >= '0' && r <= '9')
        return r - '0';
    if (r >= 'a' && r <= 'f')
        return r - 'a' + 10;
    if (r >= 'A' && r <= 'F')
        return r - 'A' + 10;
    return 16; /* larger than any legal digit */
}

/* ---- scanner (mirrors pkg/filters/scanner.go) ---- */

typedef struct scanner {
    const char *input;
    size_t len;
    size_t pos;  /* start of the current rune */
    size_t ppos; /* end of the current rune */
    bool value;  /* right after an operator: the next plain token is a VALUE */
    const char *error;
    size_t error_pos;
    /* Non-ASCII VALUE runes are Go's "graphic" runes (categories L, M, N, P,
     * S); PCRE2's Unicode tables answer that, so no table is hand-kept here. */
    pcre2_code *graphic;
    pcre2_match_data *graphic_match;
} scanner;

typedef struct token {
    int32_t kind; /* TOK_* or, for a stray character, the rune itself */
    size_t pos;   /* first byte */
    size_t end;   /* one past the last byte */
} token;

static void scanner_error(scanner *s, const char *message)
{
    if (!s->error) {
        s->error = message;
        s->error_pos = s->pos;
    }
}

static int32_t scanner_next(scanner *s)
{
    if (s->pos >= s->len)
        return TOK_EOF;
    s->pos = s->ppos;
    if (s->ppos >= s->len)
        return TOK_EOF;
    size_t width;
    int32_t r = decode_rune((const unsigned char *)s->input + s->ppos, s->len - s->ppos, &width);
    s->ppos += width;
    if (r == RUNE_ERROR) {
        /* As Go: a literal U+FFFD is indistinguishable from a decoding error. */
        scanner_error(s, "invalid UTF-8 (or U+FFFD)");
        return TOK_ILLEGAL;
    }
    if (r == 0) {
        scanner_error(s, "unexpected NUL byte");
        return TOK_ILLEGAL;
    }
    return r;
}

static int32_t scanner_peek(scanner *s)
{
    size_t pos = s->pos, ppos = s->ppos;
    const char *error = s->error;
    size_t error_pos = s->error_pos;
    int32_t r = scanner_next(s);
    s->pos = pos;
    s->ppos = ppos;
    s->error = error;
    s->error_pos = error_pos;
    return r;
}

static bool is_value_rune(scanner *s, int32_t r)
{
    if (r < 0 || r == ',' || is_space(r))
        return false;
    if (r < 0x80)
        return r > 0x20 && r < 0x7F;
    if (!s->graphic)
        return false;
    char utf8[4];
    size_t n = encode_rune(utf8, r);
    return pcre2_match(s->graphic, (PCRE2_SPTR)utf8, n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                       s->graphic_match, NULL) >= 0;
}

static int32_t scan_digits(scanner *s, int32_t r, int base, int n, bool *legal)
{
    while (n > 0 && digit_value(r) < base) {
        r = scanner_next(s);
        n--;
    }
    if (n > 0) {
        scanner_error(s, "illegal numeric escape sequence");
        *legal = false;
        return r;
    }
    *legal = true;
    return r;
}

/* After a backslash: consumes the escape, returns the rune after it. */
static int32_t scan_escape(scanner *s, int32_t quote, bool *legal)
{
    int32_t r = scanner_next(s);
    switch (r) {
    case 'a':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
    case 'v':
    case '\\':
        *legal = true;
        return scanner_next(s);
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
        return scan_digits(s, r, 8, 3, legal);
    case 'x':
        return scan_digits(s, scanner_next(s), 16, 2, legal);
    case 'u':
        return scan_digits(s, scanner_next(s), 16, 4, legal);
    case 'U':
        return scan_digits(s, scanner_next(s), 16, 8, legal);
    default:
        if (r == quote) {
            *legal = true;
            return scanner_next(s);
        }
        scanner_error(s, "illegal escape sequence");
        *legal = false;
        return r;
    }
}

static bool scan_quoted(scanner *s, int32_t quote)
{
    size_t start = s->pos;
    bool illegal = false;
    int32_t r = scanner_next(s);
    while (r != quote) {
        if (r == '\n' || r < 0) {
            if (!s->error) {
                /* Point at the opening quote, not at the end of the input. */
                s->error = "quoted literal not terminated";
                s->error_pos = start;
            }
            return false;
        }
        if (r == '\\') {
            bool legal;
            r = scan_escape(s, quote, &legal);
            if (!legal)
                illegal = true;
        } else {
            r = scanner_next(s);
        }
    }
    return !illegal;
}

static token scanner_scan(scanner *s)
{
    s->error = NULL;
    int32_t r = scanner_next(s);
    size_t pos = s->pos;
    for (;;) {
        if (r == TOK_EOF || r == TOK_ILLEGAL)
            return (token){r, s->pos, s->ppos};
        if (is_quote_rune(r)) {
            bool ok = scan_quoted(s, r);
            return (token){ok ? TOK_QUOTED : TOK_ILLEGAL, pos, s->ppos};
        }
        if (is_separator_rune(r)) {
            s->value = false;
            return (token){TOK_SEPARATOR, pos, s->ppos};
        }
        if (is_operator_rune(r)) {
            while (is_operator_rune(scanner_peek(s)))
                scanner_next(s);
            s->value = true;
            return (token){TOK_OPERATOR, pos, s->ppos};
        }
        if (is_space(r)) {
            r = scanner_next(s);
            pos = s->pos;
            continue;
        }
        if (s->value) {
            /* The first rune is anything not classified above; the rest must
             * be value runes. */
            while (is_value_rune(s, scanner_peek(s)))
                scanner_next(s);
            s->value = false;
            return (token){TOK_VALUE, pos, s->ppos};
        }
        if (is_field_rune(r)) {
            while (is_field_rune(scanner_peek(s)))
                scanner_next(s);
            return (token){TOK_FIELD, pos, s->ppos};
        }
        return (token){r, s->pos, s->ppos};
    }
}

/* ---- unquoting (Go's strconv.Unquote, with / and | as quotes) ---- */

/* Decodes the quoted token text [s, s+n) (delimiters included), which the
 * scanner has already validated. Returns false and sets *why (or *oom) on
 * failure. */
static bool unquote(const char *s, size_t n, fstr *out, const char **why, bool *oom)
{
    *why = NULL;
    *oom = false;
    char quote = s[0];
    const char *p = s + 1, *end = s + n - 1;
    char *buf = lcow_malloc(n + 1);
    if (!buf) {
        *oom = true;
        return false;
    }
    size_t len = 0;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == (unsigned char)quote) {
            *why = "unescaped quote";
            goto fail;
        }
        if (c != '\\') {
            buf[len++] = (char)c;
            p++;
            continue;
        }
        if (end - p < 2) {
            *why = "dangling backslash";
            goto fail;
        }
        char e = p[1];
        p += 2;
        switch (e) {
        case 'a':
            buf[len++] = '\a';
            break;
        case 'b':
            buf[len++] = '\b';
            break;
        case 'f':
            buf[len++] = '\f';
            break;
        case 'n':
            buf[len++] = '\n';
            break;
        case 'r':
            buf[len++] = '\r';
            break;
        case 't':
            buf[len++] = '\t';
            break;
        case 'v':
            buf[len++] = '\v';
            break;
        case '\\':
            buf[len++] = '\\';
            break;
        case 'x':
        case 'u':
        case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            if (end - p < digits) {
                *why = "short numeric escape";
                goto fail;
            }
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int d = digit_value((unsigned char)p[i]);
                if (d >= 16) {
                    *why = "bad hex digit";
                    goto fail;
                }
                v = (v << 4) | (uint32_t)d;
            }
            p += digits;
            if (e == 'x') {
                buf[len++] = (char)v; /* a raw byte, possibly not UTF-8 */
            } else if (v > 0x10FFFF) {
                *why = "escaped code point above U+10FFFF";
                goto fail;
            } else {
                len += encode_rune(buf + len, (int32_t)v);
            }
            break;
        }
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
            if (end - p < 2) {
                *why = "short octal escape";
                goto fail;
            }
            uint32_t v = (uint32_t)(e - '0');
            for (int i = 0; i < 2; i++) {
                if (p[i] < '0' || p[i] > '7') {
                    *why = "bad octal digit";
                    goto fail;
                }
                v = (v << 3) | (uint32_t)(p[i] - '0');
            }
            p += 2;
            if (v > 255) {
                *why = "octal escape above \\377";
                goto fail;
            }
            buf[len++] = (char)v;
            break;
        }
        default:
            if (e == quote && (e == '"' || e == '/' || e == '|')) {
                buf[len++] = e;
                break;
            }
            *why = "illegal escape sequence";
            goto fail;
        }
    }
    buf[len] = '\0';
    out->bytes = buf;
    out->len = len;
    return true;
fail:
    free(buf);
    return false;
}

/* ---- parser (mirrors pkg/filters/parser.go) ---- */

typedef struct parser {
    scanner sc;
    size_t index; /* which filter string */
    lcow_error *err;
    pcre2_compile_context *compile_context;
} parser;

/* Appends input[from, to) to out, escaping what is not printable UTF-8. */
static size_t excerpt(char *out, size_t cap, const char *input, size_t from, size_t to)
{
    size_t n = 0;
    size_t i = from;
    while (i < to && n + 5 < cap) {
        size_t width;
        int32_t r = decode_rune((const unsigned char *)input + i, to - i, &width);
        bool literal_fffd = r == RUNE_ERROR && width == 3;
        if (r < 0x20 || r == 0x7F || (r == RUNE_ERROR && !literal_fffd)) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02X", (unsigned char)input[i]);
            i += 1;
            continue;
        }
        if (n + width >= cap)
            break;
        memcpy(out + n, input + i, width);
        n += width;
        i += width;
    }
    out[n] = '\0';
    return n;
}

static size_t rune_start(const char *input, size_t at)
{
    while (at > 0 && ((unsigned char)input[at] & 0xC0) == 0x80)
        at--;
    return at;
}

static lcow_code parse_fail(parser *p, size_t pos, const char *fmt, ...) LCOW_PRINTF(3, 4);

static lcow_code parse_fail(parser *p, size_t pos, const char *fmt, ...)
{
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    const char *in = p->sc.input;
    size_t len = p->sc.len;
    char before[4 * EXCERPT_BYTES + 8], at[24], after[4 * EXCERPT_BYTES + 8];
    size_t from = pos > EXCERPT_BYTES ? rune_start(in, pos - EXCERPT_BYTES) : 0;
    excerpt(before, sizeof before, in, from, pos < len ? pos : len);
    if (pos >= len) {
        return lcow_error_set(p->err, LCOW_INVALID_ARGUMENT,
                              "filter %zu: parse error at byte %zu (end of filter): %s: [%s%s >|<]",
                              p->index, pos, what, from > 0 ? "..." : "", before);
    }
    size_t width;
    decode_rune((const unsigned char *)in + pos, len - pos, &width);
    excerpt(at, sizeof at, in, pos, pos + width);
    size_t to =
        pos + width + EXCERPT_BYTES < len ? rune_start(in, pos + width + EXCERPT_BYTES) : len;
    excerpt(after, sizeof after, in, pos + width, to);
    return lcow_error_set(p->err, LCOW_INVALID_ARGUMENT,
                          "filter %zu: parse error at byte %zu: %s: [%s%s >|%s|< %s%s]", p->index,
                          pos, what, from > 0 ? "..." : "", before, at, after,
                          to < len ? "..." : "");
}

static lcow_code parse_oom(parser *p)
{
    return lcow_error_set(p->err, LCOW_RESOURCE_EXHAUSTED, "filter %zu: out of memory", p->index);
}

/* What a token is, for "expected X, found Y" messages. */
static void describe(const parser *p, token t, char *out, size_t cap)
{
    const char *in = p->sc.input;
    char text[64];
    switch (t.kind) {
    case TOK_EOF:
        snprintf(out, cap, "the end of the filter");
        return;
    case TOK_ILLEGAL:
        snprintf(out, cap, "an illegal token");
        return;
    case TOK_SEPARATOR:
        snprintf(out, cap, "separator '%c'", in[t.pos]);
        return;
    case TOK_QUOTED:
        snprintf(out, cap, "a quoted string");
        return;
    default:
        break;
    }
    size_t end = t.end - t.pos > 40 ? rune_start(in, t.pos + 40) : t.end;
    excerpt(text, sizeof text, in, t.pos, end);
    const char *cut = end < t.end ? "..." : "";
    switch (t.kind) {
    case TOK_OPERATOR:
        snprintf(out, cap, "operator \"%s%s\"", text, cut);
        break;
    case TOK_FIELD:
        snprintf(out, cap, "field \"%s%s\"", text, cut);
        break;
    case TOK_VALUE:
        snprintf(out, cap, "value \"%s%s\"", text, cut);
        break;
    default:
        if (t.kind == ' ')
            snprintf(out, cap, "a space");
        else if (t.kind >= 0x21 && t.kind < 0x7F)
            snprintf(out, cap, "'%c'", (char)t.kind);
        else
            snprintf(out, cap, "U+%04X", (unsigned)t.kind);
        break;
    }
}

/* The message for a rune seen by peek where only ',' or the end may follow. */
static lcow_code unexpected_input(parser *p)
{
    scanner *s = &p->sc;
    size_t at = s->ppos;
    int32_t r = scanner_peek(s);
    if (r == TOK_ILLEGAL) {
        size_t width;
        int32_t bad = decode_rune((const unsigned char *)s->input + at, s->len - at, &width);
        return parse_fail(p, at, "unexpected %s: expected ',' or the end of the filter",
                          bad == 0 ? "NUL byte" : "invalid UTF-8 (or U+FFFD)");
    }
    if (is_space(r))
        return parse_fail(p, at,
                          "unexpected whitespace: expected ',' or the end of the filter "
                          "(whitespace is allowed only after ',' and around operators)");
    char found[96];
    describe(p, (token){r, at, at}, found, sizeof found);
    return parse_fail(p, at, "unexpected %s: expected ',' or the end of the filter", found);
}

static lcow_code parse_unquote(parser *p, token t, bool allow_alt_quotes, fstr *out)
{
    const char *text = p->sc.input + t.pos;
    if (!allow_alt_quotes && text[0] != '"')
        return parse_fail(p, t.pos,
                          "invalid quote '%c': only \"...\" quoting is allowed here (/.../ and "
                          "|...| only after ~=)",
                          text[0]);
    const char *why;
    bool oom;
    if (!unquote(text, t.end - t.pos, out, &why, &oom))
        return oom ? parse_oom(p) : parse_fail(p, t.pos, "unquoting failed: %s", why);
    return LCOW_OK;
}

static lcow_code scanner_failure(parser *p, token t, const char *context)
{
    return parse_fail(p, p->sc.error ? p->sc.error_pos : t.pos, "%s%s",
                      p->sc.error ? p->sc.error : "illegal token", context);
}

static lcow_code parse_field(parser *p, fstr *out)
{
    token t = scanner_scan(&p->sc);
    switch (t.kind) {
    case TOK_FIELD:
        out->len = t.end - t.pos;
        out->bytes = lcow_malloc(out->len + 1);
        if (!out->bytes)
            return parse_oom(p);
        memcpy(out->bytes, p->sc.input + t.pos, out->len);
        out->bytes[out->len] = '\0';
        return LCOW_OK;
    case TOK_QUOTED:
        return parse_unquote(p, t, false, out);
    case TOK_ILLEGAL:
        return scanner_failure(p, t, " (in a field name)");
    default: {
        char found[96];
        describe(p, t, found, sizeof found);
        return parse_fail(p, t.pos,
                          "expected a field name ([A-Za-z0-9_]+) or a \"quoted\" field, found %s",
                          found);
    }
    }
}

static lcow_code path_append(parser *p, selector *sel, fstr field)
{
    char **path = lcow_realloc(sel->path, (sel->path_count + 1) * sizeof *path);
    if (path)
        sel->path = path;
    size_t *lens = lcow_realloc(sel->path_lens, (sel->path_count + 1) * sizeof *lens);
    if (lens)
        sel->path_lens = lens;
    if (!path || !lens) {
        free(field.bytes);
        return parse_oom(p);
    }
    sel->path[sel->path_count] = field.bytes;
    sel->path_lens[sel->path_count] = field.len;
    sel->path_count++;
    return LCOW_OK;
}

static lcow_code parse_fieldpath(parser *p, selector *sel)
{
    for (;;) {
        fstr field = {0};
        lcow_code rc = parse_field(p, &field);
        if (rc != LCOW_OK)
            return rc;
        rc = path_append(p, sel, field);
        if (rc != LCOW_OK)
            return rc;
        if (scanner_peek(&p->sc) != '.')
            return LCOW_OK;
        scanner_scan(&p->sc); /* the '.' */
    }
}

static lcow_code parse_operator(parser *p, filter_op *op)
{
    token t = scanner_scan(&p->sc);
    if (t.kind == TOK_OPERATOR) {
        const char *text = p->sc.input + t.pos;
        size_t n = t.end - t.pos;
        if (n == 2 && text[1] == '=') {
            if (text[0] == '=') {
                *op = OP_EQUAL;
                return LCOW_OK;
            }
            if (text[0] == '!') {
                *op = OP_NOT_EQUAL;
                return LCOW_OK;
            }
            if (text[0] == '~') {
                *op = OP_MATCHES;
                return LCOW_OK;
            }
        }
        char found[96];
        describe(p, t, found, sizeof found);
        return parse_fail(p, t.pos, "unsupported %s: expected ==, != or ~=", found);
    }
    if (t.kind == TOK_ILLEGAL)
        return scanner_failure(p, t, " (where an operator was expected)");
    char found[96];
    describe(p, t, found, sizeof found);
    return parse_fail(p, t.pos, "expected an operator (==, != or ~=) or ',' or the end, found %s",
                      found);
}

static lcow_code parse_value(parser *p, bool allow_alt_quotes, fstr *out)
{
    token t = scanner_scan(&p->sc);
    switch (t.kind) {
    case TOK_VALUE:
    case TOK_FIELD:
        out->len = t.end - t.pos;
        out->bytes = lcow_malloc(out->len + 1);
        if (!out->bytes)
            return parse_oom(p);
        memcpy(out->bytes, p->sc.input + t.pos, out->len);
        out->bytes[out->len] = '\0';
        return LCOW_OK;
    case TOK_QUOTED:
        return parse_unquote(p, t, allow_alt_quotes, out);
    case TOK_ILLEGAL:
        return scanner_failure(p, t, " (in a value)");
    default: {
        char found[96];
        describe(p, t, found, sizeof found);
        return parse_fail(
            p, t.pos, "expected a value or a quoted string after the operator, found %s%s", found,
            t.kind == TOK_SEPARATOR || t.kind == TOK_OPERATOR
                ? " (a value starting with , . = ! or ~ must be quoted)"
                : "");
    }
    }
}

static bool fstr_is(const char *bytes, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(bytes, word, len) == 0;
}

#define REGEX_OPTIONS (PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C)

/* Compiles `(?s:.*?)(?:P<tail>)` anchored: the same answer as an unanchored
 * search for P, in one match whose match limit bounds the whole search. The
 * tail \E closes an unterminated \Q in P. */
static pcre2_code *compile_wrapped(parser *p, const fstr *pattern, const char *tail, int *code)
{
    static const char head[] = "(?s:.*?)(?:";
    size_t head_len = sizeof head - 1, tail_len = strlen(tail);
    char *wrapped = lcow_malloc(head_len + pattern->len + tail_len);
    if (!wrapped) {
        *code = PCRE2_ERROR_NOMEMORY;
        return NULL;
    }
    memcpy(wrapped, head, head_len);
    memcpy(wrapped + head_len, pattern->bytes, pattern->len);
    memcpy(wrapped + head_len + pattern->len, tail, tail_len);
    PCRE2_SIZE offset;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)wrapped, head_len + pattern->len + tail_len,
                      REGEX_OPTIONS | PCRE2_ANCHORED, code, &offset, p->compile_context);
    free(wrapped);
    return re;
}

/* As close to Go's RE2 as PCRE2 gets: UTF-8, '$' only at the very end, LF as
 * the only newline, no \C, no backreferences. An invalid pattern is not an
 * error: the selector just never matches (Go compiles lazily and logs). */
static lcow_code compile_regex(parser *p, selector *sel)
{
    int code;
    PCRE2_SIZE offset;
    pcre2_code *plain = pcre2_compile((PCRE2_SPTR)sel->value.bytes, sel->value.len, REGEX_OPTIONS,
                                      &code, &offset, p->compile_context);
    if (!plain)
        return code == PCRE2_ERROR_NOMEMORY ? parse_oom(p) : LCOW_OK;
    uint32_t backrefs = 0;
    int info = pcre2_pattern_info(plain, PCRE2_INFO_BACKREFMAX, &backrefs);
    pcre2_code_free(plain);
    if (info != 0 || backrefs > 0)
        return LCOW_OK; /* RE2 has no backreferences, so Go rejects such a pattern */
    sel->re = compile_wrapped(p, &sel->value, "\\E)", &code);
    if (!sel->re && code != PCRE2_ERROR_NOMEMORY) {
        /* Only an extended-mode comment left open by (?x) can break the
         * wrapper of a valid pattern: end it with a newline. */
        sel->re = compile_wrapped(p, &sel->value, "\n\\E)", &code);
    }
    if (!sel->re && code == PCRE2_ERROR_NOMEMORY)
        return parse_oom(p);
    return LCOW_OK;
}

/* Resolves the info field and, for labels, the joined key, once. */
static lcow_code prepare_selector(parser *p, selector *sel)
{
    const char *first = sel->path[0];
    size_t first_len = sel->path_lens[0];
    if (fstr_is(first, first_len, "name")) {
        sel->field = FIELD_NAME;
    } else if (fstr_is(first, first_len, "parent")) {
        sel->field = FIELD_PARENT;
    } else if (fstr_is(first, first_len, "kind")) {
        sel->field = FIELD_KIND;
    } else if (fstr_is(first, first_len, "labels")) {
        sel->field = FIELD_LABELS;
        size_t len = 0;
        for (size_t i = 1; i < sel->path_count; i++)
            len += sel->path_lens[i] + (i > 1);
        char *key = lcow_malloc(len + 1);
        if (!key)
            return parse_oom(p);
        size_t at = 0;
        for (size_t i = 1; i < sel->path_count; i++) {
            if (i > 1)
                key[at++] = '.';
            memcpy(key + at, sel->path[i], sel->path_lens[i]);
            at += sel->path_lens[i];
        }
        key[at] = '\0';
        sel->label_key.bytes = key;
        sel->label_key.len = len;
        sel->label_key_has_nul = memchr(key, '\0', len) != NULL;
    } else {
        sel->field = FIELD_OTHER;
    }

    if (sel->op == OP_MATCHES)
        return compile_regex(p, sel);
    return LCOW_OK;
}

static void selector_free(selector *sel)
{
    for (size_t i = 0; i < sel->path_count; i++)
        free(sel->path[i]);
    free(sel->path);
    free(sel->path_lens);
    free(sel->value.bytes);
    free(sel->label_key.bytes);
    pcre2_code_free(sel->re);
}

static lcow_code parse_selector(parser *p, selector *sel)
{
    lcow_code rc = parse_fieldpath(p, sel);
    if (rc != LCOW_OK)
        return rc;
    int32_t next = scanner_peek(&p->sc);
    if (next == ',' || next == TOK_EOF) {
        sel->op = OP_PRESENT;
        return prepare_selector(p, sel);
    }
    rc = parse_operator(p, &sel->op);
    if (rc != LCOW_OK)
        return rc;
    rc = parse_value(p, sel->op == OP_MATCHES, &sel->value);
    if (rc != LCOW_OK)
        return rc;
    return prepare_selector(p, sel);
}

static lcow_code parse_selectors(parser *p, conjunction *out)
{
    size_t cap = 0;
    for (;;) {
        if (!lcow_grow(&out->selectors, &cap, out->count + 1, sizeof *out->selectors))
            return parse_oom(p);
        selector *sel = &out->selectors[out->count++];
        memset(sel, 0, sizeof *sel);
        lcow_code rc = parse_selector(p, sel);
        if (rc != LCOW_OK)
            return rc;
        int32_t next = scanner_peek(&p->sc);
        if (next == TOK_EOF)
            return LCOW_OK;
        if (next != ',')
            return unexpected_input(p);
        scanner_scan(&p->sc); /* the ',' */
    }
}

static void conjunction_free(conjunction *c)
{
    for (size_t i = 0; i < c->count; i++)
        selector_free(&c->selectors[i]);
    free(c->selectors);
}

static lcow_code parse_one(parser *p, const char *input, size_t len, conjunction *out)
{
    memset(&p->sc, 0, sizeof p->sc);
    p->sc.input = input;
    p->sc.len = len;
    lcow_code rc = LCOW_OK;
    /* Only non-ASCII input needs the graphic-rune classifier. */
    bool ascii = true;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = (unsigned char)input[i] < 0x80;
    if (!ascii) {
        int code;
        PCRE2_SIZE offset;
        p->sc.graphic = pcre2_compile((PCRE2_SPTR) "[\\p{L}\\p{M}\\p{N}\\p{P}\\p{S}]",
                                      PCRE2_ZERO_TERMINATED, PCRE2_UTF, &code, &offset, NULL);
        p->sc.graphic_match =
            p->sc.graphic ? pcre2_match_data_create_from_pattern(p->sc.graphic, NULL) : NULL;
        if (!p->sc.graphic_match)
            rc = parse_oom(p);
    }
    if (rc == LCOW_OK)
        rc = parse_selectors(p, out);
    pcre2_match_data_free(p->sc.graphic_match);
    pcre2_code_free(p->sc.graphic);
    p->sc.graphic = NULL;
    p->sc.graphic_match = NULL;
    return rc;
}

void lcow_filter_free(lcow_filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->count; i++)
        conjunction_free(&f->alternatives[i]);
    free(f->alternatives);
    pcre2_match_context_free(f->match_context);
    free(f);
}

lcow_code lcow_filter_parse_n(const char *const *filters, const size_t *lens, size_t count,
                              lcow_filter **out, lcow_error *err)
{
    *out = NULL;
    if (count > 0 && !filters)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "filters: NULL filter list");
    lcow_filter *f = lcow_calloc(1, sizeof *f);
    if (!f)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "filters: out of memory");
    f->match_all = count == 0;
    parser p = {.err = err};
    lcow_code rc = LCOW_OK;
    if (count > 0) {
        f->alternatives = lcow_calloc(count, sizeof *f->alternatives);
        f->match_context = pcre2_match_context_create(NULL);
        p.compile_context = pcre2_compile_context_create(NULL);
        if (!f->alternatives || !f->match_context || !p.compile_context) {
            rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "filters: out of memory");
            goto done;
        }
        pcre2_set_newline(p.compile_context, PCRE2_NEWLINE_LF);
        pcre2_set_match_limit(f->match_context, FILTER_MATCH_LIMIT);
        pcre2_set_depth_limit(f->match_context, FILTER_DEPTH_LIMIT);
        pcre2_set_heap_limit(f->match_context, FILTER_HEAP_LIMIT_KIB);
    }
    for (size_t i = 0; i < count; i++) {
        p.index = i;
        if (!filters[i]) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "filter %zu: NULL string", i);
            goto done;
        }
        size_t len = lens ? lens[i] : strlen(filters[i]);
        f->count = i + 1;
        if (len == 0) {
            f->match_all = true; /* "" is containerd's Always */
            continue;
        }
        rc = parse_one(&p, filters[i], len, &f->alternatives[i]);
        if (rc != LCOW_OK)
            goto done;
    }
done:
    pcre2_compile_context_free(p.compile_context);
    if (rc != LCOW_OK) {
        lcow_filter_free(f);
        return rc;
    }
    *out = f;
    return LCOW_OK;
}

lcow_code lcow_filter_parse(const char *const *filters, size_t count, lcow_filter **out,
                            lcow_error *err)
{
    return lcow_filter_parse_n(filters, NULL, count, out, err);
}

bool lcow_filter_matches_all(const lcow_filter *f)
{
    return !f || f->match_all;
}

/* ---- matching ---- */

/* Per-call regex scratch: nothing here is shared between threads. */
typedef struct match_scratch {
    pcre2_match_data *match_data;
} match_scratch;

static void scratch_free(match_scratch *m)
{
    pcre2_match_data_free(m->match_data);
}

static bool regex_search(const lcow_filter *f, const selector *sel, const char *subject, size_t len,
                         match_scratch *m)
{
    if (!sel->re)
        return false;
    if (!m->match_data) {
        m->match_data = pcre2_match_data_create(1, NULL);
        if (!m->match_data)
            return false;
    }
    int rc = pcre2_match(sel->re, (PCRE2_SPTR)subject, len, 0, 0, m->match_data, f->match_context);
    /* 0 means "matched, ovector too small"; negatives are no match, invalid
     * UTF-8 in the subject or a limit, which all count as no match. */
    return rc >= 0;
}

static bool selector_match(const lcow_filter *f, const selector *sel, bool present,
                           const char *value, match_scratch *m)
{
    size_t len = present && value ? strlen(value) : 0;
    if (!present || !value)
        value = "";
    switch (sel->op) {
    case OP_PRESENT:
        return present;
    case OP_EQUAL:
        return present && len == sel->value.len && memcmp(value, sel->value.bytes, len) == 0;
    case OP_NOT_EQUAL:
        return !(len == sel->value.len && memcmp(value, sel->value.bytes, len) == 0);
    case OP_MATCHES:
        return regex_search(f, sel, value, len, m);
    }
    return false;
}

static bool info_field_value(const selector *sel, const lcow_info *info, const char **value)
{
    switch (sel->field) {
    case FIELD_NAME:
        *value = info->name ? info->name : "";
        return true;
    case FIELD_PARENT:
        *value = info->parent ? info->parent : "";
        return true;
    case FIELD_KIND:
        switch (info->kind) {
        case LCOW_KIND_ACTIVE:
            *value = "active";
            return true;
        case LCOW_KIND_VIEW:
            *value = "view";
            return true;
        case LCOW_KIND_COMMITTED:
            *value = "committed";
            return true;
        default:
            return false;
        }
    case FIELD_LABELS:
        if (info->labels.count == 0 || sel->label_key_has_nul)
            return false;
        *value = lcow_labels_get(&info->labels, sel->label_key.bytes);
        return *value != NULL;
    case FIELD_OTHER:
        break;
    }
    return false;
}

bool lcow_filter_match_info(const lcow_filter *f, const lcow_info *info)
{
    if (!f || f->match_all)
        return true;
    match_scratch m = {0};
    bool any = false;
    for (size_t a = 0; a < f->count && !any; a++) {
        const conjunction *c = &f->alternatives[a];
        bool all = true;
        for (size_t i = 0; i < c->count && all; i++) {
            const char *value = NULL;
            bool present = info_field_value(&c->selectors[i], info, &value);
            all = selector_match(f, &c->selectors[i], present, value, &m);
        }
        any = all;
    }
    scratch_free(&m);
    return any;
}

bool lcow_filter_match(const lcow_filter *f, lcow_filter_field_fn field, void *ctx)
{
    if (!f || f->match_all)
        return true;
    match_scratch m = {0};
    bool any = false;
    for (size_t a = 0; a < f->count && !any; a++) {
        const conjunction *c = &f->alternatives[a];
        bool all = true;
        for (size_t i = 0; i < c->count && all; i++) {
            const selector *sel = &c->selectors[i];
            const char *value = NULL;
            bool present =
                field(ctx, (const char *const *)sel->path, sel->path_lens, sel->path_count, &value);
            all = selector_match(f, sel, present, value, &m);
        }
        any = all;
    }
    scratch_free(&m);
    return any;
}
