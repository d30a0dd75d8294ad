#!/bin/sh
# Runs README.md's install commands exactly as written (the ```sh block after
# the line "<!-- tools/install_check.sh runs the next block -->"), with HOME set
# to a scratch directory so that "$HOME/.local" is a fresh prefix: configure,
# install, build tools/install_check.c outside the tree with pkg-config, and
# run it with no LD_LIBRARY_PATH (the .pc files carry an rpath). The block's
# build-install/ and install_check are removed afterwards.
set -eu
cd "$(dirname "$0")/.."
block=$(awk '/<!-- tools\/install_check.sh runs the next block -->/ { f = 1; next }
             f && /^```sh/ { g = 1; next }
             g && /^```/ { exit }
             g' README.md)
if [ -z "$block" ]; then
    echo "install_check: README.md has no install block for this script" >&2
    exit 1
fi
home=$(mktemp -d /tmp/agrad-home.XXXXXX)
trap 'rm -rf "$home" build-install install_check' EXIT
rm -rf build-install install_check
unset LD_LIBRARY_PATH PKG_CONFIG_PATH || true
echo "install_check: running README.md's block with HOME=$home"
HOME="$home" sh -eu -x -c "$block"
# and the installed headers compile without a warning (the flags split into words)
# shellcheck disable=SC2046
PKG_CONFIG_PATH="$home/.local/lib/pkgconfig" cc -std=c11 -Wall -Wextra -Wpedantic -Werror \
    -fsyntax-only tools/install_check.c $(PKG_CONFIG_PATH="$home/.local/lib/pkgconfig" pkg-config --cflags agrad-nn)
echo "install_check: ok"
