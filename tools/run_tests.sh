#!/bin/sh
# The test command: installs what is missing, configures, builds and runs
# every suite (meson test). Usage: tools/run_tests.sh [build-dir]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
tools/deps.sh
[ -d "$build" ] || meson setup "$build"
meson compile -C "$build"
meson test -C "$build" --print-errorlogs
