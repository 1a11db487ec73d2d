#!/usr/bin/env bash
# `leadgate seed` of N leads into a fresh database, timed as a whole process (start-up, load,
# index rebuild, ANALYZE), RUNS times per binary; prints each run's wall seconds and peak RSS,
# the median, and the target (10 s for 1,000,000 leads).
#
# Usage: bench/seed.sh --bin BIN [--bin BIN2 …] [--backend sqlite|postgres] [--leads N] [--runs K]
# PostgreSQL at $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
BINS=() BACKEND=sqlite LEADS=1000000 RUNS=1
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
while (($#)); do
    case $1 in
        --bin) BINS+=("$(realpath "$2")"); shift 2 ;;
        --backend) BACKEND=$2; shift 2 ;;
        --leads) LEADS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "seed.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
((${#BINS[@]})) || { echo "usage: bench/seed.sh --bin BIN [--bin BIN2] [--backend sqlite|postgres] [--leads N] [--runs K]" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "seed.sh needs GNU time (apt-get install time)" >&2; exit 2; }
WORK=$(mktemp -d)
DB_NAME=leadgate_seed_$$
cleanup() {
    [[ $BACKEND == postgres ]] && psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
export LEADGATE_LOG=warn

fresh() {
    if [[ $BACKEND == postgres ]]; then
        psql "$PG_ADMIN_URL" -qAt -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME" >/dev/null 2>&1
        echo "${PG_ADMIN_URL%/*}/$DB_NAME"
    else
        rm -f "$WORK"/seed.db*
        echo "sqlite://$WORK/seed.db"
    fi
}

echo "leadgate seed of $LEADS leads on $BACKEND, $RUNS run(s) per binary; target 10 s for 1,000,000"
for bin in "${BINS[@]}"; do
    walls=()
    for run in $(seq 1 "$RUNS"); do
        url=$(fresh)
        LEADGATE_DATABASE_URL=$url "$bin" workspace create bench --name Bench >/dev/null
        LEADGATE_DATABASE_URL=$url /usr/bin/time -f '%e %M' -o "$WORK/time" \
            "$bin" seed --workspace bench --leads "$LEADS" --seed 1 >"$WORK/out" 2>&1
        read -r wall kb <"$WORK/time"
        walls+=("$wall")
        printf '%s run %d: %6.2f s wall, %4d MB peak RSS; it said: %s\n' "$(basename "$bin")" "$run" \
            "$wall" "$((kb / 1024))" "$(tail -n 1 "$WORK/out")"
    done
    median=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%s median: %.2f s\n' "$(basename "$bin")" "$median"
done
