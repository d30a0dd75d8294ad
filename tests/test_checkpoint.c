/* test_checkpoint.c - safetensors files and checkpoints: the writer and the
 * reader agree bit for bit (odd names, metadata, special floats, empty and
 * 0-dim tensors); the bytes are the safetensors format; model parameters and
 * AdamW state come back exactly and mismatches are named; bad files (missing,
 * short, truncated at every length, corrupt JSON, bad offsets, random byte
 * flips) fail with a message and never crash; and a failed write leaves the
 * previous checkpoint intact and no temporary file behind. */
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

static const char *in_scratch(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", scratch, name);
    return buf;
}

static unsigned char *slurp(const char *path, size_t *len)
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

static void spit(const char *path, const void *b, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* entries of dir whose name ends in suffix */
static int count_suffix(const char *dir, const char *suffix)
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

static int setup_scratch(void **state)
{
    (void)state;
    snprintf(scratch, sizeof scratch, "/tmp/test_checkpoint.XXXXXX");
    return mkdtemp(scratch) ? 0 : -1;
}

static int teardown_scratch(void **state)
{
    (void)state;
    rm_rf(scratch);
    return 0;
}

/* A file image: 8-byte little-endian header length, header, dlen data bytes
 * (data may be NULL: then bytes 0, 1, 2, ...). */
static unsigned char *image(const char *header, const void *data, size_t dlen, size_t *len)
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

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static bool contains(const char *h, size_t n, const char *s)
{
    size_t l = strlen(s);
    for (size_t i = 0; i + l <= n; i++)
        if (memcmp(h + i, s, l) == 0)
            return true;
    return false;
}

static bool same_bits(const float *a, const float *b, int64_t n)
{
    return n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* ---- a small strict JSON validator, to check the writer's header is JSON */

static const char *jv_value(const char *s, const char *e, int depth);

static const char *jv_ws(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r'))
        s++;
    return s;
}

static const char *jv_string(const char *s, const char *e)
{
    if (s >= e || *s++ != '"')
        return NULL;
    while (s < e && *s != '"') {
        unsigned char c = (unsigned char)*s++;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (s >= e || !strchr("\"\\/bfnrtu", *s) || !*s)
                return NULL;
            if (*s++ == 'u')
                for (int k = 0; k < 4; k++, s++)
                    if (s >= e || !strchr("0123456789abcdefABCDEF", *s) || !*s)
                        return NULL;
        }
    }
    return s < e ? s + 1 : NULL;
}

static const char *jv_digits(const char *s, const char *e)
{
    const char *d = s;
    while (s < e && *s >= '0' && *s <= '9')
        s++;
    return s > d ? s : NULL;
}

static const char *jv_value(const char *s, const char *e, int depth)
{
    s = jv_ws(s, e);
    if (s >= e || depth > 64)
        return NULL;
    if (*s == '"')
        return jv_string(s, e);
    if (*s == '{' || *s == '[') {
        char close = *s == '{' ? '}' : ']';
        bool obj = *s++ == '{';
        s = jv_ws(s, e);
        if (s < e && *s == close)
            return s + 1;
        for (;;) {
            if (obj) {
                s = jv_string(jv_ws(s, e), e);
                s = s ? jv_ws(s, e) : NULL;
                if (!s || s >= e || *s++ != ':')
                    return NULL;
            }
            s = jv_value(s, e, depth + 1);
            s = s ? jv_ws(s, e) : NULL;
            if (!s || s >= e)
                return NULL;
            if (*s == close)
                return s + 1;
            if (*s++ != ',')
                return NULL;
        }
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if ((size_t)(e - s) >= l && memcmp(s, lits[k], l) == 0)
            return s + l;
    }
    if (*s == '-')
        s++;
    if (s < e && *s == '0')
        s++;
    else if (!(s = jv_digits(s, e)))
        return NULL;
    if (s < e && *s == '.' && !(s = jv_digits(s + 1, e)))
        return NULL;
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < e && (*s == '+' || *s == '-'))
            s++;
        if (!(s = jv_digits(s, e)))
            return NULL;
    }
    return s;
}

/* the data_offsets of the entry whose JSON-encoded key is `key` in header h */
static void offsets_of(const char *h, size_t n, const char *key, uint64_t *b, uint64_t *e)
{
    char *hdr = malloc(n + 1);
    memcpy(hdr, h, n);
    hdr[n] = '\0';
    char *k = strstr(hdr, key);
    if (!k)
        fail_msg("header lacks %s: %s", key, hdr);
    char *o = strstr(k, "\"data_offsets\"");
    assert_non_null(o);
    o = strchr(o, '[');
    assert_non_null(o);
    char *end;
    *b = strtoull(o + 1, &end, 10);
    end = strchr(end, ',');
    assert_non_null(end);
    *e = strtoull(end + 1, NULL, 10);
    free(hdr);
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

static int64_t numel_of(const tspec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++)
        n *= s->shape[d];
    return n;
}

/* the values of spec i (at most 24) */
static void values_of(int i, float *v)
{
    ag_rng r = ag_rng_new(77 + (uint64_t)i);
    for (int64_t k = 0; k < numel_of(&specs[i]); k++)
        v[k] = i == 1 ? from_bits(special_bits[k]) : i == 0 ? from_bits(0x7fc12345u) : ag_rng_normal(&r);
}

