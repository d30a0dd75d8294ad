#!/bin/sh
# Installs the build dependencies on Debian/Ubuntu when any is missing (needs
# root or sudo). The one list README.md and .ci/run name.
set -eu
PKGS="gcc meson ninja-build pkg-config libcmocka-dev libopenblas-openmp-dev libopenmpi-dev openmpi-bin"
missing=""
for p in $PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing >/dev/null
