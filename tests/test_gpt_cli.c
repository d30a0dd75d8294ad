/* test_gpt_cli.c - the `gpt` command line: a table of bad inputs (flags,
 * data files, checkpoints) with their exact messages and exit statuses,
 * every --help listing every flag with its default, a resume that repeats the
 * checkpoint's flags, and `gpt bench`'s output line. */
#include "gpt_util.h"

/* ------------------------------------------------------------ 4. bad input */

typedef struct {
    const char *argv[24]; /* gpt's arguments; @T, @F, @C are substituted */
    int code;             /* exit status */
    const char *err;      /* all of stderr; '*' matches any run of characters */
    const char *out;      /* stdout pattern, NULL for empty */
} bad_case;

#define DATA(file) "train", "--data", file, TINY_MODEL, "--max-iters", "2", "--out", "@T/bad_out"

static const bad_case bad_cases[] = {
    {{NULL}, 2, "usage: gpt <command> [flags]\n*Run \"gpt <command> --help\" for its flags.*", NULL},
    {{"frobnicate"}, 2,
     "gpt: unknown command \"frobnicate\" (commands: train, sample, bench; see gpt --help)\n", NULL},
    {{"train", "--bogus"}, 2, "gpt train: unknown flag --bogus (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "abc"}, 2,
     "gpt train: --batch-size: \"abc\" is not an integer (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "0"}, 2,
     "gpt train: --batch-size: 0 is out of range [1, 1048576] (see gpt train --help)\n", NULL},
    {{"train", "--batch-size", "-3"}, 2,
     "gpt train: --batch-size: -3 is out of range [1, 1048576] (see gpt train --help)\n", NULL},
    {{"train", "--batch-size"}, 2, "gpt train: --batch-size needs a value (see gpt train --help)\n",
     NULL},
    {{"train", "--lr", "-1"}, 2, "gpt train: --lr: -1 is out of range [0, 10] (see gpt train --help)\n",
     NULL},
    {{"train", "--lr", "nan"}, 2, "gpt train: --lr: \"nan\" is not a number (see gpt train --help)\n",
     NULL},
    {{"train", "--dropout", "1"}, 2,
     "gpt train: --dropout: 1 is out of range [0, 0.999999] (see gpt train --help)\n", NULL},
    {{"train", "--preset", "nope"}, 2,
     "gpt train: unknown preset \"nope\" (choose from tiny, small, medium, lecture) "
     "(see gpt train --help)\n", NULL},
    {{"train", "--n-embd", "30", "--n-head", "4"}, 2,
     "gpt train: n_embd 30 is not divisible by n_head 4\n", NULL},
    {{"train", "stray"}, 2, "gpt train: unexpected argument \"stray\" (see gpt train --help)\n", NULL},
    {{DATA("@T/missing.txt")}, 1,
     "gpt train: cannot open data file @T/missing.txt: No such file or directory\n", NULL},
    {{DATA("@T")}, 1, "gpt train: cannot read data file @T: it is a directory, not a text file\n",
     NULL},
    {{DATA("/dev/null")}, 1,
     "gpt train: cannot read data file /dev/null: it is a device, not a text file\n", NULL},
    {{DATA("/dev/zero")}, 1,
     "gpt train: cannot read data file /dev/zero: it is a device, not a text file\n", NULL},
    {{DATA("@T/empty.txt")}, 1, "gpt train: data file @T/empty.txt: the text is empty\n", NULL},
    {{DATA("@T/aaaa.txt")}, 1,
     "gpt train: data file @T/aaaa.txt: the text has 1 distinct character; a language model "
     "needs at least 2\n", NULL},
    {{DATA("@T/small.txt")}, 2,
     "gpt train: the text is too small for block size 16: the validation split has 10 "
     "characters, needs at least 17 (use a smaller --block-size or a larger file)\n", NULL},
    {{DATA("@T/bad_utf8.txt")}, 1,
     "gpt train: data file @T/bad_utf8.txt: invalid UTF-8 at byte offset 6\n", NULL},
    {{DATA("@T/overlong.txt")}, 1,
     "gpt train: data file @T/overlong.txt: invalid UTF-8 at byte offset 2\n", NULL},
    {{DATA("@T/nul.txt")}, 1, "gpt train: data file @T/nul.txt: NUL byte at offset 4: not a text file\n",
     NULL},
    {{"sample"}, 2, "gpt sample: --checkpoint FILE is required (see gpt sample --help)\n", NULL},
    {{"sample", "--checkpoint", "@T/missing.safetensors"}, 1,
     "gpt sample: cannot open @T/missing.safetensors: No such file or directory\n", NULL},
    {{"sample", "--checkpoint", "@T/truncated.safetensors"}, 1,
     "gpt sample: @T/truncated.safetensors: tensor \"*\": data [*) is outside the * data bytes "
     "(truncated file?)\n", NULL},
    {{"sample", "--checkpoint", "@T/corrupt.safetensors"}, 1,
     "gpt sample: @T/corrupt.safetensors: bad header JSON: expected '{' at byte 0\n", NULL},
    {{"sample", "--checkpoint", "@F/optim.safetensors"}, 1,
     "gpt sample: checkpoint @F/optim.safetensors: not a GPT checkpoint of this program "
     "(format \"missing\", want \"agrad-gpt/1\") nor a state_dict of gpt.py's model "
     "(no token_embedding_table.weight)\n", NULL},
    {{"sample", "--checkpoint", "@T"}, 1, "gpt sample: cannot read @T: it is a directory, not a file\n",
     NULL},
    {{"sample", "--checkpoint", "/dev/zero"}, 1,
     "gpt sample: cannot read /dev/zero: it is a device, not a file\n", NULL},
    /* strict loading: each refusal names what is wrong */
    {{"sample", "--checkpoint", "@T/nan.safetensors"}, 1,
     "gpt sample: checkpoint @T/nan.safetensors: tensor \"blocks.1.ffwd.net.2.weight\": element 70 "
     "(index [0, 70]) is nan, not a finite number\n", NULL},
    {{"sample", "--checkpoint", "@T/inf.safetensors"}, 1,
     "gpt sample: checkpoint @T/inf.safetensors: tensor \"lm_head.bias\": element 3 (index [3]) is "
     "-inf, not a finite number\n", NULL},
    {{"sample", "--checkpoint", "@T/flipped.safetensors"}, 1,
     "gpt sample: @T/flipped.safetensors: the data's CRC-32C is * but the header says *: the file "
     "is corrupt (changed after it was written)\n", NULL},
    {{"sample", "--checkpoint", "@T/trailing.safetensors"}, 1,
     "gpt sample: @T/trailing.safetensors: 3 trailing bytes after the tensor data (it ends at * of "
     "* data bytes)\n", NULL},
    {{"sample", "--checkpoint", "@T/overlap.safetensors"}, 1,
     "gpt sample: @T/overlap.safetensors: tensors \"a\" [0, 8) and \"b\" [4, 12) overlap in the "
     "data\n", NULL},
    {{"sample", "--checkpoint", "@T/gap.safetensors"}, 1,
     "gpt sample: @T/gap.safetensors: a gap of 4 unused data bytes at offset 4, before tensor "
     "\"b\"\n", NULL},
    {{"sample", "--checkpoint", "@C", "--temperature", "-1"}, 2,
     "gpt sample: --temperature: -1 is out of range [0, 1e+06] (see gpt sample --help)\n", NULL},
    /* a PyTorch state_dict needs a vocabulary that fits it */
    {{"sample", "--checkpoint", "@F/torch_gpt.safetensors"}, 1,
     "gpt sample: checkpoint @F/torch_gpt.safetensors: a PyTorch state_dict has no vocabulary: "
     "give the training text (--data FILE) or a vocabulary file (--vocab FILE)\n", NULL},
    {{"sample", "--checkpoint", "@F/torch_gpt.safetensors", "--data", "@F/tiny_text.txt"}, 1,
     "gpt sample: checkpoint @F/torch_gpt.safetensors: the vocabulary of @F/tiny_text.txt has 58 "
     "characters but token_embedding_table.weight has 12 rows (was the model trained on another "
     "text?)\n", NULL},
    {{"sample", "--checkpoint", "@F/torch_gpt.safetensors", "--data", "@F/torch_gpt.txt", "--vocab",
      "@F/torch_gpt.vocab"}, 2, "gpt sample: give --data or --vocab, not both\n", NULL},
    {{"sample", "--checkpoint", "@F/torch_gpt.safetensors", "--vocab", "@T/missing.txt"}, 1,
     "gpt sample: cannot open data file @T/missing.txt: No such file or directory\n", NULL},
    {{"sample", "--checkpoint", "@F/torch_gpt.safetensors", "--vocab", "@F/torch_gpt.vocab",
      "--attention-scale", "C"}, 1,
     "gpt sample: attention scale \"C\": choose n_embd (gpt.py's) or head_size\n", NULL},
    {{"sample", "--checkpoint", "@T/torch_extra.safetensors", "--vocab", "@F/torch_gpt.vocab"}, 1,
     "gpt sample: checkpoint @T/torch_extra.safetensors: tensor \"blocks.0.sa.heads.0.bias\" in the "
     "file is not a parameter of gpt.py's model\n", NULL},
    {{"sample", "--checkpoint", "@T/torch_nolayer.safetensors", "--vocab", "@F/torch_gpt.vocab"}, 1,
     "gpt sample: checkpoint @T/torch_nolayer.safetensors: tensor \"blocks.1.ln1.bias\" is missing\n",
     NULL},
    {{"sample", "--checkpoint", "@C", "--data", "@F/torch_gpt.txt"}, 1,
     "gpt sample: checkpoint @C: the vocabulary of @F/torch_gpt.txt differs from the "
     "checkpoint's\n", NULL},
    {{"train", "--data", "@F/torch_gpt.txt", "--init-from", "@F/torch_gpt.safetensors", "--n-embd",
      "64", "--out", "@T/bad_out"}, 1,
     "gpt train: cannot start from @F/torch_gpt.safetensors: --n-embd 64 does not match the "
     "checkpoint's 8 (a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@F/torch_gpt.txt", "--init-from", "@F/torch_gpt.safetensors", "--preset",
      "tiny", "--out", "@T/bad_out"}, 1,
     "gpt train: cannot start from @F/torch_gpt.safetensors: --n-embd 32 does not match the "
     "checkpoint's 8 (a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--init-from", "@F/torch_gpt.safetensors", "--out",
      "@T/bad_out"}, 1,
     "gpt train: checkpoint @F/torch_gpt.safetensors: the vocabulary of @F/tiny_text.txt has 58 "
     "characters but token_embedding_table.weight has 12 rows (was the model trained on another "
     "text?)\n", NULL},
    {{"train", "--resume", "@C", "--init-from", "@C"}, 2,
     "gpt train: give --resume (the whole run) or --init-from (its weights), not both\n", NULL},
    {{"train", "--data", "@F/torch_gpt.txt", "--resume", "@F/torch_gpt.safetensors", "--out",
      "@T/bad_out"}, 1,
     "gpt train: checkpoint @F/torch_gpt.safetensors: not a GPT checkpoint of this program (format "
     "\"missing\", want \"agrad-gpt/1\"): a PyTorch state_dict has no training state to resume; "
     "start from its weights with --init-from\n", NULL},
    {{"sample", "--checkpoint", "@C", "--prompt", "\xff"}, 2,
     "gpt sample: --prompt: invalid UTF-8 at byte offset 0\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@C", "--n-embd", "64", "--out",
      "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: --n-embd 64 does not match the checkpoint's 32 "
     "(a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@C", "--preset", "small", "--out",
      "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: --n-embd 64 does not match the checkpoint's 32 "
     "(a checkpoint from another configuration)\n", NULL},
    {{"train", "--data", "@T/other_vocab.txt", "--resume", "@C", "--out", "@T/bad_out"}, 1,
     "gpt train: cannot resume from @C: the data file's vocabulary differs from the "
     "checkpoint's\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--resume", "@T/corrupt.safetensors", "--out",
      "@T/bad_out"}, 1,
     "gpt train: @T/corrupt.safetensors: bad header JSON: expected '{' at byte 0\n", NULL},
    /* issue 11: write errors and unwritable paths found before the first step, a
     * configuration too large refused before it allocates; none leaves a run behind */
    {{DATA("@F/tiny_text.txt"), "--log", "/dev/full"}, 1,
     "gpt train: cannot write the loss log /dev/full: No space left on device\n", NULL},
    {{DATA("@F/tiny_text.txt"), "--checkpoint", "@T/empty.txt/ckpt.safetensors"}, 1,
     "gpt train: cannot write the checkpoint: cannot create "
     "@T/empty.txt/ckpt.safetensors.tmp.*: Not a directory\n", NULL},
    {{DATA("@F/tiny_text.txt"), "--checkpoint", "@T"}, 1,
     "gpt train: cannot write the checkpoint @T: it is a directory\n", NULL},
    {{"train", "--data", "@F/tiny_text.txt", "--n-embd", "65536", "--n-layer", "64", "--n-head",
      "4", "--out", "@T/bad_out"}, 1,
     "gpt train: this configuration needs about 57.1 TiB of memory (parameters and gradients "
     "24.0 TiB, AdamW state 24.0 TiB, one step's activations at batch 64 x block 256 9.1 TiB), more "
     "than the * available; lower --batch-size, --block-size, --n-embd or --n-layer\n", NULL},
    {{"bench", "--steps", "0"}, 2, "gpt bench: --steps: 0 is out of range [1, 1000000000] "
                                   "(see gpt bench --help)\n", NULL},
    {{"bench", "--max-iters", "5"}, 2, "gpt bench: unknown flag --max-iters (see gpt bench --help)\n",
     NULL},
    {{"sample", "--max-iters", "5"}, 2,
     "gpt sample: unknown flag --max-iters (see gpt sample --help)\n", NULL},
    /* help goes to stdout with status 0 */
    {{"--help"}, 0, "", "usage: gpt <command> [flags]\n*\n  train *\n  sample *\n  bench *"},
    {{"train", "--help"}, 0, "", "usage: gpt train [flags]\n*\nflags:\n*"},
    {{"sample", "--help"}, 0, "", "usage: gpt sample --checkpoint FILE [flags]\n*\nflags:\n*"},
    {{"--help"}, 0, "", "usage: gpt <command> [flags]\n       gpt --version\n*\n  --version  *"},
    {{"--version"}, 0, "", "gpt (agrad *, matmul *)\n"},
    {{"bench", "--help"}, 0, "",
     "usage: gpt bench *\n  bench: preset=P threads=T ms/step=X tokens/s=Y peak_rss_mib=Z gflops=G\n*"},
};

