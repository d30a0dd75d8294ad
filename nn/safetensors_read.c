/* safetensors_read.c - reading the safetensors format:
 *   u64 little-endian N | N bytes of JSON header | raw tensor bytes.
 * The header maps names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets into the raw bytes) plus an optional "__metadata__" object of
 * strings. The parser is strict and bounds-checked: it reads untrusted files.
 * As the format requires, the tensors tile the data: sorted by offset each
 * begins where the one before ends, the first at 0, the last at the end. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"
#include "nn.h"

#define MAX_HEADER (100u << 20) /* the reference implementation's limit */

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

static const entry *find_stored(const nn_st *f, const char *name);

static bool parse_entry(nn_json *L, entry *e)
{
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!nn_json_expect(L, '{'))
        return false;
    if (!nn_json_peek(L, '}'))
        do {
            char *k = nn_json_string(L);
            if (!k || !nn_json_expect(L, ':')) {
                free(k);
                return false;
            }
            bool ok;
            if (strcmp(k, "dtype") == 0) {
                char *d = nn_json_string(L);
                ok = d && strlen(d) < sizeof e->dtype;
                if (ok)
                    strcpy(e->dtype, d);
                else if (d)
                    nn_seterr(L->err, L->errlen, "bad header: dtype too long");
                free(d);
                have_dtype = true;
            } else if (strcmp(k, "shape") == 0) {
                uint64_t s[AG_MAX_DIMS];
                ok = nn_json_uint_array(L, s, AG_MAX_DIMS, &e->ndim);
                for (int i = 0; ok && i < e->ndim; i++) {
                    ok = s[i] <= (uint64_t)INT32_MAX;
                    e->shape[i] = (int64_t)s[i];
                }
                if (!ok && L->err[0] == '\0')
                    nn_seterr(L->err, L->errlen, "bad header: dimension too large");
                have_shape = true;
            } else if (strcmp(k, "data_offsets") == 0) {
                uint64_t o[2];
                int n = 0;
                ok = nn_json_uint_array(L, o, 2, &n);
                if (ok && n != 2)
                    ok = nn_seterr(L->err, L->errlen, "bad header: data_offsets needs 2 numbers");
                e->begin = o[0];
                e->end = o[1];
                have_offsets = true;
            } else
                ok = nn_json_skip(L, 2);
            free(k);
            if (!ok)
                return false;
        } while (nn_json_peek(L, ',') && nn_json_expect(L, ','));
    if (!nn_json_expect(L, '}'))
        return false;
    if (!have_dtype || !have_shape || !have_offsets)
        return nn_seterr(L->err, L->errlen, "bad header: tensor \"%s\" lacks %s", e->name,
                         !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return true;
}

