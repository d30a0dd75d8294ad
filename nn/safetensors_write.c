/* safetensors_write.c - writing safetensors files (the format is described
 * in safetensors_read.c): F32 tensors by reference and string metadata,
 * with the data's CRC-32C, written atomically through a temporary file of
 * its own. A tied name (nn_st_add_tied: a second name of a tensor stored
 * once, as a shared parameter's) is the metadata entry "tied.<name>":
 * "<stored name>", which the reader resolves: the format forbids
 * overlapping data, so it cannot be a second entry. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "nn.h"

typedef struct {
    char *name;
    const float *data;
    int ndim;
    int64_t shape[AG_MAX_DIMS];
    int64_t numel;
    char *tied_to; /* a tied name: the stored tensor it names (data NULL); else NULL */
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
    e->tied_to = NULL;
    e->data = data;
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= shape[i];
    }
}

void nn_st_add_tied(nn_st_writer *w, const char *name, const char *stored_name)
{
    nn_st_add(w, name, NULL, 0, NULL);
    w->e[w->n - 1].numel = 0;
    w->e[w->n - 1].tied_to = str_dup(stored_name);
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
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].tied_to);
    }
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
    for (int i = 0; i < w->n; i++) /* tied names */
        if (w->e[i].tied_to) {
            char key[300];
            snprintf(key, sizeof key, NN_ST_TIED "%s", w->e[i].name);
            nn_json_put_string(&h, key);
            nn_json_put(&h, ":", 1);
            nn_json_put_string(&h, w->e[i].tied_to);
            nn_json_put(&h, ",", 1);
        }
    nn_json_putf(&h, "\"crc32c\":\"%08x\"}", (unsigned)data_crc(w));
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const wentry *e = &w->e[i];
        if (e->tied_to)
            continue;
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

int nn_st_open_temp(const char *path, char **tmp, char *err, size_t errlen)
{
    /* a name of its own in path's directory (so the rename stays on one file
     * system), created exclusively and never through a symlink: two writers
     * of one path, or a link planted at a fixed name, cannot mix files or
     * redirect the write */
    static unsigned counter;
    size_t plen = strlen(path);
    *tmp = malloc(plen + 48);
    if (!*tmp) {
        nn_seterr(err, errlen, "out of memory");
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
        snprintf(*tmp, plen + 48, "%s.tmp.%ld.%x%05x", path, (long)getpid(),
                 (unsigned)(ts.tv_nsec ^ (long)attempt * 7919) & 0xfffffu, n & 0xfffffu);
        int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST) {
            nn_seterr(err, errlen, "cannot create %s: %s", *tmp, strerror(errno));
            break;
        }
    }
    if (errno == EEXIST)
        nn_seterr(err, errlen, "cannot create %s: every name tried exists", *tmp);
    free(*tmp);
    *tmp = NULL;
    return -1;
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
        if (e->tied_to)
            continue;
        unsigned char chunk[4096];
        for (int64_t k = 0; ok && k < e->numel; k += 1024) {
            int64_t m = e->numel - k < 1024 ? e->numel - k : 1024;
            le_bytes(e, k, m, chunk);
            ok = write_all(fp, chunk, (size_t)m * 4);
        }
    }
    return ok;
}

/* Each tied name must name a tensor stored in the same file. */
static bool check_ties(const nn_st_writer *w, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < w->n; i++) {
        if (!w->e[i].tied_to)
            continue;
        bool found = false;
        for (int j = 0; j < w->n && !found; j++)
            found = !w->e[j].tied_to && strcmp(w->e[j].name, w->e[i].tied_to) == 0;
        if (!found)
            return nn_seterr(err, errlen, "cannot write %s: \"%s\" is tied to \"%s\", which is not "
                             "stored", path, w->e[i].name, w->e[i].tied_to);
    }
    return true;
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
    if (!check_ties(w, path, err, errlen))
        return false;
    char *tmp = NULL;
    int fd = nn_st_open_temp(path, &tmp, err, errlen);
    if (fd < 0)
        return false;
    nn_json_out h = header(w);
    FILE *fp = fdopen(fd, "wb");
    bool ok = fp != NULL;
    if (!fp)
        close(fd);
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
        unlink(tmp); /* ours: created just now, exclusively */
    } else if (rename(tmp, path) != 0) {
        ok = nn_seterr(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    free(h.s);
    return ok;
}
