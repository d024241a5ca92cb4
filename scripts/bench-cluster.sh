#!/usr/bin/env bash
# bench-cluster.sh — how fast a 3-node baton cluster takes writes, compared to a 3-member
# etcd cluster, on one machine over loopback.
#
# What it measures
#   1. Credential writes: PUT /v1/credentials/NAME of a static credential (the same spec
#      every time) on baton, against etcd puts of the same bytes through etcd's HTTP/JSON
#      gateway (POST /v3/kv/put, base64 key and value). With PUT_NAMES=cycle (the default)
#      each wrk thread writes its own CONNS/THREADS names in turn, so nearly every write
#      replaces an existing entry and neither store grows; with PUT_NAMES=unique every write
#      goes to a new name (for baton, a new credential, which its rotation engine then
#      issues: two more log entries each).
#   2. Lease pairs: on baton, POST /v1/leases/NAME/acquire then /release with the fence it
#      answered; on etcd, POST /v3/lease/grant then /v3/lease/revoke with the lease's ID. A
#      pair is counted when its release answers 2xx (see bench/cluster-lease.lua).
#   Both with wrk (one Lua script per workload, bench/cluster-*.lua), THREADS threads and
#   CONNS keep-alive connections, DURATION seconds per round, ROUNDS rounds, every request
#   sent to the leader of each cluster. baton requests carry the root token and are audited
#   (the default audit log); etcd runs without authentication.
#   Durability: baton commits each Raft log append and each applied batch with a durable
#   redb transaction (fsync); etcd fsyncs its WAL before acknowledging (its default; no
#   --unsafe-no-fsync). Every data directory lives in one temporary directory, so both
#   systems write to the same filesystem (printed at the start).
#   Rounds are interleaved (the order of the two systems alternates every round), so
#   machine noise hits both; the script prints each median, baton/etcd per workload
#   (target: >= 1.0), and the CPU used by the servers (the three processes of a system
#   together), by wrk, and by everything else on the machine ("other") during its rounds,
#   to tell whether the servers or the load generator are the bottleneck (the client runs
#   on the same machine), and whether other work competed for the CPUs.
#   Any non-2xx answer is reported with its round; the script then exits with status 1
#   after its report.
#
# How to run (as root, from anywhere; takes about 2-3 minutes with the defaults):
#   scripts/bench-cluster.sh
# Knobs (environment): ROUNDS=3 DURATION=10 CONNS=32 THREADS=2 PUT_NAMES=cycle|unique
#   LEASE_TTL=10 (seconds) BATON_BIN=path (use this binary, skip the cargo build)
#   KEEP=1 (keep the temporary directory: logs, wrk outputs, data)
#
# It installs wrk and etcd-server with apt-get if missing (keeping the package from starting
# a system etcd), builds baton with `cargo build --release -p baton`, only listens and
# connects on 127.0.0.1, and stops everything it started on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
PUT_NAMES=${PUT_NAMES:-cycle}
LEASE_TTL=${LEASE_TTL:-10}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PUT_LUA="$SCRIPT_DIR/bench/cluster-put.lua"
LEASE_LUA="$SCRIPT_DIR/bench/cluster-lease.lua"
START_TS=$SECONDS