static bool parse_meta(nn_json *L, nn_st *f)
{
    if (!nn_json_expect(L, '{'))
        return false;
    if (nn_json_peek(L, '}'))
        return nn_json_expect(L, '}');
    do {
        char *k = nn_json_string(L), *v = NULL;
        if (k && nn_json_expect(L, ':'))
            v = nn_json_string(L);
        if (!v) {
            free(k);
            return false;
        }
        char **m = realloc(f->meta, (size_t)(f->nmeta + 2) * sizeof *m);
        if (!m) {
            free(k);
            free(v);
            return nn_seterr(L->err, L->errlen, "out of memory");
        }
        f->meta = m;
        f->meta[f->nmeta++] = k;
        f->meta[f->nmeta++] = v;
    } while (nn_json_peek(L, ',') && nn_json_expect(L, ','));
    return nn_json_expect(L, '}');
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

/* e's dtype is known and its offsets hold exactly its elements, within the data. */
static bool entry_fits(const nn_st *f, const entry *e, char *err, size_t errlen)
{
    /* The element count, refusing products beyond the data size: six dims
     * below 2^31 can wrap 64 bits (2^30 * 2^30 * 16 = 2^64 -> 0), which
     * would let a huge shape pass with [0, 0] offsets. */
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
        return nn_seterr(err, errlen, "tensor \"%s\": shape has more elements than the %llu data bytes",
                         e->name, (unsigned long long)f->data_len);
    int size = dtype_size(e->dtype);
    if (!size)
        return nn_seterr(err, errlen, "tensor \"%s\": unknown dtype \"%s\"", e->name, e->dtype);
    if (e->begin > e->end || e->end > f->data_len)
        return nn_seterr(err, errlen,
                         "tensor \"%s\": data [%llu, %llu) is outside the %llu data bytes "
                         "(truncated file?)", e->name, (unsigned long long)e->begin,
                         (unsigned long long)e->end, (unsigned long long)f->data_len);
    if (numel > f->data_len || e->end - e->begin != numel * (uint64_t)size)
        return nn_seterr(err, errlen, "tensor \"%s\": %llu data bytes for %llu element%s of %s",
                         e->name, (unsigned long long)(e->end - e->begin),
                         (unsigned long long)numel, numel == 1 ? "" : "s", e->dtype);
    return true;
}

static int by_offsets(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The entries, in offset order, leave no byte of the data uncovered or
 * covered twice (empty tensors sit between others, as the reference reader
 * allows). */
static bool check_layout(const nn_st *f, char *err, size_t errlen)
{
    const entry **order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!order)
        return nn_seterr(err, errlen, "out of memory");
    for (int i = 0; i < f->n; i++)
        order[i] = &f->e[i];
    qsort(order, (size_t)f->n, sizeof *order, by_offsets);
    uint64_t at = 0;
    const entry *prev = NULL;
    bool ok = true;
    for (int i = 0; ok && i < f->n; i++) {
        const entry *e = order[i];
        if (e->begin < at)
            ok = nn_seterr(err, errlen,
                           "tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) overlap in the data",
                           prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end,
                           e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
        else if (e->begin > at)
            ok = nn_seterr(err, errlen, "a gap of %llu unused data bytes at offset %llu, before "
                           "tensor \"%s\"", (unsigned long long)(e->begin - at),
                           (unsigned long long)at, e->name);
        at = e->end;
        prev = e;
    }
    if (ok && at != f->data_len)
        ok = nn_seterr(err, errlen, "%llu trailing bytes after the tensor data (it ends at %llu of "
                       "%llu data bytes)", (unsigned long long)(f->data_len - at),
                       (unsigned long long)at, (unsigned long long)f->data_len);
    free(order);
    return ok;
}

/* The data against metadata "crc32c" (8 hex digits), when the file has it. */
static bool check_crc(const nn_st *f, char *err, size_t errlen)
{
    const char *want = nn_st_meta(f, "crc32c");
    if (!want)
        return true;
    uint32_t w = 0;
    int n = 0;
    for (const char *c = want; *c && n <= 8; c++, n++) {
        int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10
                : *c >= 'A' && *c <= 'F' ? *c - 'A' + 10 : -1;
        if (d < 0)
            n = 9;
        w = w << 4 | (uint32_t)(d & 15);
    }
    if (n != 8)
        return nn_seterr(err, errlen, "bad header: metadata \"crc32c\" is \"%.40s\", not 8 hex digits",
                         want);
    uint32_t got = nn_crc32c(0, f->data, (size_t)f->data_len);
    if (got != w)
        return nn_seterr(err, errlen, "the data's CRC-32C is %08x but the header says %08x: the file "
                         "is corrupt (changed after it was written)", got, w);
    return true;
}

static bool parse_header(nn_st *f, const char *h, size_t n, char *err, size_t errlen)
{
    char dummy[1] = "";
    nn_json L = {h, h + n, h, err ? err : dummy, err ? errlen : 0};
    if (err && errlen)
        err[0] = '\0';
    if (!nn_json_expect(&L, '{'))
        return false;
    if (!nn_json_peek(&L, '}'))
        do {
            char *name = nn_json_string(&L);
            if (!name || !nn_json_expect(&L, ':')) {
                free(name);
                return false;
            }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if (!parse_meta(&L, f))
                    return false;
                continue;
            }
            if (find_stored(f, name)) {
                nn_seterr(err, errlen, "bad header: tensor \"%s\" appears twice", name);
                free(name);
                return false;
            }
            if (f->n == f->cap) {
                int cap = f->cap ? 2 * f->cap : 64;
                entry *e = realloc(f->e, (size_t)cap * sizeof *e);
                if (!e) {
                    free(name);
                    return nn_seterr(err, errlen, "out of memory");
                }
                f->e = e;
                f->cap = cap;
            }
            entry *e = &f->e[f->n++];
            memset(e, 0, sizeof *e);
            e->name = name;
            if (!parse_entry(&L, e))
                return false;
            if (!entry_fits(f, e, err, errlen))
                return false;
        } while (nn_json_peek(&L, ',') && nn_json_expect(&L, ','));
    if (!nn_json_expect(&L, '}'))
        return false;
    if (!nn_json_at_end(&L))
        return nn_seterr(err, errlen, "bad header JSON: trailing bytes after the object");
    return check_layout(f, err, errlen) && check_crc(f, err, errlen);
}

nn_st *nn_st_parse(const void *buf, size_t len, char *err, size_t errlen)
{
    if (len < 8) {
        nn_seterr(err, errlen, "file of %zu bytes is too short for a safetensors header", len);
        return NULL;
    }
    const unsigned char *b = buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > MAX_HEADER || hlen > len - 8) {
        nn_seterr(err, errlen, "header length %llu does not fit the file of %zu bytes (truncated or "
                  "not safetensors)", (unsigned long long)hlen, len);
        return NULL;
    }
    nn_st *f = calloc(1, sizeof *f);
    unsigned char *copy = malloc(len);
    if (!f || !copy) {
        free(f);
        free(copy);
        nn_seterr(err, errlen, "out of memory reading %zu bytes", len);
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
        nn_seterr(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    /* a directory opens and fails on read; a device may never end (/dev/zero) */
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && (S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode) ||
                                        S_ISBLK(st.st_mode))) {
        nn_seterr(err, errlen, "cannot read %s: it is a %s, not a file", path,
                  S_ISDIR(st.st_mode) ? "directory" : "device");
        fclose(fp);
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
    int e = errno;
    bool bad = ferror(fp);
    fclose(fp);
    if (!buf || bad) {
        free(buf);
        nn_seterr(err, errlen, "cannot read %s: %s", path, buf ? strerror(e) : "out of memory");
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

static const entry *find_stored(const nn_st *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->e[i].name, name) == 0)
            return &f->e[i];
    return NULL;
}

const char *nn_st_meta(const nn_st *f, const char *key)
{
    for (int i = 0; i + 1 < f->nmeta; i += 2)
        if (strcmp(f->meta[i], key) == 0)
            return f->meta[i + 1];
    return NULL;
}

/* The tensor stored under name, or under the name its NN_ST_TIED metadata
 * gives (one step: a tie names a stored tensor, never another tie). */
static const entry *find(const nn_st *f, const char *name)
{
    const entry *e = find_stored(f, name);
    for (int i = 0; !e && i + 1 < f->nmeta; i += 2) {
        const char *k = f->meta[i];
        if (strncmp(k, NN_ST_TIED, strlen(NN_ST_TIED)) == 0 &&
            strcmp(k + strlen(NN_ST_TIED), name) == 0)
            e = find_stored(f, f->meta[i + 1]);
    }
    return e;
}

bool nn_st_has(const nn_st *f, const char *name) { return find(f, name) != NULL; }

bool nn_st_shape(const nn_st *f, const char *name, int *ndim, int64_t *shape)
{
    const entry *e = find(f, name);
    if (!e)
        return false;
    *ndim = e->ndim;
    memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return true;
}

bool nn_st_check(const nn_st *f, const char *name, int ndim, const int64_t *shape, char *err,
                 size_t errlen)
{
    const entry *e = find(f, name);
    if (!e)
        return nn_seterr(err, errlen, "tensor \"%s\" is missing", name);
    if (strcmp(e->dtype, "F32") != 0)
        return nn_seterr(err, errlen, "tensor \"%s\" has dtype %s, want F32", name, e->dtype);
    bool same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = e->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        return nn_seterr(err, errlen, "tensor \"%s\" has shape %s in the file, want %s", name,
                         ag_fmt_shape(e->ndim, e->shape, a, sizeof a),
                         ag_fmt_shape(ndim, shape, b, sizeof b));
    }
    return true;
}

