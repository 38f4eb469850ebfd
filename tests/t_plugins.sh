#!/usr/bin/env bash
# t_plugins.sh: libbaton's core links none of Open MPI, CUDA or NCCL; those backends are
# plugins (build/plugins/libbaton-*.so) that load on demand. Checks the shared library's
# SONAME and dependencies, that each plugin exports only its entry point, and, in a private
# mount namespace where libmpi and libcudart are made unloadable, that a program linked
# against libbaton.so still runs its host collectives and that asking for a missing backend
# gives one line naming the file and dlopen's reason.
# timeout: 180
. "$(dirname "$0")/lib.sh"
SO=$BATON_BUILD/libbaton.so
PLUG=$BATON_BUILD/plugins
SWEEP=$BATON_BUILD/tests/progs/coll_sweep

t_check "libbaton.so exists" test -e "$SO"
needed=$(readelf -d "$SO" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
if echo "$needed" | grep -qE 'libcudart|libnccl|libmpi|libcuda\.|libhwloc'; then
    t_fail "libbaton.so needs no CUDA, NCCL, MPI or hwloc library" "NEEDED: $needed"
else
    t_ok "libbaton.so needs no CUDA, NCCL, MPI or hwloc library ($needed)"
fi
t_check "ldd libbaton.so shows no libcudart, libnccl or libmpi" \
    sh -c "! ldd '$SO' | grep -qE 'libcudart|libnccl|libmpi'"
version=$(sed -n 's/.*BATON_VERSION_STRING "\(.*\)"/\1/p' "$BATON_SRC/include/baton.h")
soname=$(readelf -d "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
t_expect_eq "libbaton.so has the SONAME libbaton.so.<major>" "$soname" "libbaton.so.${version%%.*}"
t_check "libbaton.so is a link to libbaton.so.$version" test "$(readlink -f "$SO")" = \
    "$(readlink -f "$BATON_BUILD/libbaton.so.$version")"

for p in mpi cuda nccl; do
    f=$PLUG/libbaton-$p.so
    if [ ! -f "$f" ]; then
        t_skip "plugin $p exports only its entry point" "not built (see make's summary)"
        continue
    fi
    syms=$(nm -D --defined-only "$f" | awk '$2 != "A" {print $3}' | tr '\n' ' ')
    t_expect_eq "plugin $p exports only its entry point" "$syms" "baton_plugin_v1 "
done

# A program linked against the shared library, as a user builds one.
HELLO=$T_TMP/hello
san=${SANITIZER:+-fsanitize=$SANITIZER}
# shellcheck disable=SC2086
cc -std=c11 $san -I"$BATON_SRC/include" -o "$HELLO" "$BATON_SRC/examples/hello.c" \
    -L"$BATON_BUILD" -lbaton -Wl,-rpath,"$BATON_BUILD" 2>"$T_TMP/cc.log"
t_expect_eq "a program links against libbaton.so" "$?" 0
t_check "that program needs libbaton.so.${version%%.*}" \
    sh -c "readelf -d '$HELLO' | grep -q 'NEEDED.*libbaton.so.${version%%.*}'"
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT "$BATON" run -n 2 -- "$HELLO" >"$T_TMP/run.log" 2>&1
t_expect_eq "it runs on 2 ranks" "$?" 0
if [ -f "$PLUG/libbaton-cuda.so" ]; then
    t_grep "the CUDA plugin loads on demand, from the build tree" \
        "loaded the cuda plugin from .*/plugins/libbaton-cuda.so" "$T_TMP/run.log"
fi

# ---- a machine without libmpi and libcudart: a private mount namespace hides them ----
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
    t_skip "without libmpi and libcudart" "needs root and unshare -m"
    t_done
fi
hide=()
for p in mpi cuda nccl; do
    [ -f "$PLUG/libbaton-$p.so" ] || continue
    for lib in $(ldd "$PLUG/libbaton-$p.so" | awk '/libmpi\.so|libcudart|libnccl/ {print $3}'); do
        hide+=("$(readlink -f "$lib")")
    done
done
cat >"$T_TMP/hidden.sh" <<'EOF'
# Runs "$@" with each file in $HIDE (space-separated) replaced by an empty one.
for f in $HIDE; do mount --bind /dev/null "$f" || exit 97; done
exec "$@"
EOF
hidden() { HIDE="${hide[*]}" unshare -m bash "$T_TMP/hidden.sh" "$@"; }
t_check "libmpi/libcudart cannot be loaded in the namespace" \
    hidden sh -c "! python3 -c 'import ctypes,sys; [ctypes.CDLL(f) for f in sys.argv[1:]]' ${hide[*]} 2>/dev/null"
BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT hidden "$BATON" run -n 2 -- "$HELLO" >"$T_TMP/bare.log" 2>&1
t_expect_eq "without libmpi and libcudart, the program runs on 2 ranks" "$?" 0
t_grep "rank 1 says hello" '^\[1\] hello from rank 1 of 2$' "$T_TMP/bare.log"
if [ -f "$PLUG/libbaton-cuda.so" ]; then
    t_grep "the log says why there is no device path" \
        'no device path \(cannot load .*libbaton-cuda.so: .*\): host buffers only' "$T_TMP/bare.log"
fi
if [ -f "$PLUG/libbaton-mpi.so" ]; then
    hidden env BATON_BACKEND=mpi OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 "$SWEEP" \
        >"$T_TMP/mpi.log" 2>"$T_TMP/mpi.err"
    t_expect_eq "BATON_BACKEND=mpi without libmpi: bt_init fails (exit 3)" "$?" 3
    t_expect_eq "... in one line" "$(wc -l <"$T_TMP/mpi.log")" 1
    t_grep "... naming the plugin and dlopen's reason" \
        '^bt_init failed: BATON_BACKEND=mpi but the Open MPI backend is missing: cannot load .*libbaton-mpi.so: .*libmpi.*; hint: ' \
        "$T_TMP/mpi.log"
fi
t_done
