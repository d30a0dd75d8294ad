/* test_checkpoint_format.c - safetensors files: the writer and the reader
 * agree bit for bit (odd names, metadata, special floats, empty and 0-dim
 * tensors), and the bytes are the safetensors format (the header is strict
 * JSON, offsets are contiguous and aligned); the UTF-8 encoder its strings use. */
#include "checkpoint_util.h"

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

    /* no tensors, no metadata of the caller's: only the checksum's */
    w = nn_st_writer_new();
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    f = nn_st_open(path, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(nn_st_count(f), 0);
    nn_st_close(f);
    assert_int_equal(count_containing(scratch, ".tmp"), 0);
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

/* nn_utf8_encode at each length's first and last code point, byte for byte. */
static void test_utf8_encode(void **state)
{
    (void)state;
    const struct {
        uint32_t cp;
        const char *bytes;
    } cases[] = {
        {0x01, "\x01"},
        {0x7F, "\x7f"},
        {0x80, "\xc2\x80"},
        {0xE9, "\xc3\xa9"},
        {0x7FF, "\xdf\xbf"},
        {0x800, "\xe0\xa0\x80"},
        {0xFFFF, "\xef\xbf\xbf"},
        {0x10000, "\xf0\x90\x80\x80"},
        {0x1F600, "\xf0\x9f\x98\x80"},
        {0x10FFFF, "\xf4\x8f\xbf\xbf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[4] = {0};
        int n = nn_utf8_encode(cases[i].cp, out);
        if (n != (int)strlen(cases[i].bytes) || memcmp(out, cases[i].bytes, (size_t)n) != 0)
            fail_msg("U+%04X: %d bytes %02x %02x %02x %02x", (unsigned)cases[i].cp, n,
                     (unsigned char)out[0], (unsigned char)out[1], (unsigned char)out[2],
                     (unsigned char)out[3]);
    }
}

/* CRC-32C: the standard check value, a long buffer in one call (the SSE4.2
 * path where the CPU has it) against the same in short pieces (the table),
 * and the writer's "crc32c" is the checksum of the data it wrote. */
static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(nn_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(nn_crc32c(0, "", 0), 0);
    assert_int_equal(nn_crc32c(0, "\0\0\0\0", 4), 0x48674BC7u);
    unsigned char buf[3001];
    ag_rng r = ag_rng_new(5);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)ag_rng_next(&r);
    /* a bit-by-bit reference: the definition, slowly */
    uint32_t ref = 0xFFFFFFFFu;
    for (size_t i = 0; i < sizeof buf; i++) {
        ref ^= buf[i];
        for (int k = 0; k < 8; k++)
            ref = ref & 1 ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
    }
    ref = ~ref;
    for (size_t off = 0; off < 8; off++) { /* unaligned starts */
        uint32_t whole = nn_crc32c(0, buf + off, sizeof buf - off);
        uint32_t pieces = 0;
        for (size_t i = off, step = 1; i < sizeof buf; i += step, step = step % 61 + 1)
            pieces = nn_crc32c(pieces, buf + i, i + step <= sizeof buf ? step : sizeof buf - i);
        assert_int_equal(whole, pieces);
        if (off == 0)
            assert_int_equal(whole, ref);
    }

    char path[256], err[256];
    in_scratch(path, sizeof path, "crc.safetensors");
    const float a[] = {1.0f, -2.0f, 3.5f};
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add(w, "a", a, AG_SHAPE(3));
    assert_true(nn_st_write(w, path, err, sizeof err));
    size_t len;
    unsigned char *f = slurp(path, &len);
    char want[64];
    snprintf(want, sizeof want, "\"crc32c\":\"%08x\"", nn_crc32c(0, f + len - 12, 12));
    if (!contains((const char *)f + 8, len - 8 - 12, want))
        fail_msg("header lacks %s: %.*s", want, (int)(len - 20), (const char *)f + 8);
    free(f);
    nn_st *st = nn_st_open(path, err, sizeof err);
    assert_non_null(st);
    assert_non_null(nn_st_meta(st, "crc32c"));
    nn_st_close(st);
    /* the key is the writer's own */
    nn_st_add_meta(w, "crc32c", "00000000");
    err[0] = '\0';
    assert_false(nn_st_write(w, path, err, sizeof err));
    assert_non_null(strstr(err, "\"crc32c\" is the writer's own"));
    nn_st_writer_free(w);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_utf8_encode),
        cmocka_unit_test(test_crc32c),
    };
    return cmocka_run_group_tests(tests, setup_scratch, teardown_scratch);
}
