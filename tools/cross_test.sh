#!/bin/sh
# Builds for 64-bit ARM with Debian's cross compiler and runs the test suite
# under qemu-user: tools/cross_test.sh [BUILD_DIR] (default build-aarch64).
# Installs what is missing (root or sudo): gcc-aarch64-linux-gnu, qemu-user,
# and the arm64 libraries the programs load (the arm64 architecture is added
# to dpkg for them). The build uses the built-in matmul (no OpenBLAS for
# arm64 here) and no -march=native (tools/cross/aarch64-linux-gnu.ini).
#
# gpt_train is left out: its long training runs take over 10 minutes under
# emulation (26 s natively); gpt_sample and gpt_cli still run the gpt
# program end to end. Set CROSS_ALL=1 to run every suite.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-aarch64}
cd "$root"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
missing=""
for p in gcc-aarch64-linux-gnu qemu-user; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "cross_test: adding the arm64 architecture to dpkg"
    $SUDO dpkg --add-architecture arm64
    missing="$missing libc6:arm64 libgomp1:arm64 libcmocka-dev:arm64"
else
    for p in libc6:arm64 libgomp1:arm64 libcmocka-dev:arm64; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
fi
if [ -n "$missing" ]; then
    echo "cross_test: installing$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    $SUDO apt-get install -y -qq --no-remove $missing >/dev/null
fi

if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" --cross-file tools/cross/aarch64-linux-gnu.ini -Dblas=disabled \
        -Dnative=false -Dwerror=true
fi
meson compile -C "$dir"
# the ELF header's machine field: 0xb7, EM_AARCH64
[ "$(od -An -tx1 -j18 -N1 "$dir/autograd/libagrad.so" | tr -d ' ')" = b7 ] || {
    echo "cross_test: $dir/autograd/libagrad.so is not an aarch64 library" >&2
    exit 1
}
if [ "${CROSS_ALL:-0}" = 1 ]; then
    meson test -C "$dir" --print-errorlogs --timeout-multiplier 4
else
    # shellcheck disable=SC2046 # one word per test name
    meson test -C "$dir" --print-errorlogs --timeout-multiplier 2 \
        $(meson test -C "$dir" --list 2>/dev/null | sed -n 's|^.* / ||p' | grep -vx gpt_train)
fi