static nn_st_writer *example_writer(float vals[][24])
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
static void check_example(const nn_st *f)
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

static void test_roundtrip(void **state)
{
    (void)state;
    char path[256], tmp[260], err[512] = "x";
    in_scratch(path, sizeof path, "rt.safetensors");
    float vals[N_SPECS][24];
    nn_st_writer *w = example_writer(vals);
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_false(exists(tmp));

    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    check_example(f);

    /* reading checks the shape and names the tensor and both shapes */
    float buf[32];
    err[0] = '\0';
    assert_false(nn_st_read(f, specs[2].name, buf, AG_SHAPE(2, 3, 4), err, sizeof err));
    assert_non_null(strstr(err, specs[2].name));
    assert_non_null(strstr(err, "(2, 3, 1, 4)"));
    assert_non_null(strstr(err, "(2, 3, 4)"));
    err[0] = '\0';
    assert_false(nn_st_read(f, "special", buf, AG_SHAPE(N_SPECIAL + 1), err, sizeof err));
    assert_non_null(strstr(err, "special"));
    assert_non_null(strstr(err, "(10)"));
    assert_non_null(strstr(err, "(11)"));
    err[0] = '\0';
    assert_false(nn_st_read(f, "scalar", buf, AG_SHAPE(1), err, sizeof err));
    assert_non_null(strstr(err, "()"));
    assert_non_null(strstr(err, "(1)"));
    err[0] = '\0';
    assert_false(nn_st_read(f, "nope", buf, AG_SHAPE(1), err, sizeof err));
    assert_non_null(strstr(err, "\"nope\""));
    nn_st_close(f);

    /* the same bytes through nn_st_parse */
    size_t len;
    unsigned char *bytes = slurp(path, &len);
    f = nn_st_parse(bytes, len, err, sizeof err);
    memset(bytes, 0, len); /* parse copies: the image can go */
    free(bytes);
    assert_non_null(f);
    check_example(f);
    nn_st_close(f);

    /* writing again replaces the file */
    w = nn_st_writer_new();
    float one = 1.0f;
    nn_st_add(w, "only", &one, 0, NULL);
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), 1);
    assert_null(nn_st_meta(f, "empty"));
    nn_st_close(f);

    /* no tensors, no metadata: "{}" padded */
    w = nn_st_writer_new();
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), 0);
    nn_st_close(f);
    assert_int_equal(count_suffix(scratch, ".tmp"), 0);
    unlink(path);
}

/* ------------------------------------------------------------------ format */

static void test_file_format(void **state)
{
    (void)state;
    char path[256], err[256];
    in_scratch(path, sizeof path, "fmt.safetensors");
    const float a[] = {1.0f, -2.0f}, b[] = {0.5f};
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_meta(w, "k", "line\n\"q\"\\");
    nn_st_add(w, "a", a, AG_SHAPE(2));
    nn_st_add(w, "b\x01", b, AG_SHAPE(1, 1));
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);

    size_t len;
    unsigned char *f = slurp(path, &len);
    assert_true(len >= 8);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)f[i] << (8 * i);
    assert_int_equal(hlen % 8, 0);            /* padded to 8 bytes */
    assert_int_equal(len, 8 + hlen + 3 * 4); /* nothing but header and data */
    const char *h = (const char *)f + 8;
    assert_int_equal(h[0], '{');
    /* the JSON object ends, then only spaces (fewer than 8) */
    const char *end = jv_value(h, h + hlen, 0);
    if (!end)
        fail_msg("header is not JSON: %.*s", (int)hlen, h);
    assert_int_equal(end[-1], '}');
    assert_true((uint64_t)(h + hlen - end) < 8);
    for (const char *p = end; p < h + hlen; p++)
        assert_int_equal(*p, ' ');
    /* the entries */
    uint64_t ab, ae, bb, be;
    offsets_of(h, hlen, "\"a\"", &ab, &ae);
    offsets_of(h, hlen, "\"b\\u0001\"", &bb, &be);
    assert_int_equal(ae - ab, 8);
    assert_int_equal(be - bb, 4);
    assert_true(ae <= len - 8 - hlen && be <= len - 8 - hlen);
    assert_true(contains(h, hlen, "\"F32\""));
    assert_true(contains(h, hlen, "\"__metadata__\""));
    /* little-endian float32: 1.0 = 0x3f800000, -2.0 = 0xc0000000, 0.5 = 0x3f000000 */
    const unsigned char *data = f + 8 + hlen;
    const unsigned char want_a[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    const unsigned char want_b[] = {0x00, 0x00, 0x00, 0x3f};
    assert_memory_equal(data + ab, want_a, 8);
    assert_memory_equal(data + bb, want_b, 4);
    free(f);
    unlink(path);

    /* a file image made by hand: 56-byte header (54 + 2 spaces), then 1.0, -3.0 */
    static const unsigned char hand[] =
        "\x38\x00\x00\x00\x00\x00\x00\x00"
        "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
        "\x00\x00\x80\x3f\x00\x00\x40\xc0";
    nn_st *st = nn_st_parse(hand, sizeof hand - 1, err, sizeof err);
    if (!st)
        fail_msg("%s", err);
    assert_int_equal(nn_st_count(st), 1);
    assert_string_equal(nn_st_name(st, 0), "x");
    float x[2];
    assert_true(nn_st_read(st, "x", x, AG_SHAPE(2), err, sizeof err));
    assert_true(x[0] == 1.0f && x[1] == -3.0f);
    nn_st_close(st);

    /* JSON as another writer might lay it out: whitespace, unknown keys,
     * escapes (\u with a surrogate pair, \/), tensors out of data order */
    const char *hdr =
        "{\n  \"__metadata__\" : { \"format\" : \"pt\", \"s\\/x\" : \"caf\\u00e9 \\ud83d\\ude00 \\\"\\\\\\n\" },\n"
        "  \"b\" : {\"dtype\":\"F32\", \"shape\": [ ], \"data_offsets\": [ 0 , 4 ],\n"
        "          \"extra\": {\"n\": [1, 2.5e-3, -4, true, null, \"s\"]}},\n"
        "  \"\\u0061\\u00df\" : {\"data_offsets\":[4,12],\"shape\":[1,2],\"dtype\":\"F32\"}\r\n}\t  ";
    const unsigned char d[] = {0, 0, 0x20, 0x41, /* 10 */ 0, 0, 0x80, 0xbf, /* -1 */ 0, 0, 0, 0x80 /* -0 */};
    size_t n;
    unsigned char *img = image(hdr, d, sizeof d, &n);
    st = nn_st_parse(img, n, err, sizeof err);
    free(img);
    if (!st)
        fail_msg("%s", err);
    assert_int_equal(nn_st_count(st), 2);
    assert_string_equal(nn_st_meta(st, "format"), "pt");
    assert_string_equal(nn_st_meta(st, "s/x"), "caf\xc3\xa9 \xf0\x9f\x98\x80 \"\\\n");
    float s, v[2];
    assert_true(nn_st_read(st, "b", &s, 0, NULL, err, sizeof err));
    assert_true(s == 10.0f);
    assert_true(nn_st_read(st, "a\xc3\x9f", v, AG_SHAPE(1, 2), err, sizeof err));
    assert_true(v[0] == -1.0f && v[1] == 0.0f && signbit(v[1]));
    nn_st_close(st);
}

