#!/usr/bin/env bash
# The RabbitMQ job delivery benchmark: builds the release binary with the test job kinds and
# examples/queue_amqp_bench.rs, then measures end-to-end `noop` jobs/s delivered by RabbitMQ
# and by the database queue on the same database (producers enqueue in batches while release
# `leadgate worker` processes run the jobs). See bench/README.md, "Job delivery on RabbitMQ".
#
#   bench/queue_amqp.sh [--backend sqlite|postgres] [--amqp-url URL] [--workers N]
#                       [--concurrency N] [--prefetch N] [--jobs N] [--batch N] [--producers N]
#                       [--modes database,rabbitmq]
#
# Results: bench/results/<UTC timestamp>-queue-amqp-<backend>.json
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

echo "== building (cargo build --release --features test-kinds --bin leadgate --example queue_amqp_bench)" >&2
(cd "$ROOT" && cargo build --release --features test-kinds --bin leadgate --example queue_amqp_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
# the broker: --amqp-url, else LEADGATE_BENCH_AMQP_URL, else the local one as guest
exec "$TARGET/release/examples/queue_amqp_bench" --bin "$TARGET/release/leadgate" "$@"
