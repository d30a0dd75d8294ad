/* test_checkpoint_bad.c - bad safetensors files (missing, short, truncated
 * at every length, corrupt JSON, bad offsets, random byte flips) fail with a
 * message and never crash. */
#include "checkpoint_util.h"

/* ------------------------------------------------------------------ bad files */

/* s matches p, where each '?' in p stands for one character */
static bool wildmatch_simple(const char *p, const char *s)
{
    for (; *p && *s; p++, s++)
        if (*p != '?' && *p != *s)
            return false;
    return !*p && !*s;
}

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
    /* a directory, and a device that never ends: each says what it is */
    expect_open_error(scratch, "it is a directory, not a file");
    expect_open_error("/dev/zero", "cannot read /dev/zero: it is a device, not a file");
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
    int extra;         /* header bytes after its first NUL; -1: the file is fine */
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
        {"{\"a\":" T("F32", "[1]", "[0,8]") "}", 8, "8 data bytes for 1 element of F32", 0},
        {"{\"a\":" T("F32", "[0]", "[0,4]") "}", 4, "4 data bytes for 0 elements", 0},
        {"{\"a\":" T("F16", "[3]", "[0,4]") "}", 4, "4 data bytes for 3 elements of F16", 0},
        /* shapes whose element count overflows 64 bits: 2^30 * 2^30 * 16 = 2^64 */
        {"{\"a\":" T("F32", "[1073741824,1073741824,16]", "[0,0]") "}", 4, "elements", 0},
        {"{\"a\":" T("U8", "[65536,65536,65536,65536,2,3]", "[0,0]") "}", 4, "elements", 0},
        /* the data must be tiled exactly: no overlap, no gap, nothing after */
        {"{\"a\":" OK ",\"b\":" T("F32", "[1]", "[2,6]") "}", 6,
         "tensors \"a\" [0, 4) and \"b\" [2, 6) overlap in the data", 0},
        {"{\"a\":" OK ",\"b\":" OK "}", 4, "tensors \"a\" [0, 4) and \"b\" [0, 4) overlap", 0},
        {"{\"b\":" T("F32", "[2]", "[0,8]") ",\"e\":" T("F32", "[0]", "[4,4]") "}", 8,
         "tensors \"b\" [0, 8) and \"e\" [4, 4) overlap", 0},            /* empty, inside b */
        {"{\"a\":" OK ",\"b\":" T("F32", "[1]", "[8,12]") "}", 12,
         "a gap of 4 unused data bytes at offset 4, before tensor \"b\"", 0},
        {"{\"a\":" T("F32", "[1]", "[4,8]") "}", 8,
         "a gap of 4 unused data bytes at offset 0, before tensor \"a\"", 0},
        {"{\"a\":" OK "}", 5, "1 trailing bytes after the tensor data (it ends at 4 of 5", 0},
        {"{\"a\":" OK "}", 12, "8 trailing bytes after the tensor data", 0},
        {"{}", 4, "4 trailing bytes after the tensor data (it ends at 0 of 4", 0},
        {"{\"__metadata__\":{\"k\":\"v\"}}", 1, "1 trailing bytes", 0},
        /* a checksum that is not 8 hex digits, or that the data does not have */
        {"{\"__metadata__\":{\"crc32c\":\"\"},\"a\":" OK "}", 4, "\"crc32c\" is \"\", not 8 hex", 0},
        {"{\"__metadata__\":{\"crc32c\":\"1234567\"},\"a\":" OK "}", 4, "not 8 hex digits", 0},
        {"{\"__metadata__\":{\"crc32c\":\"123456789\"},\"a\":" OK "}", 4, "not 8 hex digits", 0},
        {"{\"__metadata__\":{\"crc32c\":\"0x123456\"},\"a\":" OK "}", 4, "not 8 hex digits", 0},
        {"{\"__metadata__\":{\"crc32c\":\"4865a1gf\"},\"a\":" OK "}", 4, "not 8 hex digits", 0},
        {"{\"__metadata__\":{\"crc32c\":\"48674bc6\"},\"a\":" OK "}", 4,
         "the data's CRC-32C is 48674bc7 but the header says 48674bc6: the file is corrupt", 0},
        {"{\"__metadata__\":{\"crc32c\":\"00000000\"}}", 0, "", -1}, /* fine: no data, CRC 0 */
        {"{\"__metadata__\":{\"crc32c\":\"48674BC7\"},\"a\":" OK "}", 4, "", -1}, /* fine */
        /* duplicate names */
        {"{\"a\":" OK ",\"a\":" OK "}", 4, "twice", 0},
        {"{\"a\":" OK ",\"b\":" OK ",\"\\u0061\":" OK "}", 4, "\"a\" appears twice", 0},
    };