/* ------------------------------------------------------------------ checkpoints */

typedef struct {
    nn_params p;
    nn_block b;
    nn_adamw opt;
} model;

static void model_init(model *m, int64_t n_embd, uint64_t seed)
{
    nn_params_init(&m->p);
    ag_rng r = ag_rng_new(seed);
    assert_true(nn_block_init(&m->b, &m->p, "blocks.0", n_embd, 2, 0.0f, &r));
    nn_adamw_init(&m->opt, &m->p, 1e-2f);
}

static void model_free(model *m)
{
    nn_adamw_free(&m->opt);
    nn_block_free(&m->b);
    nn_params_free(&m->p);
}

static void train_step(model *m, ag_tensor *x)
{
    ag_ctx *c = ag_ctx_new();
    nn_params_zero_grad(&m->p);
    assert_true(ag_backward(c, weighted_sum(c, nn_block_forward(c, &m->b, x, true))));
    nn_adamw_step(&m->opt);
    ag_ctx_free(c);
}

static void assert_same_state(const model *a, const model *b)
{
    assert_int_equal(a->p.n, b->p.n);
    assert_int_equal(a->opt.step, b->opt.step);
    for (int i = 0; i < a->p.n; i++) {
        const ag_tensor *s = a->p.items[i], *t = b->p.items[i];
        if (!same_bits(s->data, t->data, s->numel) || !same_bits(a->opt.m[i], b->opt.m[i], s->numel) ||
            !same_bits(a->opt.v[i], b->opt.v[i], s->numel))
            fail_msg("%s or its AdamW state differs", s->name);
    }
}

static void save(const char *path, const nn_params *p, const nn_adamw *opt)
{
    char err[256];
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add_params(w, p);
    if (opt)
        nn_st_add_adamw(w, opt);
    if (!nn_st_write(w, path, err, sizeof err))
        fail_msg("%s", err);
    nn_st_writer_free(w);
}

static nn_st *open_ok(const char *path)
{
    char err[256];
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    return f;
}

