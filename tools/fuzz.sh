#!/bin/sh
# Builds the libFuzzer harnesses (tests/fuzz) with clang and runs each for
# SECONDS (default 60) over its seed corpus, printing the executions done.
#
#   tools/fuzz.sh [SECONDS] [HARNESS...]      HARNESS: safetensors text cli (default all)
#
# Installs clang, Debian's libclang-rt-14-dev (the libFuzzer and sanitizer
# runtimes) and libomp-dev (clang's OpenMP) when missing. The build is
# build-fuzz: -Dfuzz=true, ASan + UBSan, and no OpenBLAS (-Dblas=disabled:
# Debian's OpenBLAS brings GCC's libgomp, which must not meet clang's libomp).
# Nor MPI (-Dmpi=disabled): the harnesses never start it.
# The seed corpus tests/fuzz/corpus/<name>/ is only read: what the fuzzer
# adds goes to a scratch directory ($FUZZ_WORK, default /tmp/agrad-fuzz),
# so the committed corpus stays small. Crashes, leaks and hangs (-timeout)
# are written there as crash-*, leak-*, timeout-*; the script exits 1 when a
# harness finds one. Once it is fixed, add the input to
# tests/fuzz/regressions/<name>/, named ok-* or bad-* (accepted or refused;
# ckpt-* for a loadable checkpoint): tests/test_fuzz_regressions.c replays
# those and the seeds in every `meson test`, with gcc.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
if [ $# -gt 0 ]; then shift; fi
harnesses=${*:-safetensors text cli}
build=${FUZZ_BUILD:-build-fuzz}
work=${FUZZ_WORK:-/tmp/agrad-fuzz}

# the toolchain
missing=""
for p in clang libclang-rt-14-dev libomp-dev meson ninja-build pkg-config; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "fuzz: installing$missing"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq $missing >/dev/null
fi

# the build: coverage-instrumented (fuzzer-no-link, from -Dfuzz=true) and
# sanitized; b_lundef=false because the sanitizer runtimes are linked into
# the executables, not into the shared libraries
if [ ! -d "$build" ]; then
    CC=clang meson setup "$build" -Dfuzz=true -Dblas=disabled -Dmpi=disabled -Dtests=false \
        -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized >/dev/null
fi
meson compile -C "$build" fuzz_safetensors fuzz_text fuzz_cli >/dev/null

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export OMP_NUM_THREADS=1
status=0
for h in $harnesses; do
    case $h in
    safetensors) max_len=65536 ;;
    text) max_len=65536 ;;
    cli) max_len=4096 ;;
    *) echo "fuzz: unknown harness $h (safetensors, text, cli)" >&2; exit 2 ;;
    esac
    corpus="$work/corpus/$h"
    artifacts="$work/artifacts/$h"
    mkdir -p "$corpus" "$artifacts"
    log="$work/$h.log"
    # new inputs go to the first directory ($corpus); the seeds are read only
    if "$build/tests/fuzz/fuzz_$h" "$corpus" "tests/fuzz/corpus/$h" \
        -dict="tests/fuzz/$h.dict" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FOUND SOMETHING (see $log and $artifacts)"
        status=1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)
    echo "fuzz: $h: ${execs:-?} executions in ${secs}s, coverage ${cov:-?} edges, $(ls "$corpus" | wc -l) inputs in $corpus: $result"
    if [ "$result" != ok ]; then
        grep -E 'ERROR|SUMMARY|runtime error|invariant failed|Test unit written' "$log" | head -n 10
    fi
done
exit $status
