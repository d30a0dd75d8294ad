/* safetensors.c - reading and writing the safetensors format:
 *   u64 little-endian N | N bytes of JSON header | raw tensor bytes.
 * The header maps names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets into the raw bytes) plus an optional "__metadata__" object of
 * strings. The parser is strict and bounds-checked: it reads untrusted files. */
#include "nn.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20) /* the reference implementation's limit */
#define MAX_DEPTH 4

typedef struct {
    char *name;
    char dtype[16];
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    uint64_t begin, end;
} entry;

struct nn_st {
    entry *e;
    int n, cap;
    char **meta; /* key, value, key, value, ... */
    int nmeta;
    unsigned char *buf; /* whole file */
    size_t len;
    const unsigned char *data; /* raw bytes after the header */
    uint64_t data_len;
};

static bool seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool seterr(char *err, size_t n, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---------------------------------------------------------------- JSON */

typedef struct {
    const char *s, *end;
    const char *begin; /* start of the header, for byte positions in messages */
    char *err;
    size_t errlen;
} lexer;

static void ws(lexer *L)
{
    while (L->s < L->end && (*L->s == ' ' || *L->s == '\t' || *L->s == '\n' || *L->s == '\r'))
        L->s++;
}

static bool expect(lexer *L, char c)
{
    ws(L);
    if (L->s >= L->end || *L->s != c)
        return seterr(L->err, L->errlen, "bad header JSON: expected '%c' at byte %ld", c,
                      (long)(L->s - L->begin));
    L->s++;
    return true;
}

static bool peek(lexer *L, char c)
{
    ws(L);
    return L->s < L->end && *L->s == c;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string into a new malloc'd C string (escapes decoded; NUL rejected). */
static char *string(lexer *L)
{
    if (!expect(L, '"'))
        return NULL;
    const char *start = L->s;
    while (L->s < L->end && *L->s != '"') {
        if (*L->s == '\\')
            L->s++;
        L->s++;
    }
    if (L->s >= L->end) {
        seterr(L->err, L->errlen, "bad header JSON: unterminated string");
        return NULL;
    }
    size_t raw = (size_t)(L->s - start);
    char *out = malloc(raw + 1), *o = out;
    if (!out) {
        seterr(L->err, L->errlen, "out of memory");
        return NULL;
    }
    for (const char *p = start; p < L->s; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20)
            goto bad;
        if (ch != '\\') {
            *o++ = (char)ch;
            continue;
        }
        p++;
        switch (*p) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            /* \uXXXX: at most 6 input bytes become at most 3 output bytes, or a
             * surrogate pair's 12 become 4, so the output never outgrows raw */
            if (L->s - p < 5)
                goto bad;
            unsigned cp = 0;
            for (int k = 1; k <= 4; k++) {
                int h = hexval(p[k]);
                if (h < 0)
                    goto bad;
                cp = cp * 16 + (unsigned)h;
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo = 0;
                if (L->s - p < 7 || p[1] != '\\' || p[2] != 'u')
                    goto bad;
                for (int k = 3; k <= 6; k++) {
                    int h = hexval(p[k]);
                    if (h < 0)
                        goto bad;
                    lo = lo * 16 + (unsigned)h;
                }
                if (lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto bad;
            if (cp == 0)
                goto bad;
            o += put_utf8(o, cp);
            break;
        }
        default:
            goto bad;
        }
    }
    *o = '\0';
    L->s++; /* closing quote */
    return out;
bad:
    free(out);
    seterr(L->err, L->errlen, "bad header JSON: invalid string escape or control character");
    return NULL;
}

static bool uint_value(lexer *L, uint64_t *v)
{
    ws(L);
    if (L->s >= L->end || *L->s < '0' || *L->s > '9')
        return seterr(L->err, L->errlen, "bad header JSON: expected a non-negative integer");
    uint64_t x = 0;
    while (L->s < L->end && *L->s >= '0' && *L->s <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return seterr(L->err, L->errlen, "bad header JSON: integer too large");
        x = x * 10 + (uint64_t)(*L->s++ - '0');
    }
    if (L->s < L->end && (*L->s == '.' || *L->s == 'e' || *L->s == 'E'))
        return seterr(L->err, L->errlen, "bad header JSON: expected an integer");
    *v = x;
    return true;
}

/* [u, u, ...] with at most max elements */
static bool uint_array(lexer *L, uint64_t *out, int max, int *n)
{
    if (!expect(L, '['))
        return false;
    *n = 0;
    if (peek(L, ']'))
        return expect(L, ']');
    do {
        if (*n == max)
            return seterr(L->err, L->errlen, "bad header: array longer than %d", max);
        if (!uint_value(L, &out[(*n)++]))
            return false;
    } while (peek(L, ',') && expect(L, ','));
    return expect(L, ']');
}

/* Skips any JSON value (for keys we don't know), with a depth limit. */
static bool skip_value(lexer *L, int depth)
{
    if (depth > MAX_DEPTH)
        return seterr(L->err, L->errlen, "bad header JSON: nested too deeply");
    ws(L);
    if (L->s >= L->end)
        return seterr(L->err, L->errlen, "bad header JSON: unexpected end");
    char c = *L->s;
    if (c == '"') {
        char *s = string(L);
        free(s);
        return s != NULL;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        L->s++;
        if (peek(L, close))
            return expect(L, close);
        do {
            if (c == '{') {
                char *k = string(L);
                if (!k)
                    return false;
                free(k);
                if (!expect(L, ':'))
                    return false;
            }
            if (!skip_value(L, depth + 1))
                return false;
        } while (peek(L, ',') && expect(L, ','));
        return expect(L, close);
    }
    /* numbers, true, false, null */
    const char *start = L->s;
    while (L->s < L->end && (strchr("+-.eE", *L->s) || (*L->s >= '0' && *L->s <= '9') ||
                             (*L->s >= 'a' && *L->s <= 'z')))
        L->s++;
    if (L->s == start)
        return seterr(L->err, L->errlen, "bad header JSON: unexpected character");
    return true;
}

static bool parse_entry(lexer *L, entry *e)
{
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!expect(L, '{'))
        return false;
    if (!peek(L, '}'))
        do {
            char *k = string(L);
            if (!k || !expect(L, ':')) {
                free(k);
                return false;
            }
            bool ok;
            if (strcmp(k, "dtype") == 0) {
                char *d = string(L);
                ok = d && strlen(d) < sizeof e->dtype;
                if (ok)
                    strcpy(e->dtype, d);
                else if (d)
                    seterr(L->err, L->errlen, "bad header: dtype too long");
                free(d);
                have_dtype = true;
            } else if (strcmp(k, "shape") == 0) {
                uint64_t s[AG_MAX_DIMS];
                ok = uint_array(L, s, AG_MAX_DIMS, &e->ndim);
                for (int i = 0; ok && i < e->ndim; i++) {
                    ok = s[i] <= (uint64_t)INT32_MAX;
                    e->shape[i] = (int64_t)s[i];
                }
                if (!ok && L->err[0] == '\0')
                    seterr(L->err, L->errlen, "bad header: dimension too large");
                have_shape = true;
            } else if (strcmp(k, "data_offsets") == 0) {
                uint64_t o[2];
                int n = 0;
                ok = uint_array(L, o, 2, &n);
                if (ok && n != 2)
                    ok = seterr(L->err, L->errlen, "bad header: data_offsets needs 2 numbers");
                e->begin = o[0];
                e->end = o[1];
                have_offsets = true;
            } else
                ok = skip_value(L, 2);
            free(k);
            if (!ok)
                return false;
        } while (peek(L, ',') && expect(L, ','));
    if (!expect(L, '}'))
        return false;
    if (!have_dtype || !have_shape || !have_offsets)
        return seterr(L->err, L->errlen, "bad header: tensor \"%s\" lacks %s", e->name,
                      !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return true;
}

static bool parse_meta(lexer *L, nn_st *f)
{
    if (!expect(L, '{'))
        return false;
    if (peek(L, '}'))
        return expect(L, '}');
    do {
        char *k = string(L), *v = NULL;
        if (k && expect(L, ':'))
            v = string(L);
        if (!v) {
            free(k);
            return false;
        }
        char **m = realloc(f->meta, (size_t)(f->nmeta + 2) * sizeof *m);
        if (!m) {
            free(k);
            free(v);
            return seterr(L->err, L->errlen, "out of memory");
        }
        f->meta = m;
        f->meta[f->nmeta++] = k;
        f->meta[f->nmeta++] = v;
    } while (peek(L, ',') && expect(L, ','));
    return expect(L, '}');
}

static int dtype_size(const char *d)
{
    static const struct { const char *name; int size; } t[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (strcmp(d, t[i].name) == 0)
            return t[i].size;
    return 0;
}

static bool parse_header(nn_st *f, const char *h, size_t n, char *err, size_t errlen)
{
    char dummy[1] = "";
    lexer L = {h, h + n, h, err ? err : dummy, err ? errlen : 0};
    if (err && errlen)
        err[0] = '\0';
    if (!expect(&L, '{'))
        return false;
    if (!peek(&L, '}'))
        do {
            char *name = string(&L);
            if (!name || !expect(&L, ':')) {
                free(name);
                return false;
            }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if (!parse_meta(&L, f))
                    return false;
                continue;
            }
            if (nn_st_has(f, name)) {
                seterr(err, errlen, "bad header: tensor \"%s\" appears twice", name);
                free(name);
                return false;
            }
            if (f->n == f->cap) {
                int cap = f->cap ? 2 * f->cap : 64;
                entry *e = realloc(f->e, (size_t)cap * sizeof *e);
                if (!e) {
                    free(name);
                    return seterr(err, errlen, "out of memory");
                }
                f->e = e;
                f->cap = cap;
            }
            entry *e = &f->e[f->n++];
            memset(e, 0, sizeof *e);
            e->name = name;
            if (!parse_entry(&L, e))
                return false;
            /* The element count, refusing products beyond the data size: six
             * dims below 2^31 can wrap 64 bits (2^30 * 2^30 * 16 = 2^64 -> 0),
             * which would let a huge shape pass with [0, 0] offsets. */
            uint64_t numel = 1;
            bool too_many = false;
            for (int i = 0; i < e->ndim; i++) {
                uint64_t d = (uint64_t)e->shape[i];
                if (d == 0) {
                    numel = 0;
                    too_many = false;
                    break;
                }
                if (numel > f->data_len / d)
                    too_many = true; /* keep going: a later 0 dim makes it empty */
                else
                    numel *= d;
            }
            if (too_many)
                return seterr(err, errlen, "tensor \"%s\": shape has more elements than the %llu data bytes",
                              name, (unsigned long long)f->data_len);
            int size = dtype_size(e->dtype);
            if (!size)
                return seterr(err, errlen, "tensor \"%s\": unknown dtype \"%s\"", name, e->dtype);
            if (e->begin > e->end || e->end > f->data_len)
                return seterr(err, errlen,
                              "tensor \"%s\": data [%llu, %llu) is outside the %llu data bytes "
                              "(truncated file?)", name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, (unsigned long long)f->data_len);
            if (numel > f->data_len || e->end - e->begin != numel * (uint64_t)size)
                return seterr(err, errlen, "tensor \"%s\": %llu data bytes for %llu elements of %s",
                              name, (unsigned long long)(e->end - e->begin),
                              (unsigned long long)numel, e->dtype);
        } while (peek(&L, ',') && expect(&L, ','));
    if (!expect(&L, '}'))
        return false;
    ws(&L);
    if (L.s != L.end)
        return seterr(err, errlen, "bad header JSON: trailing bytes after the object");
    return true;
}

nn_st *nn_st_parse(const void *buf, size_t len, char *err, size_t errlen)
{
    if (len < 8) {
        seterr(err, errlen, "file of %zu bytes is too short for a safetensors header", len);
        return NULL;
    }
    const unsigned char *b = buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > MAX_HEADER || hlen > len - 8) {
        seterr(err, errlen, "header length %llu does not fit the file of %zu bytes (truncated or not safetensors)",
               (unsigned long long)hlen, len);
        return NULL;
    }
    nn_st *f = calloc(1, sizeof *f);
    unsigned char *copy = malloc(len);
    if (!f || !copy) {
        free(f);
        free(copy);
        seterr(err, errlen, "out of memory reading %zu bytes", len);
        return NULL;
    }
    memcpy(copy, buf, len);
    f->buf = copy;
    f->len = len;
    f->data = copy + 8 + hlen;
    f->data_len = len - 8 - hlen;
    if (!parse_header(f, (const char *)copy + 8, (size_t)hlen, err, errlen)) {
        nn_st_close(f);
        return NULL;
    }
    return f;
}

