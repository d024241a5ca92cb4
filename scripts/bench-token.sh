#!/usr/bin/env bash
# bench-token.sh — how fast baton serves a token, compared to Redis, and how much
# memory baton needs to hold many credentials.
#
# What it measures
#   1. Throughput of GET /v1/credentials/NAME/token on a release build of baton
#      (one EdDSA jwt credential), with wrk: 32 keep-alive connections, 2 threads,
#      DURATION seconds per round, ROUNDS rounds. Requests carry the root token, and
#      the audit log is on (the default), so each read is authenticated and audited.
#   2. Throughput of a Redis GET of a key holding the same token (same size),
#      with redis-benchmark -t get -c 32 -q, -n sized for about DURATION seconds.
#      Redis runs on loopback with no persistence (--save '' --appendonly no).
#      Baton and Redis rounds are interleaved (order alternating every round), so
#      machine noise hits both; the script prints both medians and baton/redis
#      (target: >= 1.0), plus the CPU used by each server and by each client
#      during its rounds, to tell whether the server or the load generator is the
#      bottleneck (the client runs on the same machine).
#   3. Resident memory (VmRSS from /proc/PID/status) of a fresh baton holding
#      NCRED credentials (default 10,000) once every one has a version, for each
#      kind in CRED_KINDS (default: "static jwt"; jwt = generated EdDSA keys).
#      Target: under 200 MiB.
#
# How to run (as root, from anywhere; takes about 3-5 minutes):
#   scripts/bench-token.sh
# Knobs (environment): ROUNDS=3 DURATION=10 CONNS=32 THREADS=2 NCRED=10000
#   CRED_KINDS="static jwt" PARALLEL=32 (concurrent PUTs while creating)
#   BATON_BIN=path (use this binary, skip the cargo build) KEEP=1 (keep temp dir)
#
# It installs wrk and redis-server/redis-tools with apt-get if missing, builds
# baton with `cargo build --release -p baton`, only listens and connects on
# 127.0.0.1, and stops everything it started on exit.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
NCRED=${NCRED:-10000}
CRED_KINDS=${CRED_KINDS:-static jwt}
PARALLEL=${PARALLEL:-32}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
HELPER="$SCRIPT_DIR/bench/creds.py"
START_TS=$SECONDS

