/* cli.c - parsing flags against a table, with ranges and help text. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

cli_opt *cli_find(cli_opt *opts, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

static bool set_value(cli_opt *o, const char *v, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) {
            snprintf(err, errlen, "--%s: \"%s\" is not an integer", o->name, v);
            return false;
        }
        if ((double)x < o->min || (double)x > o->max) {
            snprintf(err, errlen, "--%s: %lld is out of range [%.0f, %.0f]", o->name, x, o->min, o->max);
            return false;
        }
        *(int64_t *)o->value = x;
        break;
    }
    case CLI_FLOAT: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) {
            snprintf(err, errlen, "--%s: \"%s\" is not a number", o->name, v);
            return false;
        }
        if (x < o->min || x > o->max) {
            snprintf(err, errlen, "--%s: %g is out of range [%g, %g]", o->name, x, o->min, o->max);
            return false;
        }
        *(double *)o->value = x;
        break;
    }
    case CLI_STRING:
        if (!*v) {
            snprintf(err, errlen, "--%s: empty value", o->name);
            return false;
        }
        *(const char **)o->value = v;
        break;
    case CLI_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(bool *)o->value = true;
        else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(bool *)o->value = false;
        else {
            snprintf(err, errlen, "--%s: \"%s\" is not true or false", o->name, v);
            return false;
        }
        break;
    }
    o->set = true;
    return true;
}

bool cli_parse(cli_opt *opts, int n, int argc, char **argv, bool *help, char *err, size_t errlen)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            snprintf(err, errlen, "unexpected argument \"%s\"", a);
            return false;
        }
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (len >= sizeof name) {
            snprintf(err, errlen, "unknown flag \"%.80s\"", a);
            return false;
        }
        memcpy(name, a + 2, len);
        name[len] = '\0';
        cli_opt *o = cli_find(opts, n, name);
        if (!o) {
            snprintf(err, errlen, "unknown flag --%s", name);
            return false;
        }
        const char *v;
        if (eq)
            v = eq + 1;
        else if (o->type == CLI_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0 ||
                                         (strcmp(argv[i + 1], "true") && strcmp(argv[i + 1], "false"))))
            v = "true"; /* a bare boolean flag */
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            snprintf(err, errlen, "--%s needs a value", name);
            return false;
        }
        if (!set_value(o, v, err, errlen))
            return false;
    }
    return true;
}

/* The placeholder a help text starts with ("FILE: ..."), its length, or 0. */
static size_t placeholder(const char *help)
{
    size_t k = 0;
    while (help[k] >= 'A' && help[k] <= 'Z')
        k++;
    return k > 0 && k <= 8 && help[k] == ':' && help[k + 1] == ' ' ? k : 0;
}

void cli_print_help(FILE *f, const cli_opt *opts, int n)
{
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &opts[i];
        const char *help = o->help;
        char def[128] = "";
        switch (o->type) {
        case CLI_INT: snprintf(def, sizeof def, "%lld", (long long)*(int64_t *)o->value); break;
        case CLI_FLOAT: snprintf(def, sizeof def, "%g", *(double *)o->value); break;
        case CLI_STRING:
            snprintf(def, sizeof def, "%s", *(const char **)o->value ? *(const char **)o->value : "none");
            break;
        case CLI_BOOL: snprintf(def, sizeof def, "%s", *(bool *)o->value ? "true" : "false"); break;
        }
        char meta[16];
        size_t k = placeholder(help);
        if (k) {
            snprintf(meta, sizeof meta, " %.*s", (int)k, help);
            help += k + 2;
        } else
            snprintf(meta, sizeof meta, "%s", o->type == CLI_INT ? " N" : o->type == CLI_FLOAT ? " X"
                                             : o->type == CLI_STRING ? " TEXT" : "");
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name, meta);
        /* a help that states a derived default itself, or that the flag is required, gets no other */
        if (strstr(help, "(default: ") || strstr(help, "(required)"))
            fprintf(f, "  %-22s %s\n", left, help);
        else
            fprintf(f, "  %-22s %s (default: %s)\n", left, help, def);
    }
}
