/* private.h - what nn's sources share and its users do not see (not
 * installed): symbols kept out of the shared library's exports, the setter
 * of the one-line error messages that functions taking (err, errlen) return
 * false with, and the stop on an allocation nn cannot report. */
#ifndef NN_PRIVATE_H
#define NN_PRIVATE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "ag.h"

#define NN_HIDDEN __attribute__((visibility("hidden")))

/* printf into err (when err and n), then false. */
static inline bool nn_seterr(char *err, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool nn_seterr(char *err, size_t n, const char *fmt, ...)
{
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* An allocation nn cannot do without failed: "out of memory" through ag's
 * error handler (a program's handler may end the program cleanly), then
 * abort if the handler returns. */
static inline _Noreturn void nn_oom(void)
{
    ag_error("out of memory");
    abort();
}

/* p, unless it is NULL: then nn_oom. */
static inline void *nn_check_alloc(void *p)
{
    if (!p)
        nn_oom();
    return p;
}

#endif