log() { printf '[bench %3ds] %s\n' "$((SECONDS - START_TS))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$PUT_NAMES" == cycle || "$PUT_NAMES" == unique ]] || die "PUT_NAMES must be cycle or unique"
((THREADS >= 1 && CONNS >= THREADS)) || die "need THREADS >= 1 and CONNS >= THREADS"

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/bench-cluster.XXXXXX)
PIDS=()
POLICY_RC=
cleanup() {
    local rc=$?
    local p n
    [[ -n "$POLICY_RC" ]] && rm -f "$POLICY_RC"
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    # An etcd leader that loses its peers takes a few seconds to stop: give every process
    # 15 s, then kill what is left.
    for n in $(seq 1 150); do
        local alive=0
        for p in "${PIDS[@]}"; do
            kill -0 "$p" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ "${KEEP:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v etcd >/dev/null || need_pkgs+=(etcd-server)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # etcd-server's package starts a system etcd on the default ports; this benchmark runs
    # its own members, so keep the package's service from starting while it installs.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        POLICY_RC=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
    fi
    if ! apt-get install -y "${need_pkgs[@]}" >"$WORK/apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update >>"$WORK/apt.log" 2>&1
        apt-get install -y "${need_pkgs[@]}" >>"$WORK/apt.log" 2>&1 ||
            { tail -20 "$WORK/apt.log" >&2; die "could not install ${need_pkgs[*]}"; }
    fi
    if [[ -n "$POLICY_RC" ]]; then
        rm -f "$POLICY_RC"
        POLICY_RC=
    fi
fi
for c in wrk etcd python3 curl; do
    command -v "$c" >/dev/null || die "$c not found"
done
ETCD_VERSION=$(etcd --version 2>/dev/null | awk '/^etcd Version:/ { print $3 }')

if [[ -n "${BATON_BIN:-}" ]]; then
    log "using BATON_BIN=$BATON_BIN (no build)"
else
    log "cargo build --release -p baton (waits if another build holds the lock)"
    (cd "$ROOT" && cargo build --release -p baton) >"$WORK/build.log" 2>&1 ||
        { tail -30 "$WORK/build.log" >&2; die "build failed (set BATON_BIN=target/release/baton to bench an existing binary)"; }
    BATON_BIN="$ROOT/target/release/baton"
fi
[[ -x "$BATON_BIN" ]] || die "no executable at $BATON_BIN"
# Run a private copy, so that a concurrent rebuild cannot swap the binary mid-run.
cp "$BATON_BIN" "$WORK/baton"
log "benchmarking $BATON_BIN (built $(date -r "$BATON_BIN" '+%F %T')) against etcd $ETCD_VERSION"
BATON_BIN="$WORK/baton"

FS_TYPE=$(df -PT "$WORK" | awk 'NR == 2 { print $2 }')
FS_DEV=$(df -PT "$WORK" | awk 'NR == 2 { print $1 " mounted on " $7 }')
log "data directories of both systems under $WORK ($FS_TYPE, $FS_DEV)"
[[ "$FS_TYPE" != tmpfs ]] || log "WARNING: $WORK is on tmpfs: fsync costs nothing there, for either system"

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# CPU ticks (user+system, all threads) live processes have used so far, summed.
procs_ticks() {
    local p s=0 t
    for p in "$@"; do
        t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")
        s=$((s + t))
    done
    echo "$s"
}
# CPU ticks every process on the machine has used so far (user, nice, system, irq, softirq,
# steal), to tell how much other work ran during a round.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# Seconds of CPU used by this shell's waited-for children (and their descendants).
# `times` must run in this shell (a $(...) subshell starts from zero): it writes to
# a file, and the caller reads CHILD_CPU.
children_cpu() {
    times >"$WORK/times.txt"
    CHILD_CPU=$(tail -1 "$WORK/times.txt" | awk '{
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] }
        printf "%.2f\n", s }')
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json_get() { python3 -c 'import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"; }

# wait_log FILE PATTERN PID WHAT: waits up to 30 s for PATTERN (grep -o) in FILE; prints the
# first match.
wait_log() {
    local file=$1 pattern=$2 pid=$3 what=$4 found=
    for _ in $(seq 1 300); do
        found=$(grep -o "$pattern" "$file" 2>/dev/null | head -1) || true
        [[ -n "$found" ]] && { echo "$found"; return; }
        kill -0 "$pid" 2>/dev/null || { tail -20 "$file" >&2; die "$what exited during startup"; }
        sleep 0.1
    done
    tail -20 "$file" >&2
    die "$what did not log '$pattern' within 30 s"
}

# ---------------------------------------------------------------- baton cluster
BATON_CLUSTER_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BATON_CLUSTER_SECRET
BATON_PIDS=()
declare -A BATON_API BATON_PEER
# Writes come in far above the default per-token write rate limit: lift it on every node
# (the limit is kept per node).
printf '[auth]\nwrite_rate = 1000000\nwrite_burst = 1000000\n' >"$WORK/baton.toml"
for n in 1 2 3; do
    dir="$WORK/baton-$n"
    mkdir -p "$dir"
    "$BATON_BIN" serve --node-id "$n" --listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 \
        --data-dir "$dir/data" --config "$WORK/baton.toml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    pid=$!
    PIDS+=("$pid")
    BATON_PIDS+=("$pid")
    BATON_API[$n]=$(wait_log "$dir/stderr.log" 'listening on http://[0-9.:]*' "$pid" "baton node $n" | sed 's/^listening on //')
    BATON_PEER[$n]=$(wait_log "$dir/stderr.log" 'listening for peers on [0-9.:]*' "$pid" "baton node $n" | sed 's/^listening for peers on //')
    log "baton node $n pid $pid: api ${BATON_API[$n]}, peers ${BATON_PEER[$n]}"
done
"$BATON_BIN" cluster init "${BATON_PEER[1]}" >"$WORK/baton-init.log" 2>&1 ||
    { cat "$WORK/baton-init.log" >&2; die "baton cluster init failed"; }
for _ in $(seq 1 300); do
    [[ -s "$WORK/baton-1/data/root-token" ]] && break
    sleep 0.1
done
[[ -s "$WORK/baton-1/data/root-token" ]] || die "baton node 1 wrote no root token within 30 s"
BATON_TOKEN=$(cat "$WORK/baton-1/data/root-token")
export BATON_TOKEN
BATON_ADDR=${BATON_API[1]}
export BATON_ADDR
for n in 2 3; do
    "$BATON_BIN" cluster join "${BATON_PEER[$n]}" >"$WORK/baton-join-$n.log" 2>&1 ||
        { cat "$WORK/baton-join-$n.log" >&2; die "baton cluster join of node $n failed"; }
done
"$BATON_BIN" cluster status --json >"$WORK/baton-status.json"
"$BATON_BIN" cluster status >&2
BATON_LEADER=$(json_get leader <"$WORK/baton-status.json")
VOTERS=$(python3 -c 'import json, sys; print(sum(1 for m in json.load(sys.stdin)["members"] if m["voter"]))' <"$WORK/baton-status.json")
[[ "$VOTERS" == 3 ]] || die "the baton cluster has $VOTERS voters, not 3"
BATON_URL=${BATON_API[$BATON_LEADER]}
log "baton: 3 voters, leader node $BATON_LEADER at $BATON_URL"

# ---------------------------------------------------------------- etcd cluster
ETCD_PIDS=()
declare -A ETCD_CLIENT
initial=
declare -A ETCD_PEER
for n in 1 2 3; do
    ETCD_PEER[$n]=$(free_port)
    ETCD_CLIENT[$n]=$(free_port)
    initial+="${initial:+,}e$n=http://127.0.0.1:${ETCD_PEER[$n]}"
done
for n in 1 2 3; do
    dir="$WORK/etcd-$n"
    mkdir -p "$dir"
    etcd --name "e$n" --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[$n]}" \
        --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[$n]}" \
        --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[$n]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[$n]}" \
        --initial-cluster "$initial" --initial-cluster-state new \
        --initial-cluster-token "bench-$$" --logger zap --log-outputs stderr \
        >"$dir/stdout.log" 2>"$dir/stderr.log" &
    pid=$!
    PIDS+=("$pid")
    ETCD_PIDS+=("$pid")
