#!/usr/bin/env bash
# t_fuzz.sh: builds the libFuzzer targets of tests/fuzz/ (make fuzz-build: clang, into
# build/fuzz; a rebuild is quick when nothing changed) and runs each on its seed corpus for
# a few seconds: every seed must load, and a short round of mutations must find no crash,
# leak, hang or undefined behaviour. Skipped, with the reason, without clang or libFuzzer.
# Longer runs: make fuzz (FUZZ_SECONDS per target). See docs/testing.md, Fuzzing.
# timeout: 480
. "$(dirname "$0")/lib.sh"
cd "$BATON_SRC"
SECS=${T_FUZZ_SECONDS:-3}
if ! command -v clang >/dev/null; then
    t_skip "fuzz targets" "no clang (apt-get install clang libclang-rt-dev, or make deps)"; t_done
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
    clang -x c -fsanitize=fuzzer,address,undefined -o "$T_TMP/probe" - 2>"$T_TMP/probe.err"; then
    t_skip "fuzz targets" "clang cannot link -fsanitize=fuzzer (libclang-rt-dev missing?): $(head -1 "$T_TMP/probe.err")"
    t_done
fi
t0=$SECONDS
if make -j2 --no-print-directory fuzz-build >"$T_TMP/build.log" 2>&1; then
    t_ok "make fuzz-build ($((SECONDS - t0)) s)"
else
    t_fail "make fuzz-build" "$(grep -m3 -E 'error|Error' "$T_TMP/build.log")"; t_done
fi
for f in tests/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    t_check "$n: seeds in tests/fuzz/corpus/$n" test -n "$(ls "tests/fuzz/corpus/$n" 2>/dev/null)"
    # At most 1,000 inputs for the targets that connect over loopback: more would leave
    # thousands of sockets in TIME_WAIT for the tests that run after this one.
    if FUZZ_BUILD=$BATON_SRC/build/fuzz FUZZ_WORK=$T_TMP/corpus FUZZ_NET_RUNS=1000 \
        ./tests/fuzz/run.sh "$SECS" "$n" >"$T_TMP/$n.line"; then
        t_ok "$(cat "$T_TMP/$n.line")"
    else
        t_fail "$n" "$(cat "$T_TMP/$n.line")"
        tail -30 "build/fuzz/logs/$n.log" | sed 's/^/    | /'
    fi
done
t_done
