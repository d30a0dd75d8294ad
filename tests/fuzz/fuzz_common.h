/* fuzz_common.h - what the libFuzzer harnesses share.
 *
 * Each harness is one function, fuzz_<name>_one(data, size), that returns
 * whether the input was accepted and checks its invariants with FUZZ_CHECK.
 * Under libFuzzer a broken invariant aborts (a finding); the CMocka replay
 * test (tests/test_fuzz_regressions.c) defines FUZZ_REPLAY, includes the
 * harness sources and makes FUZZ_CHECK a test failure, so every corpus and
 * regression input runs through the same code with gcc in `meson test`. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_CHECK
static void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, what);
    abort();
}
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(#cond, __FILE__, __LINE__))
#endif

#endif
