#!/usr/bin/env bash
# The router's speed against this machine's own ceiling, for both UDP backends, in one run
# (docs/performance.md explains the method and records the figures).
#
#   scripts/bench.sh                   ceiling vs router, io_uring and mmsg side by side, and the
#                                      in-router latency at 80 % of the measured capacity, in the
#                                      fan-out room and in meeting-size rooms
#   scripts/bench.sh flatness          CPU per forwarded packet from 10 to 2,000 subscribers
#   scripts/bench.sh criterion [f]     the criterion benches (packet path, SRTP, recorder)
#   scripts/bench.sh ice-tcp           the CPU per datagram to subscribers over ICE-TCP, relayed
#                                      by the router's TURN (TLS, TCP, UDP) and by coturn
#                                      (installed for the comparison) against UDP, in one run
#                                      (ICE_TCP_SUBSCRIBERS 20, ICE_TCP_SECONDS 10;
#                                      benches/benches/ice_tcp_cost.rs)
#   scripts/bench.sh compositor        CPU of a compositor job: a 720p four-camera composite as
#                                      an MP4, then with a three-rendition HLS ladder (release)
#   scripts/bench.sh compositor-parallel  three of those HLS jobs at once (COST_SECONDS, 30)
#   scripts/bench.sh compositor-beside-router  the router forwarding a call (BENCH_PUBLISHERS 4
#                                      video publishers, BENCH_SUBSCRIBERS 20 sink subscribers,
#                                      BENCH_SECONDS 30) alone, then beside three of those HLS
#                                      jobs at the compositor's CPU priority (nice 10, as control
#                                      starts it; BESIDE_NICE to change): the router's own
#                                      latency, drops and CPU in both, and every job's frames
#   scripts/bench.sh av-sync           A/V sync of a composite over 10 minutes: flashes and beeps
#                                      sent together, their offset in the MP4 (release)
#   scripts/bench.sh hls-latency       HLS glass-to-glass latency: a flashing fake camera in
#                                      Chromium (the SDK), seen by hls.js in another page
#                                      (tests/browser/hls-latency.bench.mjs; debug build)
#
# Environment: BENCH_PROFILE (release), BENCH_PUBLISHERS (10), BENCH_SUBSCRIBERS (100),
# BENCH_SECONDS (15), BENCH_BACKENDS ("uring mmsg"), BENCH_OUT (target/bench),
# BENCH_BIN (a directory of already built binaries: no build), BENCH_PERF (1: a `perf record`
# of the router's shard thread in the middle of every load run: $BENCH_OUT/NAME.perf.data, its
# functions in NAME.perf.txt and their shares by part of the path in NAME.perf-summary.txt).
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
if [[ "$mode" == ice-tcp ]]; then
    scripts/install-coturn.sh
    exec cargo bench -p benches --bench ice_tcp_cost
fi
if [[ "$mode" == compositor ]]; then
    exec cargo test --release -p compositor --test cost-of-a-720p-four-camera-job -- --ignored --nocapture --test-threads 1
fi
if [[ "$mode" == compositor-parallel ]]; then
    # Three HLS jobs at once, each its own process, for COST_SECONDS (30): what two cores hold.
    cargo test --release -p compositor --test cost-of-a-720p-four-camera-job --no-run
    export COST_SECONDS="${COST_SECONDS:-30}"
    for i in 1 2 3; do
        cargo test -q --release -p compositor --test cost-of-a-720p-four-camera-job -- --ignored --nocapture \
            --exact cost_of_a_720p_four_camera_job_with_three_hls_renditions 2>&1 | grep "of a core" &
    done
    wait
    exit 0
fi
if [[ "$mode" == av-sync ]]; then
    exec cargo test --release -p compositor --test av-sync-over-a-long-job -- --ignored --nocapture
fi
if [[ "$mode" == hls-latency ]]; then
    cargo build --workspace --bins
    BROWSER_RUN=hls-latency.bench.mjs exec scripts/browser-test.sh
fi
if [[ "$mode" != ratio && "$mode" != flatness && "$mode" != compositor-beside-router ]]; then
    echo "usage: scripts/bench.sh [ratio|flatness|criterion [filter]|compositor|compositor-parallel|compositor-beside-router|av-sync|hls-latency]" >&2
    exit 2
fi

profile="${BENCH_PROFILE:-release}"
if [[ "$mode" == compositor-beside-router ]]; then
    publishers="${BENCH_PUBLISHERS:-4}"
    subscribers="${BENCH_SUBSCRIBERS:-20}"
    seconds="${BENCH_SECONDS:-30}"
else
    publishers="${BENCH_PUBLISHERS:-10}"
    subscribers="${BENCH_SUBSCRIBERS:-100}"
    seconds="${BENCH_SECONDS:-15}"