nn_st *nn_st_open(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            unsigned char *b2 = realloc(buf, cap * 2);
            if (!b2) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b2;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(fp);
    fclose(fp);
    if (!buf || bad) {
        free(buf);
        seterr(err, errlen, "cannot read %s", path);
        return NULL;
    }
    nn_st *f = nn_st_parse(buf, len, err, errlen);
    free(buf);
    if (!f && err && errlen) { /* put the path in front of the reason */
        char reason[512];
        snprintf(reason, sizeof reason, "%s", err);
        snprintf(err, errlen, "%s: %s", path, reason);
    }
    return f;
}

void nn_st_close(nn_st *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free(f->e[i].name);
    free(f->e);
    for (int i = 0; i < f->nmeta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->buf);
    free(f);
}

int nn_st_count(const nn_st *f) { return f->n; }
uint64_t nn_st_data_size(const nn_st *f) { return f->data_len; }
const char *nn_st_name(const nn_st *f, int i) { return i >= 0 && i < f->n ? f->e[i].name : NULL; }

static const entry *find(const nn_st *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0)
            return &f->e[i];
    return NULL;
}

bool nn_st_has(const nn_st *f, const char *name) { return find(f, name) != NULL; }

const char *nn_st_meta(const nn_st *f, const char *key)
{
    for (int i = 0; i + 1 < f->nmeta; i += 2)
        if (strcmp(f->meta[i], key) == 0)
            return f->meta[i + 1];
    return NULL;
}

