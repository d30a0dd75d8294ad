/* safetensors_write.c - writing safetensors files (the format is described
 * in safetensors_read.c): F32 tensors by reference and string metadata,
 * with the data's CRC-32C, written atomically. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "nn.h"

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
    return memcpy(nn_check_alloc(malloc(n)), s, n);
}

nn_st_writer *nn_st_writer_new(void) { return nn_check_alloc(calloc(1, sizeof(nn_st_writer))); }

void nn_st_add(nn_st_writer *w, const char *name, const float *data, int ndim, const int64_t *shape)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = nn_check_alloc(realloc(w->e, (size_t)w->cap * sizeof *w->e));
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
    w->meta = nn_check_alloc(realloc(w->meta, (size_t)(w->nmeta + 2) * sizeof *w->meta));
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

/* Floats k .. k+m-1 of e as little-endian bytes, regardless of the host. */
static void le_bytes(const wentry *e, int64_t k, int64_t m, unsigned char *out)
{
    for (int64_t j = 0; j < m; j++) {
        uint32_t u;
        memcpy(&u, &e->data[k + j], 4);
        for (int b = 0; b < 4; b++)
            out[4 * j + b] = (unsigned char)(u >> (8 * b));
    }
}

/* CRC-32C of the data as write_file writes it. */
static uint32_t data_crc(const nn_st_writer *w)
{
    uint32_t crc = 0;
    unsigned char chunk[4096];
    for (int i = 0; i < w->n; i++)
        for (int64_t k = 0; k < w->e[i].numel; k += 1024) {
            int64_t m = w->e[i].numel - k < 1024 ? w->e[i].numel - k : 1024;
            le_bytes(&w->e[i], k, m, chunk);
            crc = nn_crc32c(crc, chunk, (size_t)m * 4);
        }
    return crc;
}

/* The JSON header: metadata first (ending with the data's "crc32c"), then
 * each tensor at the offset after the one before, padded with spaces to a
 * multiple of 8 bytes as the format asks. */
static nn_json_out header(const nn_st_writer *w)
{
    nn_json_out h = {0};
    nn_json_put(&h, "{\"__metadata__\":{", 17);
    for (int i = 0; i < w->nmeta; i += 2) {
        nn_json_put_string(&h, w->meta[i]);
        nn_json_put(&h, ":", 1);
        nn_json_put_string(&h, w->meta[i + 1]);
        nn_json_put(&h, ",", 1);
    }
    nn_json_putf(&h, "\"crc32c\":\"%08x\"}", (unsigned)data_crc(w));
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        nn_json_put(&h, ",", 1);
        nn_json_put_string(&h, e->name);
        nn_json_put(&h, ":{\"dtype\":\"F32\",\"shape\":[", 25);
        for (int d = 0; d < e->ndim; d++)
            nn_json_putf(&h, d ? ",%lld" : "%lld", (long long)e->shape[d]);
        nn_json_putf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                     (unsigned long long)(off + (uint64_t)e->numel * 4));
        off += (uint64_t)e->numel * 4;
    }
    nn_json_put(&h, "}", 1);
    while (h.n % 8)
        nn_json_put(&h, " ", 1);
    return h;
}

static bool write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n; }

/* The header's length, the header, then each tensor's floats as
 * little-endian bytes regardless of the host, in chunks. */
static bool write_file(FILE *fp, const nn_json_out *h, const nn_st_writer *w)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h->n >> (8 * i));
    bool ok = write_all(fp, len8, 8) && write_all(fp, h->s, h->n);
    for (int i = 0; ok && i < w->n; i++) {
        const wentry *e = &w->e[i];
        unsigned char chunk[4096];
        for (int64_t k = 0; ok && k < e->numel; k += 1024) {
            int64_t m = e->numel - k < 1024 ? e->numel - k : 1024;
            le_bytes(e, k, m, chunk);
            ok = write_all(fp, chunk, (size_t)m * 4);
        }
    }
    return ok;
}

bool nn_st_write(nn_st_writer *w, const char *path, char *err, size_t errlen)
{
    /* a file with a name twice could not be read back: refuse to write it */
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(w->e[i].name, w->e[j].name) == 0)
                return nn_seterr(err, errlen, "cannot write %s: tensor \"%s\" added twice", path,
                                 w->e[i].name);
    for (int i = 0; i < w->nmeta; i += 2)
        if (strcmp(w->meta[i], "crc32c") == 0)
            return nn_seterr(err, errlen, "cannot write %s: metadata \"crc32c\" is the writer's "
                             "own (the data's checksum)", path);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return nn_seterr(err, errlen, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    nn_json_out h = header(w);
    FILE *fp = fopen(tmp, "wb");
    bool created = fp != NULL, ok = created;
    if (ok) {
        ok = write_file(fp, &h, w);
        ok = fflush(fp) == 0 && ok;
        ok = ok && fsync(fileno(fp)) == 0;
        int saved = errno;
        ok = fclose(fp) == 0 && ok;
        errno = ok ? errno : saved;
    }
    if (!ok) {
        nn_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        /* only a .tmp this call created: if fopen failed, whatever is at tmp
         * is not ours (remove() would even delete an empty directory) */
        if (created)
            remove(tmp);
    } else if (rename(tmp, path) != 0) {
        ok = nn_seterr(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
    }
    free(tmp);
    free(h.s);
    return ok;
}