done
ETCD_LEADER=
for _ in $(seq 1 300); do
    for n in 1 2 3; do
        st=$(curl -s -X POST "http://127.0.0.1:${ETCD_CLIENT[$n]}/v3/maintenance/status" -d '{}') || continue
        member=$(json_get header member_id <<<"$st" 2>/dev/null) || continue
        leader=$(json_get leader <<<"$st" 2>/dev/null) || continue
        [[ "$leader" != 0 && "$member" == "$leader" ]] && ETCD_LEADER=$n
    done
    [[ -n "$ETCD_LEADER" ]] && break
    for p in "${ETCD_PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || { tail -20 "$WORK"/etcd-*/stderr.log >&2; die "an etcd member exited during startup"; }
    done
    sleep 0.1
done
[[ -n "$ETCD_LEADER" ]] || { tail -20 "$WORK"/etcd-*/stderr.log >&2; die "etcd elected no leader within 30 s"; }
ETCD_URL="http://127.0.0.1:${ETCD_CLIENT[$ETCD_LEADER]}"
code=$(curl -s -o "$WORK/etcd-put.json" -w '%{http_code}' -X POST "$ETCD_URL/v3/kv/put" -d '{"key":"YmVuY2g=","value":"eA=="}')
[[ "$code" == 200 ]] || { cat "$WORK/etcd-put.json" >&2; die "etcd gateway: POST /v3/kv/put answered HTTP $code"; }
log "etcd $ETCD_VERSION: 3 members (pids ${ETCD_PIDS[*]}), leader e$ETCD_LEADER at $ETCD_URL; gateway /v3/kv/put answers 200"

# ---------------------------------------------------------------- workloads
# The credential spec: a static token of 64 characters. etcd stores the same bytes.
STATIC_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
CRED_SPEC="{\"issuer\":{\"kind\":\"static\",\"token\":\"$STATIC_TOKEN\"},\"policy\":{\"lifetime\":\"1h\"}}"
code=$(curl -sS -o "$WORK/put.json" -w '%{http_code}' -H "Authorization: Bearer $BATON_TOKEN" \
    -H 'content-type: application/json' -X PUT "$BATON_URL/v1/credentials/bench-check" -d "$CRED_SPEC")
