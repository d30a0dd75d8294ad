/* main.c - the gpt program: train, sample and bench the lecture's GPT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ag.h"
#include "commands.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gpt <command> [flags]\n"
            "       gpt --version\n\n"
            "The character-level GPT of Karpathy's \"Let's build GPT\" lecture, in C.\n\n"
            "commands:\n"
            "  train    train on a text file (default data/tinyshakespeare.txt; fetch it with\n"
            "           tools/get_data.sh), printing train/val loss and saving checkpoints\n"
            "  sample   generate text from a checkpoint (or a gpt.py state_dict)\n"
            "  bench    time training steps and print ms/step, tokens/s, peak memory, GFLOP/s\n\n"
            "  --version  print the version and the matmul backend (OpenBLAS or built-in)\n\n"
            "Run \"gpt <command> --help\" for its flags. Example:\n"
            "  gpt train --preset tiny && gpt sample --checkpoint runs/tiny/ckpt.safetensors\n");
}

const char *gpt_precision_str(ag_precision p, char *buf, size_t n)
{
    if (p == AG_BF16)
        snprintf(buf, n, "bf16 (%s)", ag_bf16_kernel());
    else
        snprintf(buf, n, "%s", ag_precision_name(p));
    return buf;
}

static const char *fatal_cmd = "gpt";
static void (*fatal_cleanup)(const char *, void *);
static void *fatal_arg;

/* ag's default handler aborts (exit 134, a core dump); a command line tool
 * says what went wrong and exits 1 */
static void on_fatal(const char *message, void *user)
{
    (void)user;
    fflush(stdout);
    fprintf(stderr, "%s: %s\n", fatal_cmd, message);
    void (*cleanup)(const char *, void *) = fatal_cleanup;
    fatal_cleanup = NULL; /* an error inside the cleanup ends without it */
    if (cleanup)
        cleanup(message, fatal_arg);
    exit(1);
}

void gpt_fatal_errors(const char *cmd, void (*cleanup)(const char *message, void *arg), void *arg)
{
    fatal_cmd = cmd;
    fatal_cleanup = cleanup;
    fatal_arg = arg;
    ag_set_error_handler(on_fatal, NULL);
}

int main(int argc, char **argv)
{
    gpt_fatal_errors("gpt", NULL, NULL);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("gpt (agrad %s, matmul %s)\n", AG_VERSION, ag_matmul_backend());
        return 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(argv[1], "sample") == 0)
        return cmd_sample(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0)
        return cmd_bench(argc - 2, argv + 2);
    fprintf(stderr, "gpt: unknown command \"%s\" (commands: train, sample, bench; see gpt --help)\n",
            argv[1]);
    return 2;
}
