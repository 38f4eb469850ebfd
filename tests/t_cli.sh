#!/usr/bin/env bash
# t_cli.sh: what a new user meets first: `baton help` lists every command and k8s action,
# `baton CMD --help` shows the command's usage (exit 0) like `baton help CMD`, and a worker
# that the dynamic loader cannot start is reported as such, not as "command not found".
# timeout: 120
. "$(dirname "$0")/lib.sh"
"$BATON" help >"$T_TMP/help" 2>&1
t_expect_eq "baton help exits 0" "$?" 0
for c in run spec topo k8s ps help; do
    t_grep "baton help lists $c" "^  $c " "$T_TMP/help"
done
t_grep "baton help names every k8s action" 'k8s +render\|apply\|delete\|local' "$T_TMP/help"
for c in run spec topo k8s ps; do
    "$BATON" help "$c" >"$T_TMP/want" 2>&1
    for flag in --help -h; do
        "$BATON" "$c" $flag >"$T_TMP/got" 2>&1
        rc=$?
        t_check "baton $c $flag exits 0 and prints baton help $c ($rc)" \
            sh -c "[ $rc = 0 ] && cmp -s '$T_TMP/want' '$T_TMP/got'"
    done
done
for a in render apply delete local; do
    "$BATON" k8s $a --help >"$T_TMP/got" 2>&1
    rc=$?
    t_check "baton k8s $a --help exits 0 with the k8s usage ($rc)" \
        sh -c "[ $rc = 0 ] && grep -q '^usage: baton k8s render' '$T_TMP/got'"
done
"$BATON" k8s >"$T_TMP/got" 2>&1
t_expect_eq "baton k8s with no action: usage error (2)" "$?" 2
t_grep "... naming every action" 'render\|apply\|delete\|local' "$T_TMP/got"

# A program that needs a shared library that is not there: ld.so exits 127.
printf 'int lib_fn(void);\nint main(void) { return lib_fn(); }\n' >"$T_TMP/m.c"
printf 'int lib_fn(void) { return 0; }\n' >"$T_TMP/l.c"
cc -shared -fPIC -o "$T_TMP/libbatonmissing.so" "$T_TMP/l.c" &&
    cc -o "$T_TMP/needlib" "$T_TMP/m.c" -L"$T_TMP" -lbatonmissing
t_expect_eq "a program linked against a library builds" "$?" 0
rm -f "$T_TMP/libbatonmissing.so"
for i in 1 2 3; do
    "$BATON" run -n 2 -- "$T_TMP/needlib" >"$T_TMP/run.out" 2>"$T_TMP/run.err"
    rc=$?
    t_expect_eq "missing library ($i): exit status 127" "$rc" 127
    t_grep "missing library ($i): the summary names the library and the loader" \
        'baton: job failed: rank [01] .* could not start: the dynamic loader said "libbatonmissing.so: cannot open shared object file.*LD_LIBRARY_PATH' \
        "$T_TMP/run.err"
done
t_check "... and never calls it 'command not found'" sh -c "! grep -q 'command not found' '$T_TMP/run.err'"
t_done
