/* schedule.c - learning-rate schedules as functions of the step. */
#include "nn.h"

#include <math.h>

float nn_lr_warmup(int64_t step, float lr, int64_t warmup)
{
    if (step < warmup)
        return (float)((double)lr * (double)(step + 1) / (double)warmup);
    return lr;
}

float nn_lr_cosine(int64_t step, float lr, float min_lr, int64_t warmup, int64_t decay_steps)
{
    if (step < warmup)
        return nn_lr_warmup(step, lr, warmup);
    if (step > decay_steps)
        return min_lr;
    /* decay_steps == warmup: the cosine has no length; its start is lr */
    double r = decay_steps > warmup ? (double)(step - warmup) / (double)(decay_steps - warmup) : 0.0;
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * r));
    return (float)((double)min_lr + coeff * ((double)lr - (double)min_lr));
}
