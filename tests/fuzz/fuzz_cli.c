/* fuzz_cli.c - libFuzzer harness for the command-line parser: the input split
 * on NUL bytes is an argv, parsed (cli_parse) against the flag tables of
 * `gpt train` and `gpt bench` as main's dispatch would (a leading "train" or
 * "bench" picks the table; otherwise both parse the whole argv), then the
 * preset, the help text and the model config of what was accepted. Training
 * is never started. Any argv must be accepted or refused with a message, and
 * an accepted one leaves every number inside its flag's range. */
#include <math.h>
#include <string.h>

#include "fuzz_common.h"
#include "options.h"

static FILE *cli_sink; /* help text goes nowhere */

/* true when parsed and the preset applied */
static bool cli_run_table(int which, int argc, char **argv)
{
    gpt_options o;
    cli_opt t[40];
    int n = gpt_option_table(&o, which, t, 40);
    FUZZ_CHECK(n > 0 && n < 40);
    char err[1024] = "";
    bool help = false;
    if (!cli_parse(t, n, argc, argv, &help, err, sizeof err)) {
        FUZZ_CHECK(err[0] != '\0');
        return false;
    }
    err[0] = '\0';
    if (!gpt_apply_preset(&o, t, n, err, sizeof err)) {
        FUZZ_CHECK(err[0] != '\0' && o.preset != NULL);
        return false;
    }
    for (int i = 0; i < n; i++) {
        const cli_opt *c = &t[i];
        if (c->type == CLI_INT) {
            double x = (double)*(int64_t *)c->value;
            FUZZ_CHECK(x >= c->min && x <= c->max);
        } else if (c->type == CLI_FLOAT) {
            double x = *(double *)c->value;
            FUZZ_CHECK(isfinite(x) && x >= c->min && x <= c->max);
        } else if (c->type == CLI_STRING && c->set) {
            const char *s = *(const char **)c->value;
            FUZZ_CHECK(s != NULL && s[0] != '\0');
        }
    }
    if (cli_sink)
        cli_print_help(cli_sink, t, n);
    char why[256];
    gpt_config cfg = gpt_options_config(&o, 65);
    if (gpt_config_check(&cfg, why, sizeof why)) {
        double flops = gpt_step_flops(&cfg, o.batch_size);
        FUZZ_CHECK(isfinite(flops) && flops > 0);
    }
    return true;
}

static bool fuzz_cli_one(const uint8_t *data, size_t size)
{
    /* argv: the NUL-separated pieces (a trailing NUL ends the last one) */
    char *buf = malloc(size + 1);
    char **argv = malloc((size + 2) * sizeof *argv);
    FUZZ_CHECK(buf && argv);
    memcpy(buf, data, size);
    buf[size] = '\0';
    int argc = 0;
    for (size_t i = 0; i < size; i += strlen(buf + i) + 1)
        argv[argc++] = buf + i;
    argv[argc] = NULL;

    bool ok;
    if (argc > 0 && strcmp(argv[0], "train") == 0)
        ok = cli_run_table(OPT_TRAIN, argc - 1, argv + 1);
    else if (argc > 0 && strcmp(argv[0], "bench") == 0)
        ok = cli_run_table(OPT_BENCH, argc - 1, argv + 1);
    else {
        bool a = cli_run_table(OPT_TRAIN, argc, argv);
        bool b = cli_run_table(OPT_BENCH, argc, argv);
        ok = a || b;
    }
    free(argv);
    free(buf);
    return ok;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cli_sink = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_cli_one(data, size);
    return 0;
}
#endif