fi
backends="${BENCH_BACKENDS:-uring mmsg}"
out="${BENCH_OUT:-target/bench}"
if [[ "$(nproc)" -lt 2 ]]; then
    echo "bench.sh: needs two cores (router on one, everything else on the other)" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "bench.sh: needs python3 (reads the JSON reports)" >&2; exit 2; }

if [[ -n "${BENCH_BIN:-}" ]]; then
    bin="$BENCH_BIN"
else
    echo "== building ($profile)" >&2
    cargo build --locked -j2 --profile "$profile" -p router -p control -p signaling -p recorder -p loadtest --bins >&2
    bin="target/$([[ "$profile" == dev ]] && echo debug || echo "$profile")"
fi
perf_on="${BENCH_PERF:-0}"
if [[ "$perf_on" == 1 ]] && ! command -v perf >/dev/null; then
    echo "bench.sh: BENCH_PERF=1 needs perf (Debian: apt-get install linux-perf)" >&2
    exit 2
fi
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

# What control and the load generator run on: core 1 (the router's shard pins itself to core
# 0), or anywhere for compositor-beside-router.
pin=(taskset -c 1)
[[ "$mode" == compositor-beside-router ]] && pin=()

# start_platform BACKEND: control (and its router, signaling, recorder) on a fresh data dir.
# Every peer comes from 127.0.0.1: no per-address limits.
start_platform() {
    local dir="$work/data-$1"
    rm -rf "$dir"
    "${pin[@]}" "$bin/control" --data-dir "$dir" --listen 127.0.0.1:18543 --signaling-listen 127.0.0.1:18544 \
        --router-port 41500 --router-backend "$1" --bin-dir "$bin" \
        --rate-limit-init 0 --rate-limit-websocket 0 --max-connections-per-ip 0 >"$work/control-$1.log" 2>&1 &
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
    "${pin[@]}" "$bin/loadtest" --api-url https://localhost:18543 --init-url https://localhost:18544 \
        --data-dir "$work/data-$1" --rooms "$4" --video-publishers "$2" --subscribers "$3" --no-simulcast \
        --video-resolution high --sink --duration "${seconds}s" --num-per-second "$rate" --max-rows 0 \
        --json "$out/$5.json" --chart "$out/$5.svg" >"$out/$5.txt" 2>"$out/$5.log" &
    local lt=$!
    if [[ "$perf_on" == 1 ]]; then
        # The middle third of the media window, after every peer has started.
        sleep $(( n / rate + 2 + seconds / 3 ))
        local router_pid
        router_pid="$(pgrep -n -f "^$bin/router --shards")" || router_pid=""
        if [[ -n "$router_pid" ]]; then
            perf record -q -e cpu-clock -F 2000 -g -p "$router_pid" -o "$out/$5.perf.data" -- sleep $(( seconds / 3 )) \
                >/dev/null 2>&1 || true
            perf report -i "$out/$5.perf.data" --comm shard-0 --no-children --sort symbol --stdio -g none \
                2>/dev/null | grep -v '^$' >"$out/$5.perf.txt" || true
            python3 scripts/perf-summary.py "$out/$5.perf.txt" >"$out/$5.perf-summary.txt" || true
        fi
    fi
    wait "$lt" || true
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

if [[ "$mode" == compositor-beside-router ]]; then
    # Nothing pinned: the router, the load generator and the jobs share both cores as they
    # would on a server. The jobs start first (each makes its media with ffmpeg, then runs for
    # COST_SECONDS in real time) so that they run through the whole load window.
    cargo test --release -p compositor --test cost-of-a-720p-four-camera-job --no-run >&2
    job_nice="${BESIDE_NICE:-10}"
    printf '%-7s %12s %12s %13s %13s %7s  %s\n' run "router cores" "forwarded/s" "latency p50" "latency p99" drops "jobs (cores; MP4 and rendition frames)"
    for run in alone beside; do
        start_platform mmsg
        jobs_out="$work/jobs-$run"
        : >"$jobs_out"
        job_pids=()
        if [[ "$run" == beside ]]; then
            for _ in 1 2 3; do
                COST_SECONDS=$(( seconds + 25 )) nice -n "$job_nice" cargo test -q --release -p compositor \
                    --test cost-of-a-720p-four-camera-job -- --ignored --nocapture \
                    --exact cost_of_a_720p_four_camera_job_with_three_hls_renditions 2>&1 | grep "of a core" >>"$jobs_out" &
                job_pids+=($!)
            done
            sleep 12
        fi
        load mmsg "$publishers" "$subscribers" 1 "beside-$run"
        [[ ${#job_pids[@]} -eq 0 ]] || wait "${job_pids[@]}" || true
        stop_platform
        f="$out/beside-$run.json"
        printf '%-7s %12s %12s %11s µs %11s µs %7s  %s\n' "$run" \
            "$(field "$f" "round(r['server']['shard_cpu_cores'], 2)")" \
            "$(field "$f" "round(r['server']['forwarded_per_s'])")" \
            "$(field "$f" "round(r['server']['router_latency_p50_us'] or 0, 1)")" \
            "$(field "$f" "round(r['server']['router_latency_p99_us'] or 0, 1)")" \
            "$(field "$f" "r['server']['drops']")" \
            "$(sed -E 's/.*= ([0-9.]+) of a core; MP4 frames ([0-9]+); HLS renditions. frames (\[[0-9, ]*\]).*/\1; \2 \3/' "$jobs_out" | paste -sd '|')"
    done
    exit 0
fi

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

# at80 BACKEND NAME PUBLISHERS SUBSCRIBERS ROOMS subs|rooms: a load run meant to take 80 % of
# the shard's core. CPU per packet is not constant in the load (docs/performance.md), so a run
# that lands outside 72–88 % is rescaled (its subscribers or its rooms) by what it measured and
# run again, at most twice more. The last run's report is $out/NAME.json.
at80() {
    local backend=$1 name=$2 pubs=$3 subs=$4 rooms=$5 scale=$6 try next
    for try in 1 2 3; do
        echo "== $backend: $name: $rooms room(s) of $pubs publishers + $subs subscribers (try $try)" >&2
        start_platform "$backend"
        load "$backend" "$pubs" "$subs" "$rooms" "$name"
        stop_platform
        next="$(python3 -c "
l = $(field "$out/$name.json" "r['server']['shard_cpu_cores']")
if 0.72 <= l <= 0.88 or l <= 0: print('')
elif '$scale' == 'rooms': print(max(1, round($rooms * 0.8 / l)))
else: print(max(1, round(($subs + $pubs - 1) * 0.8 / l) - $pubs + 1))")"
        if [[ "$scale" == rooms ]]; then
            [[ -z "$next" || "$next" == "$rooms" ]] && return 0
            rooms="$next"
        else
            [[ -z "$next" || "$next" == "$subs" ]] && return 0
            subs="$next"
        fi
    done
}

fanout=$(( subscribers + publishers - 1 ))
echo "== scenario: 1 room, $publishers video publishers + $subscribers subscribers (fan-out $fanout), ${seconds}s, GCM" >&2
declare -A ceiling router_pps router_us cores p50 p99 drops l80_p50 l80_p99 l80_load m80_p50 m80_p99 m80_load
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

    # 80 % of the capacity just measured, twice: the same room with fewer subscribers (every
    # packet still goes to about 90 receivers), and meeting-size rooms (5 video publishers and
    # 5 subscribers: 9 receivers a packet) as many as make the same load.
    capacity="${router_pps[$backend]}"
    at80 "$backend" "latency80-$backend" "$publishers" \
        "$(python3 -c "print(max(1, round(0.8 * $capacity / ($publishers * $per_publisher_pps)) - $publishers + 1))")" 1 subs
    meeting_rooms="$(python3 -c "print(max(1, round(0.8 * $capacity / (5 * $per_publisher_pps * 9))))")"
    at80 "$backend" "meeting80-$backend" 5 5 "$meeting_rooms" rooms
    f="$out/meeting80-$backend.json"
    m80_load[$backend]="$(field "$f" "round(100 * r['server']['shard_cpu_cores'])")"
    m80_p50[$backend]="$(field "$f" "round(r['server']['router_latency_p50_us'] or 0, 1)")"
    m80_p99[$backend]="$(field "$f" "round(r['server']['router_latency_p99_us'] or 0, 1)")"
    f="$out/latency80-$backend.json"
    l80_load[$backend]="$(field "$f" "round(100 * r['server']['shard_cpu_cores'])")"
    l80_p50[$backend]="$(field "$f" "round(r['server']['router_latency_p50_us'] or 0, 1)")"
    l80_p99[$backend]="$(field "$f" "round(r['server']['router_latency_p99_us'] or 0, 1)")"
done

echo
echo "fan-out $fanout, 1200-byte packets, AES-256-GCM; one router shard on core 0 (reports in $out/)"
printf '%-9s | %17s | %15s | %11s | %8s | %11s | %7s | %27s | %27s\n' backend "ceiling pkt/s/core" "router pkt/s/core" \
    "CPU-µs/fwd" ratio "shard cores" drops "latency p50/p99, 1 room" "latency p50/p99, meetings"
for backend in $backends; do
    ratio="$(python3 -c "print(f'{${router_pps[$backend]} / ${ceiling[$backend]}:.2f}')")"
    printf '%-9s | %18s | %17s | %11s | %8s | %11s | %7s | %12s µs @ %3s %% | %12s µs @ %3s %%\n' "$backend" \
        "${ceiling[$backend]}" "${router_pps[$backend]}" "${router_us[$backend]}" "$ratio" "${cores[$backend]}" \
        "${drops[$backend]}" "${l80_p50[$backend]}/${l80_p99[$backend]}" "${l80_load[$backend]}" \
        "${m80_p50[$backend]}/${m80_p99[$backend]}" "${m80_load[$backend]}"
done
