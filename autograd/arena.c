/* arena.c - the bump allocator behind every step's tensors. */
#include "internal.h"

#include <stdlib.h>

#define ALIGN 64

static void *xaligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, ALIGN, bytes) != 0 || !p)
        ag_oom(bytes);
    return p;
}

void ag_arena_init(ag_arena *a, size_t min_block)
{
    memset(a, 0, sizeof *a);
    a->min_block = min_block;
}

static void bury(ag_arena *a)
{
    for (int i = 0; i < a->ngrave; i++)
        free(a->grave[i]);
    free(a->grave);
    a->grave = NULL;
    a->ngrave = 0;
}

void ag_arena_free(ag_arena *a)
{
    bury(a);
    for (int i = 0; i < a->nblocks; i++)
        free(a->blocks[i]);
    free(a->blocks);
    free(a->caps);
    memset(a, 0, sizeof *a);
}

static void push_block(ag_arena *a, size_t cap)
{
    if (a->nblocks == a->cap_blocks) {
        int n = a->cap_blocks ? 2 * a->cap_blocks : 8;
        char **b = realloc(a->blocks, (size_t)n * sizeof *b);
        size_t *c = realloc(a->caps, (size_t)n * sizeof *c);
        if (!b || !c)
            ag_oom((size_t)n * (sizeof *b + sizeof *c));
        a->blocks = b;
        a->caps = c;
        a->cap_blocks = n;
    }
    a->blocks[a->nblocks] = xaligned(cap);
    a->caps[a->nblocks] = cap;
    a->nblocks++;
}

void *ag_arena_alloc(ag_arena *a, size_t bytes)
{
    bytes = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (bytes == 0)
        bytes = ALIGN;
    while (a->cur < a->nblocks && a->used + bytes > a->caps[a->cur]) {
        a->cur++;
        a->used = 0;
    }
    if (a->cur == a->nblocks) {
        size_t last = a->nblocks ? a->caps[a->nblocks - 1] : 0;
        size_t cap = a->min_block > 2 * last ? a->min_block : 2 * last;
        if (cap < bytes)
            cap = bytes;
        push_block(a, cap);
        a->used = 0;
    }
    void *p = a->blocks[a->cur] + a->used;
    a->used += bytes;
    a->total += bytes;
    if (a->total > a->peak)
        a->peak = a->total;
    return p;
}

/* release (debug builds): the step's blocks are set aside untouched for one
 * more step, then freed. A tensor used in the step after its reset still has
 * its header, so the generation check names it; used later still, the
 * access is a use-after-free the sanitizers report. */
void ag_arena_reset(ag_arena *a, bool release)
{
    if (release) {
        bury(a);
        a->grave = malloc((size_t)(a->nblocks ? a->nblocks : 1) * sizeof *a->grave);
        if (!a->grave)
            ag_oom((size_t)(a->nblocks ? a->nblocks : 1) * sizeof *a->grave);
        if (a->nblocks) /* blocks is NULL before the first one */
            memcpy(a->grave, a->blocks, (size_t)a->nblocks * sizeof *a->grave);
        a->ngrave = a->nblocks;
        a->nblocks = 0;
    } else if (a->nblocks > 1) {
        size_t cap = 0;
        for (int i = 0; i < a->nblocks; i++) {
            cap += a->caps[i];
            free(a->blocks[i]);
        }
        a->nblocks = 0;
        if (cap)
            push_block(a, cap);
    }
    a->cur = 0;
    a->used = 0;
    a->total = 0;
}
