#!/usr/bin/env bash
# Profiles the first page of 50 leads on PostgreSQL: seeds 100,000 leads into a fresh database,
# serves them with BIN, loads them with oha (16 connections, 5 s warm-up, then 10 s) while
# `perf record` samples the server for 4 s (DWARF call graphs), and prints req/s and server CPU µs per request.
# Usage: bench/profile_page50.sh BIN NAME   (perf data in bench/results/perf-NAME.data)
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}
OUT=$(cd "$(dirname "$0")" && pwd)/results
mkdir -p "$OUT"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=$1; NAME=$2
DB=leadgate_prof_$NAME
psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export LEADGATE_DATABASE_URL=${PG_ADMIN_URL%/*}/$DB LEADGATE_JWT_SECRET=page50-ab-benchmark-secret-of-32-bytes-or-more LEADGATE_LOG=warn
$BIN workspace create bench --name Bench >/dev/null
$BIN seed --workspace bench --leads 100000 --seed 1 >/dev/null 2>&1
TOKEN=$($BIN token --workspace bench --role viewer --ttl 1h)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$BIN serve --listen 127.0.0.1:$PORT --no-workers >/dev/null 2>&1 &
PID=$!
until curl -sf http://127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.2; done
Q='{"query":"query Page($after: String) { leads(first: 50, after: $after) { edges { cursor node { id email firstName lastName title companyName companyDomain phone country status score createdAt } } pageInfo { hasNextPage endCursor } } }","variables":{}}'
oha --no-tui -z 5s -c 16 -m POST -T application/json -H "Authorization: Bearer $TOKEN" -d "$Q" http://127.0.0.1:$PORT/graphql >/dev/null
T0=$(awk '{print $14+$15}' /proc/$PID/stat)
perf record -F 499 --call-graph dwarf,16384 -p $PID -o "$OUT"/perf-$NAME.data -- sleep 4 >/dev/null 2>&1 &
PERF=$!
oha --no-tui -z 10s -c 16 -m POST -T application/json -H "Authorization: Bearer $TOKEN" -d "$Q" http://127.0.0.1:$PORT/graphql --output-format json > "$OUT"/oha-$NAME.json
T1=$(awk '{print $14+$15}' /proc/$PID/stat)
wait $PERF || true
python3 - "$NAME" "$T0" "$T1" "$OUT" <<'PY'
import json,sys
name,t0,t1,out=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),sys.argv[4]
d=json.load(open(f"{out}/oha-{name}.json"))
n=sum(v for k,v in d["statusCodeDistribution"].items())
print(name, "req/s", round(d["summary"]["requestsPerSec"]), "server CPU us/req", round((t1-t0)*10000/n))
PY
kill $PID; wait $PID 2>/dev/null || true
psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
