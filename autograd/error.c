/* error.c - the one overridable error handler. */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>

static void default_handler(const char *msg, void *user)
{
    AG_UNUSED(user);
    fprintf(stderr, "ag: error: %s\n", msg);
    abort();
}

static ag_error_handler handler = default_handler;
static void *handler_user;

ag_error_hook ag_set_error_handler(ag_error_handler h, void *user)
{
    ag_error_hook old = {handler == default_handler ? NULL : handler, handler_user};
    handler = h ? h : default_handler;
    handler_user = user;
    return old;
}

void ag_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    handler(msg, handler_user);
}

/* An allocation the caller cannot do without failed: the handler hears of it
 * (a program's handler can end cleanly, e.g. exit after its own cleanup); a
 * handler that returns cannot make the memory appear, so this aborts then. */
void ag_oom(size_t bytes)
{
    if (bytes)
        ag_error("out of memory allocating %zu bytes", bytes);
    else
        ag_error("out of memory");
    abort();
}
