#!/usr/bin/env bash
# The leadgate import benchmark: builds the release binary and examples/import_csv.rs, writes a
# synthetic 12-column CSV of N rows, imports it with `leadgate import` into a fresh SQLite and a
# fresh PostgreSQL database, then imports it again (SKIP: every row is an existing lead or a
# duplicate). Prints wall time, rows/s and max RSS (`/usr/bin/time -v`) of each run. See
# bench/README.md, section "Import".
#
#   bench/import.sh [--rows N] [--dirty] [--postgres-url URL]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
ROWS=1000000
DIRTY=
PG_URL=${LEADGATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}

while [ $# -gt 0 ]; do
    case $1 in
        --rows) ROWS=$2; shift 2 ;;
        --dirty) DIRTY=--dirty; shift ;;
        --postgres-url) PG_URL=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
cargo build --release --bin leadgate --example import_csv
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/leadgate
GEN=$TARGET/release/examples/import_csv

WORK=$(mktemp -d)
DB=leadgate_bench_import_$$
cleanup() {
    rm -rf "$WORK"
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

CSV=$WORK/leads.csv
echo "== writing $ROWS rows"
"$GEN" "$CSV" "$ROWS" $DIRTY
echo "   $(du -h "$CSV" | cut -f1) at $CSV"

# Runs one import under /usr/bin/time and prints its figures.
timed_import() {
    local label=$1 url=$2
    local log=$WORK/time.log
    LEADGATE_DATABASE_URL=$url LEADGATE_LOG=warn /usr/bin/time -v \
        "$BIN" import "$CSV" --workspace bench --errors "$WORK/errors.csv" 2>"$log" || {
        cat "$log" >&2
        return 1
    }
    local wall rss secs
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
    secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }')
    printf '%-28s wall %7.2f s   %9.0f rows/s   max RSS %4d MB\n' \
        "$label" "$secs" "$(echo "$ROWS / $secs" | bc -l)" "$((rss / 1024))"
    grep -E '^  (created|resumed|ignored)' "$log" | sed 's/^/    /'
}

run_backend() {
    local name=$1 url=$2
    LEADGATE_DATABASE_URL=$url "$BIN" migrate >/dev/null 2>&1
    LEADGATE_DATABASE_URL=$url "$BIN" workspace create bench >/dev/null
    timed_import "$name: import" "$url"
    timed_import "$name: re-import (SKIP)" "$url"
}

echo "== SQLite"
run_backend sqlite "sqlite://$WORK/import.db"

if command -v psql >/dev/null 2>&1 && psql "$PG_URL/postgres" -c 'SELECT 1' >/dev/null 2>&1; then
    psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB"
    echo "== PostgreSQL"
    run_backend postgres "$PG_URL/$DB"
else
    echo "(PostgreSQL at $PG_URL not reachable with psql: skipped)"
fi