[[ "$code" == 201 || "$code" == 200 ]] || { cat "$WORK/put.json" >&2; die "PUT credential: HTTP $code"; }
KEYS_PER_THREAD=$(((CONNS + THREADS - 1) / THREADS))
export BENCH_VALUE="$CRED_SPEC" BENCH_NAMES="$PUT_NAMES" BENCH_KEYS="$KEYS_PER_THREAD" \
    BENCH_TOKEN="$BATON_TOKEN" BENCH_TTL="$LEASE_TTL"

# run_wrk SYSTEM WORKLOAD SECONDS OUT: one wrk run; leaves the raw output in OUT.
run_wrk() {
    local system=$1 workload=$2 secs=$3 out=$4 url script
    case $system in
        baton) url=$BATON_URL ;;
        etcd) url=$ETCD_URL ;;
    esac
    case $workload in
        put) script=$PUT_LUA ;;
        lease) script=$LEASE_LUA ;;
    esac
    BENCH_SYSTEM=$system BENCH_RUN=$(basename "$out" .txt) wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --latency -s "$script" "$url" \
        >"$out" 2>&1 || { cat "$out" >&2; die "wrk ($system $workload) failed"; }
}

# Warm up every pair (this also creates the credentials of PUT_NAMES=cycle).
for w in put lease; do
    for s in baton etcd; do
        run_wrk "$s" "$w" 2 "$WORK/warmup-$s-$w.txt"
        log "warm-up $s $w: $(awk '/\/sec / { print $2 " " $1 }' "$WORK/warmup-$s-$w.txt")"
    done
done

ERRORS=0
run_round() {
    local system=$1 workload=$2 i=$3 out="$WORK/wrk-$2-$1-$3.txt" s0 s1 c0 c1 m0 m1 t0 t1 pids
    if [[ $system == baton ]]; then pids=("${BATON_PIDS[@]}"); else pids=("${ETCD_PIDS[@]}"); fi
    # a top snapshot from the middle of the first round, for the record
    if [[ $i == 1 ]]; then
        (sleep "$((DURATION / 2))"; top -b -n 2 -d 1 -w 200 >"$WORK/top-$workload-$system.txt" 2>&1) &
    fi
    m0=$(machine_ticks); s0=$(procs_ticks "${pids[@]}"); children_cpu; c0=$CHILD_CPU; t0=$(date +%s.%N)
    run_wrk "$system" "$workload" "$DURATION" "$out"
    t1=$(date +%s.%N); s1=$(procs_ticks "${pids[@]}"); children_cpu; c1=$CHILD_CPU; m1=$(machine_ticks)
    local rate non2xx wrk_non2xx sockerr anomalies p50 p99 unit
    if [[ $workload == put ]]; then unit=writes/s; else unit=pairs/s; fi
    rate=$(awk '$1 == "writes/sec" || $1 == "pairs/sec" { print $2 }' "$out")
    non2xx=$(awk '$1 == "non2xx" { print $2 }' "$out")
    anomalies=$(awk '$1 == "anomalies" { print $2 }' "$out")
    wrk_non2xx=$(awk -F: '/Non-2xx or 3xx responses/ { gsub(/ /, "", $2); print $2 }' "$out")
    sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    [[ -n "$rate" ]] || { cat "$out" >&2; die "could not parse wrk output ($system $workload)"; }
    echo "$rate" >>"$WORK/$workload-$system.rate"
    local srv cli other
    srv=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')
    cli=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) * 100 }')
    # everything else: the other system's idle servers, this script, and any other work
    other=$(awk -v m0="$m0" -v m1="$m1" -v a="$s0" -v b="$s1" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN { o = ((m1 - m0) - (b - a)) / hz - (c1 - c0); if (o < 0) o = 0; printf "%.0f", o / (t1 - t0) * 100 }')
    echo "$srv $cli $other" >>"$WORK/$workload-$system.cpu"
    local warn=
    if [[ "${non2xx:-0}" != 0 || -n "$wrk_non2xx" || -n "$sockerr" || "${anomalies:-0}" != 0 ]]; then
        ERRORS=1
        warn="  !!! NON-2xx: ${wrk_non2xx:-${non2xx:-0}}${sockerr:+  $sockerr}${anomalies:+  anomalies: $anomalies} (first bodies in $out)"
    fi
    log "round $i $workload $system: $rate $unit  p50 $p50 p99 $p99 (per request)  cpu servers ${srv}% wrk ${cli}% other ${other}% (of $((NCPU * 100))%)$warn"
}

