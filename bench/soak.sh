#!/usr/bin/env bash
# The leadgate soak: builds the release server and examples/soak_bench.rs, then starts two
# servers on one fresh database (PostgreSQL by default) and the Redis at --redis-url, probes
# the capacity of a mixed load (pages, enrichment through the sandbox provider, updates,
# creates) in a closed loop, and runs the same mix open loop at --load of it for --duration
# seconds with WebSocket subscribers on both instances (both subprotocols). Prints errors, the
# p99 per minute and its drift, and both servers' RSS growth.
#
#   bench/soak.sh [--backend postgres|sqlite] [--redis-url URL] [--duration S] [--warmup S]
#                 [--probe S] [--load 0.7] [--subscribers N] [--server-env LEADGATE_X=V ...]
#
# Results: bench/results/<UTC timestamp>-soak-<backend>.json and the server log beside it.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
command -v redis-cli >/dev/null && ! redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" ping >/dev/null 2>&1 &&
    echo "soak.sh: Redis does not answer; start it or pass --redis-url" >&2

echo "== building (cargo build --release --bin leadgate --example soak_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example soak_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
exec "$TARGET/release/examples/soak_bench" --bin "$TARGET/release/leadgate" "$@"
