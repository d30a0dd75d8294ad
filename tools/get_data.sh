#!/bin/sh
# Puts tiny Shakespeare where the GPT example looks by default
# (data/tinyshakespeare.txt): copied from ../shared/data beside the project
# when that exists, otherwise downloaded from its public home (char-rnn).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/data/tinyshakespeare.txt"
shared="$root/../shared/data/tinyshakespeare.txt"
url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

if [ -s "$dest" ]; then
    echo "data: $dest is already there"
    exit 0
fi
mkdir -p "$root/data"
if [ -f "$shared" ]; then
    cp "$shared" "$dest.tmp"
    echo "data: copied $shared"
elif command -v curl >/dev/null 2>&1; then
    curl -fsSL "$url" -o "$dest.tmp"
    echo "data: downloaded $url"
elif command -v wget >/dev/null 2>&1; then
    wget -q "$url" -O "$dest.tmp"
    echo "data: downloaded $url"
else
    echo "data: no $shared and neither curl nor wget to download $url" >&2
    exit 1
fi
if [ ! -s "$dest.tmp" ]; then
    rm -f "$dest.tmp"
    echo "data: the fetched file is empty" >&2
    exit 1
fi
mv "$dest.tmp" "$dest"
echo "data: $dest ($(wc -c < "$dest") bytes)"