static void test_checkpoint_roundtrip(void **state)
{
    (void)state;
    char path[256], err[256];
    in_scratch(path, sizeof path, "ckpt.safetensors");
    ag_tensor *x = ag_randn(NULL, 5, 0.0f, 1.0f, AG_SHAPE(2, 4, 8));
    model a, b;
    model_init(&a, 8, 1);
    train_step(&a, x);
    train_step(&a, x);
    assert_int_equal(a.opt.step, 2);
    save(path, &a.p, &a.opt);

    model_init(&b, 8, 2); /* other weights, fresh optimizer */
    assert_false(same_bits(a.p.items[0]->data, b.p.items[0]->data, a.p.items[0]->numel));
    nn_st *f = open_ok(path);
    /* params, then two tensors per param, plus the step as metadata */
    assert_int_equal(nn_st_count(f), 3 * a.p.n);
    assert_true(nn_st_has(f, "optimizer.exp_avg.blocks.0.ln2.bias"));
    assert_true(nn_st_has(f, "optimizer.exp_avg_sq.blocks.0.sa.heads.1.value.weight"));
    assert_string_equal(nn_st_meta(f, "optimizer.step"), "2");
    if (!nn_load_params(f, &b.p, err, sizeof err) || !nn_load_adamw(f, &b.opt, err, sizeof err))
        fail_msg("%s", err);
    nn_st_close(f);
    assert_same_state(&a, &b);
    /* and training resumes exactly where it was */
    train_step(&a, x);
    train_step(&b, x);
    assert_same_state(&a, &b);

    /* a params-only file loads params; it has no optimizer state */
    save(path, &a.p, NULL);
    f = open_ok(path);
    model c;
    model_init(&c, 8, 3);
    assert_true(nn_load_params(f, &c.p, err, sizeof err));
    for (int i = 0; i < a.p.n; i++)
        assert_true(same_bits(a.p.items[i]->data, c.p.items[i]->data, a.p.items[i]->numel));
    err[0] = '\0';
    assert_false(nn_load_adamw(f, &c.opt, err, sizeof err));
    assert_non_null(strstr(err, "optimizer.step"));
    assert_int_equal(c.opt.step, 0);
    nn_st_close(f);
    model_free(&c);
    model_free(&a);
    model_free(&b);
    ag_tensor_free(x);
    unlink(path);
}

/* a tiny registry: names and shapes as given */
static void make_params(nn_params *p, int n, const char *const *names, const int64_t (*shapes)[2])
{
    nn_params_init(p);
    for (int i = 0; i < n; i++) {
        ag_tensor *t = nn_param(p, NULL, names[i], shapes[i][1] ? 2 : 1, shapes[i]);
        for (int64_t k = 0; k < t->numel; k++)
            t->data[k] = (float)(i * 100 + k);
    }
}

static void expect_load_error(const char *path, nn_params *p, const char *const *pieces, int n)
{
    char err[256] = "";
    nn_st *f = open_ok(path);
    assert_false(nn_load_params(f, p, err, sizeof err));
    for (int i = 0; i < n; i++)
        if (!strstr(err, pieces[i]))
            fail_msg("error \"%s\" lacks \"%s\"", err, pieces[i]);
    nn_st_close(f);
}

static void test_checkpoint_mismatches(void **state)
{
    (void)state;
    char path[256], err[256];
    in_scratch(path, sizeof path, "mm.safetensors");

    /* a block of another width: the first parameter's name and both shapes */
    model a, w;
    model_init(&a, 8, 1);
    model_init(&w, 12, 1);
    save(path, &a.p, &a.opt);
    expect_load_error(path, &w.p, (const char *[]){"blocks.0.sa.heads.0.key.weight", "(4, 8)", "(6, 12)"}, 3);
    nn_st *f = open_ok(path);
    err[0] = '\0';
    assert_false(nn_load_adamw(f, &w.opt, err, sizeof err));
    assert_non_null(strstr(err, "optimizer.exp_avg.blocks.0.sa.heads.0.key.weight"));
    nn_st_close(f);
    model_free(&w);
    model_free(&a);

    const char *const names[] = {"a", "b", "c"};
    const int64_t shapes[][2] = {{2, 3}, {4, 0}, {1, 0}};
    nn_params p2, p3, p1, q;
    make_params(&p2, 2, names, shapes);
    save(path, &p2, NULL);
    /* transposed shape */
    const int64_t tshapes[][2] = {{3, 2}, {4, 0}};
    make_params(&q, 2, names, tshapes);
    expect_load_error(path, &q, (const char *[]){"\"a\"", "(2, 3)", "(3, 2)"}, 3);
    /* the model has a parameter the file lacks */
    make_params(&p3, 3, names, shapes);
    expect_load_error(path, &p3, (const char *[]){"\"c\"", "missing"}, 2);
    /* the file has a tensor the model lacks */
    make_params(&p1, 1, names, shapes);
    expect_load_error(path, &p1, (const char *[]){"\"b\"", "not a parameter"}, 2);
    /* and the matching registry loads */
    nn_params_free(&q);
    make_params(&q, 2, names, shapes);
    for (int i = 0; i < q.n; i++)
        ag_fill(q.items[i], -1.0f);
    f = open_ok(path);
    assert_true(nn_load_params(f, &q, err, sizeof err));
    nn_st_close(f);
    for (int i = 0; i < q.n; i++)
        assert_true(same_bits(q.items[i]->data, p2.items[i]->data, q.items[i]->numel));

    /* optimizer steps that are not a count */
    nn_adamw opt;
    nn_adamw_init(&opt, &p2, 0.1f);
    const char *const bad_steps[] = {"", "abc", "-1", "3x", " "};
    for (size_t i = 0; i < sizeof bad_steps / sizeof *bad_steps; i++) {
        /* the optimizer's tensors as nn_st_add_adamw writes them, with a bad step */
        nn_st_writer *wr = nn_st_writer_new();
        nn_st_add_meta(wr, "optimizer.step", bad_steps[i]);
        for (int k = 0; k < p2.n; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "optimizer.exp_avg.%s", p2.items[k]->name);
            nn_st_add(wr, nm, opt.m[k], p2.items[k]->ndim, p2.items[k]->shape);
            snprintf(nm, sizeof nm, "optimizer.exp_avg_sq.%s", p2.items[k]->name);
            nn_st_add(wr, nm, opt.v[k], p2.items[k]->ndim, p2.items[k]->shape);
        }
        assert_true(nn_st_write(wr, path, err, sizeof err));
        nn_st_writer_free(wr);
        f = open_ok(path);
        err[0] = '\0';
        opt.step = 7;
        if (nn_load_adamw(f, &opt, err, sizeof err))
            fail_msg("optimizer.step \"%s\" was accepted as %lld", bad_steps[i], (long long)opt.step);
        assert_non_null(strstr(err, "optimizer.step"));
        assert_int_equal(opt.step, 7);
        nn_st_close(f);
    }
    nn_adamw_free(&opt);

    /* dtypes other than F32 are reported with the tensor's name */
    const char *hdr = "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    size_t n;
    unsigned char *img = image(hdr, NULL, 4, &n);
    spit(path, img, n);
    free(img);
    f = open_ok(path);
    float v[2] = {7, 7};
    err[0] = '\0';
    assert_false(nn_st_read(f, "w", v, AG_SHAPE(2), err, sizeof err));
    assert_non_null(strstr(err, "\"w\""));
    assert_non_null(strstr(err, "F16"));
    assert_true(v[0] == 7 && v[1] == 7);
    nn_st_close(f);
    nn_params pw;
    const char *const wn[] = {"w"};
    const int64_t ws[][2] = {{2, 0}};
    make_params(&pw, 1, wn, ws);
    expect_load_error(path, &pw, (const char *[]){"\"w\"", "F16"}, 2);

    nn_params_free(&pw);
    nn_params_free(&p1);
    nn_params_free(&p2);
    nn_params_free(&p3);
    nn_params_free(&q);
    unlink(path);
}