for i in $(seq 1 "$ROUNDS"); do
    for w in put lease; do
        if ((i % 2)); then
            run_round baton "$w" "$i"
            run_round etcd "$w" "$i"
        else
            run_round etcd "$w" "$i"
            run_round baton "$w" "$i"
        fi
    done
done
wait_bg() { local j; for j in $(jobs -pr); do [[ " ${PIDS[*]} " == *" $j "* ]] || wait "$j" 2>/dev/null || true; done; }
wait_bg

# The leaders must not have moved during the rounds.
"$BATON_BIN" cluster status --json >"$WORK/baton-status-end.json"
BATON_LEADER_END=$(json_get leader <"$WORK/baton-status-end.json")
st=$(curl -s -X POST "$ETCD_URL/v3/maintenance/status" -d '{}')
ETCD_STILL_LEADS=$([[ "$(json_get header member_id <<<"$st")" == "$(json_get leader <<<"$st")" ]] && echo yes || echo no)
{
    for w in put lease; do
        for s in baton etcd; do
            echo "--- top, middle of $w round 1, $s (second frame) ---"
            awk '/^top - / { n++ } n == 2' "$WORK/top-$w-$s.txt" 2>/dev/null | sed -n '1,14p'
        done
    done
} >&2

# ---------------------------------------------------------------- report
echo
echo "==================== bench-cluster results ===================="
echo "machine: $NCPU CPUs, $(uname -r); servers and client on the same machine, loopback"
echo "baton: 3 voters, release build, requests to the leader (node $BATON_LEADER), root token, audit log on"
echo "etcd $ETCD_VERSION: 3 members, HTTP/JSON gateway /v3, requests to the leader (e$ETCD_LEADER), default WAL fsync"
echo "data directories: one $FS_TYPE filesystem ($FS_DEV)"
echo "wrk -t$THREADS -c$CONNS keep-alive, ${DURATION}s x $ROUNDS rounds, order alternating; PUT_NAMES=$PUT_NAMES ($KEYS_PER_THREAD names per thread in cycle mode); lease ttl ${LEASE_TTL}s"
RESULT=
for w in put lease; do
    if [[ $w == put ]]; then label="credential PUT vs etcd put (writes/s)"; else label="lease acquire+release vs grant+revoke (pairs/s)"; fi
    bm=$(median <"$WORK/$w-baton.rate")
    em=$(median <"$WORK/$w-etcd.rate")
    ratio=$(awk -v a="$bm" -v b="$em" 'BEGIN { printf "%.2f", a / b }')
    echo "$label"
    echo "  baton rounds: $(paste -sd' ' "$WORK/$w-baton.rate")"
    echo "  etcd rounds:  $(paste -sd' ' "$WORK/$w-etcd.rate")"
    echo "  baton median: $bm   etcd median: $em"
    printf '  ratio baton/etcd: %s  (target >= 1.0: %s)\n' "$ratio" "$(awk -v r="$ratio" 'BEGIN { print (r >= 1.0 ? "met" : "NOT met") }')"
    echo "  mean CPU during rounds (100% = one core): $(awk '{ s += $1; c += $2; o += $3 } END { printf "baton nodes %.0f%%, wrk %.0f%%, other %.0f%%", s / NR, c / NR, o / NR }' "$WORK/$w-baton.cpu"); $(awk '{ s += $1; c += $2; o += $3 } END { printf "etcd members %.0f%%, wrk %.0f%%, other %.0f%%", s / NR, c / NR, o / NR }' "$WORK/$w-etcd.cpu")"
    RESULT+="$w=$ratio "
done
[[ "$BATON_LEADER_END" == "$BATON_LEADER" ]] || echo "WARNING: the baton leader moved during the rounds (node $BATON_LEADER -> $BATON_LEADER_END)"
[[ "$ETCD_STILL_LEADS" == yes ]] || echo "WARNING: the etcd leader moved during the rounds"
echo "ratios: $RESULT"
busy=$(cat "$WORK"/*.cpu | awk '$3 > 25 { n++ } END { print n + 0 }')
if ((busy)); then
    echo "WARNING: in $busy of $((4 * ROUNDS)) rounds other work used more than a quarter of a CPU (the 'other' figures above): the machine was not quiet, and the figures are disturbed"
fi
echo "total time: $((SECONDS - START_TS)) s"
if [[ $ERRORS != 0 ]]; then
    echo "!!! WARNING: some rounds had non-2xx answers, socket errors or anomalies (see the round lines above): their figures are not to be trusted"
    exit 1
fi