/* The PyTorch fixture written again to tmp/name with a tensor `add` more
 * (a copy of the first) and without tensor `drop`. */
static void torch_variant(const char *name, const char *add, const char *drop)
{
    char err[512], path[700];
    snprintf(path, sizeof path, "%s/torch_gpt.safetensors", fixtures);
    nn_st *f = nn_st_open(path, err, sizeof err);
    if (!f)
        fail_msg("%s", err);
    nn_st_writer *w = nn_st_writer_new();
    float *bufs[200];
    int nb = 0;
    for (int i = 0; i < nn_st_count(f); i++) {
        const char *nm = nn_st_name(f, i);
        int nd;
        int64_t shape[AG_MAX_DIMS], numel = 1;
        assert_true(nn_st_shape(f, nm, &nd, shape));
        for (int d = 0; d < nd; d++)
            numel *= shape[d];
        assert_true(nb < 199);
        float *b = bufs[nb++] = malloc((size_t)numel * sizeof *b);
        assert_true(nn_st_read(f, nm, b, nd, shape, err, sizeof err));
        if (!drop || strcmp(nm, drop) != 0)
            nn_st_add(w, nm, b, nd, shape);
        if (add && i == 0)
            nn_st_add(w, add, b, nd, shape);
    }
    assert_true(nn_st_write(w, tpath(name), err, sizeof err));
    nn_st_writer_free(w);
    for (int i = 0; i < nb; i++)
        free(bufs[i]);
    nn_st_close(f);
}

