/* cli.h - table-driven command-line flags: "--name value" or "--name=value". */
#ifndef GPT_CLI_H
#define GPT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CLI_INT, CLI_FLOAT, CLI_STRING, CLI_BOOL } cli_type;

typedef struct {
    const char *name;     /* without the dashes */
    cli_type type;
    void *value;          /* int64_t*, double*, const char**, bool* */
    const char *help;
    double min, max;      /* allowed range for numbers (inclusive) */
    bool set;             /* out: given on the command line */
} cli_opt;

/* Parses argv[0..argc) against opts (n of them). Returns false with a
 * one-line reason in err (unknown flag, missing or bad value, out of range).
 * "--help" sets *help. Positional arguments are errors. */
bool cli_parse(cli_opt *opts, int n, int argc, char **argv, bool *help, char *err, size_t errlen);
/* Prints each flag with its help and current (default) value; a help text
 * that says "(default: ...)" or "(required)" itself gets none. A help text
 * may start with its value's placeholder, "FILE: checkpoint to read" (up to 8
 * capitals and ": "); otherwise numbers show N (integers) or X, strings TEXT. */
void cli_print_help(FILE *f, const cli_opt *opts, int n);
cli_opt *cli_find(cli_opt *opts, int n, const char *name);

#endif