log() { printf '[bench %3ds] %s\n' "$((SECONDS - START_TS))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d /tmp/bench-token.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
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
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null || need_pkgs+=(redis-tools)
command -v redis-cli >/dev/null || need_pkgs+=(redis-tools)
if ((${#need_pkgs[@]})); then
    log "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${need_pkgs[@]}" >"$WORK/apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update >>"$WORK/apt.log" 2>&1
        apt-get install -y "${need_pkgs[@]}" >>"$WORK/apt.log" 2>&1 ||
            { tail -20 "$WORK/apt.log" >&2; die "could not install ${need_pkgs[*]}"; }
    fi
fi
for c in wrk redis-server redis-benchmark redis-cli python3 curl; do
    command -v "$c" >/dev/null || die "$c not found"
done

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
log "benchmarking $BATON_BIN (built $(date -r "$BATON_BIN" '+%F %T'))"
BATON_BIN="$WORK/baton"

# ---------------------------------------------------------------- helpers
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

# CPU ticks (user+system, all threads) a live process has used so far.
proc_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
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
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_baton TAG: starts a server on an OS-chosen loopback port with a fresh data
# dir; sets BATON_PID and BATON_ADDR (parsed from its "listening on" log line).
start_baton() {
    local tag=$1 dir="$WORK/$1" t0=$SECONDS
    mkdir -p "$dir/data"
    # Creating 10,000 credentials is a burst of writes well above the default per-token
    # write rate limit: lift it for the benchmark.
    printf '[auth]\nwrite_rate = 1000000\nwrite_burst = 1000000\n' >"$dir/baton.toml"
    "$BATON_BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --config "$dir/baton.toml" \
        >"$dir/stdout.log" 2>"$dir/stderr.log" &
    BATON_PID=$!
    PIDS+=("$BATON_PID")
    BATON_ADDR=
    for _ in $(seq 1 300); do
        BATON_ADDR=$(grep -o 'listening on http://[0-9.:]*' "$dir/stderr.log" 2>/dev/null | head -1 | sed 's/^listening on //') || true
        [[ -n "$BATON_ADDR" ]] && break
        kill -0 "$BATON_PID" 2>/dev/null || { cat "$dir/stderr.log" >&2; die "baton ($tag) exited during startup"; }
        sleep 0.1
    done
    [[ -n "$BATON_ADDR" ]] || { cat "$dir/stderr.log" >&2; die "baton ($tag) did not log 'listening on' within 30 s"; }
    # The root token baton wrote at its first start authenticates every request.
    BATON_TOKEN=$(cat "$dir/data/root-token")
    export BATON_TOKEN
    AUTH="Authorization: Bearer $BATON_TOKEN"
    log "baton ($tag) pid $BATON_PID listening on $BATON_ADDR after $((SECONDS - t0)) s"
}
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- throughput
start_baton bench
CRED=bench-token
code=$(curl -sS -o "$WORK/put.json" -w '%{http_code}' -H "$AUTH" -X PUT "$BATON_ADDR/v1/credentials/$CRED" \
    -H 'content-type: application/json' \
    -d '{"issuer":{"kind":"jwt","algorithm":"EdDSA","key":"generate","claims":{"iss":"bench"}},"policy":{"lifetime":"1h"}}')
[[ "$code" == 201 || "$code" == 200 ]] || { cat "$WORK/put.json" >&2; die "PUT credential: HTTP $code"; }
t0=$(date +%s.%N)
for _ in $(seq 1 3000); do
    code=$(curl -s -o "$WORK/token.json" -w '%{http_code}' -H "$AUTH" "$BATON_ADDR/v1/credentials/$CRED/token") || true
    [[ "$code" == 200 ]] && break
    sleep 0.01
done
[[ "$code" == 200 ]] || { cat "$WORK/token.json" >&2; die "token not served within 30 s (last HTTP $code)"; }
ms=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
TOKEN=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <"$WORK/token.json")
log "token served ${ms} ms after the PUT returned; token ${#TOKEN} bytes, response body $(wc -c <"$WORK/token.json") bytes"
URL="$BATON_ADDR/v1/credentials/$CRED/token"

REDIS_PORT=
for _ in 1 2 3; do
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --logfile "$WORK/redis.log" --dir "$WORK" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 50); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    stop_pid "$REDIS_PID"
    REDIS_PORT=
done
[[ -n "$REDIS_PORT" ]] || { tail "$WORK/redis.log" >&2; die "redis-server did not start"; }
# redis-benchmark -t get reads the key "key:__rand_int__" (no -r): give it the token.
redis-cli -p "$REDIS_PORT" set 'key:__rand_int__' "$TOKEN" >/dev/null
log "redis-server $(redis-server --version | grep -o 'v=[^ ]*') pid $REDIS_PID on 127.0.0.1:$REDIS_PORT, value $(redis-cli -p "$REDIS_PORT" strlen 'key:__rand_int__') bytes"

redis_rps_of() { tr '\r' '\n' <"$1" | grep -o 'GET: [0-9.]* requests per second' | tail -1 | awk '{ print $2 }'; }
rb() { redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t get -c "$CONNS" -n "$1" -d "${#TOKEN}" -q; }

# Warm up both, and size redis-benchmark -n for ~DURATION seconds.
wrk -t "$THREADS" -c "$CONNS" -d 2s -H "$AUTH" "$URL" >"$WORK/wrk-warmup.txt" 2>&1
rb 100000 >"$WORK/redis-warmup.txt" 2>&1
warm_rps=$(redis_rps_of "$WORK/redis-warmup.txt")
[[ -n "$warm_rps" ]] || { cat "$WORK/redis-warmup.txt" >&2; die "could not parse redis-benchmark output"; }
REDIS_N=$(awk -v r="$warm_rps" -v d="$DURATION" 'BEGIN { n = int(r * d / 10000 + 0.5) * 10000; if (n < 10000) n = 10000; print n }')
log "warm-up: wrk $(awk '/^Requests\/sec/ { print $2 }' "$WORK/wrk-warmup.txt") req/s, redis $warm_rps req/s -> redis-benchmark -n $REDIS_N"

: >"$WORK/baton.rps"
: >"$WORK/redis.rps"
: >"$WORK/baton.cpu"
: >"$WORK/redis.cpu"
ODD=0

run_baton_round() {
    local i=$1 out="$WORK/wrk-$1.txt" s0 s1 c0 c1 t0 t1
    # a top snapshot from the middle of the first round, for the record
    if [[ $i == 1 ]]; then
        (sleep "$((DURATION / 2))"; top -b -n 2 -d 1 -w 200 >"$WORK/top-baton.txt" 2>&1) &
    fi
    s0=$(proc_ticks "$BATON_PID"); children_cpu; c0=$CHILD_CPU; t0=$(date +%s.%N)
    wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" --latency -H "$AUTH" "$URL" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    t1=$(date +%s.%N); s1=$(proc_ticks "$BATON_PID"); children_cpu; c1=$CHILD_CPU
    local rps non2xx sockerr p50 p99
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ { gsub(/ /, "", $2); print $2 }' "$out")
    sockerr=$(grep -o 'Socket errors:.*' "$out" || true)
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    [[ -n "$rps" ]] || { cat "$out" >&2; die "could not parse wrk output"; }
    echo "$rps" >>"$WORK/baton.rps"
    local srv cli
    srv=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')
    cli=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) * 100 }')
    echo "$srv $cli" >>"$WORK/baton.cpu"
    log "round $i baton: $rps req/s  p50 $p50 p99 $p99  cpu baton ${srv}% wrk ${cli}% (of $((NCPU * 100))%)${non2xx:+  NON-2xx: $non2xx}${sockerr:+  $sockerr}"
    if [[ -n "$non2xx" || -n "$sockerr" ]]; then BATON_ERRORS=1; fi
}