/* The inputs the table names, made fresh in the scratch directory. */
static void make_bad_inputs(void)
{
    write_file(tpath("empty.txt"), "", 0);
    write_file(tpath("aaaa.txt"), "aaaa", 4);
    char small[101];
    for (int i = 0; i < 100; i++)
        small[i] = "ab"[i % 2];
    write_file(tpath("small.txt"), small, 100); /* 90 train, 10 val < 16 + 1 */
    write_file(tpath("bad_utf8.txt"), "hello \xff\xfe world", 14);
    write_file(tpath("overlong.txt"), "ab\xc0\xaf cd", 7);   /* overlong '/' */
    write_file(tpath("nul.txt"), "abcd\0efgh", 9);

    size_t len;
    char *ck = read_file(shared_ckpt(), &len);
    write_file(tpath("truncated.safetensors"), ck, len / 2);
    ck[8] ^= 0x55; /* the header's opening brace */
    ck[9] ^= 0x55;
    write_file(tpath("corrupt.safetensors"), ck, len);
    free(ck);

    /* a trained checkpoint with one value made not finite: saved again, so its checksum holds */
    gpt_model m;
    gpt_vocab v;
    char err[512];
    if (!gpt_ckpt_load(shared_ckpt(), &m, &v, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    ag_tensor *w2 = nn_params_find(&m.params, "blocks.1.ffwd.net.2.weight"); /* (32, 128) */
    w2->data[70] = NAN;
    assert_true(gpt_ckpt_save(tpath("nan.safetensors"), &m, &v, NULL, NULL, err, sizeof err));
    w2->data[70] = 0;
    nn_params_find(&m.params, "lm_head.bias")->data[3] = -INFINITY;
    assert_true(gpt_ckpt_save(tpath("inf.safetensors"), &m, &v, NULL, NULL, err, sizeof err));
    gpt_free(&m);
    vocab_free(&v);
    /* one bit flipped in the data; three bytes after it */
    ck = read_file(shared_ckpt(), &len);
    ck[len - 100] ^= 0x10;
    write_file(tpath("flipped.safetensors"), ck, len);
    ck[len - 100] ^= 0x10;
    ck = realloc(ck, len + 3);
    memcpy(ck + len, "xyz", 3);
    write_file(tpath("trailing.safetensors"), ck, len + 3);
    free(ck);
    /* tensors overlapping, and a gap between two (made by hand: the writer makes neither) */
    const char *h1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    const char *h2 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    const char *hs[] = {h1, h2}, *names[] = {"overlap.safetensors", "gap.safetensors"};
    for (int i = 0; i < 2; i++) {
        char img[512] = {0};
        size_t hl = strlen(hs[i]);
        for (int k = 0; k < 8; k++)
            img[k] = (char)((uint64_t)hl >> (8 * k));
        memcpy(img + 8, hs[i], hl);
        write_file(tpath(names[i]), img, 8 + hl + 12);
    }
    /* the PyTorch fixture with a tensor gpt.py's model lacks, and without a block's tensor */
    torch_variant("torch_extra.safetensors", "blocks.0.sa.heads.0.bias", NULL);
    torch_variant("torch_nolayer.safetensors", NULL, "blocks.1.ln1.bias");

    char *text = read_file(text_path, &len);
    text = realloc(text, len + 8);
    memcpy(text + len, "\xe2\x82\xac", 3); /* one more character: a euro sign */
    write_file(tpath("other_vocab.txt"), text, len + 3);
    free(text);
}

static void test_bad_input(void **state)
{
    (void)state;
    make_bad_inputs();
    int n = (int)(sizeof bad_cases / sizeof *bad_cases);
    print_message("bad-input table: %d cases\n", n);
    for (int i = 0; i < n; i++) {
        const bad_case *bc = &bad_cases[i];
        argl a = {0};
        char *owned[24] = {0};
        for (int k = 0; bc->argv[k]; k++)
            a.v[a.n++] = owned[k] = subst(bc->argv[k]);
        a.v[a.n] = NULL;
        char desc[600] = "gpt";
        for (int k = 0; k < a.n; k++)
            snprintf(desc + strlen(desc), sizeof desc - strlen(desc), " %s", bc->argv[k]);
        proc p;
        run(&p, &a); /* fails on a crash or a sanitizer report */
        char *want_err = subst(bc->err);
        char *want_out = bc->out ? subst(bc->out) : NULL;
        if (p.code != bc->code)
            fail_msg("case %d (%s): exit %d, want %d; stderr:\n%s", i, desc, p.code, bc->code,
                     ERR(&p));
        if (!wildmatch(want_err, ERR(&p)))
            fail_msg("case %d (%s): stderr\n\"%s\"\nwant\n\"%s\"", i, desc, ERR(&p), want_err);
        if (want_out ? !wildmatch(want_out, OUT(&p)) : OUT(&p)[0] != '\0')
            fail_msg("case %d (%s): stdout\n\"%s\"\nwant \"%s\"", i, desc, OUT(&p),
                     want_out ? want_out : "");
        /* a failed train leaves no run behind */
        struct stat st;
        if (bc->code != 0 && stat(tpath("bad_out"), &st) == 0)
            fail_msg("case %d (%s) left %s behind", i, desc, tpath("bad_out"));
        free(want_err);
        free(want_out);
        for (int k = 0; k < 24; k++)
            free(owned[k]);
        proc_free(&p);
    }
}

/* Output that cannot be written is an error, not a silent exit 0. */
static void test_stdout_write_errors(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "sample", "--checkpoint", shared_ckpt(), "--tokens", "20", "--threads", "1", NULL);
    proc p;
    proc_start_with(&p, &a, "/dev/full", -1, 0);
    proc_finish(&p);
    assert_int_equal(p.code, 1);
    assert_string_equal(ERR(&p),
                        "gpt sample: cannot write the sample to standard output: No space left "
                        "on device\n");
    proc_free(&p);
    argl t = {0};
    push(&t, "train", "--data", text_path, TINY_MODEL, "--max-iters", "2", "--sample-tokens", "0",
         "--out", tpath("full_stdout"), NULL);
    proc_start_with(&p, &t, "/dev/full", -1, 0);
    proc_finish(&p);
    assert_int_equal(p.code, 1);
    assert_string_equal(ERR(&p), "gpt train: cannot write to standard output: No space left on "
                                 "device\n");
    struct stat st;
    assert_true(stat(tpath("full_stdout"), &st) != 0); /* found before training: nothing left */
    proc_free(&p);
}

/* Each help lists every flag of its command, one line each, with its default. */
static void check_help_lists(const char *cmd, const char *const *names, int n)
{
    argl a = {0};
    push(&a, cmd, "--help", NULL);
    proc p;
    run_ok(&p, &a);
    for (int i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, "\n  --%s ", names[i]);
        const char *s = strstr(OUT(&p), key);
        if (!s)
            fail_msg("gpt %s --help does not list --%s", cmd, names[i]);
        const char *nl = strchr(s + 1, '\n');
        const char *d = strstr(s, "(default: "), *r = strstr(s, "(required)");
        bool has_d = d && (!nl || d < nl), has_r = r && (!nl || r < nl);
        if (has_d == has_r) /* one or the other, never both */
            fail_msg("gpt %s --help: --%s has %s on its line", cmd, names[i],
                     has_d ? "both \"(default: \" and \"(required)\"" : "no \"(default: \"");
        /* a placeholder that says what goes there */
        const char *after = s + strlen(key);
        if (strncmp(after, "S ", 2) == 0)
            fail_msg("gpt %s --help: --%s shows the placeholder S", cmd, names[i]);
    }
    /* and nothing else: n flag lines */
    int lines = 0;
    for (const char *s = OUT(&p); (s = strstr(s, "\n  --")); s++)
        lines++;
    assert_int_equal(lines, n);
    proc_free(&p);
}

