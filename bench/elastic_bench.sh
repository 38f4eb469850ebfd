#!/usr/bin/env bash
# elastic_bench.sh: an elastic job losing a node and taking a new one, baton next to torchrun.
#
#   bench/elastic_bench.sh [RUNS]        (default 3; BUILD=build; SYSTEMS="baton inplace torchrun")
#
# Each run starts 3 "nodes" on this machine, each an agent with one worker: `baton run --nnodes
# 2:3 --rdzv-last-call 1` and `/usr/bin/python3 -m torch.distributed.run --nnodes 2:3
# --rdzv_backend c10d --max_restarts 10 -r 1 -t 1 --log_dir DIR` (Debian's torchrun 1.13 needs
# the last three to avoid its crash), with the same program, tests/progs/ddp_elastic.py (a DDP
# step, a gloo all_reduce and a checkpoint every few steps). Once all 3 workers step, the
# third node dies (its agent and its worker SIGKILLed at once); "re-form" is the time until
# both survivors' workers step again as a
# world of 2. A new third agent is started; "join" is the time until all three workers step as
# a world of 3. Then only that agent is SIGKILLed: "orphan" says whether its worker still runs
# 5 s later (torchrun's does: it keeps the old world training; baton's watchdog kills it).
# "inplace" is baton with BATON_ELASTIC_INPLACE=1 (docs/elastic.md): the survivors' workers are
# not restarted but re-form their process group from BATON_ELASTIC_FILE, and the joiner's worker
# starts (Python, import torch) while its agent waits to be admitted. Runs are interleaved
# (baton, inplace, torchrun, baton, ...); the summary gives median, min-max and the ratios.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
RUNS=${1:-3}
PY=/usr/bin/python3
PROG=$PWD/tests/progs/ddp_elastic.py
OUT=$(mktemp -d /tmp/baton-elastic-bench.XXXXXX)
export BATON_TOKEN=bench-$$
[ -x "$BUILD/baton" ] || { echo "elastic_bench.sh: $BUILD/baton is missing; run make first" >&2; exit 2; }
"$PY" -c 'import torch.distributed.run' 2>/dev/null ||
    { echo "elastic_bench.sh: $PY cannot import torch (python3-torch)" >&2; exit 2; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$OUT"; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# ups DIR WORLD: how many up.* files of DIR say world=WORLD
ups() { cat "$1"/up.* 2>/dev/null | grep -c "world=$2 "; }
until_ups() { # DIR N WORLD SEC: 0 once N workers say world=WORLD; 1 on timeout, 2 when an
    local i=0 p   # agent of LIVE died (torchrun 1.13's agents sometimes crash on their store)
    until [ "$(ups "$1" "$3")" -ge "$2" ]; do
        [ $i -ge $(($4 * 20)) ] && return 1
        for p in "${LIVE[@]}"; do kill -0 "$p" 2>/dev/null || return 2; done
        sleep 0.05; i=$((i + 1))
    done
}
agent() { # SYSTEM DIR PORT ID: starts one agent; its pid in $AGENT
    local sys=$1 dir=$2 port=$3 id=$4
    if [ "$sys" != torchrun ]; then
        BATON_ELASTIC_INPLACE=$([ "$sys" = inplace ] && echo 1 || echo 0) "$BUILD/baton" run --nnodes 2:3 --node-rank "$id" --rdzv "127.0.0.1:$port" -n 1 \
            --rdzv-last-call 1 --grace 5 -- "$PY" "$PROG" "$dir" >>"$dir/agent$id.log" 2>&1 &
    else
        "$PY" -m torch.distributed.run --nnodes 2:3 --nproc_per_node 1 --rdzv_backend c10d \
            --rdzv_endpoint "127.0.0.1:$port" --rdzv_id bench --max_restarts 10 -r 1 -t 1 \
            --log_dir "$dir/logs$id.$RANDOM" "$PROG" "$dir" >>"$dir/agent$id.log" 2>&1 &
    fi
    AGENT=$!
    PIDS+=("$AGENT")
}
descendants() { # PID: every process below it
    local c
    for c in $(ps -o pid= --ppid "$1"); do echo "$c"; descendants "$c"; done
}

LIVE=()
abandon() { # SYSTEM DIR WHY: a run that cannot go on: its agents and workers are killed, the
    local p  # run is reported (not counted) and the next one starts
    echo "$1: run abandoned: $3 (within 300 s, or an agent died: see $2/agent*.log)" >&2
    for p in "${LIVE[@]}"; do kill -KILL $(descendants "$p") "$p" 2>/dev/null; done
    LIVE=()
}
one_run() { # SYSTEM: appends "reform join orphan" to $OUT/SYSTEM.txt
    local sys=$1 dir=$OUT/$1.$RANDOM port a=() w t0 reform join orphan=no
    mkdir -p "$dir"
    port=$(free_port)
    for id in 0 1 2; do agent "$sys" "$dir" "$port" "$id"; a[$id]=$AGENT; done
    LIVE=("${a[@]}")
    until_ups "$dir" 3 3 300 || { abandon "$sys" "$dir" "the 3 workers never started"; return 1; }
    # a node dies: its agent and its worker, SIGKILL at once
    w=$(descendants "${a[2]}" | xargs)
    rm -f "$dir"/up.*
    t0=$(now); kill -KILL "${a[2]}" $w
    LIVE=("${a[0]}" "${a[1]}")
    until_ups "$dir" 2 2 300 || { abandon "$sys" "$dir" "no re-form"; return 1; }
    reform=$(echo "$(now) - $t0" | bc)
    rm -f "$dir"/up.*
    t0=$(now); agent "$sys" "$dir" "$port" 2; a[2]=$AGENT
    LIVE=("${a[@]}")
    until_ups "$dir" 3 3 300 || { abandon "$sys" "$dir" "the joiner never ran"; return 1; }
    join=$(echo "$(now) - $t0" | bc)
    # only an agent is killed: does its worker outlive it? (looked at 5 s later)
    w=$(descendants "${a[2]}" | xargs)
    kill -KILL "${a[2]}"
    for _ in $(seq 100); do
        orphan=no
        for p in $w; do kill -0 "$p" 2>/dev/null && orphan=yes; done
        [ $orphan = no ] && break
        sleep 0.05
    done
    for p in $w; do kill -KILL "$p" 2>/dev/null; done  # an orphan is reaped here, not left
    touch "$dir/stop"
    for id in 0 1; do
        for _ in $(seq 600); do kill -0 "${a[$id]}" 2>/dev/null || break; sleep 0.05; done
    done
    kill -KILL "${a[0]}" "${a[1]}" 2>/dev/null
    printf '%s %.2f %.2f %s\n' "$sys" "$reform" "$join" "$orphan" | tee -a "$OUT/$sys.txt"
}

echo "elastic_bench: $RUNS runs each, interleaved; $(nproc) cores; $(date -u +%FT%TZ)"
SYSTEMS=${SYSTEMS:-baton inplace torchrun}
for r in $(seq "$RUNS"); do for s in $SYSTEMS; do one_run "$s"; done; done
stats() { # FILE COLUMN: "median (min-max)"
    awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{v[NR]=$1} END {
        m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
        printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR]}'
}
med() { awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{v[NR]=$1} END {print NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
echo
printf '%-9s %-24s %-24s %s\n' "" "re-form after a kill" "join of a new node" "orphan worker"
for s in $SYSTEMS; do
    [ -s "$OUT/$s.txt" ] || { printf '%-9s no run completed\n' "$s"; continue; }
    printf '%-9s %-24s %-24s %s\n' "$s" "$(stats "$OUT/$s.txt" 2)" "$(stats "$OUT/$s.txt" 3)" \
        "$(awk '{print $4}' "$OUT/$s.txt" | sort | uniq -c | xargs)"
done
for s in baton inplace; do
    [ -s "$OUT/torchrun.txt" ] && [ -s "$OUT/$s.txt" ] || continue
    printf 'torchrun/%s: re-form %.1fx, join %.1fx\n' "$s" \
        "$(echo "$(med "$OUT/torchrun.txt" 2) / $(med "$OUT/$s.txt" 2)" | bc -l)" \
        "$(echo "$(med "$OUT/torchrun.txt" 3) / $(med "$OUT/$s.txt" 3)" | bc -l)"
done