bool nn_st_shape(const nn_st *f, const char *name, int *ndim, int64_t *shape)
{
    const entry *e = find(f, name);
    if (!e)
        return false;
    *ndim = e->ndim;
    memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return true;
}

static void fmt_shape(char *b, size_t n, int nd, const int64_t *s)
{
    size_t k = (size_t)snprintf(b, n, "(");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(b + k, n - k, i ? ", %lld" : "%lld", (long long)s[i]);
    if (k < n)
        snprintf(b + k, n - k, ")");
}

bool nn_st_check(const nn_st *f, const char *name, int ndim, const int64_t *shape, char *err,
                 size_t errlen)
{
    const entry *e = find(f, name);
    if (!e)
        return seterr(err, errlen, "tensor \"%s\" is missing", name);
    if (strcmp(e->dtype, "F32") != 0)
        return seterr(err, errlen, "tensor \"%s\" has dtype %s, want F32", name, e->dtype);
    bool same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = e->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        fmt_shape(a, sizeof a, e->ndim, e->shape);
        fmt_shape(b, sizeof b, ndim, shape);
        return seterr(err, errlen, "tensor \"%s\" has shape %s in the file, want %s", name, a, b);
    }
    return true;
}

bool nn_st_read(const nn_st *f, const char *name, float *dst, int ndim, const int64_t *shape,
                char *err, size_t errlen)
{
    if (!nn_st_check(f, name, ndim, shape, err, errlen))
        return false;
    const entry *e = find(f, name);
    const unsigned char *src = f->data + e->begin;
    size_t n = (size_t)(e->end - e->begin) / 4;
    for (size_t i = 0; i < n; i++) { /* little-endian on any host */
        uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                     (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
        memcpy(&dst[i], &u, 4);
    }
    return true;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    const float *data;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
} wentry;

struct nn_st_writer {
    wentry *e;
    int n, cap;
    char **meta;
    int nmeta;
};

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d) {
        fprintf(stderr, "nn: out of memory\n");
        abort();
    }
    return memcpy(d, s, n);
}

