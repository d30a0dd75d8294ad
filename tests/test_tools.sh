#!/bin/sh
# test_tools.sh - the scripts a new user runs first, each as README.md says:
#   get_data.sh without a network says where to put the file by hand or to
#   use --data, not a raw curl error; every build/... program README.md names
#   is built, and quickstart.sh builds all of them; plot_loss.py without
#   matplotlib names the interpreter that lacks it; the install commands are
#   in README.md for tools/install_check.sh, and the .pc files carry the rpath
#   that lets programs run without LD_LIBRARY_PATH.
# Usage: test_tools.sh SOURCE_ROOT BUILD_ROOT
set -eu
src=$1
build=$2
tmp=$(mktemp -d /tmp/test_tools.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
has() { # has FILE TEXT: FILE contains TEXT
    grep -qF -- "$2" "$1" || { fail "$1 lacks \"$2\""; echo "--- $1:" >&2; cat "$1" >&2; }
}

# 1. get_data.sh offline: a project copy without ../shared/data, a curl that cannot resolve
mkdir -p "$tmp/proj/tools" "$tmp/bin"
cp "$src/tools/get_data.sh" "$tmp/proj/tools/"
cat > "$tmp/bin/curl" <<'SH'
#!/bin/sh
echo "curl: (6) Could not resolve host: raw.githubusercontent.com" >&2
exit 6
SH
chmod +x "$tmp/bin/curl"
rc=0
PATH="$tmp/bin:$PATH" sh "$tmp/proj/tools/get_data.sh" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] || fail "get_data.sh offline exited $rc, want 1"
has "$tmp/err" "data: cannot fetch tiny Shakespeare: curl: (6) Could not resolve host"
has "$tmp/err" "$tmp/proj/data/tinyshakespeare.txt"
has "$tmp/err" "gpt train --data FILE"
[ ! -e "$tmp/proj/data/tinyshakespeare.txt.tmp" ] || fail "get_data.sh left its .tmp behind"
[ ! -e "$tmp/proj/data/tinyshakespeare.txt" ] || fail "get_data.sh made the file"
# ... and with the file put there by hand it is content
printf 'First Citizen:\n' > "$tmp/proj/data/tinyshakespeare.txt"
PATH="$tmp/bin:$PATH" sh "$tmp/proj/tools/get_data.sh" >"$tmp/out" 2>&1 || fail "get_data.sh with the file there failed"
has "$tmp/out" "is already there"

# 2. every build/... program README.md names exists after a full build, and
#    quickstart.sh builds everything (no target list)
progs=$(grep -o 'build/[A-Za-z0-9_/.-]*' "$src/README.md" | sed 's/[.,]*$//' | sort -u)
[ -n "$progs" ] || fail "README.md names no build/ program"
for p in $progs; do
    [ -e "$build/${p#build/}" ] || fail "README.md names $p, which the build does not make"
done
grep -qx 'meson compile -C build >/dev/null' "$src/tools/quickstart.sh" ||
    fail "quickstart.sh does not build every target"

# 3. plot_loss.py without matplotlib names the interpreter running it
mkdir -p "$tmp/py/matplotlib"
echo 'raise ImportError("no matplotlib here")' > "$tmp/py/matplotlib/__init__.py"
for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    exe=$("$py" -c 'import sys; print(sys.executable)')
    rc=0
    PYTHONPATH="$tmp/py" "$py" "$src/tools/plot_loss.py" "$tmp/loss.csv" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" = 1 ] || fail "plot_loss.py ($exe) exited $rc, want 1"
    has "$tmp/err" "plot_loss: $exe "
    has "$tmp/err" "has no matplotlib"
    if [ "$(readlink -f "$exe")" = "$(readlink -f /usr/bin/python3 2>/dev/null || echo none)" ]; then
        has "$tmp/err" "apt-get install python3-matplotlib"
    else
        has "$tmp/err" "$exe -m pip install matplotlib"
    fi
done

# 4. the install block tools/install_check.sh runs, and the rpath in the .pc (literal $s)
has "$src/README.md" "<!-- tools/install_check.sh runs the next block -->"
# shellcheck disable=SC2016
has "$src/README.md" 'cc -std=c11 tools/install_check.c $(pkg-config --cflags --libs agrad-nn) -o install_check'
# shellcheck disable=SC2016
has "$build/meson-private/agrad.pc" '-Wl,-rpath,${libdir}'

[ "$fails" = 0 ] && echo "tools: all checks passed"
exit $((fails > 0))
