/* commands.h - the gpt program's subcommands. */
#ifndef GPT_COMMANDS_H
#define GPT_COMMANDS_H

#include <stddef.h>

#include "ag.h"

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
double gpt_now(void);
/* "fp32", or "bf16 (avx512_bf16)" with what runs the bf16 products; returns buf. */
const char *gpt_precision_str(ag_precision p, char *buf, size_t n);
/* From here on every error ag and nn report (an allocation that failed, above
 * all) ends the program: "<cmd>: <message>" on stderr, then cleanup(message,
 * arg) when given (this command's own: files to close or remove), exit 1. */
void gpt_fatal_errors(const char *cmd, void (*cleanup)(const char *message, void *arg), void *arg);

#endif
