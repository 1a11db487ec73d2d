#!/usr/bin/env bash
# The operator console's costs:
# 1. counting a request into the per-minute history behind its charts (examples/history_bench.rs:
#    ns per request, one workspace and 1,000, one thread and two at once);
# 2. the page, script and stylesheet on the wire, raw and gzipped;
# 3. one overview refresh (the OVERVIEW_* documents of app.js, sent at once as the browser does
#    every 15 s) against a release `serve --demo` (10,000 leads): p50/p90/p99 and server CPU per
#    refresh (bench/console_refresh.py).
#
#   bench/console.sh [--backend sqlite|postgres] [--refreshes N] [--calls N]
#
# Results: bench/results/<UTC timestamp>-console-<backend>.json, figures on stdout.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
BACKEND=sqlite
REFRESHES=500
CALLS=2000000
while [[ $# -gt 0 ]]; do
    case $1 in
        --backend) BACKEND=$2; shift 2 ;;
        --refreshes) REFRESHES=$2; shift 2 ;;
        --calls) CALLS=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "console.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

echo "== building (cargo build --release --bin leadgate --example history_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example history_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$BENCH_DIR/results"
echo "commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+changes'), $(nproc) CPUs"

"$TARGET/release/examples/history_bench" --calls "$CALLS"

DB_ARGS=()
if [[ $BACKEND == postgres ]]; then
    command -v psql >/dev/null || { echo "console.sh: psql is required for --backend postgres" >&2; exit 1; }
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS leadgate_bench_console" >/dev/null
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE leadgate_bench_console" >/dev/null
    DB_ARGS=(--database-url "postgres://postgres@127.0.0.1:5432/leadgate_bench_console")
fi
python3 "$BENCH_DIR/console_refresh.py" --bin "$TARGET/release/leadgate" --backend "$BACKEND" \
    --refreshes "$REFRESHES" "${DB_ARGS[@]}" --out "$BENCH_DIR/results/$STAMP-console-$BACKEND.json"
