#!/usr/bin/env bash
# The export benchmark: seeds (or reuses) a workspace of N leads, then times the release
# `leadgate export` to /dev/null and to a file (wall, leads/s, max RSS via /usr/bin/time -v)
# and `GET /export/leads.csv` with curl (time to first byte, total, server RSS sampled every
# 50 ms), on SQLite and PostgreSQL. See bench/README.md.
#
#   bench/export.sh [--backend sqlite|postgres|both] [--leads N] [--reseed] [--format csv|ndjson]
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

BACKEND=both
LEADS=1000000
RESEED=0
FORMAT=csv
while (($#)); do
    case $1 in
        --backend) BACKEND=${2:?--backend needs a value}; shift 2 ;;
        --leads) LEADS=${2:?--leads needs a value}; shift 2 ;;
        --reseed) RESEED=1; shift ;;
        --format) FORMAT=${2:?--format needs a value}; shift 2 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "export.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "export.sh: $*" >&2; exit 1; }
[[ $LEADS =~ ^[0-9]+$ ]] || die "--leads must be an integer"
case $BACKEND in sqlite) BACKENDS=(sqlite) ;; postgres) BACKENDS=(postgres) ;; both) BACKENDS=(sqlite postgres) ;;
    *) die "--backend is sqlite, postgres or both" ;; esac
case $FORMAT in csv|ndjson) ;; *) die "--format is csv or ndjson" ;; esac
[[ -x /usr/bin/time ]] || die "GNU time is required (apt-get install time)"
command -v curl >/dev/null || die "curl is required"

WORKSPACE=bench
RESULTS=$BENCH_DIR/results
RUN_DIR=$RESULTS/export-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
SQLITE_DB=$RESULTS/export.sqlite
# a database of its own, so other benchmarks that reseed theirs do not disturb this one
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_DB=leadgate_bench_export
export LEADGATE_JWT_SECRET=leadgate-bench-only-secret-0123456789abcdefghijk
export LEADGATE_LOG=warn

echo "== building (cargo build --release)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/leadgate

leads_in_db() {
    "$BIN" workspace list 2>/dev/null | awk -F'\t' -v ws="$WORKSPACE" '$1 == ws { split($3, a, " "); print a[1] }' || true
}

seed() {
    "$BIN" migrate 2>/dev/null
    "$BIN" workspace create "$WORKSPACE" --name Benchmark >/dev/null
    echo "== seeding $LEADS leads" >&2
    "$BIN" seed --workspace "$WORKSPACE" --leads "$LEADS" --seed 42 >&2
}

prepare() {
    case $1 in
        sqlite)
            export LEADGATE_DATABASE_URL="sqlite://$SQLITE_DB"
            if ((RESEED)) || [[ ! -f $SQLITE_DB || $(leads_in_db) != "$LEADS" ]]; then
                rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm"
                seed
            fi ;;
        postgres)
            export LEADGATE_DATABASE_URL="$PG_SERVER/$PG_DB"
            local exists
            exists=$(psql "$PG_SERVER/postgres" -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")
            if ((RESEED)) || [[ $exists != 1 || $(leads_in_db) != "$LEADS" ]]; then
                psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
                psql "$PG_SERVER/postgres" -qc "CREATE DATABASE $PG_DB"
                seed
            fi ;;
    esac
    echo "== $1: $(leads_in_db) leads in workspace $WORKSPACE" >&2
}

# `/usr/bin/time -v` output → "wall_s max_rss_mb"
time_fields() {
    python3 - "$1" <<'PY'
import sys
text = open(sys.argv[1]).read()
def grab(key):
    for line in text.splitlines():
        if key in line:
            return line.split(": ", 1)[1].strip()
wall = grab("Elapsed (wall clock) time")
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(f"{secs:.2f} {int(grab('Maximum resident set size')) / 1024:.0f}")
PY
}

cli_export() {
    local backend=$1 target=$2 label=$3
    local tf=$RUN_DIR/cli-$backend-$label.time
    /usr/bin/time -v -o "$tf" "$BIN" export --workspace "$WORKSPACE" --format "$FORMAT" \
        ${target:+--out "$target"} >/dev/null 2>"$RUN_DIR/cli-$backend-$label.log"
    read -r wall rss < <(time_fields "$tf")
    local rate
    rate=$(python3 -c "print(f'{$LEADS / max($wall, 1e-9):,.0f}')")
    printf '%-9s cli %-10s %8s s  %12s leads/s  max RSS %5s MB\n' "$backend" "$label" "$wall" "$rate" "$rss" |
        tee -a "$RUN_DIR/summary.txt"
}

http_export() {
    local backend=$1 port pid token
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$BIN" serve --listen "127.0.0.1:$port" --no-workers >"$RUN_DIR/serve-$backend.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 200); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.1
    done
    token=$("$BIN" token --workspace "$WORKSPACE" --role viewer)
    # peak RSS of the server while the export runs, sampled from /proc
    local rss_file=$RUN_DIR/serve-$backend.rss
    (peak=0; while kill -0 "$pid" 2>/dev/null; do
        r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        ((r > peak)) && peak=$r && echo "$peak" >"$rss_file"
        sleep 0.05
    done) &
    local sampler=$!
    local before
    before=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    local times
    times=$(curl -fsS -o /dev/null -H "Authorization: Bearer $token" \
        -w '%{time_starttransfer} %{time_total} %{size_download}' \
        "http://127.0.0.1:$port/export/leads.$FORMAT")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    read -r ttfb total bytes <<<"$times"
    printf '%-9s http first byte %6.1f ms  total %6.2f s  %5d MB  server RSS %4d MB idle, %4d MB peak\n' \
        "$backend" "$(python3 -c "print($ttfb * 1000)")" "$total" "$((bytes / 1048576))" \
        "$((before / 1024))" "$(($(cat "$rss_file") / 1024))" | tee -a "$RUN_DIR/summary.txt"
}

for backend in "${BACKENDS[@]}"; do
    prepare "$backend"
    cli_export "$backend" "" devnull
    cli_export "$backend" "$RUN_DIR/leads.$FORMAT" file
    rm -f "$RUN_DIR/leads.$FORMAT"
    http_export "$backend"
done
echo "== results in $RUN_DIR/summary.txt" >&2