#undef OK
#undef T
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* the header as given, incl. an embedded NUL in one case */
        size_t hl = strlen(cases[i].header) + (size_t)(cases[i].extra > 0 ? cases[i].extra : 0);
        size_t n = 8 + hl + cases[i].dlen;
        unsigned char *img = malloc(n);
        for (int k = 0; k < 8; k++)
            img[k] = (unsigned char)((uint64_t)hl >> (8 * k));
        memcpy(img + 8, cases[i].header, hl);
        memset(img + 8 + hl, 0, cases[i].dlen);
        char err[512] = "";
        nn_st *f = nn_st_parse(img, n, err, sizeof err);
        free(img);
        if (cases[i].extra < 0) { /* a valid file among the bad, to show the checks pass it */
            if (!f)
                fail_msg("case %zu (%s) was refused: %s", i, cases[i].header, err);
            nn_st_close(f);
            continue;
        }
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

/* Every single-bit change in the data of a written file is reported by the
 * checksum, naming both values; the same file without its "crc32c" (as
 * PyTorch writes them) still loads. */
static void test_every_data_bit_flip(void **state)
{
    (void)state;
    char full[256], err[512];
    in_scratch(full, sizeof full, "crc.safetensors");
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
    size_t data0 = 8 + (size_t)hlen;
    assert_true(len > data0 + 100);
    for (size_t at = data0; at < len; at++)
        for (int bit = 0; bit < 8; bit++) {
            bytes[at] ^= (unsigned char)(1u << bit);
            err[0] = '\0';
            nn_st *f = nn_st_parse(bytes, len, err, sizeof err);
            bytes[at] ^= (unsigned char)(1u << bit);
            if (f) {
                nn_st_close(f);
                fail_msg("bit %d of data byte %zu flipped: the file still parsed", bit, at - data0);
            }
            if (!wildmatch_simple("the data's CRC-32C is ???????? but the header says ????????: the "
                                  "file is corrupt (changed after it was written)", err))
                fail_msg("bit %d of data byte %zu: \"%s\"", bit, at - data0, err);
        }
    /* a changed checksum is reported the same way */
    char *h = (char *)bytes + 8, *c = NULL;
    for (size_t i = 0; i + 9 < hlen && !c; i++)
        if (memcmp(h + i, "\"crc32c\":\"", 10) == 0)
            c = h + i + 10;
    assert_non_null(c);
    char saved = c[3];
    c[3] = c[3] == '0' ? '1' : '0';
    assert_null(nn_st_parse(bytes, len, err, sizeof err));
    assert_non_null(strstr(err, "CRC-32C"));
    c[3] = saved;
    /* without the key the checksum is not asked for: "crc32c" renamed "crc32x" */
    c[-4] = 'x';
    nn_st *f = nn_st_parse(bytes, len, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    check_example(f);
    nn_st_close(f);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_corrupt_headers),
        cmocka_unit_test(test_every_data_bit_flip),
        cmocka_unit_test(test_random_flips),
    };
    return cmocka_run_group_tests(tests, setup_scratch, teardown_scratch);
}
