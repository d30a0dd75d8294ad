/* main.c - the gpt program: train, sample and bench the lecture's GPT. */
#include <stdio.h>
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

int main(int argc, char **argv)
{
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
