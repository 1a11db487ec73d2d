#!/usr/bin/env bash
# A 1M-row CRM-shaped CSV import against the database's own floor, per backend.
#
# Writes two files with the generator (`examples/import_csv.rs --crm hubspot`): a CRM export of
# N rows (national phone formats, country names, mixed-case emails, blank lines, quoted line
# breaks, one invalid row in twenty) and an update file of N rows whose every third row names
# a lead of the first by email. Then, per backend and run:
#   - `leadgate import` of the export into an empty workspace (the clean figure);
#   - `leadgate import --on-duplicate overwrite` of the update file into that workspace (the
#     dirty figure: a third updates, 5 % invalid; target within 2× of the clean one);
#   - the floor on a fresh database: `bench/floor/sqlite.sql` (sqlite3 `.import`, one
#     INSERT … SELECT that normalises, indexes dropped and rebuilt) or `bench/floor/postgres.sql`
#     (psql `\copy` into an unlogged staging table, one INSERT … SELECT, indexes live).
# Each is timed as a whole process with GNU time (wall, peak RSS). Prints every run, the
# medians, the ratios and the targets (PostgreSQL ≤ 1.5× its floor, SQLite ≤ 1.3×, RSS ≤ 200 MB),
# checks that leadgate and the floor stored the same number of leads, and writes
# bench/results/import-floor-<UTC>.json.
#
# Usage: bench/import_floor.sh --bin BIN --gen GEN [--rows N] [--backend sqlite|postgres|both]
#                              [--runs K]
#   BIN: a release `leadgate`; GEN: the release `import_csv` example
#   (`cargo build --release --example import_csv`).
# PostgreSQL at $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN='' GEN='' ROWS=1000000 BACKEND=both RUNS=1
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while (($#)); do
    case $1 in
        --bin) BIN=$(realpath "$2"); shift 2 ;;
        --gen) GEN=$(realpath "$2"); shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "import_floor.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x $BIN && -x $GEN ]] || { sed -n '21,24p' "$0" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "import_floor.sh needs GNU time (apt-get install time)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "import_floor.sh needs the sqlite3 shell (apt-get install sqlite3)" >&2; exit 2; }
case $BACKEND in sqlite) BACKENDS=(sqlite) ;; postgres) BACKENDS=(postgres) ;; both) BACKENDS=(sqlite postgres) ;;
    *) echo "import_floor.sh: --backend sqlite|postgres|both" >&2; exit 2 ;; esac

WORK=$(mktemp -d)
DB_NAME=leadgate_import_floor_$$
cleanup() {
    psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export LEADGATE_LOG=warn PGOPTIONS='-c client_min_messages=warning'
unset LEADGATE_DATABASE_URL

echo "== writing $ROWS-row files"
"$GEN" "$WORK/crm.csv" "$ROWS" --crm hubspot --seed 42 >"$WORK/crm.json"
"$GEN" "$WORK/update.csv" "$ROWS" --crm hubspot --seed 43 --updates-of 42 >"$WORK/update.json"
echo "   export: $(du -h "$WORK/crm.csv" | cut -f1), expect $(cat "$WORK/crm.json")"
echo "   update: $(du -h "$WORK/update.csv" | cut -f1), expect $(cat "$WORK/update.json")"
expect_created=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["created"])' "$WORK/crm.json")

fresh() { # backend → database URL of an empty database holding workspace `bench`
    local url
    if [[ $1 == postgres ]]; then
        psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME" >/dev/null
        url="${PG_ADMIN_URL%/*}/$DB_NAME"
    else
        rm -f "$WORK"/db.sqlite*
        url="sqlite://$WORK/db.sqlite"
    fi
    LEADGATE_DATABASE_URL=$url "$BIN" workspace create bench --name Bench >/dev/null
    echo "$url"
}

lead_count() { # backend url
    if [[ $1 == postgres ]]; then psql "$2" -qAt -c 'SELECT count(*) FROM leads'
    else sqlite3 "${2#sqlite://}" 'SELECT count(*) FROM leads'; fi
}

