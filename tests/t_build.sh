#!/usr/bin/env bash
# t_build.sh: the Makefile probes every library with a compile-and-link test and says ✓/✗ for
# each; a library the core needs that is missing stops the build with one line naming the
# Debian package; a missing optional one (cmocka, hwloc, MPI, CUDA, NCCL, torch) is a ✗ line. A
# compiler wrapper that refuses to link one library plays the machine that lacks it.
# timeout: 300
. "$(dirname "$0")/lib.sh"
cd "$BATON_SRC"
without() { # LIB: a cc that fails whenever asked to link -lLIB
    local w=$T_TMP/cc-no-$1
    printf '#!/bin/sh\nfor a in "$@"; do [ "$a" = "-l%s" ] && exit 1; done\nexec cc "$@"\n' "$1" >"$w"
    chmod +x "$w"
    echo "$w"
}
make -s --no-print-directory features >"$T_TMP/all.txt" 2>&1
for lib in libyaml libcrypto zlib cmocka hwloc MPI CUDA NCCL torch; do
    t_check "make's summary has a line for $lib" grep -qE "^[✓✗] $lib " "$T_TMP/all.txt"
done

make -s --no-print-directory CC="$(without yaml)" features >"$T_TMP/f.txt" 2>&1
t_grep "no libyaml: its line says ✗" '^✗ libyaml' "$T_TMP/f.txt"
make -s --no-print-directory CC="$(without yaml)" BUILD="${T_TMP#/}/b" >"$T_TMP/out.txt" \
    2>"$T_TMP/err.txt"
t_check "no libyaml: the build stops" test $? -ne 0
t_expect_eq "... with one line" "$(wc -l <"$T_TMP/err.txt")" 1
t_grep "... naming the package to install" \
    '\*\*\* baton: cannot build: install libyaml-dev \(apt-get install libyaml-dev, or make deps\)\.  Stop\.$' \
    "$T_TMP/err.txt"
make -s --no-print-directory CC="$(without crypto)" BUILD="${T_TMP#/}/b" >/dev/null 2>"$T_TMP/err.txt"
t_grep "no libcrypto: one line naming libssl-dev" '\*\*\* baton: cannot build: install libssl-dev ' \
    "$T_TMP/err.txt"
make -s --no-print-directory CC="$(without cmocka)" features >"$T_TMP/f.txt" 2>&1
t_grep "no cmocka: a ✗ line, the unit tests are left out" \
    '^✗ cmocka +\(no libcmocka-dev: unit tests not built' "$T_TMP/f.txt"
make -s --no-print-directory CC="$(without hwloc)" features >"$T_TMP/f.txt" 2>&1
t_grep "no hwloc: a ✗ line" '^✗ hwloc ' "$T_TMP/f.txt"
make -s --no-print-directory WITH_MPI=0 WITH_CUDA=0 features >"$T_TMP/f.txt" 2>&1
t_grep "WITH_MPI=0: a ✗ line" '^✗ MPI .*WITH_MPI=0' "$T_TMP/f.txt"
t_grep "WITH_CUDA=0: NCCL is off too" '^✗ NCCL ' "$T_TMP/f.txt"
# torch missing or turned off: the summary says why the backend is left out.
make -s --no-print-directory WITH_TORCH=0 features >"$T_TMP/f.txt" 2>&1
t_grep "WITH_TORCH=0: a ✗ torch line" '^✗ torch +\(WITH_TORCH=0: no torch.distributed backend' "$T_TMP/f.txt"
printf '#!/bin/sh\nexit 1\n' >"$T_TMP/nopython" && chmod +x "$T_TMP/nopython"
make -s --no-print-directory PYTHON="$T_TMP/nopython" features >"$T_TMP/f.txt" 2>&1
t_grep "a Python without torch: the ✗ torch line names the package" \
    '^✗ torch +\(.*/nopython cannot import torch.distributed \(python3-torch\)' "$T_TMP/f.txt"
rm -rf "$T_TMP/b"
t_done
