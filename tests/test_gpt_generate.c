/* test_gpt_generate.c - the model's three forwards agree: one position at a
 * time through the key/value cache, and the last position only, give
 * gpt_forward's rows. And sampling from
 * tests/fixtures/gpt_tiny.safetensors (block size 8): the text for fixed
 * seeds is byte for byte what tests/fixtures/generate_tiny.txt recorded,
 * through the cache, past the block size (the sliding window) and with
 * gpt.py's recompute. */
#include "test_util.h"

#include <stdlib.h>

#include "generate.h"

static const char *fixture_dir = "tests/fixtures";
static bool record; /* argv[2] "--record": rewrite the expected text instead of comparing */

/* The fixture has no vocabulary; any 13 sorted code points do. */
static const char *vocab_text = " abcdefghijk\xc3\xa9";

static int64_t meta_int(const nn_st *f, const char *key)
{
    const char *v = nn_st_meta(f, key);
    assert_non_null(v);
    return strtoll(v, NULL, 10);
}

/* The model of the fixture, its weights loaded, dropout off. */
static void load_tiny(gpt_model *m, gpt_vocab *v)
{
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/gpt_tiny.safetensors", fixture_dir);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    gpt_config cfg = {.vocab_size = meta_int(f, "vocab_size"), .block_size = meta_int(f, "block_size"),
                      .n_embd = meta_int(f, "n_embd"), .n_head = (int)meta_int(f, "n_head"),
                      .n_layer = (int)meta_int(f, "n_layer"), .dropout = 0.0f};
    assert_true(gpt_init(m, &cfg, 0, err, sizeof err));
    for (int i = 0; i < m->params.n; i++) {
        ag_tensor *p = m->params.items[i];
        if (!nn_st_read(f, p->name, p->data, p->ndim, p->shape, err, sizeof err))
            fail_msg("%s", err);
    }
    nn_st_close(f);
    if (v) {
        if (!vocab_from_utf8(v, vocab_text, err, sizeof err))
            fail_msg("%s", err);
        assert_int_equal(v->size, cfg.vocab_size);
    }
}

/* ------------------------------------------------------------ the three forwards agree */

/* Rows of got (B, 1, C) against row t of want (B, T, C). */
static void assert_row(const ag_tensor *got, const ag_tensor *want, int64_t t)
{
    int64_t B = want->shape[0], T = want->shape[1], C = want->shape[2];
    assert_shape(got, B, 1, C);
    for (int64_t b = 0; b < B; b++)
        assert_close(got->data + b * C, want->data + (b * T + t) * C, C, 1e-5);
}

/* The model's logits: gpt_forward_cached token by token and gpt_forward_last
 * on every prefix give gpt_forward's rows. */
static void test_gpt_cached_and_last_match_full(void **state)
{
    (void)state;
    gpt_model m;
    load_tiny(&m, NULL);
    const int64_t T = m.cfg.block_size;
    int32_t toks[] = {3, 0, 12, 7, 7, 1, 9, 4};
    assert_int_equal(T, sizeof toks / sizeof *toks);
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    ag_tensor *full = gpt_forward(c, &m, ag_index_new(c, toks, AG_SHAPE(1, T)), NULL, false, NULL);
    gpt_kv_cache kc;
    assert_true(gpt_kv_cache_init(&kc, &m));
    for (int64_t t = 0; t < T; t++) {
        assert_row(gpt_forward_cached(c, &m, &kc, toks[t]), full, t);
        assert_row(gpt_forward_last(c, &m, ag_index_new(c, toks, AG_SHAPE(1, t + 1))), full, t);
    }
    assert_ag_error(gpt_forward_cached(c, &m, &kc, 0), "block_size 8 positions already");
    gpt_kv_cache_free(&kc);
    ag_ctx_free(c);
    gpt_free(&m);
}

/* ------------------------------------------------------------ sampled text */

typedef struct {
    const char *name, *prompt;
    int64_t tokens;
    float temperature;
    int64_t top_k;
    uint64_t seed;
    bool no_kv_cache;
} gen_case;

static const gen_case cases[] = {
    {"short", "a", 5, 1.0f, 0, 1, false},              /* within the block: the cache only */
    {"slide", "a", 40, 1.0f, 0, 2, false},             /* past the block: cache, then window */
    {"slide-recompute", "a", 40, 1.0f, 0, 2, true},    /* gpt.py's way: the same text */
    {"full-prompt", "abcdefgh", 12, 1.0f, 0, 3, false}, /* a prompt of exactly block size */
    {"long-prompt", "kjihgfedcba\xc3\xa9", 20, 1.0f, 0, 4, false}, /* cropped to the block */
    {"cool-top-k", "\xc3\xa9", 40, 0.5f, 4, 5, false},
    {"hot", " ", 40, 2.0f, 0, 6, false},
    {"greedy", "b", 30, 1.0f, 1, 7, false},
    {"greedy-recompute", "b", 30, 1.0f, 1, 7, true},
};
enum { N_CASES = sizeof cases / sizeof *cases };

