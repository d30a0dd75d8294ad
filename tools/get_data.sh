#!/bin/sh
# Puts tiny Shakespeare where the GPT example looks by default
# (data/tinyshakespeare.txt): copied from ../shared/data beside the project
# when that exists, otherwise downloaded from its public home (char-rnn).
# Without a network it says where to put the file by hand, or how to train
# on another text.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/data/tinyshakespeare.txt"
shared="$root/../shared/data/tinyshakespeare.txt"
url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

# what to do by hand, after the reason the download failed
by_hand() {
    cat >&2 <<MSG
data: cannot fetch tiny Shakespeare: $1
data: to go on without a network, either
data:   - copy the file (the char-rnn repository's data/tinyshakespeare/input.txt, 1115394 bytes,
data:     from $url) to
data:     $dest
data:     and run this script again, or
data:   - train on any UTF-8 text you have: build/examples/gpt/gpt train --data FILE --preset tiny
MSG
    exit 1
}

if [ -s "$dest" ]; then
    echo "data: $dest is already there"
    exit 0
fi
mkdir -p "$root/data"
rm -f "$dest.tmp"
if [ -f "$shared" ]; then
    cp "$shared" "$dest.tmp"
    echo "data: copied $shared"
else
    # the downloader's own message is the reason, not the whole story
    if command -v curl >/dev/null 2>&1; then
        why=$(curl -fsSL --connect-timeout 20 "$url" -o "$dest.tmp" 2>&1) ||
            { rm -f "$dest.tmp"; by_hand "${why:-curl failed}"; }
    elif command -v wget >/dev/null 2>&1; then
        why=$(wget -q --timeout=20 "$url" -O "$dest.tmp" 2>&1) ||
            { rm -f "$dest.tmp"; by_hand "${why:-wget failed (no network?)}"; }
    else
        by_hand "no $shared, and neither curl nor wget to download it"
    fi
    echo "data: downloaded $url"
fi
if [ ! -s "$dest.tmp" ]; then
    rm -f "$dest.tmp"
    by_hand "the fetched file is empty"
fi
mv "$dest.tmp" "$dest"
echo "data: $dest ($(wc -c < "$dest") bytes)"
