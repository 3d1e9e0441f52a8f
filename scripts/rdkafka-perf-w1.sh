#!/usr/bin/env bash
# W1's comparison point: librdkafka's own rdkafka_performance producing 10 million 100-byte
# records (8 partitions, acks=1, linger.ms=5) into a fresh Ferry, printing records/s and
# the broker's CPU seconds per million records. Each run gets a new data directory, and the
# page cache is dropped first when this runs as root (see docs/performance.md on why).
#
# usage: scripts/rdkafka-perf-w1.sh [FERRY_BINARY] [RUNS]
# needs: target/librdkafka-suite/src/examples/rdkafka_performance
#        (built by scripts/librdkafka-suite.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=${1:-target/release/ferry}
runs=${2:-3}
perf=target/librdkafka-suite/src/examples/rdkafka_performance
records=10000000
port=19095
[[ -x $perf ]] || { echo "missing $perf: run scripts/librdkafka-suite.sh first" >&2; exit 2; }
ticks_per_s=$(getconf CLK_TCK)
for run in $(seq 1 "$runs"); do
    data=$(mktemp -d)
    if [[ -w /proc/sys/vm/drop_caches ]]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    "$ferry" serve --listen 127.0.0.1:$port --data-dir "$data" \
        --override num.partitions=8 > "$data.log" 2>&1 &
    broker=$!
    until grep -q "ready to accept connections" "$data.log"; do sleep 0.1; done
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$broker/stat"; }
    before=$(cpu_ticks)
    rate=$("$perf" -P -t perf8 -b 127.0.0.1:$port -s 100 -c $records \
        -X linger.ms=5 -X acks=1 -p -1 -q 2>&1 | grep -oE '[0-9]+ msgs/s' | tail -1)
    after=$(cpu_ticks)
    kill "$broker"; wait "$broker" || true
    cpu_per_million=$(echo "scale=3; ($after - $before) / $ticks_per_s / ($records / 1000000)" | bc)
    echo "run $run: $rate, broker CPU s per million records $cpu_per_million"
    rm -rf "$data" "$data.log"
done
