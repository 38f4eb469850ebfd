#!/usr/bin/env bash
# t_soak.sh: a soak of short `baton run -n 2` jobs, each with one random fault, seeded. The seed
# is printed; T_SOAK_SEED=N replays a run, T_SOAK_JOBS=N sets the number of jobs (200) and
# T_SOAK_SECS=S a time budget (60 s): no job starts after it, so a slower machine runs fewer jobs
# (the count run is printed) instead of hitting the test's timeout. Faults:
#   none     the workers sleep 0.1-0.3 s                         exit 0, no "job failed" line
#   exit3    rank R exits 3                                      exit 3, the line names rank R
#   kill     the test SIGKILLs rank R (by its pid)               exit 137, the line names rank R
#   stop     rank R of coll_check SIGSTOPs itself in allreduce K exit 142 naming rank R, stopped
#   term     SIGTERM to baton                                    exit 143, "received SIGTERM"
#   kill9    kill -9 of baton                                    the watchdog says it cleaned up
#   garbage  1-3 loopback connections send random bytes to the store during the job
#                                                                exit 0, the store logs each peer
# After every job: every pid the job recorded (each worker writes its own through a wrapper,
# plus the watchdog's from the INFO log) is gone within 5 s and no /dev/shm/baton-<baton's
# pid>-* is left. At the end: no network namespace bt-* appeared (the soak makes none), and one
# line of counts and fault-to-exit times per kind. One TAP line per job.
# Limits: BATON_TIMEOUT=3 BATON_HEARTBEAT_TIMEOUT=2 (BATON_TIMEOUT=1 for the stop fault).
# Measured on the 2-core dev machine: 200 jobs in 88-92 s (two runs, 2026-11); 136 s in the
# fresh-clone CI run of 2026-12-02 (so about 130 jobs fit a 90 s budget there; the budget is 60 s since).
# Every wait is a poll with a deadline; the only sleeps are the short random ones before a fault.
# Only processes this test started are ended, by pid.
# serial: looks at every /dev/shm name or network namespace on the machine
# timeout: 240
. "$(dirname "$0")/lib.sh"
W=$BATON_BUILD/tests/progs/launch_worker
C=$BATON_BUILD/tests/progs/coll_check
[ -x "$W" ] && [ -x "$C" ] || { t_fail "build" "$W or $C missing"; t_done; }
SEED=${T_SOAK_SEED:-$(( $(date +%s%N) % 1000000 ))}
JOBS=${T_SOAK_JOBS:-200}
SECS=${T_SOAK_SECS:-60}
RANDOM=$SEED
echo "# seed $SEED (replay: T_SOAK_SEED=$SEED T_SOAK_JOBS=$JOBS bash tests/t_soak.sh)"
export BATON_TIMEOUT=3 BATON_HEARTBEAT_TIMEOUT=2 BATON_DEBUG=INFO BATON_DEBUG_SUBSYS=LAUNCH,RDZV
KINDS=(none exit3 kill stop term kill9 garbage)
declare -A COUNT=() FAILS=() TSUM=() TMAX=()
for k in "${KINDS[@]}"; do COUNT[$k]=0 FAILS[$k]=0 TSUM[$k]=0 TMAX[$k]=0; done

netns_bt() { ip netns list 2>/dev/null | awk '{print $1}' | grep '^bt-' | sort; ls /run/netns 2>/dev/null | grep '^bt-' | sort; }
NETNS_BEFORE=$(netns_bt | sort -u)

WRAP=$T_TMP/wrap.sh
cat >"$WRAP" <<'EOF'
#!/bin/sh
# wrap.sh DIR CMD...: records this worker's pid (atomically) and the store's address, runs CMD.
d=$1; shift
echo "$BATON_RDZV" >"$d/.rdzv.$BATON_RANK" && mv "$d/.rdzv.$BATON_RANK" "$d/rdzv"
echo $$ >"$d/.pid.$BATON_RANK" && mv "$d/.pid.$BATON_RANK" "$d/pid.$BATON_RANK"
exec "$@"
EOF
chmod +x "$WRAP"

