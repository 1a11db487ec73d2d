#!/usr/bin/env bash
# The leadgate scale-out benchmark: builds the release server and examples/scale_bench.rs, then
# runs it against a fresh database and the Redis at --redis-url (a fresh key prefix per run):
#   - latency: sequential `{ __typename }` requests with rate limits off, in process and on
#     Redis (alternating rounds; the median round's p50), and what the limits add;
#   - two instances on one Redis limit, driven past it by 8 clients: admitted vs the limit;
#   - persisted queries: a page query sent as full text vs as its hash, request bytes and
#     server CPU per request;
#   - single flight: 100 concurrent requests for one cold lead spread over two instances
#     sharing Redis (the sandbox provider answering in 300 ms): provider calls made.
#
#   bench/scale.sh [--backend sqlite|postgres] [--redis-url URL] [--requests N] [--rounds N]
#                  [--limit N] [--duration S] [--apq-requests N]
#
# Results: bench/results/<UTC timestamp>-scale-<backend>.json and the server log beside it.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
command -v redis-cli >/dev/null && ! redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379}" ping >/dev/null 2>&1 &&
    echo "scale.sh: Redis does not answer; start it or pass --redis-url" >&2

echo "== building (cargo build --release --bin leadgate --example scale_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example scale_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
exec "$TARGET/release/examples/scale_bench" --bin "$TARGET/release/leadgate" "$@"
