#!/usr/bin/env bash
# The leadgate enrichment benchmark: builds the release server and examples/enrich_bench.rs,
# then runs it. The program starts a fake People Data Labs, seeds (or reuses) the database,
# starts the server and drives the scenarios; see bench/README.md, section "Enrichment".
#
#   bench/enrich.sh [--leads N] [--duration S] [--backend sqlite|postgres] [--quick]
#                   [--reseed] [--latency-ms MS] [--rate N]
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

usage() {
    cat <<'EOF'
Usage: bench/enrich.sh [options]

  --backend sqlite|postgres   database (default: sqlite, kept at bench/results/enrich.sqlite;
                              postgres uses leadgate_bench_enrich on 127.0.0.1:5432)
  --leads N                   leads in the `bench` workspace (default: 1000000)
  --duration S                seconds of each timed concurrent scenario (default: 30)
  --quick                     development run: 200000 leads and 5-second scenarios
                              (explicit --leads/--duration still win)
  --reseed                    re-create the database even if it holds N leads
  --latency-ms MS             latency of the fake PDL and of the sandbox (default: 50)
  --rate N                    PDL calls/s in the rate-limited scenario (default: 5)
  -h, --help                  this text

Every cold request enriches 50 leads that were never enriched; the database is reused while
it holds N leads and enough of them are fresh, and re-created (re-seeded) otherwise.
Results: bench/results/<UTC timestamp>-enrich.json and the server log beside it.
EOF
}

for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
    esac
done

for tool in getconf; do
    command -v "$tool" >/dev/null || { echo "enrich.sh: $tool is required" >&2; exit 1; }
done
if [[ " $* " == *" postgres "* || " $* " == *"--backend=postgres"* ]]; then
    command -v psql >/dev/null || { echo "enrich.sh: psql is required for --backend postgres" >&2; exit 1; }
fi

echo "== building (cargo build --release --bin leadgate --example enrich_bench)" >&2
(cd "$ROOT" && cargo build --release --bin leadgate --example enrich_bench)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ -x $TARGET/release/examples/enrich_bench ]] || { echo "enrich.sh: no benchmark binary" >&2; exit 1; }

cd "$ROOT"
exec "$TARGET/release/examples/enrich_bench" --bin "$TARGET/release/leadgate" "$@"