run_redis_round() {
    local i=$1 out="$WORK/redis-$1.txt" s0 s1 c0 c1 t0 t1
    if [[ $i == 1 ]]; then
        (sleep "$((DURATION / 2))"; top -b -n 2 -d 1 -w 200 >"$WORK/top-redis.txt" 2>&1) &
    fi
    s0=$(proc_ticks "$REDIS_PID"); children_cpu; c0=$CHILD_CPU; t0=$(date +%s.%N)
    rb "$REDIS_N" >"$out" 2>&1 || { cat "$out" >&2; die "redis-benchmark failed"; }
    t1=$(date +%s.%N); s1=$(proc_ticks "$REDIS_PID"); children_cpu; c1=$CHILD_CPU
    local rps
    rps=$(redis_rps_of "$out")
    [[ -n "$rps" ]] || { cat "$out" >&2; die "could not parse redis-benchmark output"; }
    echo "$rps" >>"$WORK/redis.rps"
    local srv cli
    srv=$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')
    cli=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) * 100 }')
    echo "$srv $cli" >>"$WORK/redis.cpu"
    log "round $i redis: $rps req/s over $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s  cpu redis-server ${srv}% redis-benchmark ${cli}%"
}

BATON_ERRORS=0
for i in $(seq 1 "$ROUNDS"); do
    if ((i % 2)); then
        run_baton_round "$i"
        run_redis_round "$i"
    else
        run_redis_round "$i"
        run_baton_round "$i"
    fi
done
wait_bg() { local j; for j in $(jobs -pr); do [[ " ${PIDS[*]} " == *" $j "* ]] || wait "$j" 2>/dev/null || true; done; }
wait_bg