bool nn_st_finite(const nn_st *f, const char *name, char *err, size_t errlen)
{
    const entry *e = find(f, name);
    if (!e)
        return nn_seterr(err, errlen, "tensor \"%s\" is missing", name);
    if (strcmp(e->dtype, "F32") != 0)
        return nn_seterr(err, errlen, "tensor \"%s\" has dtype %s, want F32", name, e->dtype);
    const unsigned char *src = f->data + e->begin;
    uint64_t n = (e->end - e->begin) / 4;
    for (uint64_t i = 0; i < n; i++) {
        /* all exponent bits set: inf or NaN, whatever the host's float format */
        if ((src[4 * i + 3] & 0x7F) != 0x7F || !(src[4 * i + 2] & 0x80))
            continue;
        uint32_t u = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                     (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
        float v;
        memcpy(&v, &u, 4);
        char idx[160];
        size_t k = 0;
        uint64_t rest = i, ix[AG_MAX_DIMS]; /* the row-major index of element i */
        for (int d = e->ndim - 1; d >= 0; d--) {
            ix[d] = rest % (uint64_t)e->shape[d];
            rest /= (uint64_t)e->shape[d];
        }
        k += (size_t)snprintf(idx + k, sizeof idx - k, "[");
        for (int d = 0; d < e->ndim && k < sizeof idx; d++)
            k += (size_t)snprintf(idx + k, sizeof idx - k, d ? ", %llu" : "%llu",
                                  (unsigned long long)ix[d]);
        if (k < sizeof idx)
            snprintf(idx + k, sizeof idx - k, "]");
        return nn_seterr(err, errlen, "tensor \"%s\": element %llu (index %s) is %s, not a finite "
                         "number", name, (unsigned long long)i, idx,
                         isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
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
