/* checks.c - what every op checks of its arguments before it runs, each
 * failure reported through ag_error with the op's name. */
#include "internal.h"

bool ag_check_inputs(const char *op, ag_tensor *const *ts, int n)
{
    for (int i = 0; i < n; i++) {
        if (!ts[i])
            return false; /* an earlier op failed and reported */
        const ag_node *t = ag_node_of(ts[i]);
        if (t->released) {
            ag_error("%s: input %d was given to ag_release and may not be used again", op, i);
            return false;
        }
        if (t->owner && t->generation != t->owner->generation) {
            ag_error("%s: input %d is from a step whose arena was reset "
                     "(tensors made in a ctx die at ag_ctx_reset)", op, i);
            return false;
        }
    }
    return true;
}

bool ag_resolve_axis(const char *op, const ag_tensor *t, int *axis)
{
    int a = *axis;
    if (a < 0)
        a += t->ndim;
    if (a < 0 || a >= t->ndim) {
        char b[128];
        ag_error("%s: axis %d out of range for shape %s", op, *axis, ag_shape_str(t, b, sizeof b));
        return false;
    }
    *axis = a;
    return true;
}