static void test_help(void **state)
{
    (void)state;
    const char *cmds[] = {"train", "bench"};
    const int which[] = {OPT_TRAIN, OPT_BENCH};
    for (int c = 0; c < 2; c++) {
        gpt_options o;
        cli_opt t[40];
        int n = gpt_option_table(&o, which[c], t, 40);
        assert_true(n >= 10);
        const char *names[40];
        for (int i = 0; i < n; i++)
            names[i] = t[i].name;
        check_help_lists(cmds[c], names, n);
    }
    const char *sample_flags[] = {"checkpoint", "prompt", "tokens", "temperature", "top-k", "seed",
                                  "threads", "no-kv-cache", "data", "vocab", "attention-scale",
                                  "precision"};
    check_help_lists("sample", sample_flags, 12);
    /* gpt.py's defaults, as the README promises */
    argl a = {0};
    push(&a, "train", "--help", NULL);
    proc p;
    run_ok(&p, &a);
    const char *defaults[] = {"--batch-size N         sequences per batch (default: 64)\n",
                              "--block-size N         context length (default: 256)\n",
                              "--n-embd N             embedding width (default: 384)\n",
                              "--n-layer N            transformer blocks (default: 6)\n",
                              "(default: 0.2)\n", "(default: 0.0003)\n",
                              "--max-iters N          training steps (default: 5000)\n",
                              /* placeholders that say what goes there; what --out does without a preset */
                              "\n  --data FILE            UTF-8 text to train on (default: "
                              "data/tinyshakespeare.txt)\n",
                              "\n  --preset NAME          ",
                              "\n  --out DIR              directory for the checkpoint and loss log, "
                              "locked while the run lasts (default: the --resume checkpoint's "
                              "directory, else runs/<preset>, runs/default without --preset)\n",
                              "\n  --force                start a new run even where a checkpoint "
                              "or loss log exists, replacing them (default: false)\n",
                              "\n  --checkpoint FILE      ", "\n  --log FILE             ",
                              "\n  --resume FILE          ", "\n  --init-from FILE       "};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++)
        if (!strstr(OUT(&p), defaults[i]))
            fail_msg("gpt train --help lacks \"%s\"", defaults[i]);
    proc_free(&p);
    /* sample's: the required flag says so and claims no default */
    argl b = {0};
    push(&b, "sample", "--help", NULL);
    run_ok(&p, &b);
    const char *sample_lines[] = {
        "\n  --checkpoint FILE      checkpoint (or gpt.py state_dict) to sample from (required)\n",
        "\n  --prompt TEXT          ", "\n  --tokens N             ", "\n  --temperature X        ",
        "0 is greedy (default: 1)\n", "\n  --data FILE            ", "\n  --vocab FILE           "};
    for (size_t i = 0; i < sizeof sample_lines / sizeof *sample_lines; i++)
        if (!strstr(OUT(&p), sample_lines[i]))
            fail_msg("gpt sample --help lacks \"%s\"", sample_lines[i]);
    assert_null(strstr(OUT(&p), "(required) (default"));
    proc_free(&p);
}