/* ------------------------------------------------------------------ bad files */

static void expect_open_error(const char *path, const char *piece)
{
    char err[512] = "";
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (f)
        fail_msg("%s opened", path);
    if (!strstr(err, path) || (piece && !strstr(err, piece)))
        fail_msg("error \"%s\" lacks the path %s or \"%s\"", err, path, piece ? piece : "");
}

/* reads all of f's tensors with their own shapes: must not crash, and a refusal has a message */
static void read_everything(const nn_st *f)
{
    for (int i = 0; i < nn_st_count(f); i++) {
        const char *nm = nn_st_name(f, i);
        assert_non_null(nm);
        int nd;
        int64_t shape[AG_MAX_DIMS], n = 1;
        assert_true(nn_st_shape(f, nm, &nd, shape));
        assert_true(nd >= 0 && nd <= AG_MAX_DIMS);
        for (int d = 0; d < nd; d++)
            n *= shape[d];
        assert_true(n >= 0 && n <= 1 << 20);
        float *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
        char err[256] = "";
        if (!nn_st_read(f, nm, buf, nd, shape, err, sizeof err))
            assert_true(err[0] != '\0');
        free(buf);
    }
}

static void test_bad_files(void **state)
{
    (void)state;
    char path[256];
    /* missing */
    in_scratch(path, sizeof path, "does-not-exist.safetensors");
    expect_open_error(path, "No such file");
    char err[512] = "";
    assert_null(nn_st_open("/nonexistent-dir/x.safetensors", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir/x.safetensors"));
    /* a directory */
    expect_open_error(scratch, NULL);
    /* empty, 7 bytes */
    in_scratch(path, sizeof path, "short.safetensors");
    spit(path, "", 0);
    expect_open_error(path, "0 bytes");
    spit(path, "\x08\0\0\0\0\0\0", 7);
    expect_open_error(path, "7 bytes");
    /* header length beyond the file: 8 + 100 > 18; and 2^63 */
    spit(path, "\x64\0\0\0\0\0\0\0{}        ", 18);
    expect_open_error(path, "100");
    spit(path, "\0\0\0\0\0\0\0\x80{}      ", 16);
    expect_open_error(path, "header length");
    spit(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}      ", 16);
    expect_open_error(path, "header length");

    /* a valid file cut at every length: each prefix fails with a message or
     * (the whole file) reads back exactly */
    char full[256];
    in_scratch(full, sizeof full, "full.safetensors");
    float vals[N_SPECS][24];
    nn_st_writer *w = example_writer(vals);
    assert_true(nn_st_write(w, full, err, sizeof err));
    nn_st_writer_free(w);
    size_t len;
    unsigned char *bytes = slurp(full, &len);
    int ok_count = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        unsigned char *b = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees overreads */
        memcpy(b, bytes, cut);
        err[0] = '\0';
        nn_st *f = nn_st_parse(b, cut, err, sizeof err);
        free(b);
        if (f) {
            check_example(f);
            ok_count++;
            nn_st_close(f);
        } else if (!err[0])
            fail_msg("prefix of %zu bytes failed without a message", cut);
    }
    assert_int_equal(ok_count, 1); /* the empty tensor is not last in the data */
    /* and through files on disk, with the path in the message */
    const size_t cuts[] = {3, 8, 20, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        spit(path, bytes, cuts[i]);
        expect_open_error(path, NULL);
    }
    free(bytes);
    unlink(full);
    unlink(path);
}

typedef struct {
    const char *header;
    size_t dlen;
    const char *piece; /* the error message holds this */
    size_t extra;      /* header bytes after its first NUL */
} bad_header;

static void test_corrupt_headers(void **state)
{
    (void)state;
#define T(dt, sh, off) "{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":" off "}"
#define OK T("F32", "[1]", "[0,4]")
    static const bad_header cases[] = {
        {"", 4, "JSON", 0},
        {"   ", 4, "JSON", 0},
        {"[]", 4, "expected '{'", 0},
        {"{\"a\":" OK, 4, "expected '}'", 0},                  /* missing closing brace */
        {"{\"a\":" OK "}}", 4, "trailing", 0},
        {"{\"a\":" OK "}x", 4, "trailing", 0},                 /* trailing garbage */
        {"{\"a\":" OK "}\0", 4, "trailing", 1},
        {"{\"a\" " OK "}", 4, "expected ':'", 0},
        {"{\"a\":" OK " \"b\":" OK "}", 8, "expected '}'", 0}, /* missing comma */
        {"{\"a\":" OK ",}", 4, "JSON", 0},
        {"{\"a\":\"dtype\"}", 4, "expected '{'", 0},
        {"{\"a", 4, "unterminated", 0},
        {"{\"a\\", 4, "unterminated", 0},
        {"{\"a\\q\":" OK "}", 4, "escape", 0},                 /* bad escape */
        {"{\"a\\u00g0\":" OK "}", 4, "escape", 0},
        {"{\"a\\u12\":" OK "}", 4, "escape", 0},
        {"{\"a\\ud800\":" OK "}", 4, "escape", 0},             /* lone high surrogate */
        {"{\"a\\ud800\\u0041\":" OK "}", 4, "escape", 0},
        {"{\"a\\udc00\":" OK "}", 4, "escape", 0},             /* lone low surrogate */
        {"{\"a\\u0000\":" OK "}", 4, "escape", 0},             /* NUL */
        {"{\"a\x01\":" OK "}", 4, "control", 0},               /* raw control characters */
        {"{\"a\nb\":" OK "}", 4, "control", 0},
        {"{\"a\":" T("F32", "[1e0]", "[0,4]") "}", 4, "integer", 0}, /* exponent */
        {"{\"a\":" T("F32", "[1.0]", "[0,4]") "}", 4, "integer", 0},
        {"{\"a\":" T("F32", "[1]", "[0,4E0]") "}", 4, "integer", 0},
        {"{\"a\":" T("F32", "[-1]", "[0,4]") "}", 4, "non-negative", 0},
        {"{\"a\":" T("F32", "[1]", "[0,-4]") "}", 4, "non-negative", 0},
        {"{\"a\":" T("F32", "[\"1\"]", "[0,4]") "}", 4, "integer", 0},
        {"{\"a\":" T("F32", "[1,]", "[0,4]") "}", 4, "integer", 0},
        {"{\"a\":" T("F32", "[99999999999999999999999]", "[0,4]") "}", 4, "too large", 0},
        {"{\"a\":" T("F32", "[2147483648]", "[0,4]") "}", 4, "too large", 0},
        {"{\"a\":" T("F32", "[1,1,1,1,1,1,1]", "[0,4]") "}", 4, "longer than 6", 0},
        {"{\"a\":" T("F32", "1", "[0,4]") "}", 4, "expected '['", 0},
        {"{\"a\":" T("F32", "[1]", "[0,4,8]") "}", 4, "longer than 2", 0},
        {"{\"a\":" T("F32", "[1]", "[4]") "}", 4, "2 numbers", 0},
        {"{\"a\":" T("F32", "[1]", "[]") "}", 4, "2 numbers", 0},
        {"{\"a\":" T("F32F32F32F32F32F32", "[1]", "[0,4]") "}", 4, "too long", 0},
        {"{\"a\":" T("Q7", "[1]", "[0,4]") "}", 4, "unknown dtype", 0},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[[[[[[[1]]]]]]]}}", 4, "deep", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":}}", 4, "JSON", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[1 2]}}", 4, "JSON", 0},
        {"{\"__metadata__\":{\"k\":1}}", 0, "expected '\"'", 0},   /* metadata values are strings */
        {"{\"__metadata__\":{\"k\":\"v\"}", 0, "expected '}'", 0},
        {"{\"__metadata__\":[]}", 0, "expected '{'", 0},
        /* data_offsets out of range or inconsistent with the shape */
        {"{\"a\":" T("F32", "[1]", "[0,8]") "}", 4, "outside", 0},
        {"{\"a\":" T("F32", "[1]", "[4,0]") "}", 4, "outside", 0},
        {"{\"a\":" T("F32", "[1]", "[8,12]") "}", 4, "outside", 0},
        {"{\"a\":" T("F32", "[1]", "[18446744073709551615,18446744073709551615]") "}", 4, "too large", 0},
        {"{\"a\":" T("F32", "[2]", "[0,4]") "}", 8, "4 data bytes for 2 elements", 0},
        {"{\"a\":" T("F32", "[1]", "[0,8]") "}", 8, "8 data bytes for 1 elements", 0},
        {"{\"a\":" T("F32", "[0]", "[0,4]") "}", 4, "4 data bytes for 0 elements", 0},
        {"{\"a\":" T("F16", "[3]", "[0,4]") "}", 4, "4 data bytes for 3 elements of F16", 0},
        /* shapes whose element count overflows 64 bits: 2^30 * 2^30 * 16 = 2^64 */
        {"{\"a\":" T("F32", "[1073741824,1073741824,16]", "[0,0]") "}", 4, "elements", 0},
        {"{\"a\":" T("U8", "[65536,65536,65536,65536,2,3]", "[0,0]") "}", 4, "elements", 0},
        /* duplicate names */
        {"{\"a\":" OK ",\"a\":" OK "}", 4, "twice", 0},
        {"{\"a\":" OK ",\"b\":" OK ",\"\\u0061\":" OK "}", 4, "\"a\" appears twice", 0},
    };