nn_st_writer *nn_st_writer_new(void)
{
    nn_st_writer *w = calloc(1, sizeof *w);
    if (!w) {
        fprintf(stderr, "nn: out of memory\n");
        abort();
    }
    return w;
}

void nn_st_add(nn_st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape)
{
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        wentry *e = realloc(w->e, (size_t)cap * sizeof *e);
        if (!e) {
            fprintf(stderr, "nn: out of memory\n");
            abort();
        }
        w->e = e;
        w->cap = cap;
    }
    wentry *e = &w->e[w->n++];
    e->name = str_dup(name);
    e->data = data;
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= shape[i];
    }
}

void nn_st_add_meta(nn_st_writer *w, const char *key, const char *value)
{
    char **m = realloc(w->meta, (size_t)(w->nmeta + 2) * sizeof *m);
    if (!m) {
        fprintf(stderr, "nn: out of memory\n");
        abort();
    }
    w->meta = m;
    w->meta[w->nmeta++] = str_dup(key);
    w->meta[w->nmeta++] = str_dup(value);
}

void nn_st_writer_free(nn_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        free(w->e[i].name);
    free(w->e);
    for (int i = 0; i < w->nmeta; i++)
        free(w->meta[i]);
    free(w->meta);
    free(w);
}

/* A growing string for the header. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            fprintf(stderr, "nn: out of memory\n");
            abort();
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void putf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_json_string(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(b, e, 2);
        } else if (*p < 0x20)
            putf(b, "\\u%04x", *p);
        else
            put(b, (const char *)p, 1);
    }
    put(b, "\"", 1);
}

static bool write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n; }

bool nn_st_write(nn_st_writer *w, const char *path, char *err, size_t errlen)
{
    /* a file with a name twice could not be read back: refuse to write it */
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(w->e[i].name, w->e[j].name) == 0)
                return seterr(err, errlen, "cannot write %s: tensor \"%s\" added twice", path,
                              w->e[i].name);
    sbuf h = {0};
    put(&h, "{", 1);
    if (w->nmeta) {
        put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->nmeta; i += 2) {
            if (i)
                put(&h, ",", 1);
            put_json_string(&h, w->meta[i]);
            put(&h, ":", 1);
            put_json_string(&h, w->meta[i + 1]);
        }
        put(&h, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        if (i || w->nmeta)
            put(&h, ",", 1);
        put_json_string(&h, e->name);
        put(&h, ":{\"dtype\":\"F32\",\"shape\":[", 25);
        for (int d = 0; d < e->ndim; d++)
            putf(&h, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        putf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
             (unsigned long long)(off + (uint64_t)e->numel * 4));
        off += (uint64_t)e->numel * 4;
    }
    put(&h, "}", 1);
    while (h.n % 8) /* the format pads the header with spaces to 8 bytes */
        put(&h, " ", 1);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(h.s);
        return seterr(err, errlen, "out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *fp = fopen(tmp, "wb");
    bool created = fp != NULL, ok = created;
    if (ok) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
        ok = write_all(fp, len8, 8) && write_all(fp, h.s, h.n);
        for (int i = 0; ok && i < w->n; i++) {
            const wentry *e = &w->e[i];
            /* little-endian bytes regardless of the host, in chunks */
            unsigned char chunk[4096];
            for (int64_t k = 0; ok && k < e->numel; k += 1024) {
                int64_t m = e->numel - k < 1024 ? e->numel - k : 1024;
                for (int64_t j = 0; j < m; j++) {
                    uint32_t u;
                    memcpy(&u, &e->data[k + j], 4);
                    for (int b = 0; b < 4; b++)
                        chunk[4 * j + b] = (unsigned char)(u >> (8 * b));
                }
                ok = write_all(fp, chunk, (size_t)m * 4);
            }
        }
        ok = fflush(fp) == 0 && ok;
        ok = ok && fsync(fileno(fp)) == 0;
        int saved = errno;
        ok = fclose(fp) == 0 && ok;
        errno = ok ? errno : saved;
    }
    if (!ok) {
        seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        /* only a .tmp this call created: if fopen failed, whatever is at tmp
         * is not ours (remove() would even delete an empty directory) */
        if (created)
            remove(tmp);
    } else if (rename(tmp, path) != 0) {
        ok = seterr(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    free(h.s);
    return ok;
}
