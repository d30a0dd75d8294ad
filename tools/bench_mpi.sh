#!/bin/sh
# Data-parallel training on one machine: tokens/s of 2 ranks x 1 thread
# (mpirun -np 2 gpt train, batch B/2 each) against 1 process x 2 threads
# (batch B), on the small, medium and lecture presets, with the all-reduce's
# share of the step; then whether overlapping the all-reduce with backward
# would pay (build/tools/bench_allreduce at the lecture model's size).
# Run it on a quiet machine: it is a benchmark, not a test.
#
# usage: tools/bench_mpi.sh [build-dir]
#   STEPS="small:200 medium:60 lecture:4"  steps per preset (a few for lecture)
#   MPIRUN_FLAGS="..."                     extra mpirun flags (e.g. --oversubscribe)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
gpt=$build/examples/gpt/gpt
[ -x "$gpt" ] || { echo "bench_mpi: build first (meson compile -C $build)" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "bench_mpi: no mpirun (tools/deps.sh installs Open MPI)" >&2; exit 2; }
[ -f data/tinyshakespeare.txt ] || tools/get_data.sh
STEPS=${STEPS:-"small:200 medium:60 lecture:4"}
flags=${MPIRUN_FLAGS:-}
[ "$(id -u)" -eq 0 ] && flags="$flags --allow-run-as-root"
work=$(mktemp -d /tmp/bench_mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT

# batch size of a preset: what `gpt train --preset P --help` shows as the default
batch_of() {
    "$gpt" train --preset "$1" --help | sed -n 's/.*--batch-size N .*(default: \([0-9]*\)).*/\1/p'
}
# tokens/s from gpt train's closing line "trained N steps [(M in all)] in X s (Y tokens/s, ...); ..."
tps_of() { sed -n 's/^trained .* (\([0-9.]*\) tokens\/s.*/\1/p' "$1"; }
# "all-reduce: A ms/step (R ms in MPI_Allreduce), P% of the step time; ..."
ar_ms_of() { sed -n 's/^all-reduce: \([0-9.]*\) ms\/step.*/\1/p' "$1"; }
ar_pct_of() { sed -n 's/^all-reduce: .*, \([0-9.]*\)% of the step time.*/\1/p' "$1"; }

common="--data data/tinyshakespeare.txt --eval-interval 1000000000 --eval-iters 1 --sample-tokens 0"
rows=""
lecture_step=""
for ps in $STEPS; do
    p=${ps%%:*} steps=${ps#*:}
    B=$(batch_of "$p")
    half=$((B / 2))
    echo "bench_mpi: $p, $steps steps, global batch $B ..." >&2
    "$gpt" train --preset "$p" $common --max-iters "$steps" --threads 2 --batch-size "$B" \
        --out "$work/$p-1x2" > "$work/$p-1x2.txt"
    mpirun -np 2 $flags "$gpt" train --preset "$p" $common --max-iters "$steps" --threads 1 \
        --batch-size "$half" --out "$work/$p-2x1" > "$work/$p-2x1.txt"
    one=$(tps_of "$work/$p-1x2.txt") two=$(tps_of "$work/$p-2x1.txt")
    ms=$(ar_ms_of "$work/$p-2x1.txt") pct=$(ar_pct_of "$work/$p-2x1.txt")
    rows="$rows$(printf '%-8s %6d %12.0f %12.0f %7.2fx %14s %9s%%' "$p" "$B" "$one" "$two" \
        "$(awk "BEGIN { print $two / $one }")" "$ms" "$pct")
"
    if [ "$p" = lecture ]; then
        T=$("$gpt" train --preset lecture --help | sed -n 's/.*--block-size N .*(default: \([0-9]*\)).*/\1/p')
        lecture_step=$(awk "BEGIN { print $B * $T / $two }")
    fi
done

echo
echo "tokens/s, global batch B: 1 process x 2 threads (batch B) against 2 ranks x 1 thread (B/2 each)"
printf '%-8s %6s %12s %12s %8s %14s %10s\n' preset B "1x2 tok/s" "2x1 tok/s" "2x1/1x2" \
    "allreduce ms" "of step"
printf '%s' "$rows"
[ -n "$lecture_step" ] && printf '\nlecture step, 2 ranks x 1 thread: %.2f s  (README: <LECTURE_STEP_S>)\n' "$lecture_step"

if [ -x "$build/tools/bench_allreduce" ]; then
    echo
    echo "overlap: the lecture model's gradient all-reduce against a backward stand-in (2 ranks x 1 thread)"
    mpirun -np 2 $flags "$build/tools/bench_allreduce" --params 10788929 --reps 5
fi
