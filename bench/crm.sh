#!/usr/bin/env bash
# The leadgate CRM sync benchmark: builds the release server and examples/crm_bench.rs, then
# runs it. The program starts a fake HubSpot, seeds a fresh database, starts the server,
# connects it to the fake and drives three scenarios: a push of every lead, signed webhook
# ingest, and a reconciliation poll after every contact changed in HubSpot.
#
#   bench/crm.sh [--leads N] [--backend sqlite|postgres] [--quick] [--latency-ms MS] [--search-latency-ms MS]
#                [--rate N] [--clients N] [--events-per-request K] [--duration S]
#                [--only push|webhooks|poll]
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

usage() {
    cat <<'EOF'
Usage: bench/crm.sh [options]

  --backend sqlite|postgres   database (default: sqlite, re-created at bench/results/crm.sqlite;
                              postgres re-creates leadgate_bench_crm on 127.0.0.1:5432)
  --leads N                   leads in the `bench` workspace (default: 100000)
  --quick                     development run: 10000 leads and 5 s of webhook ingest
                              (explicit --leads/--duration still win)
  --latency-ms MS             how long the fake HubSpot answers a batch upsert in (default: 100)
  --search-latency-ms MS      how long it answers a search page in (default: 0)
  --rate N                    batch upserts it allows per rolling second (default: 10)
  --clients N                 concurrent webhook senders (default: 16)
  --events-per-request K      events per webhook request (default: 10)
  --duration S                seconds of webhook ingest (default: 20)
  --only push|webhooks|poll   measure one scenario (the push always runs: it creates the contacts)
  --server-env KEY=VALUE      an extra LEADGATE_* setting for the server (repeatable)
  -h, --help                  this text

Push: every lead through syncLeads, timed from the mutation's answer until no link is
PENDING, against the floor ceil(leads with email / 100) / rate. Webhooks: signed (v3)
contact.propertyChange events from closed-loop senders; a sample of leads is checked for the
last value and a request is sent twice. Poll: every contact renamed in HubSpot, then
pollCrmConnection, timed until its POLL run is listed; memory from /proc before and after.
Results: bench/results/<UTC timestamp>-crm.json and the server log beside it.
EOF
}

for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
    esac
done

for tool in getconf git; do
    command -v "$tool" >/dev/null || { echo "crm.sh: $tool is required" >&2; exit 1; }
done
if [[ " $* " == *" postgres "* || " $* " == *"--backend=postgres"* ]]; then
    command -v psql >/dev/null || { echo "crm.sh: psql is required for --backend postgres" >&2; exit 1; }
fi

echo "== building (cargo build --release --bin leadgate --example crm_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example crm_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $TARGET/release/examples/crm_bench ]] || { echo "crm.sh: no benchmark binary" >&2; exit 1; }

cd "$ROOT"
exec "$TARGET/release/examples/crm_bench" --bin "$TARGET/release/leadgate" "$@"
