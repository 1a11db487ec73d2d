#!/usr/bin/env bash
# The leadgate job queue benchmark: builds the release binary and examples/jobs_bench.rs, then
# measures single-enqueue latency and the throughput of trivial jobs on SQLite (1 worker
# process) and PostgreSQL (2 worker processes). See bench/README.md, section "Job queue".
#
#   bench/jobs.sh [--jobs N] [--concurrency N] [--postgres-url URL]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
JOBS=20000
CONCURRENCY=128
PG_URL=${LEADGATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}

while [ $# -gt 0 ]; do
    case $1 in
        --jobs) JOBS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --postgres-url) PG_URL=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
# the workers run the test kind `noop`: a build with the test kinds
cargo build --release --features test-kinds --bin leadgate --example jobs_bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/leadgate
BENCH=$TARGET/release/examples/jobs_bench

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== SQLite, 1 worker process"
"$BENCH" --database-url "sqlite://$WORK/jobs.db" --bin "$BIN" --workers 1 \
    --concurrency "$CONCURRENCY" --jobs "$JOBS"

if command -v psql >/dev/null 2>&1 && psql "$PG_URL/postgres" -c 'SELECT 1' >/dev/null 2>&1; then
    DB=leadgate_bench_jobs_$$
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB"
    trap 'psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
    echo "== PostgreSQL, 2 worker processes"
    "$BENCH" --database-url "$PG_URL/$DB" --bin "$BIN" --workers 2 \
        --concurrency "$CONCURRENCY" --jobs "$JOBS"
else
    echo "(PostgreSQL at $PG_URL not reachable with psql: skipped)"
fi
