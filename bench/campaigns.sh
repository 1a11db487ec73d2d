#!/usr/bin/env bash
# The leadgate campaign benchmark: builds the release server and examples/campaign_bench.rs,
# then runs it. The program starts a real SMTP server on 127.0.0.1 (leadgate's test sink) in its
# own process, seeds fresh databases and starts the server against them, and measures:
# activating a campaign over a 100,000-lead segment, emails per second through pooled SMTP
# connections with throttles off, a per-mailbox daily cap under load, and the peak RSS of
# `leadgate campaigns run-due` over 10,000 and over 1,000,000 scheduled steps.
#
#   bench/campaigns.sh [--backend sqlite|postgres] [--quick] [--activate-leads N] [--send-leads N]
#                      [--cap-leads N] [--cap N] [--rss-steps A,B] [--rss-batches N]
#
# Results: bench/results/<UTC timestamp>-campaigns-<backend>.json and the server logs beside it.
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

for arg in "$@"; do
    case $arg in
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
if [[ " $* " == *" postgres "* || " $* " == *"--backend=postgres"* ]]; then
    command -v psql >/dev/null || { echo "campaigns.sh: psql is required for --backend postgres" >&2; exit 1; }
fi

echo "== building (cargo build --release --bin leadgate --example campaign_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example campaign_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $TARGET/release/examples/campaign_bench ]] || { echo "campaigns.sh: no benchmark binary" >&2; exit 1; }

cd "$ROOT"
exec "$TARGET/release/examples/campaign_bench" --bin "$TARGET/release/leadgate" "$@"