BATON_MED=$(median <"$WORK/baton.rps")
REDIS_MED=$(median <"$WORK/redis.rps")
RATIO=$(awk -v a="$BATON_MED" -v b="$REDIS_MED" 'BEGIN { printf "%.2f", a / b }')
BATON_CPU=$(awk '{ s += $1; c += $2 } END { printf "baton %.0f%%, wrk %.0f%%", s / NR, c / NR }' "$WORK/baton.cpu")
REDIS_CPU=$(awk '{ s += $1; c += $2 } END { printf "redis-server %.0f%%, redis-benchmark %.0f%%", s / NR, c / NR }' "$WORK/redis.cpu")
RSS_AFTER_BENCH=$(rss_kib "$BATON_PID")

{
    echo "--- top, middle of baton round 1 (second frame) ---"
    awk '/^top - / { n++ } n == 2' "$WORK/top-baton.txt" 2>/dev/null | sed -n '1,14p'
    echo "--- top, middle of redis round 1 (second frame) ---"
    awk '/^top - / { n++ } n == 2' "$WORK/top-redis.txt" 2>/dev/null | sed -n '1,14p'
} >&2
stop_pid "$REDIS_PID"
stop_pid "$BATON_PID"

# ---------------------------------------------------------------- memory
declare -A RSS_MIB HWM_MIB BASE_MIB CREATE_LINE
for kind in $CRED_KINDS; do
    start_baton "mem-$kind"
    BASE_MIB[$kind]=$(awk -v k="$(rss_kib "$BATON_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
    CREATE_LINE[$kind]=$(python3 "$HELPER" create "$BATON_ADDR" "$NCRED" "$kind" "$PARALLEL")
    log "${CREATE_LINE[$kind]}"
    log "$(python3 "$HELPER" wait "$BATON_ADDR" "$NCRED" 120)"
    sleep 2 # let background work (issuance, store writes) settle
    RSS_MIB[$kind]=$(awk -v k="$(rss_kib "$BATON_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
    HWM_MIB[$kind]=$(awk -v k="$(hwm_kib "$BATON_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
    log "baton (mem-$kind): VmRSS ${RSS_MIB[$kind]} MiB (peak ${HWM_MIB[$kind]} MiB, empty ${BASE_MIB[$kind]} MiB), data dir $(du -sh "$WORK/mem-$kind/data" | cut -f1)"
    stop_pid "$BATON_PID"
done

# ---------------------------------------------------------------- report
echo
echo "==================== bench-token results ===================="
echo "machine: $NCPU CPUs, $(uname -r); clients run on the same machine"
echo "token GET: wrk -t$THREADS -c$CONNS keep-alive, ${DURATION}s x $ROUNDS rounds; redis-benchmark -t get -c$CONNS -n $REDIS_N -q"
echo "baton rounds (req/s): $(paste -sd' ' "$WORK/baton.rps")"
echo "redis rounds (req/s): $(paste -sd' ' "$WORK/redis.rps")"
printf 'baton median: %s req/s\n' "$BATON_MED"
printf 'redis median: %s req/s\n' "$REDIS_MED"
printf 'ratio baton/redis: %s  (target >= 1.0: %s)\n' "$RATIO" "$(awk -v r="$RATIO" 'BEGIN { print (r >= 1.0 ? "met" : "NOT met") }')"
echo "mean CPU during rounds (100% = one core): $BATON_CPU; $REDIS_CPU"
[[ $BATON_ERRORS == 0 ]] || echo "WARNING: wrk reported non-2xx responses or socket errors (see above)"
echo "baton RSS after the throughput rounds (1 credential): $(awk -v k="$RSS_AFTER_BENCH" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
for kind in $CRED_KINDS; do
    printf 'RSS with %d %s credentials: %s MiB (peak %s MiB, empty %s MiB; target < 200 MiB: %s) [%s]\n' \
        "$NCRED" "$kind" "${RSS_MIB[$kind]}" "${HWM_MIB[$kind]}" "${BASE_MIB[$kind]}" \
        "$(awk -v r="${RSS_MIB[$kind]}" 'BEGIN { print (r < 200 ? "met" : "NOT met") }')" "${CREATE_LINE[$kind]}"
done
echo "total time: $((SECONDS - START_TS)) s"