#undef OK
#undef T
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* the header as given, incl. an embedded NUL in one case */
        size_t hl = strlen(cases[i].header) + cases[i].extra;
        size_t n = 8 + hl + cases[i].dlen;
        unsigned char *img = malloc(n);
        for (int k = 0; k < 8; k++)
            img[k] = (unsigned char)((uint64_t)hl >> (8 * k));
        memcpy(img + 8, cases[i].header, hl);
        memset(img + 8 + hl, 0, cases[i].dlen);
        char err[512] = "";
        nn_st *f = nn_st_parse(img, n, err, sizeof err);
        free(img);
        if (f) {
            nn_st_close(f);
            fail_msg("case %zu (%s) parsed", i, cases[i].header);
        }
        if (!strstr(err, cases[i].piece))
            fail_msg("case %zu (%s): error \"%s\" lacks \"%s\"", i, cases[i].header, err, cases[i].piece);
    }

    /* the error's byte position points at the problem */
    const char *hdr = "{\"a\" {}}";
    size_t n;
    unsigned char *img = image(hdr, NULL, 0, &n);
    char err[256] = "";
    assert_null(nn_st_parse(img, n, err, sizeof err));
    free(img);
    if (!strstr(err, "at byte 5"))
        fail_msg("error \"%s\" does not point at byte 5", err);

    /* empty and 0-dim tensors and tolerated oddities still parse */
    hdr = "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
          "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
          "\"__metadata__\":{}}";
    img = image(hdr, NULL, 4, &n);
    nn_st *f = nn_st_parse(img, n, err, sizeof err);
    free(img);
    if (!f)
        fail_msg("%s", err);
    assert_int_equal(nn_st_count(f), 2);
    float e[1] = {5};
    assert_true(nn_st_read(f, "e", e, AG_SHAPE(0, 5), err, sizeof err));
    assert_true(e[0] == 5); /* nothing written */
    nn_st_close(f);
    /* the empty header "{}" */
    img = image("{}      ", NULL, 0, &n);
    f = nn_st_parse(img, n, err, sizeof err);
    free(img);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), 0);
    nn_st_close(f);
}

