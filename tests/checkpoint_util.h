/* checkpoint_util.h - what the checkpoint suites (test_checkpoint_*.c) share:
 * a scratch directory per run (the group fixture), whole-file reads and
 * writes, raw file images, and the example file of the round trips (odd
 * names, metadata, special floats, empty and 0-dim tensors) that the
 * bad-file tests cut and corrupt. */
#ifndef CHECKPOINT_UTIL_H
#define CHECKPOINT_UTIL_H

#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn.h"

static char scratch[64]; /* mkdtemp directory for this run */

/* ------------------------------------------------------------------ helpers */

static inline const char *in_scratch(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", scratch, name);
    return buf;
}

static inline unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)(n ? n : 1));
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static inline void spit(const char *path, const void *b, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static inline bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* entries of dir whose name ends in suffix */
static inline int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    size_t ls = strlen(suffix);
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        n += l >= ls && strcmp(e->d_name + l - ls, suffix) == 0;
    }
    closedir(d);
    return n;
}

/* Entries of dir whose name holds part (a writer's temporary files,
 * "<name>.tmp.<pid>.<unique>"). */
static inline int count_containing(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else
        unlink(path);
}

static inline int setup_scratch(void **state)
{
    (void)state;
    snprintf(scratch, sizeof scratch, "/tmp/test_checkpoint.XXXXXX");
    return mkdtemp(scratch) ? 0 : -1;
}

static inline int teardown_scratch(void **state)
{
    (void)state;
    rm_rf(scratch);
    return 0;
}

/* A file image: 8-byte little-endian header length, header, dlen data bytes
 * (data may be NULL: then bytes 0, 1, 2, ...). */
static inline unsigned char *image(const char *header, const void *data, size_t dlen, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + dlen;
    unsigned char *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < dlen; i++)
        b[8 + h + i] = data ? ((const unsigned char *)data)[i] : (unsigned char)i;
    return b;
}

static inline float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline bool contains(const char *h, size_t n, const char *s)
{
    size_t l = strlen(s);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(h + i, s, l) == 0)
            return true;
    return false;
}

static inline bool same_bits(const float *a, const float *b, int64_t n)
{
    return n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* ------------------------------------------------------------------ round trips */

#define N_SPECIAL 10
static const uint32_t special_bits[N_SPECIAL] = {
    0x7fc12345u, /* quiet NaN with a payload */
    0xffc00001u, /* negative NaN */
    0x7f800000u, /* inf */
    0xff800000u, /* -inf */
    0x80000000u, /* -0.0 */
    0x00000001u, /* smallest denormal */
    0x7f7fffffu, /* FLT_MAX */
    0x00800000u, /* FLT_MIN */
    0x3f800000u, /* 1 */
    0xbeaaaaabu, /* -1/3 */
};

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
} tspec;

static const tspec specs[] = {
    {"scalar", 0, {0}},
    {"special", 1, {N_SPECIAL}},
    {"w\xc3\xa4ights/\xe6\x9d\x83\xe9\x87\x8d \"q\" \\ \t\xf0\x9f\x98\x80", 4, {2, 3, 1, 4}},
    {"empty", 2, {0, 3}},
    {"ünïcødé.last", 1, {3}},
};
#define N_SPECS ((int)(sizeof specs / sizeof *specs))

static const char *const meta[][2] = {
    {"quote\"key", "va\"lue\""},
    {"back\\slash", "C:\\dir\\"},
    {"multi\nline", "a\nb\r\n\tc\b\f"},
    {"utf8 \xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87 \xe2\x98\x83 \xf0\x9f\x98\x80"},
    {"empty", ""},
    {"controls", "\x01\x1f\x7f/"},
    {"optimizer.step", "12"},
};
#define N_META ((int)(sizeof meta / sizeof *meta))

static inline int64_t numel_of(const tspec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

/* the values of spec i (at most 24) */
static inline void values_of(int i, float *v)
{
    ag_rng r = ag_rng_new(77 + (uint64_t)i);
    for (int64_t k = 0; k < numel_of(&specs[i]); k++)
        v[k] = i == 1 ? from_bits(special_bits[k]) : i == 0 ? from_bits(0x7fc12345u) : ag_rng_normal(&r);
}

static inline nn_st_writer *example_writer(float vals[][24])
{
    nn_st_writer *w = nn_st_writer_new();
    for (int i = 0; i < N_META; i++)
        nn_st_add_meta(w, meta[i][0], meta[i][1]);
    for (int i = 0; i < N_SPECS; i++) {
        values_of(i, vals[i]);
        nn_st_add(w, specs[i].name, vals[i], specs[i].ndim, specs[i].shape);
    }
    return w;
}

/* f holds exactly the example: names, shapes, metadata, values bit for bit */
static inline void check_example(const nn_st *f)
{
    assert_int_equal(nn_st_count(f), N_SPECS);
    for (int i = 0; i < N_SPECS; i++) {
        /* each name once */
        const char *nm = nn_st_name(f, i);
        assert_non_null(nm);
        int hits = 0;
        for (int j = 0; j < N_SPECS; j++)
            hits += strcmp(nm, nn_st_name(f, j)) == 0;
        assert_int_equal(hits, 1);
        assert_true(nn_st_has(f, specs[i].name));
        int nd = -1;
        int64_t shape[AG_MAX_DIMS];
        assert_true(nn_st_shape(f, specs[i].name, &nd, shape));
        assert_int_equal(nd, specs[i].ndim);
        for (int d = 0; d < nd; d++)
            assert_int_equal(shape[d], specs[i].shape[d]);
        float want[24], got[25];
        values_of(i, want);
        char err[256] = "";
        int64_t n = numel_of(&specs[i]);
        got[n] = 12345.0f; /* canary: exactly numel floats are written */
        if (!nn_st_read(f, specs[i].name, got, specs[i].ndim, specs[i].shape, err, sizeof err))
            fail_msg("%s", err);
        assert_true(same_bits(got, want, n));
        assert_true(got[n] == 12345.0f);
    }
    assert_null(nn_st_name(f, -1));
    assert_null(nn_st_name(f, N_SPECS));
    assert_false(nn_st_has(f, "scalar "));
    assert_false(nn_st_has(f, ""));
    int nd;
    int64_t shape[AG_MAX_DIMS];
    assert_false(nn_st_shape(f, "nope", &nd, shape));
    for (int i = 0; i < N_META; i++) {
        const char *v = nn_st_meta(f, meta[i][0]);
        if (!v)
            fail_msg("metadata key %d missing", i);
        assert_string_equal(v, meta[i][1]);
    }
    assert_null(nn_st_meta(f, "quote"));
    assert_null(nn_st_meta(f, "scalar")); /* tensor names are not metadata */
}

#endif
