/* rng.c - one seedable generator: splitmix64 over a counter. */
#include "internal.h"

ag_rng ag_rng_new(uint64_t seed) { return (ag_rng){.seed = seed, .counter = 0}; }

uint64_t ag_rng_next(ag_rng *r) { return ag_hash64(r->seed, r->counter++); }

float ag_rng_uniform(ag_rng *r)
{
    /* top 24 bits: every value exactly representable, never 1.0 */
    return (float)(ag_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

float ag_rng_normal(ag_rng *r)
{
    /* Box-Muller with 53-bit uniforms in (0, 1]; one value per call keeps
     * the stream position a plain function of how many numbers were drawn. */
    double u1 = ((double)(ag_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(ag_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void ag_fill(ag_tensor *t, float v)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = v;
}

void ag_fill_uniform(ag_tensor *t, ag_rng *r, float lo, float hi)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = lo + (hi - lo) * ag_rng_uniform(r);
}

void ag_fill_normal(ag_tensor *t, ag_rng *r, float mean, float std)
{
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = mean + std * ag_rng_normal(r);
}