/* Random byte changes in a valid file: parse either fails with a message or
 * gives tensors that read without crashing (ASan and UBSan check the rest). */
static void test_random_flips(void **state)
{
    (void)state;
    char full[256], err[512];
    in_scratch(full, sizeof full, "flip.safetensors");
    float vals[N_SPECS][24];
    nn_st_writer *w = example_writer(vals);
    assert_true(nn_st_write(w, full, err, sizeof err));
    nn_st_writer_free(w);
    size_t len;
    unsigned char *bytes = slurp(full, &len);
    unlink(full);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++)
        hlen |= (uint64_t)bytes[i] << (8 * i);
    ag_rng r = ag_rng_new(2024);
    int parsed = 0, failed = 0;
    static const unsigned char interesting[] = {'{', '}', '[', ']', '"', '\\', ',', ':', '0', '9', 'e', 'u', 0, 0xff};
    for (int it = 0; it < 4000; it++) {
        unsigned char *b = malloc(len);
        memcpy(b, bytes, len);
        int flips = 1 + (int)(ag_rng_next(&r) % 4);
        for (int k = 0; k < flips; k++) {
            uint64_t u = ag_rng_next(&r);
            /* mostly in the length and header, where the parsing is */
            size_t at = (u & 3) ? (size_t)((u >> 8) % (8 + hlen)) : (size_t)((u >> 8) % len);
            switch ((u >> 2) & 3) {
            case 0: b[at] ^= (unsigned char)(1u << ((u >> 40) & 7)); break;
            case 1: b[at] = (unsigned char)(u >> 48); break;
            default: b[at] = interesting[(u >> 48) % sizeof interesting]; break;
            }
        }
        err[0] = '\0';
        nn_st *f = nn_st_parse(b, len, err, sizeof err);
        free(b);
        if (f) {
            parsed++;
            read_everything(f);
            nn_st_close(f);
        } else {
            failed++;
            if (!err[0])
                fail_msg("iteration %d failed without a message", it);
        }
    }
    print_message("byte flips: %d parsed, %d rejected\n", parsed, failed);
    assert_true(parsed > 0 && failed > 0);
    free(bytes);
}

