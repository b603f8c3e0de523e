#!/usr/bin/env bash
# The router's speed against this machine's own ceiling, for both UDP backends, in one run
# (docs/performance.md explains the method and records the figures).
#
#   scripts/bench.sh                   ceiling vs router, io_uring and mmsg side by side, and the
#                                      in-router latency at 80 % of the measured capacity
#   scripts/bench.sh flatness          CPU per forwarded packet from 10 to 2,000 subscribers
#   scripts/bench.sh criterion [f]     the criterion benches (packet path, SRTP, recorder)
#
# Environment: BENCH_PROFILE (release), BENCH_PUBLISHERS (10), BENCH_SUBSCRIBERS (100),
# BENCH_SECONDS (15), BENCH_BACKENDS ("uring mmsg"), BENCH_OUT (target/bench).
#
# The router's shard is pinned to core 0; control, signaling, the load generator and the
# ceiling's feeder run on core 1. Peers are `loadtest --sink` peers: they publish real SRTP and
# complete ICE/DTLS, and their receiving sockets drop media in the kernel, exactly as the
# ceiling's sinks do, so both sides of the ratio pay the same kernel delivery cost.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-ratio}"
if [[ "$mode" == criterion ]]; then
    shift
    exec cargo bench -p benches -j2 -- "$@"
fi
if [[ "$mode" != ratio && "$mode" != flatness ]]; then
    echo "usage: scripts/bench.sh [ratio|flatness|criterion [filter]]" >&2
    exit 2
fi

profile="${BENCH_PROFILE:-release}"
publishers="${BENCH_PUBLISHERS:-10}"
subscribers="${BENCH_SUBSCRIBERS:-100}"
seconds="${BENCH_SECONDS:-15}"
backends="${BENCH_BACKENDS:-uring mmsg}"
out="${BENCH_OUT:-target/bench}"
if [[ "$(nproc)" -lt 2 ]]; then
    echo "bench.sh: needs two cores (router on one, everything else on the other)" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "bench.sh: needs python3 (reads the JSON reports)" >&2; exit 2; }

