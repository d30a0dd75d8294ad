/* test_checkpoint_model.c - checkpoints of a model: parameters and AdamW
 * state come back exactly, mismatches are named, and a failed write leaves
 * the previous checkpoint intact and no temporary file behind. */
#include "checkpoint_util.h"

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
    ag_tensor *x = ag_randn(NULL, TEST_RNG(5), 0.0f, 1.0f, AG_SHAPE(2, 4, 8));
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

/* A value that is not finite, in the weights or the optimizer state, is
 * refused naming the tensor, the element (flat and as an index) and the
 * value; nothing is copied. nn_st_read itself returns such values as they are. */
static void test_non_finite_refused(void **state)
{
    (void)state;
    char path[256], err[256];
    in_scratch(path, sizeof path, "nonfinite.safetensors");
    const uint32_t bits[] = {0x7fc00000u, 0xffc00001u, 0x7f800000u, 0xff800000u};
    const char *names[] = {"nan", "nan", "inf", "-inf"};
    for (int where = 0; where < 2; where++)
        for (int k = 0; k < 4; k++) {
            model a, b;
            model_init(&a, 8, 1);
            model_init(&b, 8, 2);
            ag_tensor *t = a.p.items[3]; /* blocks.0.sa.heads.1.key.weight, (4, 8) */
            float *target = where == 0 ? t->data : a.opt.v[3];
            target[13] = from_bits(bits[k]); /* row 1, column 5 */
            a.opt.step = 3;
            save(path, &a.p, &a.opt);
            nn_st *f = open_ok(path);
            char want[256];
            snprintf(want, sizeof want, "tensor \"%s%s\": element 13 (index [1, 5]) is %s, not a "
                     "finite number", where ? "optimizer.exp_avg_sq." : "", t->name, names[k]);
            err[0] = '\0';
            bool ok = where == 0 ? nn_load_params(f, &b.p, err, sizeof err)
                                 : nn_load_adamw(f, &b.opt, err, sizeof err);
            assert_false(ok);
            assert_string_equal(err, want);
            /* nothing copied */
            model c;
            model_init(&c, 8, 2);
            assert_same_state(&b, &c);
            model_free(&c);
            /* the format itself carries any float */
            float back[32];
            assert_true(nn_st_read(f, where ? "optimizer.exp_avg_sq.blocks.0.sa.heads.1.key.weight"
                                           : t->name, back, AG_SHAPE(4, 8), err, sizeof err));
            assert_int_equal(memcmp(&back[13], &bits[k], 4), 0);
            nn_st_close(f);
            model_free(&a);
            model_free(&b);
        }
    /* a 0-dim and a 3-dim index */
    float s = from_bits(0x7f800000u), cube[24] = {0};
    cube[23] = from_bits(0x7fc00000u);
    nn_st_writer *w = nn_st_writer_new();
    nn_st_add(w, "s", &s, 0, NULL);
    nn_st_add(w, "c", cube, AG_SHAPE(2, 3, 4));
    assert_true(nn_st_write(w, path, err, sizeof err));
    nn_st_writer_free(w);
    nn_st *f = open_ok(path);
    assert_false(nn_st_finite(f, "s", err, sizeof err));
    assert_string_equal(err, "tensor \"s\": element 0 (index []) is inf, not a finite number");
    assert_false(nn_st_finite(f, "c", err, sizeof err));
    assert_string_equal(err, "tensor \"c\": element 23 (index [1, 2, 3]) is nan, not a finite number");
    cube[23] = 0;
    nn_st_close(f);
    unlink(path);
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
    assert_int_equal(count_containing(dir, ".tmp"), 0);

    /* something at the old fixed name path + ".tmp" (a directory; a symlink
     * below) is not the writer's: it writes a file of its own name beside it
     * and leaves that alone */
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_true(write_v(path, 3.0f, 0, err, sizeof err));
    assert_intact(path, 3.0f);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(tmp), 0);
    assert_true(write_v(path, 1.0f, 0, err, sizeof err));

    /* a symlink planted at path + ".tmp" is never followed: its target keeps
     * its bytes and the link stays */
    char target[320];
    snprintf(target, sizeof target, "%s/victim", dir);
    spit(target, "precious", 8);
    assert_int_equal(symlink(target, tmp), 0);
    assert_true(write_v(path, 8.0f, 0, err, sizeof err));
    assert_intact(path, 8.0f);
    assert_int_equal(lstat(tmp, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_size, 8);
    size_t vlen = 0;
    unsigned char *vbytes = slurp(target, &vlen);
    assert_memory_equal(vbytes, "precious", 8);
    free(vbytes);
    assert_int_equal(unlink(tmp), 0);
    assert_int_equal(unlink(target), 0);
    assert_int_equal(count_containing(dir, ".tmp"), 0);
    assert_true(write_v(path, 1.0f, 0, err, sizeof err));

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
    assert_int_equal(count_containing(dir, ".tmp"), 0);

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
     * also when a file is at the old fixed name path + ".tmp": not the
     * writer's, so left as it is */
    spit(tmp, "stale", 5);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    assert_true(write_v(path, 8.0f, 0, err, sizeof err));
    assert_int_equal(stat(path, &after), 0);
    assert_true(before.st_ino != after.st_ino);
    assert_intact(path, 8.0f);
    size_t slen = 0;
    unsigned char *stale = slurp(tmp, &slen);
    assert_int_equal(slen, 5);
    assert_memory_equal(stale, "stale", 5);
    free(stale);
    assert_int_equal(unlink(tmp), 0);
    assert_int_equal(count_containing(dir, ".tmp"), 0);
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_roundtrip),
        cmocka_unit_test(test_checkpoint_mismatches),
        cmocka_unit_test(test_non_finite_refused),
        cmocka_unit_test(test_atomic_write),
    };
    return cmocka_run_group_tests(tests, setup_scratch, teardown_scratch);
}
