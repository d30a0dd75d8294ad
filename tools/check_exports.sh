#!/bin/sh
# check_exports.sh LIB INCDIR HEADER... - the shared library LIB exports
# exactly the functions that the public HEADERs declare: an exported symbol
# no header declares is an internal one leaking (the library is built with
# hidden visibility, so it lacks its AG_API/NN_API mark elsewhere), and a
# declared function that is not exported is one a user cannot link.
# The declarations come from the compiler ($CC, else gcc: GCC's -aux-info)
# reading the headers (INCDIR: where the headers they include live); the exports from
# `nm -D --defined-only`. Names not starting with a letter belong to the
# toolchain (sanitizers, coverage, clang's OpenMP) and are left out. Exit 77 (meson: skipped) when
# nm is missing or no compiler can list declarations.
set -eu
lib=$1 incdir=$2
shift 2
cc=${CC:-cc}
command -v nm >/dev/null 2>&1 || { echo "check_exports: no nm, skipped"; exit 77; }
work=$(mktemp -d /tmp/agrad-exports.XXXXXX)
trap 'rm -rf "$work"' EXIT

: >"$work/all.c"
for h in "$@"; do
    echo "#include \"$(realpath "$h")\"" >>"$work/all.c"
done
# -aux-info is GCC's: with another compiler (clang), gcc reads the headers if present
list_decls() {
    # shellcheck disable=SC2086 # a compiler may be a command with arguments
    $1 -std=c11 -I"$incdir" -fsyntax-only -aux-info "$work/aux.txt" "$work/all.c" 2>"$work/cc.err"
}
if ! list_decls "$cc" && ! { command -v gcc >/dev/null 2>&1 && list_decls gcc; }; then
    echo "check_exports: neither $cc nor gcc can list declarations (-aux-info), skipped"
    cat "$work/cc.err"
    exit 77
fi
# lines: /* /path/ag.h:101:NC */ extern ag_tensor *ag_empty (ag_ctx *, int, const int64_t *);
for h in "$@"; do
    grep -F "/* $(realpath "$h"):" "$work/aux.txt" || true
done | grep ' \*/ extern ' | sed -E 's/\(.*//; s/.*[ *]([A-Za-z_][A-Za-z0-9_]*) *$/\1/' |
    sort -u >"$work/declared"
nm -D --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sed 's/@.*//' | grep '^[A-Za-z]' |
    sort -u >"$work/exported"

status=0
leaked=$(comm -13 "$work/declared" "$work/exported")
missing=$(comm -23 "$work/declared" "$work/exported")
if [ -n "$leaked" ]; then
    echo "$(basename "$lib") exports symbols no public header declares:"
    echo "$leaked" | sed 's/^/  /'
    status=1
fi
if [ -n "$missing" ]; then
    echo "$(basename "$lib") does not export these declared functions (missing an API mark?):"
    echo "$missing" | sed 's/^/  /'
    status=1
fi
echo "check_exports: $(basename "$lib"): $(wc -l <"$work/exported") exported," \
    "$(wc -l <"$work/declared") declared in $*"
exit $status