# rsleep MAX_MS: a random sleep of 0..MAX_MS ms before a fault (not a wait for an event).
rsleep() { sleep "$(printf '0.%03d' $((RANDOM % $1)))"; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
# garbage HOST PORT: one loopback connection that sends 1-400 random bytes and closes.
garbage() {
    local n=$((RANDOM % 400 + 1))
    { exec 3<>"/dev/tcp/$1/$2" && head -c "$n" /dev/urandom >&3 && exec 3>&-; } 2>/dev/null
}

# job I KIND: one job with one fault; sets PROBLEMS (empty when all is right) and DT (ms, fault
# to baton's exit).
job() {
    local i=$1 kind=$2 d=$T_TMP/j$1 r=$((RANDOM % 2)) bp want line="" sent=0 t0 cmd
    mkdir -p "$d"
    PROBLEMS=""
    case $kind in
    none) cmd=("$W" --sleep "0.$((RANDOM % 3 + 1))") ;;
    exit3) cmd=("$W" --rank "$r" --code 3 --delay $((RANDOM % 200 + 20)) --sleep 3) ;;
    stop) cmd=("$C" --count 1024 --iters 100000 --die-rank "$r" --die-at $((RANDOM % 20 + 1)) --signal STOP) ;;
    garbage) cmd=("$W" --sleep 0.5) ;;
    *) cmd=("$W" --sleep 5) ;;
    esac
    t0=$(now_ms)
    if [ "$kind" = stop ]; then
        BATON_TIMEOUT=1 t_bg "$BATON" run -n 2 -- "$WRAP" "$d" "${cmd[@]}" >"$d/out" 2>"$d/err"
    else
        t_bg "$BATON" run -n 2 -- "$WRAP" "$d" "${cmd[@]}" >"$d/out" 2>"$d/err"
    fi
    bp=$T_LAST_PID
    case $kind in
    kill | term | kill9 | garbage)
        if ! t_wait_files 2 "$d" 10 '^pid\.'; then
            PROBLEMS+=" the workers did not start;"
        else
            rsleep 150
            t0=$(now_ms)
            case $kind in
            kill) kill -KILL "$(cat "$d/pid.$r")" ;;
            term) kill -TERM "$bp" ;;
            kill9) kill -KILL "$bp" ;;
            garbage)
                local a n=$((RANDOM % 3 + 1)) k
                a=$(cat "$d/rdzv")
                for ((k = 0; k < n; k++)); do garbage "${a%:*}" "${a##*:}" && sent=$((sent + 1)); done ;;
            esac
        fi ;;
    esac
    t_wait "$bp" 20 >/dev/null
    DT=$(($(now_ms) - t0))
    T_PIDS=() # baton is reaped: never signal its pid again at exit (it may be reused)
    local pid_r
    pid_r=$(cat "$d/pid.$r" 2>/dev/null)
    case $kind in
    none | garbage) want=0 ;;
    exit3) want=3; line="^baton: job failed: rank $r \(node 0, host [^,]+, pid $pid_r\) exited with code 3" ;;
    kill) want=137; line="^baton: job failed: rank $r \(node 0, host [^,]+, pid $pid_r\) was killed by SIGKILL" ;;
    stop) want=142; line="^baton: job failed: job hung: rank $r \(node 0, host [^,]+, pid $pid_r, stopped: SIGSTOP" ;;
    term) want=143; line="^baton: job failed: baton on node 0 \(host [^)]+\) received SIGTERM; the workers were stopped" ;;
    kill9) want=137 ;;
    esac
    [ "$T_RC" = "$want" ] || PROBLEMS+=" exit $T_RC, want $want;"
    # Every recorded pid and the watchdog gone within 5 s.
    local dog pids left="" p
    dog=$(grep -o 'watchdog pid [0-9]*' "$d/err" | grep -o '[0-9]*$')
    [ -n "$dog" ] || PROBLEMS+=" no watchdog pid in the log;"
    pids="$(cat "$d"/pid.* 2>/dev/null) $dog"
    if ! gone_within 5 $pids; then
        for p in $pids; do t_alive "$p" && left+=" $p"; done
        PROBLEMS+=" left running:$left;"
        for p in $left; do kill -KILL "$p" 2>/dev/null; done
    fi
    [ "$kind" = kill9 ] && DT=$(($(now_ms) - t0)) # kill -9 to the last process of the job gone
    if ls /dev/shm 2>/dev/null | grep -q "^baton-$bp-"; then
        PROBLEMS+=" left /dev/shm/baton-$bp-*;"
        rm -f /dev/shm/baton-"$bp"-*
    fi
    if [ -n "$line" ] && ! grep -qE -- "$line" "$d/err"; then PROBLEMS+=" no line /$line/;"; fi
    case $kind in
    none | garbage)
        ! grep -q '^baton: job failed' "$d/err" || PROBLEMS+=" a 'job failed' line on a success;" ;;
    kill9)
        grep -qE "^baton watchdog: baton \(pid $bp\) ended without stopping its job; sent SIGKILL" "$d/err" ||
            PROBLEMS+=" no watchdog line;" ;;
    esac
    if [ "$kind" = garbage ]; then
        local logged
        logged=$(grep -cE 'WARN RDZV closing connection from 127\.0\.0\.1:[0-9]+: ' "$d/err")
        [ "$sent" -ge 1 ] && [ "$logged" -ge "$sent" ] ||
            PROBLEMS+=" $sent garbage connection(s) sent, $logged logged by the store;"
    fi
    [ -z "$PROBLEMS" ] && rm -rf "$d"
}

t_start=$SECONDS
ran=0
for ((i = 1; i <= JOBS && SECONDS - t_start < SECS; i++)); do
    ran=$i
    kind=${KINDS[$((RANDOM % ${#KINDS[@]}))]}
    job "$i" "$kind"
    COUNT[$kind]=$((COUNT[$kind] + 1))
    TSUM[$kind]=$((TSUM[$kind] + DT))
    [ "$DT" -gt "${TMAX[$kind]}" ] && TMAX[$kind]=$DT
    if [ -z "$PROBLEMS" ]; then
        t_ok "job $i ($kind): exit, report line, no process and no /dev/shm name left (${DT} ms)"
    else
        FAILS[$kind]=$((FAILS[$kind] + 1))
        t_fail "job $i ($kind)" "$PROBLEMS"
        sed 's/^/    | /' "$T_TMP/j$i/err" | grep -v ' INFO ' | tail -8
    fi
done
elapsed=$((SECONDS - t_start))

t_expect_eq "no network namespace bt-* appeared" "$(netns_bt | sort -u)" "$NETNS_BEFORE"
echo "# seed $SEED, $ran of $JOBS jobs in ${elapsed} s (budget $SECS s)"
echo "# kind      jobs  failed  mean ms  max ms  (fault, or job start, to baton's exit; kill9: to the job's last process gone)"
summary=""
for k in "${KINDS[@]}"; do
    c=${COUNT[$k]}
    printf '# %-9s %4d  %6d  %7d  %6d\n' "$k" "$c" "${FAILS[$k]}" $((c ? TSUM[$k] / c : 0)) "${TMAX[$k]}"
    summary+="$k=$c "
done
t_expect_eq "soak: every job right (${summary% })" \
    "$(for k in "${KINDS[@]}"; do echo -n "${FAILS[$k]}"; done)" \
    "$(for k in "${KINDS[@]}"; do echo -n 0; done)"
t_done
