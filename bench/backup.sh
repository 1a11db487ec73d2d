#!/usr/bin/env bash
# The backup/restore benchmark: seeds N leads (once; reused while the database holds N), then
# times the release `leadgate backup` and `leadgate restore` on SQLite and PostgreSQL and a
# SQLite → PostgreSQL restore, with wall time and peak RSS from /usr/bin/time -v and the
# file size. See bench/README.md.
#
#   bench/backup.sh [--leads N] [--backend sqlite|postgres|both] [--reseed]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
LEADS=1000000
BACKEND=both
RESEED=0
while (($#)); do
    case $1 in
        --leads) LEADS=${2:?--leads needs a value}; shift 2 ;;
        --backend) BACKEND=${2:?--backend needs a value}; shift 2 ;;
        --reseed) RESEED=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "backup.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "backup.sh: $*" >&2; exit 1; }
[[ $LEADS =~ ^[0-9]+$ ]] || die "--leads must be an integer"
[[ -x /usr/bin/time ]] || die "GNU time is required (apt-get install time)"

PG_SERVER=postgres://postgres@127.0.0.1:5432
RESULTS=$BENCH_DIR/results
RUN_DIR=$RESULTS/backup-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN_DIR"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/leadgate
echo "== building the release binary" >&2
(cd "$ROOT" && cargo build --release --quiet --bin leadgate)
export LEADGATE_JWT_SECRET=bench-secret-that-is-long-enough-for-hs256-0123456789
export LEADGATE_LOG=warn

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres "$@"; }
fresh_pg() { psql_admin -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

# Seeds `bench` with N leads into the database at $1 unless it already holds them.
seed() {
    local url=$1 have
    have=$(LEADGATE_DATABASE_URL=$url "$BIN" workspace list 2>/dev/null | awk -F'\t' '$1 == "bench" {print $3+0}')
    if [[ $RESEED == 0 && $have == "$LEADS" ]]; then
        echo "== reusing $url ($LEADS leads)" >&2
        return
    fi
    [[ -n $have ]] && die "$url holds another lead count ($have); pass --reseed"
    LEADGATE_DATABASE_URL=$url "$BIN" workspace create bench --name Benchmark >/dev/null
    echo "== seeding $LEADS leads into $url" >&2
    LEADGATE_DATABASE_URL=$url "$BIN" seed --workspace bench --leads "$LEADS" --seed 42 2>/dev/null
}

# Runs one timed command; appends a line to the summary.
timed() {
    local name=$1; shift
    local out=$RUN_DIR/$name.time
    /usr/bin/time -v -o "$out" "$@" 2>"$RUN_DIR/$name.log" || { cat "$RUN_DIR/$name.log" >&2; die "$name failed"; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$out")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$out")
    printf '%-28s %8.2f s  %6s MB RSS   %s\n' "$name" "$wall" "$rss" "$(tail -1 "$RUN_DIR/$name.log")" | tee -a "$RUN_DIR/summary.txt"
}

if [[ $BACKEND == sqlite || $BACKEND == both ]]; then
    SRC=sqlite://$RESULTS/backup-src.sqlite
    ((RESEED)) && rm -f "$RESULTS"/backup-src.sqlite*
    seed "$SRC"
    timed backup-sqlite "$BIN" --database-url "$SRC" backup --out "$RUN_DIR/sqlite.lgbackup"
    rm -f "$RUN_DIR"/dst.sqlite*
    timed restore-sqlite "$BIN" --database-url "sqlite://$RUN_DIR/dst.sqlite" restore "$RUN_DIR/sqlite.lgbackup"
    ls -l "$RUN_DIR/sqlite.lgbackup" | awk '{printf "sqlite backup file: %.1f MB\n", $5/1e6}' | tee -a "$RUN_DIR/summary.txt"
    rm -f "$RUN_DIR"/dst.sqlite*
fi
if [[ $BACKEND == postgres || $BACKEND == both ]]; then
    command -v psql >/dev/null || die "psql is required for PostgreSQL"
    exists=$(psql_admin -Atc "SELECT 1 FROM pg_database WHERE datname = 'leadgate_backup_src'")
    if ((RESEED)) || [[ -z $exists ]]; then fresh_pg leadgate_backup_src; fi
    seed "$PG_SERVER/leadgate_backup_src"
    timed backup-postgres "$BIN" --database-url "$PG_SERVER/leadgate_backup_src" backup --out "$RUN_DIR/postgres.lgbackup"
    fresh_pg leadgate_backup_dst
    timed restore-postgres "$BIN" --database-url "$PG_SERVER/leadgate_backup_dst" restore "$RUN_DIR/postgres.lgbackup"
    ls -l "$RUN_DIR/postgres.lgbackup" | awk '{printf "postgres backup file: %.1f MB\n", $5/1e6}' | tee -a "$RUN_DIR/summary.txt"
    if [[ -f $RUN_DIR/sqlite.lgbackup ]]; then
        fresh_pg leadgate_backup_dst
        timed restore-sqlite-to-postgres "$BIN" --database-url "$PG_SERVER/leadgate_backup_dst" restore "$RUN_DIR/sqlite.lgbackup"
    fi
    psql_admin -c "DROP DATABASE IF EXISTS leadgate_backup_dst WITH (FORCE)"
fi
rm -f "$RUN_DIR"/*.lgbackup
echo "results: $RUN_DIR/summary.txt" >&2
