#!/usr/bin/env bash
# Runs the graphql-http server audits (the reference check of the GraphQL-over-HTTP spec)
# against a freshly started `leadgate serve --demo` on a free loopback port.
# Usage: tests/http-audit/run.sh [path/to/leadgate]   (needs node and npm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "${1:-$here/../../target/debug/leadgate}")"
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; [ -s "$work/err.txt" ] && tail -5 "$work/err.txt" >&2; rm -rf "$work"; }
trap cleanup EXIT

(cd "$work" && npm init -y >/dev/null && npm install --no-save --silent graphql-http@1.23.1 graphql@16 >/dev/null)
cp "$here/audit.mjs" "$work/"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# the audit checks the protocol, not rate limits: its ~100 quick requests would pass the
# anonymous per-address limit
(cd "$work" && env -u LEADGATE_JWT_SECRET LEADGATE_LOG=warn LEADGATE_DATABASE_URL="sqlite://$work/audit.db" \
  LEADGATE_RATE_LIMIT=off LEADGATE_RATE_LIMIT_ANONYMOUS=off \
  "$bin" serve --demo --listen "127.0.0.1:$port" >"$work/out.txt" 2>"$work/err.txt") &
server_pid=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { echo "http-audit: the server exited" >&2; exit 1; }
  sleep 1
done
token="$(tail -n 1 "$work/out.txt")"
(cd "$work" && node audit.mjs "http://127.0.0.1:$port/graphql" "$token") | tee "$work/audit.txt"
grep -q ', 0 warn, 0 error' "$work/audit.txt"