timed() { # label command… → prints "wall rss_mb"; the command's output goes to $WORK/out
    /usr/bin/time -f '%e %M' -o "$WORK/time" "${@:2}" >"$WORK/out" 2>&1 || {
        echo "$1 failed:" >&2; tail -n 20 "$WORK/out" >&2; exit 1; }
    read -r wall kb <"$WORK/time"
    echo "$wall $((kb / 1024))"
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

RESULTS=()
for backend in "${BACKENDS[@]}"; do
    echo "== $backend"
    clean=() dirty=() floor=() rss=()
    for run in $(seq 1 "$RUNS"); do
        url=$(fresh "$backend")
        read -r wall mb < <(LEADGATE_DATABASE_URL=$url timed "leadgate import" \
            "$BIN" import "$WORK/crm.csv" --workspace bench --errors "$WORK/errors.csv")
        said=$(grep -o 'created [0-9]*, updated [0-9]*' "$WORK/out" | tail -n 1)
        got=$(lead_count "$backend" "$url")
        clean+=("$wall") rss+=("$mb")
        printf '  run %d leadgate import        %7.2f s  %4d MB  %s leads  (%s)\n' "$run" "$wall" "$mb" "$got" "$said"
        [[ $got == "$expect_created" ]] || { echo "leadgate stored $got leads, the generator expects $expect_created" >&2; exit 1; }
        read -r wall mb < <(LEADGATE_DATABASE_URL=$url timed "leadgate import (updates)" \
            "$BIN" import "$WORK/update.csv" --workspace bench --on-duplicate overwrite --errors "$WORK/errors2.csv")
        said=$(grep -o 'created [0-9]*, updated [0-9]*' "$WORK/out" | tail -n 1)
        dirty+=("$wall") rss+=("$mb")
        printf '  run %d leadgate import, updates %7.2f s  %4d MB  (%s)\n' "$run" "$wall" "$mb" "$said"

        url=$(fresh "$backend")
        if [[ $backend == postgres ]]; then
            ws=$(psql "$url" -qAt -c "SELECT id FROM workspaces WHERE slug = 'bench'")
            sed -e "s|:CSV|$WORK/crm.csv|; s|:COUNTRIES|$BENCH_DIR/floor/countries.csv|; s|:WS|$ws|g" \
                "$BENCH_DIR/floor/postgres.sql" >"$WORK/floor.sql"
            read -r wall mb < <(timed "floor" psql "$url" -qAt -f "$WORK/floor.sql")
        else
            ws=$(sqlite3 "${url#sqlite://}" "SELECT hex(id) FROM workspaces WHERE slug = 'bench'")
            sed -e "s|:CSV|$WORK/crm.csv|; s|:COUNTRIES|$BENCH_DIR/floor/countries.csv|; s|:INDEXES|$WORK/indexes|g; s|:WS|X'$ws'|g" \
                "$BENCH_DIR/floor/sqlite.sql" >"$WORK/floor.sql"
            read -r wall mb < <(timed "floor" sqlite3 "${url#sqlite://}" ".read $WORK/floor.sql")
        fi
        got=$(lead_count "$backend" "$url")
        floor+=("$wall")
        printf '  run %d floor                   %7.2f s  %4d MB  %s leads  (%s)\n' "$run" "$wall" "$mb" "$got" "$(grep '^floor:' "$WORK/out" || true)"
        [[ $got == "$expect_created" ]] || { echo "the floor stored $got leads, the generator expects $expect_created" >&2; exit 1; }
    done
    c=$(median "${clean[@]}") d=$(median "${dirty[@]}") f=$(median "${floor[@]}")
    peak=$(printf '%s\n' "${rss[@]}" | sort -n | tail -n 1)
    target=$([[ $backend == postgres ]] && echo 1.5 || echo 1.3)
    printf '  median: leadgate %.2f s, floor %.2f s, ratio %.2f× (target ≤ %s×); updates %.2f s = %.2f× the clean import (target ≤ 2×); peak RSS %d MB (target ≤ 200)\n' \
        "$c" "$f" "$(echo "$c / $f" | bc -l)" "$target" "$d" "$(echo "$d / $c" | bc -l)" "$peak"
    RESULTS+=("{\"backend\": \"$backend\", \"rows\": $ROWS, \"runs\": $RUNS, \"leadgate_s\": [$(IFS=,; echo "${clean[*]}")], \"updates_s\": [$(IFS=,; echo "${dirty[*]}")], \"floor_s\": [$(IFS=,; echo "${floor[*]}")], \"peak_rss_mb\": $peak}")
done
mkdir -p "$BENCH_DIR/results"
out="$BENCH_DIR/results/import-floor-$(date -u +%Y%m%dT%H%M%SZ).json"
printf '{"bin": "%s", "results": [%s]}\n' "$BIN" "$(IFS=,; echo "${RESULTS[*]}")" >"$out"
echo "wrote $out"
