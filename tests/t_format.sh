#!/usr/bin/env bash
# t_format.sh: every C file follows the checked-in .clang-format (`make format` applies it).
# The style is defined by clang-format 14 (Debian 12's; other major versions lay out some
# constructs differently), so another version is a skip that says so, not a failure.
# timeout: 120
. "$(dirname "$0")/lib.sh"
cd "$BATON_SRC"
if ! command -v clang-format >/dev/null; then
    t_skip "sources follow .clang-format" "clang-format not installed (make deps installs it)"
    t_done
fi
major=$(clang-format --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
if [ "$major" != 14 ]; then
    t_skip "sources follow .clang-format" "the style is clang-format 14's; this is $major"
    t_done
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z '*.c' '*.h' >"$T_TMP/files"
else
    find . -path ./build -prune -o \( -name '*.c' -o -name '*.h' \) -print0 >"$T_TMP/files"
fi
n=$(tr -cd '\0' <"$T_TMP/files" | wc -c)
t_check "there are C files to check ($n)" test "$n" -gt 100
xargs -0 clang-format --style=file --dry-run --Werror --ferror-limit=1 <"$T_TMP/files" \
    >"$T_TMP/out" 2>&1
rc=$?
bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' "$T_TMP/out" |
    sort -u | tr '\n' ' ')
if [ $rc -eq 0 ]; then t_ok "all $n C files follow .clang-format"
else t_fail "all $n C files follow .clang-format" "not formatted (run make format): ${bad:-$(head -3 "$T_TMP/out")}"; fi
# The check itself catches a misformatted file.
printf 'int  main( void ){return 0;}\n' >"$T_TMP/bad.c"
cp .clang-format "$T_TMP/"
( cd "$T_TMP" && clang-format --style=file --dry-run --Werror bad.c >/dev/null 2>&1 )
t_check "a misformatted file is caught" test $? -ne 0
t_done