/* The text gpt_generate writes for case k (malloc'd). */
static char *sample(const gpt_model *m, const gpt_vocab *v, const gen_case *k)
{
    uint32_t *cp;
    int64_t n;
    char err[256];
    if (!utf8_decode((const unsigned char *)k->prompt, strlen(k->prompt), &cp, &n, err, sizeof err))
        fail_msg("%s", err);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int64_t i = 0; i < n; i++) {
        tok[i] = vocab_find(v, cp[i]);
        assert_true(tok[i] >= 0);
    }
    gpt_sample_opts o = {.max_new_tokens = k->tokens, .temperature = k->temperature,
                         .top_k = k->top_k, .rng = ag_rng_new(k->seed),
                         .no_kv_cache = k->no_kv_cache};
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(gpt_generate(m, v, tok, n, &o, out), k->tokens);
    fclose(out);
    free(tok);
    free(cp);
    return text;
}

/* The text of case name's line, name: "text", in the fixture (quoted: the
 * text may end in a space), or NULL. */
static const char *expected(const char *fixture, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = fixture; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, name, nl) && !strncmp(p + nl, ": \"", 3)) {
            const char *s = p + nl + 3, *e = strchr(s, '\n');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (n == 0 || s[n - 1] != '"')
                return NULL;
            *len = n - 1;
            return s;
        }
    }
    return NULL;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, got, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

static void test_sampled_text_is_unchanged(void **state)
{
    (void)state;
    gpt_model m;
    gpt_vocab v;
    load_tiny(&m, &v);
    char path[512];
    snprintf(path, sizeof path, "%s/generate_tiny.txt", fixture_dir);
    char *got[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        got[i] = sample(&m, &v, &cases[i]);
    if (record) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fprintf(f, "# gpt_generate on gpt_tiny.safetensors (vocabulary \"%s\"), one thread;\n"
                   "# tests/test_gpt_generate.c lists each case's prompt, length, temperature, top-k, seed.\n",
                vocab_text);
        for (int i = 0; i < N_CASES; i++)
            fprintf(f, "%s: \"%s\"\n", cases[i].name, got[i]);
        fclose(f);
        print_message("wrote %s\n", path);
    }
    char *fixture = read_all(path);
    for (int i = 0; i < N_CASES; i++) {
        size_t len = 0;
        const char *want = expected(fixture, cases[i].name, &len);
        if (!want)
            fail_msg("%s has no line for case %s", path, cases[i].name);
        if (strlen(got[i]) != len || memcmp(got[i], want, len))
            fail_msg("case %s: sampled \"%s\", the fixture has \"%.*s\"", cases[i].name, got[i],
                     (int)len, want);
    }
    /* the cache and the recompute are the same function */
    assert_string_equal(got[1], got[2]);
    assert_string_equal(got[7], got[8]);
    for (int i = 0; i < N_CASES; i++)
        free(got[i]);
    free(fixture);
    vocab_free(&v);
    gpt_free(&m);
}

/* --temperature 0 is greedy: the most likely character every time, which
 * is what top-k 1 draws, whatever the seed, through the cache or not. */
static void test_temperature_zero_is_greedy(void **state)
{
    (void)state;
    gpt_model m;
    gpt_vocab v;
    load_tiny(&m, &v);
    const gen_case top1 = {"top-1", "b", 30, 1.0f, 1, 7, false};
    char *want = sample(&m, &v, &top1);
    const gen_case zero[] = {
        {"t0", "b", 30, 0.0f, 0, 7, false},
        {"t0-seed", "b", 30, 0.0f, 0, 12345, false},
        {"t0-recompute", "b", 30, 0.0f, 0, 8, true},
        {"t0-top-k", "b", 30, 0.0f, 5, 9, false}, /* top-k changes nothing then */
    };
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++) {
        char *got = sample(&m, &v, &zero[i]);
        if (strcmp(got, want) != 0)
            fail_msg("%s: \"%s\", top-k 1 gives \"%s\"", zero[i].name, got, want);
        free(got);
    }
    /* and it is the argmax of the logits: the first character after "b" */
    ag_ctx *c = ag_ctx_new();
    ag_set_grad_enabled(c, false);
    int32_t b = (int32_t)vocab_find(&v, 'b');
    ag_tensor *lg = gpt_forward(c, &m, ag_index_new(c, &b, AG_SHAPE(1, 1)), NULL, false, NULL);
    int64_t best = 0;
    for (int64_t i = 1; i < v.size; i++)
        if (lg->data[i] > lg->data[best])
            best = i;
    char first[4];
    int nb = nn_utf8_encode(v.chars[best], first);
    assert_memory_equal(want, first, (size_t)nb);
    ag_ctx_free(c);
    free(want);

    /* logits that are not finite stop the text (the caller reports it): none drawn */
    nn_params_find(&m.params, "lm_head.bias")->data[2] = INFINITY;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    gpt_sample_opts o = {.max_new_tokens = 10, .temperature = 1.0f, .rng = ag_rng_new(1)};
    assert_int_equal(gpt_generate(&m, &v, &b, 1, &o, out), 0);
    fclose(out);
    assert_int_equal(len, 0);
    free(text);
    vocab_free(&v);
    gpt_free(&m);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        fixture_dir = argv[1];
    record = argc > 2 && !strcmp(argv[2], "--record");
    ag_set_num_threads(1); /* sums split by thread count would move the last digits */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt_cached_and_last_match_full),
        cmocka_unit_test(test_sampled_text_is_unchanged),
        cmocka_unit_test(test_temperature_zero_is_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
