#!/usr/bin/env bash
# t_install.sh: `make install PREFIX=...` installs the binary, both libraries, the headers and a
# pkg-config file, and a program built against the installed copy with pkg-config runs under
# the installed baton.
# timeout: 300
. "$(dirname "$0")/lib.sh"
cd "$BATON_SRC"
P=$T_TMP/prefix
build_rel=${BATON_BUILD#"$BATON_SRC"/}
make -s install PREFIX="$P" BUILD="$build_rel" SANITIZER="${SANITIZER:-}" >"$T_TMP/install.log" 2>&1
t_expect_eq "make install exits 0" "$?" 0
for f in bin/baton lib/libbaton.a lib/libbaton.so include/baton.h include/baton_ps.h \
    lib/pkgconfig/baton.pc; do
    t_check "installed $f" test -s "$P/$f"
done
export PKG_CONFIG_PATH=$P/lib/pkgconfig
t_expect_eq "pkg-config knows the version" "$(pkg-config --modversion baton)" \
    "$(sed -n 's/.*BATON_VERSION_STRING "\(.*\)"/\1/p' include/baton.h)"
san=${SANITIZER:+-fsanitize=$SANITIZER}
# shellcheck disable=SC2046
cc -std=c11 $san -o "$T_TMP/hello" examples/hello.c $(pkg-config --cflags --libs baton) \
    -Wl,-rpath,"$P/lib" 2>"$T_TMP/cc.log"
t_expect_eq "a program compiles and links with pkg-config --cflags --libs baton" "$?" 0
"$P/bin/baton" run -n 2 -- "$T_TMP/hello" >"$T_TMP/run.log" 2>&1
t_expect_eq "it runs under the installed baton" "$?" 0
t_grep "rank 1 says hello" '^\[1\] hello from rank 1 of 2$' "$T_TMP/run.log"
t_check "it uses the installed libbaton.so" sh -c "ldd '$T_TMP/hello' | grep -q '$P/lib/libbaton.so'"
major=$(sed -n 's/.*BATON_VERSION_MAJOR \([0-9]*\).*/\1/p' include/baton.h)
t_check "libbaton.so.$major is installed as a link" test -L "$P/lib/libbaton.so.$major"
for plug in "$BATON_BUILD"/plugins/libbaton-*.so; do
    [ -f "$plug" ] || continue
    t_check "installed plugin lib/baton/$(basename "$plug")" test -s "$P/lib/baton/$(basename "$plug")"
done
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
pydir=$P/lib/python$pyver/dist-packages
t_check "the baton Python package is installed in PREFIX/lib/python$pyver/dist-packages" \
    test -s "$pydir/baton/__init__.py"
PYTHONPATH=$pydir /usr/bin/python3 -c 'import baton; assert baton.size() == 1' >"$T_TMP/py.log" 2>&1
t_expect_eq "the installed package loads the installed libbaton.so" "$?" 0
if [ -f "$BATON_BUILD/python/baton/_torch.so" ]; then
    PYTHONPATH=$pydir "$P/bin/baton" run -n 2 -- /usr/bin/python3 -c \
        'import torch, torch.distributed as d, baton.torch; d.init_process_group("baton"); t = torch.ones(2); d.all_reduce(t); assert t.tolist() == [2.0, 2.0]' \
        >"$T_TMP/pyt.log" 2>&1
    t_expect_eq "import baton.torch from the installed package: an allreduce on 2 ranks" "$?" 0
    t_check "... with the installed extension, linked to the installed libbaton.so" \
        sh -c "ldd '$pydir/baton/_torch.so' | grep -q '$P/lib/python$pyver/dist-packages/baton/../../../libbaton.so\|$P/lib/libbaton.so'"
fi
if [ -f "$BATON_BUILD/plugins/libbaton-cuda.so" ]; then
    BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=INIT "$P/bin/baton" run -n 1 -- "$T_TMP/hello" \
        >"$T_TMP/plug.log" 2>&1
    t_grep "the installed libbaton loads its plugins from PREFIX/lib/baton" \
        "loaded the cuda plugin from $P/lib/baton/libbaton-cuda.so" "$T_TMP/plug.log"
fi
t_done
