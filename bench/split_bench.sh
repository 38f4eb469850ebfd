#!/usr/bin/env bash
# split_bench.sh: bt_comm_split and bt_comm_dup time at 2-8 ranks, over baton's shared memory
# and TCP (baton run -n N) and over Open MPI (mpirun -np N: MPI_Comm_split/MPI_Comm_dup),
# interleaved rounds, median of the rounds' medians with their min-max.
#
#   bench/split_bench.sh [-r ROUNDS] [-n ITERS] [-s "2 3 4 8"] [-p shm,tcp,mpi]
#       ROUNDS  rounds of every (program, ranks), interleaved (default 3)
#       ITERS   splits timed per run (default 10; split_bench's median of them is one sample)
#   BUILD=build/x bench/split_bench.sh -r 1 -n 2        (a smoke run)
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
rounds=3 iters=10 sizes="2 3 4 5 6 7 8" programs="shm,tcp,mpi"
while [ $# -gt 0 ]; do
    case "$1" in
    -r) rounds=${2:?}; shift 2 ;;
    -n) iters=${2:?}; shift 2 ;;
    -s) sizes=${2:?}; shift 2 ;;
    -p) programs=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "split_bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
B=$BUILD/bench/split_bench
[ -x "$B" ] && [ -x "$BUILD/baton" ] || { echo "split_bench.sh: build first (make BUILD=$BUILD)" >&2; exit 2; }
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
OUT=$(mktemp -d /tmp/baton-split.XXXXXX)
IFS=, read -ra progs <<<"$programs"
for r in $(seq "$rounds"); do
    for n in $sizes; do
        for p in "${progs[@]}"; do
            f=$OUT/$p.$n.$r.txt
            case "$p" in
            shm | tcp) "$BUILD/baton" run -n "$n" --no-tag-output -- "$B" --backend "$p" -n "$iters" >"$f" 2>"$f.err" ;;
            mpi) command -v mpirun >/dev/null && [ -f "$BUILD/plugins/libbaton-mpi.so" ] || continue
                 "${MPIRUN[@]}" -np "$n" "$B" -n "$iters" >"$f" 2>"$f.err" ;;
            *) echo "split_bench.sh: unknown program $p (shm tcp mpi)" >&2; exit 2 ;;
            esac || echo "   round $r $p n=$n FAILED: $(tail -2 "$f.err" | tr '\n' ' ')"
        done
    done
    echo "   round $r of $rounds done ($(cut -d' ' -f1 /proc/loadavg) load)"
done
/usr/bin/python3 - "$OUT" "$rounds" "$sizes" "${progs[@]}" <<'PY'
import os, statistics, sys
out, rounds, sizes, progs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
bad = 0
def med(v):
    if not v:
        return "-"
    m = statistics.median(v)
    return "%.0f" % m if len(v) == 1 else "%.0f (%.0f-%.0f)" % (m, min(v), max(v))
for call in ("split", "dup"):
    print("\n%s time in us, median of %d rounds (min-max) of each run's median" % (call, rounds))
    print("| ranks | " + " | ".join(progs) + " |")
    print("|---:|" + "---:|" * len(progs))
    for n in sizes:
        cells = []
        for p in progs:
            v = []
            for r in range(1, rounds + 1):
                try:
                    for line in open(os.path.join(out, "%s.%s.%d.txt" % (p, n, r))):
                        a = line.split()
                        if len(a) == 6 and a[1] == call:
                            v.append(float(a[2]))
                            if a[5] != "0":
                                bad += 1
                                print("WRONG RESULT: %s n=%s round %d" % (p, n, r))
                except OSError:
                    pass
            cells.append(med(v))
        print("| %s | %s |" % (n, " | ".join(cells)))
sys.exit(1 if bad else 0)
PY
rc=$?
echo "(raw outputs in $OUT)"
exit $rc