/* A resume that repeats the checkpoint's own architecture is fine (the
 * defaults' n_head of 6 must not be held against --n-embd 32). */
static void test_resume_with_matching_flags(void **state)
{
    (void)state;
    const char *src = shared_ckpt();
    const char *ckpt = tpath("again.safetensors");
    size_t len;
    char *b = read_file(src, &len);
    write_file(ckpt, b, len);
    free(b);
    argl a = {0};
    push(&a, "train", "--data", text_path, "--resume", ckpt, "--n-embd", "32", "--n-layer", "2",
         "--block-size", "16", "--threads", "1", "--max-iters", "155",
         "--sample-tokens", "0", "--out", tpath("again"), NULL);
    proc p;
    run_ok(&p, &a);
    char want[800];
    snprintf(want, sizeof want, "resuming from %s at step 150\n", ckpt);
    assert_non_null(strstr(OUT(&p), want));
    /* the steps of this invocation, and of the run in all */
    assert_non_null(strstr(OUT(&p), "\ntrained 5 steps (155 in all) in "));
    proc_free(&p);
}

/* ------------------------------------------------------------ 6. bench */

static void test_bench(void **state)
{
    (void)state;
    argl a = {0};
    push(&a, "bench", "--n-embd", "16", "--n-head", "2", "--n-layer", "1", "--block-size", "8",
         "--batch-size", "4", "--steps", "3", "--threads", "1", NULL);
    proc p;
    run_ok(&p, &a);
    double ms, tps, rss, gflops;
    int used = 0;
    if (sscanf(OUT(&p), "bench: preset=custom threads=1 ms/step=%lf tokens/s=%lf peak_rss_mib=%lf "
                        "gflops=%lf\n%n", &ms, &tps, &rss, &gflops, &used) != 4 ||
        (size_t)used != strlen(OUT(&p)))
        fail_msg("bench printed \"%s\"", OUT(&p));
    if (!(ms > 0 && tps > 0 && rss > 0 && gflops > 0))
        fail_msg("bench numbers not all positive: \"%s\"", OUT(&p));
    /* tokens/s is the batch's 32 tokens over the step time (ms has 2 decimals) */
    double implied = tps * ms / 1e3;
    if (fabs(implied - 32) > 32 * (0.006 / ms + 0.01))
        fail_msg("tokens/s %.0f and ms/step %.2f imply %.2f tokens per step, want 32", tps, ms,
                 implied);
    assert_true(wildmatch("bench: last loss *, arena peak * MiB, matmul *\n", ERR(&p)));
    proc_free(&p);

    /* a preset's name shows */
    argl b = {0};
    push(&b, "bench", "--preset", "tiny", "--steps", "1", "--warmup", "0", "--threads", "1",
         "--batch-size", "2", NULL);
    run_ok(&p, &b);
    assert_true(wildmatch("bench: preset=tiny threads=1 ms/step=* tokens/s=* peak_rss_mib=* gflops=*\n",
                          OUT(&p)));
    proc_free(&p);
}

int main(int argc, char **argv)
{
    if (!gpt_args(argc, argv))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_resume_with_matching_flags),
        cmocka_unit_test(test_bench),
        cmocka_unit_test(test_stdout_write_errors),
    };
    return cmocka_run_group_tests_name("gpt_cli", tests, gpt_setup, gpt_teardown);
}
