#!/bin/sh
# Quick start: installs what is missing, builds everything README.md names
# (gpt, examples/spiral, the tools, the tests), fetches tiny Shakespeare,
# trains the tiny preset (about a minute on two cores) and prints a sample.
# Extra arguments go to `gpt train` (e.g. --preset small).
set -eu
cd "$(dirname "$0")/.."
tools/deps.sh
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null
tools/get_data.sh
exec build/examples/gpt/gpt train --preset tiny "$@"
