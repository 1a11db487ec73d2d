#!/usr/bin/env bash
# The leadgate subscription fan-out benchmark: builds the release server and
# examples/ws_fanout.rs, raises the open-file limit, and runs the three scenarios of the
# performance targets (1,000 clients at 10 and 50 events/s, 5,000 at 10 events/s).
# See bench/README.md, section "Fan-out".
#
#   bench/fanout.sh [--duration S] [--scenarios 1000@10,1000@50,5000@10] [--idle N]
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
DURATION=20
SCENARIOS="1000@10,1000@50,5000@10"
IDLE=""

usage() {
    cat <<'USAGE'
Usage: bench/fanout.sh [options]

  --duration S         seconds of events per scenario (default: 20)
  --scenarios LIST     comma-separated CLIENTS@RATE (default: 1000@10,1000@50,5000@10)
  --idle N             only measure N idle, acknowledged connections (server memory)
  -h, --help           this text

Results: bench/results/<UTC timestamp>-fanout/<scenario>.json
USAGE
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fanout.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

# every client is a socket on both ends of the loopback: 5,000 clients need > 10,000 fds
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 12000 )); then
    ulimit -n 12000 2>/dev/null || echo "fanout.sh: open-file limit is $(ulimit -n); large scenarios may fail" >&2
fi

echo "== building (cargo build --release --bin leadgate --example ws_fanout)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example ws_fanout)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/leadgate
BENCH=$TARGET/release/examples/ws_fanout
OUT=$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)-fanout
mkdir -p "$OUT"
cd "$ROOT"

if [[ -n $IDLE ]]; then
    "$BENCH" --bin "$BIN" --clients "$IDLE" --idle-only | tee "$OUT/idle-$IDLE.json"
    exit 0
fi
IFS=, read -ra LIST <<< "$SCENARIOS"
for scenario in "${LIST[@]}"; do
    clients=${scenario%@*}
    rate=${scenario#*@}
    echo "== $clients clients at $rate events/s for ${DURATION}s" >&2
    "$BENCH" --bin "$BIN" --clients "$clients" --rate "$rate" --duration "$DURATION" \
        | tee "$OUT/$clients-at-$rate.json"
done
