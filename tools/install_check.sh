#!/bin/sh
# Installs the library into a scratch prefix and builds a program outside the
# tree against it with pkg-config, then runs it.
set -eu
cd "$(dirname "$0")/.."
prefix=$(mktemp -d /tmp/agrad-prefix.XXXXXX)
work=$(mktemp -d /tmp/agrad-user.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
meson setup build-install --prefix="$prefix" -Dtests=false -Dwerror=true >/dev/null
meson install -C build-install >/dev/null
libdir=$(find "$prefix" -name 'agrad.pc' -exec dirname {} \; | head -n1)
cp tools/install_check.c "$work/"
cd "$work"
PKG_CONFIG_PATH="$libdir" cc -std=c11 -Wall -Wextra -Werror -o install_check install_check.c \
    $(PKG_CONFIG_PATH="$libdir" pkg-config --cflags --libs agrad-nn) -lm
LD_LIBRARY_PATH="$(dirname "$libdir")" ./install_check