/* ------------------------------------------------------------------ atomic writes */

/* the checkpoint at path still holds "v" = {value} */
static void assert_intact(const char *path, float value)
{
    char err[512];
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("previous checkpoint lost: %s", err);
    float v[4] = {0};
    assert_true(nn_st_read(f, "v", v, AG_SHAPE(4), err, sizeof err));
    for (int i = 0; i < 4; i++)
        assert_true(v[i] == value);
    nn_st_close(f);
}

static bool write_v(const char *path, float value, int64_t extra, char *err, size_t errlen)
{
    float v[4] = {value, value, value, value};
    float *big = extra ? calloc((size_t)extra, sizeof *big) : NULL;
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add(w, "v", v, AG_SHAPE(4));
    if (big)
        nn_st_add(w, "big", big, AG_SHAPE(extra));
    err[0] = '\0';
    bool ok = nn_st_write(w, path, err, errlen);
    nn_st_writer_free(w);
    free(big);
    if (!ok && !err[0])
        fail_msg("nn_st_write failed without a message");
    return ok;
}

static void test_atomic_write(void **state)
{
    (void)state;
    char dir[256], path[300], tmp[310], err[512];
    in_scratch(dir, sizeof dir, "atomic");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_true(write_v(path, 1.0f, 0, err, sizeof err));
    assert_false(exists(tmp));
    assert_intact(path, 1.0f);

    /* into a directory that does not exist */
    char nodir[320];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/ckpt.safetensors", dir);
    assert_false(write_v(nodir, 2.0f, 0, err, sizeof err));
    assert_non_null(strstr(err, "no/such/dir/ckpt.safetensors"));
    assert_int_equal(count_suffix(dir, ".tmp"), 0);

    /* path + ".tmp" cannot be created (it is a directory): the call fails,
     * the previous checkpoint stands, and the directory is not touched */
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_false(write_v(path, 3.0f, 0, err, sizeof err));
    assert_non_null(strstr(err, tmp));
    assert_intact(path, 1.0f);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(tmp), 0);

    /* the rename fails (path is a non-empty directory): the .tmp goes away */
    char isdir[320], inner[340], isdir_tmp[330];
    snprintf(isdir, sizeof isdir, "%s/isdir", dir);
    snprintf(inner, sizeof inner, "%s/keep", isdir);
    snprintf(isdir_tmp, sizeof isdir_tmp, "%s.tmp", isdir);
    assert_int_equal(mkdir(isdir, 0700), 0);
    spit(inner, "x", 1);
    assert_false(write_v(isdir, 4.0f, 0, err, sizeof err));
    assert_non_null(strstr(err, isdir));
    assert_false(exists(isdir_tmp));
    assert_true(exists(inner));
    assert_int_equal(count_suffix(dir, ".tmp"), 0);

    /* a full disk, simulated with a file size limit: the data does not fit,
     * the write fails part way, and the partial .tmp is removed */
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur > 1 << 20) {
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of the signal */
        struct rlimit lim = old;
        lim.rlim_cur = 64 << 10;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
        bool ok = write_v(path, 5.0f, 1 << 18, err, sizeof err); /* 1 MiB of data */
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, prev);
        assert_false(ok);
        assert_non_null(strstr(err, tmp));
        assert_false(exists(tmp));
        assert_intact(path, 1.0f);
    } else
        print_message("file size limit already below 1 MiB: full-disk case skipped\n");

    /* a read-only directory. root writes there anyway (chmod does not stop
     * it), so as root this part is skipped. */
    char ro[320], ro_path[340], ro_tmp[350];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    snprintf(ro_path, sizeof ro_path, "%s/ckpt.safetensors", ro);
    snprintf(ro_tmp, sizeof ro_tmp, "%s.tmp", ro_path);
    assert_int_equal(mkdir(ro, 0700), 0);
    assert_true(write_v(ro_path, 6.0f, 0, err, sizeof err));
    if (geteuid() != 0) {
        assert_int_equal(chmod(ro, 0500), 0);
        assert_false(write_v(ro_path, 7.0f, 0, err, sizeof err));
        assert_non_null(strstr(err, ro_tmp));
        assert_int_equal(chmod(ro, 0700), 0);
        assert_false(exists(ro_tmp));
        assert_intact(ro_path, 6.0f);
    } else
        print_message("running as root: read-only directory case skipped\n");

    /* a good write after all that replaces the checkpoint with a new file
     * (renamed over it: a new inode, not the old one rewritten in place),
     * also when a stale .tmp from a crashed run is in the way */
    spit(tmp, "stale", 5);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    assert_true(write_v(path, 8.0f, 0, err, sizeof err));
    assert_int_equal(stat(path, &after), 0);
    assert_true(before.st_ino != after.st_ino);
    assert_intact(path, 8.0f);
    assert_false(exists(tmp));
    assert_int_equal(count_suffix(dir, ".tmp"), 0);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_checkpoint_mismatches),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_random_flips),
        cmocka_unit_test(test_atomic_write),
    };
    return cmocka_run_group_tests(tests, setup_scratch, teardown_scratch);
}
