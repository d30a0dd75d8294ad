#!/bin/sh
# Background CPU load for thread benchmarks: N busy shells
# (`sh -c 'while :; do :; done'`), the "two CPU-bound processes beside it"
# of the load check. With a command after N, runs it under the load and
# returns its exit status; without one, holds the load until interrupted.
# The spinners are killed on every exit path.
#
#   tools/load.sh 2 build/examples/gpt/gpt bench --preset tiny
#   tools/load.sh 2 &  ...  kill %1
set -eu
n=${1:?usage: tools/load.sh N [command ...]}
shift
pids=""
sleeper=""
cleanup() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null
    for p in $pids; do
        kill "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
i=0
while [ "$i" -lt "$n" ]; do
    sh -c 'while :; do :; done' &
    pids="$pids $!"
    i=$((i + 1))
done
if [ $# -gt 0 ]; then
    "$@"
else
    while :; do
        sleep 3600 &
        sleeper=$!
        wait "$sleeper" # interruptible, unlike a foreground sleep
    done
fi
