/* test_fuzz_regressions.c - replays every input of the fuzzers' seed corpora
 * (tests/fuzz/corpus/<name>/) and every input a fuzzer once crashed on
 * (tests/fuzz/regressions/<name>/) through the harnesses' own code, built
 * with the normal compiler: no crash, every invariant of the harness holds,
 * and a refused input comes with a message. File names say what to expect:
 * "ok-*" is accepted, "bad-*" refused, and for safetensors "ckpt-*" loads
 * as a GPT checkpoint. Usage: test_fuzz_regressions <tests/fuzz dir> */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *fuzz_dir;
static char current[1024]; /* the input being replayed, for messages */

/* a broken harness invariant fails the test, naming the input */
#define FUZZ_CHECK(cond)                                                               \
    do {                                                                               \
        if (!(cond))                                                                   \
            fail_msg("%s: invariant %s failed (%s:%d)", current, #cond, __FILE__, __LINE__); \
    } while (0)
#define FUZZ_REPLAY 1

#include "fuzz/fuzz_cli.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_text.c"

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    unsigned char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            b = realloc(b, cap);
            assert_non_null(b);
        }
        size_t got = fread(b + n, 1, cap - n, fp);
        n += got;
        if (!got)
            break;
    }
    assert_false(ferror(fp));
    fclose(fp);
    *len = n;
    return b;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays each file of fuzz_dir/sub/name/ through one(); returns how many.
 * A missing directory is none (regressions/<name>/ exists once a fuzzer found something). */
static int replay_dir(const char *sub, const char *name, int (*one)(const uint8_t *, size_t))
{
    char dir[900];
    snprintf(dir, sizeof dir, "%s/%s/%s", fuzz_dir, sub, name);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (size_t)(n + 1) * sizeof *names);
        assert_non_null(names);
        names[n] = strdup(e->d_name);
        assert_non_null(names[n++]);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name); /* a stable order for messages */
    for (int i = 0; i < n; i++) {
        snprintf(current, sizeof current, "%s/%s", dir, names[i]);
        size_t len;
        unsigned char *buf = slurp(current, &len);
        int got = one(buf, len);
        const char *f = names[i];
        if (strncmp(f, "ok-", 3) == 0 && got < 1)
            fail_msg("%s: refused, but its name says it is accepted", current);
        if (strncmp(f, "bad-", 4) == 0 && got != 0)
            fail_msg("%s: accepted, but its name says it is refused", current);
        if (strncmp(f, "ckpt-", 5) == 0 && got != 2)
            fail_msg("%s: did not load as a GPT checkpoint", current);
        free(buf);
        free(names[i]);
    }
    free(names);
    return n;
}

static int st_one(const uint8_t *d, size_t n) { return fuzz_safetensors_one(d, n); }
static int text_one(const uint8_t *d, size_t n) { return fuzz_text_one(d, n) ? 1 : 0; }
static int cli_one(const uint8_t *d, size_t n) { return fuzz_cli_one(d, n) ? 1 : 0; }

static void replay(const char *name, int (*one)(const uint8_t *, size_t))
{
    int seeds = replay_dir("corpus", name, one);
    int found = replay_dir("regressions", name, one);
    print_message("%s: %d corpus inputs, %d regression inputs\n", name, seeds, found);
    assert_true(seeds > 0); /* the directory is there and not empty */
}

static void test_safetensors(void **state)
{
    (void)state;
    replay("safetensors", st_one);
}

static void test_text(void **state)
{
    (void)state;
    replay("text", text_one);
}

static void test_cli(void **state)
{
    (void)state;
    replay("cli", cli_one);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <tests/fuzz directory>\n", argv[0]);
        return 2;
    }
    fuzz_dir = argv[1];
    ag_set_num_threads(1);
    cli_sink = fopen("/dev/null", "w");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_cli),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (cli_sink)
        fclose(cli_sink);
    return rc;
}