echo "== building ($profile)" >&2
cargo build --locked -j2 --profile "$profile" -p router -p control -p signaling -p recorder -p loadtest --bins >&2
bin="target/$([[ "$profile" == dev ]] && echo debug || echo "$profile")"
mkdir -p "$out"
work="$(mktemp -d /tmp/bench.XXXXXX)"
control_pid=""
cleanup() {
    if [[ -n "$control_pid" ]]; then kill "$control_pid" 2>/dev/null || true; wait "$control_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Video publishers send 30 fps × 7 packets (the loadtest "high" layer) and 50 audio packets/s;
# every packet goes to every subscriber and to every other publisher.
per_publisher_pps=260

# start_platform BACKEND: control (and its router, signaling, recorder) on a fresh data dir.
start_platform() {
    local dir="$work/data-$1"
    rm -rf "$dir"
    taskset -c 1 "$bin/control" --data-dir "$dir" --listen 127.0.0.1:18543 --signaling-listen 127.0.0.1:18544 \
        --router-port 41500 --router-backend "$1" --bin-dir "$bin" >"$work/control-$1.log" 2>&1 &
    control_pid=$!
    for _ in $(seq 150); do
        if [[ -S "$dir/router.sock" && -f "$dir/credentials.json" ]] && (exec 3<>/dev/tcp/127.0.0.1/18544) 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "bench.sh: the platform did not start; $work/control-$1.log:" >&2
    tail -20 "$work/control-$1.log" >&2
    exit 1
}

stop_platform() {
    kill "$control_pid" 2>/dev/null || true
    wait "$control_pid" 2>/dev/null || true
    control_pid=""
}

# load BACKEND PUBLISHERS SUBSCRIBERS ROOMS NAME: one sink run; its JSON lands in $out/NAME.json.
load() {
    local n=$(( ($2 + $3) * $4 ))
    local rate=$(( n < 40 ? 10 : 40 ))
    taskset -c 1 "$bin/loadtest" --api-url https://localhost:18543 --init-url https://localhost:18544 \
        --data-dir "$work/data-$1" --rooms "$4" --video-publishers "$2" --subscribers "$3" --no-simulcast \
        --video-resolution high --sink --duration "${seconds}s" --num-per-second "$rate" --max-rows 0 \
        --json "$out/$5.json" --chart "$out/$5.svg" >"$out/$5.txt" 2>"$out/$5.log" || true
    if [[ ! -s "$out/$5.json" ]]; then
        echo "bench.sh: loadtest wrote no report; $out/$5.log:" >&2
        tail -20 "$out/$5.log" >&2
        exit 1
    fi
}

# field FILE EXPR: a value from a loadtest JSON report (EXPR over `r`).
field() {
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}

if [[ "$mode" == flatness ]]; then
    # One publisher per room of up to 100 subscribers, so the per-room fan-out stays the
    # same and only the number of subscribers on the core changes.
    printf '%-8s %8s %8s %14s %16s %12s\n' backend subs joined "forwarded/s" "CPU-µs/fwd" "shard cores"
    for backend in ${backends%% *}; do
        for total in 10 100 500 1000 2000; do
            rooms=$(( (total + 99) / 100 )); per_room=$(( total / rooms ))
            start_platform "$backend"
            load "$backend" 1 "$per_room" "$rooms" "flat-$backend-$total"
            stop_platform
            f="$out/flat-$backend-$total.json"
            printf '%-8s %8s %8s %14.0f %16.3f %12.2f\n' "$backend" "$total" \
                "$(field "$f" "sum(1 for p in r['peers'] if p['error'] is None)")" \
                "$(field "$f" "r['server']['forwarded_per_s']")" \
                "$(field "$f" "r['server']['shard_cpu_us_per_forwarded']")" \
                "$(field "$f" "r['server']['shard_cpu_cores']")"
        done
    done
    exit 0
fi

fanout=$(( subscribers + publishers - 1 ))
echo "== scenario: 1 room, $publishers video publishers + $subscribers subscribers (fan-out $fanout), ${seconds}s, GCM" >&2
declare -A ceiling router_pps router_us cores p50 p99 drops l80_p50 l80_p99 l80_load
for backend in $backends; do
    echo "== $backend: ceiling (udp-ceiling, fan-out $fanout)" >&2
    # Three short runs, the median: the machine is shared and one run can land on a busy moment.
    for rep in 1 2 3; do
        "$bin/udp-ceiling" --backend "$backend" --fanout "$fanout" --seconds 3 --core 0 --feeder-core 1 \
            --profile aes256-gcm >"$out/ceiling-$backend-$rep.json"
    done
    ceiling[$backend]="$(python3 -c "import json,sys,statistics; print(round(statistics.median(json.load(open(f))['forwarded_per_cpu_second'] for f in sys.argv[1:])))" "$out"/ceiling-"$backend"-[123].json)"

    echo "== $backend: router under the sink preset" >&2
    start_platform "$backend"
    load "$backend" "$publishers" "$subscribers" 1 "router-$backend"
    f="$out/router-$backend.json"
    router_pps[$backend]="$(field "$f" "round(r['server']['forwarded_per_shard_cpu_second'])")"
    router_us[$backend]="$(field "$f" "round(r['server']['shard_cpu_us_per_forwarded'], 3)")"
    cores[$backend]="$(field "$f" "round(r['server']['shard_cpu_cores'], 2)")"
    p50[$backend]="$(field "$f" "round(r['server']['router_latency_p50_us'] or 0, 1)")"
    p99[$backend]="$(field "$f" "round(r['server']['router_latency_p99_us'] or 0, 1)")"
    drops[$backend]="$(field "$f" "r['server']['drops']")"
    stop_platform

    # 80 % of the capacity just measured: fewer subscribers, same publishers.
    capacity="${router_pps[$backend]}"
    subs80="$(python3 -c "print(max(1, round(0.8 * $capacity / ($publishers * $per_publisher_pps)) - $publishers + 1))")"
    echo "== $backend: latency at 80 % load ($subs80 subscribers)" >&2
    start_platform "$backend"
    load "$backend" "$publishers" "$subs80" 1 "latency80-$backend"
    f="$out/latency80-$backend.json"
    l80_load[$backend]="$(field "$f" "round(100 * r['server']['shard_cpu_cores'])")"
    l80_p50[$backend]="$(field "$f" "round(r['server']['router_latency_p50_us'] or 0, 1)")"
    l80_p99[$backend]="$(field "$f" "round(r['server']['router_latency_p99_us'] or 0, 1)")"
    stop_platform
done

echo
echo "fan-out $fanout, 1200-byte packets, AES-256-GCM; one router shard on core 0 (reports in $out/)"
printf '%-9s | %17s | %15s | %11s | %8s | %11s | %7s | %24s\n' backend "ceiling pkt/s/core" "router pkt/s/core" "CPU-µs/fwd" ratio "shard cores" drops "latency p50/p99 @ load"
for backend in $backends; do
    ratio="$(python3 -c "print(f'{${router_pps[$backend]} / ${ceiling[$backend]}:.2f}')")"
    printf '%-9s | %18s | %17s | %11s | %8s | %11s | %7s | %9s/%s µs @ %s %%\n' "$backend" "${ceiling[$backend]}" \
        "${router_pps[$backend]}" "${router_us[$backend]}" "$ratio" "${cores[$backend]}" "${drops[$backend]}" \
        "${l80_p50[$backend]}" "${l80_p99[$backend]}" "${l80_load[$backend]}"
done
