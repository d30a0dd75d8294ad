/* ctx.c - the context: an arena per step, grad mode and a generator. */
#include "internal.h"

#include <stdlib.h>

/* Debug builds never reuse a reset step's memory (see ag_arena_reset), so a
 * tensor kept across a reset is caught: by the generation check in the next
 * step, by the sanitizers after that. */
#ifdef AG_ARENA_DEBUG
#define RELEASE_ON_RESET true
#define FIRST_BLOCK ((size_t)64 << 10) /* fresh blocks every step: keep them small */
#else
#define RELEASE_ON_RESET false
#define FIRST_BLOCK ((size_t)4 << 20)
#endif

ag_ctx *ag_ctx_new(void)
{
    ag_ctx *c = calloc(1, sizeof *c);
    if (!c)
        ag_oom(sizeof *c);
    ag_arena_init(&c->arena, FIRST_BLOCK);
    ag_arena_init(&c->scratch, FIRST_BLOCK / 4);
    c->grad_enabled = true;
    c->generation = 1;
    c->rng = ag_rng_new(0);
    return c;
}

void ag_ctx_free(ag_ctx *c)
{
    if (!c)
        return;
    ag_arena_free(&c->arena);
    ag_arena_free(&c->scratch);
    free(c);
}

void ag_ctx_reset(ag_ctx *c)
{
    ag_arena_reset(&c->arena, RELEASE_ON_RESET);
    ag_arena_reset(&c->scratch, RELEASE_ON_RESET);
    memset(c->free_bufs, 0, sizeof c->free_bufs);
    c->generation++;
}

void ag_set_grad_enabled(ag_ctx *c, bool on) { c->grad_enabled = on; }
bool ag_grad_enabled(const ag_ctx *c) { return c->grad_enabled; }
void ag_ctx_manual_seed(ag_ctx *c, uint64_t seed) { c->rng = ag_rng_new(seed); }
ag_rng *ag_ctx_rng(ag_ctx *c) { return &c->rng; }
size_t ag_ctx_bytes_used(const ag_ctx *c) { return c->arena.total + c->scratch.total; }
size_t ag_ctx_bytes_peak(const ag_ctx *c) { return c->arena.peak + c->scratch.peak; }
void *ag_ctx_alloc(ag_ctx *c, size_t bytes) { return ag_arena_alloc(&c->arena, bytes); }
void *ag_scratch(ag_ctx *c, size_t bytes) { return ag_arena_alloc(&c->scratch, bytes); }

float *ag_buf_alloc(ag_ctx *c, int64_t numel)
{
    ag_free_buf **slot = &c->free_bufs[(uint64_t)numel % 64];
    for (ag_free_buf **p = slot; *p; p = &(*p)->next)
        if ((*p)->numel == numel) {
            float *b = (float *)*p;
            *p = (*p)->next;
            return b;
        }
    /* room for the free-list link even in a 1-element buffer */
    size_t bytes = (size_t)numel * sizeof(float);
    return ag_arena_alloc(&c->arena, bytes < sizeof(ag_free_buf) ? sizeof(ag_free_buf) : bytes);
}

void ag_buf_release(ag_ctx *c, float *buf, int64_t numel)
{
    ag_free_buf *f = (ag_free_buf *)buf;
    f->numel = numel;
    f->next = c->free_bufs[(uint64_t)numel % 64];
    c->free_bufs[(uint64_t)numel % 64] = f;
}
