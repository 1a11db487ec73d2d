#!/usr/bin/env bash
# Page-of-50 A/B between two leadgate binaries (e.g. before and after a change), through the
# side-by-side peer harness (`bench.py`, oha underneath): both servers run at once on their own
# fresh database seeded with the same synthetic leads, and the harness alternates them
# (A B A B …, each B compared with the A runs around it) on 2,000 random keyset cursors per side.
#
# Usage: bench/page50_ab.sh --after BIN --before BIN --harness DIR
#                           [--backend postgres|sqlite] [--leads N] [--duration S] [--rounds K]
#   --harness DIR   folder holding bench.py (the peer harness); copied to a temporary folder
#   --backend       postgres (default; PostgreSQL at $PG_ADMIN_URL) or sqlite
# Prints the harness's table; the JSON goes to bench/results/page50-ab-<UTC>.json.
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
AFTER= BEFORE= HARNESS= BACKEND=postgres LEADS=1000000 DURATION=15 ROUNDS=3
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while (($#)); do
    case $1 in
        --after) AFTER=$(realpath "$2"); shift 2 ;;
        --before) BEFORE=$(realpath "$2"); shift 2 ;;
        --harness) HARNESS=$(realpath "$2"); shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --leads) LEADS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        *) echo "page50_ab.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x $AFTER && -x $BEFORE && -f $HARNESS/bench.py ]] || {
    echo "usage: bench/page50_ab.sh --after BIN --before BIN --harness DIR [--backend postgres|sqlite] [--leads N]" >&2
    exit 2
}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK=$(mktemp -d)
mkdir -p "$BENCH_DIR/results"
OUT=$BENCH_DIR/results/page50-ab-$BACKEND-$STAMP.json
cp -r "$HARNESS/bench.py" "$WORK/"
export LEADGATE_JWT_SECRET=page50-ab-benchmark-secret-of-32-bytes-or-more
export LEADGATE_LOG=warn
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ $BACKEND == postgres ]]; then
        for side in after before; do
            psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS leadgate_ab_${side}_$$ WITH (FORCE)" >/dev/null 2>&1 || true
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# prepare SIDE BIN: fresh database, workspace, seed; sets URL_<side>, PID_<side>, TOKEN_<side>
prepare() {
    local side=$1 bin=$2 db port pid token
    if [[ $BACKEND == postgres ]]; then
        psql "$PG_ADMIN_URL" -qAt -c "CREATE DATABASE leadgate_ab_${side}_$$" >/dev/null
        db=${PG_ADMIN_URL%/*}/leadgate_ab_${side}_$$
    else
        db=sqlite://$WORK/$side.sqlite
    fi
    echo "== $side: $("$bin" --version 2>/dev/null || echo "$bin"), seeding $LEADS leads into $BACKEND" >&2
    LEADGATE_DATABASE_URL=$db "$bin" workspace create bench --name Bench >/dev/null
    LEADGATE_DATABASE_URL=$db "$bin" seed --workspace bench --leads "$LEADS" --seed 1 >/dev/null 2>&1
    token=$(LEADGATE_DATABASE_URL=$db "$bin" token --workspace bench --role viewer --ttl 12h)
    port=$(free_port)
    LEADGATE_DATABASE_URL=$db "$bin" serve --listen "127.0.0.1:$port" --no-workers \
        >"$WORK/$side.out" 2>"$WORK/$side.err" &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { cat "$WORK/$side.err" >&2; exit 1; }
        sleep 0.2
    done
    printf -v "URL_$side" '%s' "http://127.0.0.1:$port/graphql"
    printf -v "PID_$side" '%s' "$pid"
    printf -v "TOKEN_$side" '%s' "$token"
}

prepare after "$AFTER"
prepare before "$BEFORE"

pg_args=()
if [[ $BACKEND == postgres ]]; then
    pg_args=(--pg-pid "$(pgrep -o -x postgres || pgrep -o postgres)")
fi
python3 "$WORK/bench.py" \
    --a-name after --a-url "$URL_after" --a-preset leadgate --a-pid "$PID_after" \
    --a-header "Authorization: Bearer $TOKEN_after" \
    --b-name before --b-url "$URL_before" --b-preset leadgate --b-pid "$PID_before" \
    --b-header "Authorization: Bearer $TOKEN_before" \
    "${pg_args[@]}" --rounds "$ROUNDS" --duration "$DURATION" --open-rate 250 \
    --workdir "$WORK/work" --out "$OUT" \
    --note "page50_ab.sh backend=$BACKEND leads=$LEADS after=$(basename "$AFTER") before=$(basename "$BEFORE")"
echo "== results: $OUT" >&2
