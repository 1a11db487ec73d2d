#!/usr/bin/env bash
# Page of 50 side by side with PostGraphile on the same `leads` table: one fresh PostgreSQL
# database, filled by `leadgate seed` (N leads, fixed seed) and analysed, served at once by
# leadgate (BIN) and by PostGraphile 4 (2 cluster workers by default) over the same table; the
# peer harness (`bench.py`, oha underneath) alternates them on 2,000 random keyset cursors per
# side and prints the table (req/s, p50/p99, server, PostgreSQL and total CPU µs per request).
#
# Usage: bench/peer.sh --bin BIN --harness DIR [--leads N] [--workers W] [--rounds K]
#                      [--duration S] [--keep-db]
#   --harness DIR  the peer folder (bench.py, run-postgraphile.sh, node_modules from setup.sh)
# Needs oha (PATH or ~/.cargo/bin), psql, node. The JSON goes to
# bench/results/peer-<UTC>.json; the database is dropped at the end unless --keep-db.
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BIN= HARNESS= LEADS=1000000 WORKERS=2 ROUNDS=3 DURATION=15 KEEP=0
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while (($#)); do
    case $1 in
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        --harness) HARNESS=$(realpath "$2"); shift 2 ;;
        --leads) LEADS=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --keep-db) KEEP=1; shift ;;
        *) echo "peer.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x $BIN && -f $HARNESS/bench.py && -x $HARNESS/node_modules/.bin/postgraphile ]] || {
    echo "usage: bench/peer.sh --bin BIN --harness DIR [--leads N] [--workers W] (run DIR/setup.sh first)" >&2
    exit 2
}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d)
mkdir -p "$BENCH_DIR/results"
OUT=$BENCH_DIR/results/peer-$STAMP.json
DB_NAME=leadgate_peer_$$
DB=${PG_ADMIN_URL%/*}/$DB_NAME
export LEADGATE_DATABASE_URL=$DB
export LEADGATE_JWT_SECRET=peer-benchmark-secret-of-32-bytes-or-more
export LEADGATE_LOG=warn
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LG_PID= PEER_PORT=$(free_port)
cleanup() {
    [[ -n $LG_PID ]] && { kill -TERM "$LG_PID" 2>/dev/null || true; wait "$LG_PID" 2>/dev/null || true; }
    "$HARNESS/stop-postgraphile.sh" "$PEER_PORT" >/dev/null 2>&1 || true
    if ((KEEP == 0)); then
        psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

psql "$PG_ADMIN_URL" -qAt -c "CREATE DATABASE $DB_NAME" >/dev/null
echo "== $("$BIN" --version), seeding $LEADS leads into $DB_NAME" >&2
"$BIN" workspace create bench --name Bench >/dev/null
"$BIN" seed --workspace bench --leads "$LEADS" --seed 1 >&2
# autovacuum is off on these machines: statistics for both servers' plans
psql "$DB" -qAt -c "VACUUM (ANALYZE) leads" >/dev/null
TOKEN=$("$BIN" token --workspace bench --role viewer --ttl 12h)
LG_PORT=$(free_port)
"$BIN" serve --listen "127.0.0.1:$LG_PORT" --no-workers >"$WORK/leadgate.out" 2>"$WORK/leadgate.err" &
LG_PID=$!
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$LG_PORT/readyz" >/dev/null 2>&1 && break
    kill -0 "$LG_PID" 2>/dev/null || { cat "$WORK/leadgate.err" >&2; exit 1; }
    sleep 0.2
done
peer_args=()
((WORKERS > 1)) && peer_args=(--cluster-workers "$WORKERS")
"$HARNESS/run-postgraphile.sh" "$DB" public "$PEER_PORT" "${peer_args[@]}" >&2
cp "$HARNESS/bench.py" "$WORK/"
python3 "$WORK/bench.py" \
    --a-name leadgate --a-url "http://127.0.0.1:$LG_PORT/graphql" --a-preset leadgate --a-pid "$LG_PID" \
    --a-header "Authorization: Bearer $TOKEN" \
    --b-name "postgraphile-${WORKERS}w" --b-url "http://127.0.0.1:$PEER_PORT/graphql" --b-preset postgraphile \
    --b-pid "$(cat "$HARNESS/run/postgraphile-$PEER_PORT.pid")" \
    --pg-pid "$(pgrep -o -x postgres || pgrep -o postgres)" \
    --rounds "$ROUNDS" --duration "$DURATION" \
    --workdir "$WORK/work" --out "$OUT" \
    --note "peer.sh leads=$LEADS workers=$WORKERS bin=$("$BIN" --version)"
echo "== results: $OUT" >&2
