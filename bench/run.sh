#!/usr/bin/env bash
# The leadgate HTTP benchmark: seeds a database, starts the release server, builds request
# bodies from real cursors, and drives each scenario with oha while recording server CPU per
# request, peak RSS and non-200 responses. See bench/README.md.
#
#   bench/run.sh [--backend sqlite|postgres|both] [--leads N] [--duration SECS] [--quick]
#                [--repeat K] [--scenarios a,b,...] [--warmup N] [--reseed] [--pin]
set -euo pipefail
# throughput is measured without the servers' rate limits (bench/scale.sh measures those)
export LEADGATE_RATE_LIMIT=${LEADGATE_RATE_LIMIT:-off} LEADGATE_RATE_LIMIT_ANONYMOUS=${LEADGATE_RATE_LIMIT_ANONYMOUS:-off}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

usage() {
    cat <<'EOF'
Usage: bench/run.sh [options]

  --backend sqlite|postgres|both   database(s) to benchmark (default: sqlite)
  --leads N                        leads in the `bench` workspace (default: 1000000)
  --duration SECS                  length of each oha run (default: 30)
  --quick                          smoke test: 20000 leads and 5-second runs
                                   (explicit --leads/--duration still win)
  --repeat K                       run the whole scenario list K times; the summary
                                   reports the median of each scenario (default: 1)
  --scenarios LIST                 comma-separated subset of: s1,s1-open,first-page,
                                   deep-asc,first-page-desc,deep-desc,filtered,
                                   last-before,total-count,total-count-filtered
  --warmup N                       sequential warm-up requests per scenario (default: 300)
  --reseed                         re-create the database even if it holds N leads
  --pin                            pin the server to CPU 0 and oha to CPU 1 (taskset)
  -h, --help                       this text

Results go to bench/results/<UTC timestamp>/; the SQLite database is kept at
bench/results/bench.sqlite and PostgreSQL's in database leadgate_bench on
postgres://postgres@127.0.0.1:5432, both reused while they hold N leads.
EOF
}

# ---------------------------------------------------------------- arguments
BACKEND=sqlite
LEADS=
DURATION=
QUICK=0
REPEAT=1
ONLY=
WARMUP=300
RESEED=0
PIN=0
while (($#)); do
    case $1 in
        --backend) BACKEND=${2:?--backend needs a value}; shift 2 ;;
        --backend=*) BACKEND=${1#*=}; shift ;;
        --leads) LEADS=${2:?--leads needs a value}; shift 2 ;;
        --leads=*) LEADS=${1#*=}; shift ;;
        --duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        --repeat) REPEAT=${2:?--repeat needs a value}; shift 2 ;;
        --repeat=*) REPEAT=${1#*=}; shift ;;
        --scenarios) ONLY=${2:?--scenarios needs a value}; shift 2 ;;
        --scenarios=*) ONLY=${1#*=}; shift ;;
        --warmup) WARMUP=${2:?--warmup needs a value}; shift 2 ;;
        --warmup=*) WARMUP=${1#*=}; shift ;;
        --reseed) RESEED=1; shift ;;
        --pin) PIN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    LEADS=${LEADS:-20000}
    DURATION=${DURATION:-5}
fi
LEADS=${LEADS:-1000000}
DURATION=${DURATION:-30}
LEADS=${LEADS//[,_]/}

die() { echo "run.sh: $*" >&2; exit 1; }
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
is_int "$LEADS" && ((LEADS > 51)) || die "--leads must be an integer above 51"
is_int "$DURATION" && ((DURATION >= 1)) || die "--duration must be a positive integer (seconds)"
is_int "$REPEAT" && ((REPEAT >= 1 && REPEAT <= 20)) || die "--repeat must be 1..20"
is_int "$WARMUP" && ((WARMUP <= 100000)) || die "--warmup must be 0..100000"
case $BACKEND in
    sqlite) BACKENDS=(sqlite) ;;
    postgres) BACKENDS=(postgres) ;;
    both) BACKENDS=(sqlite postgres) ;;
    *) die "--backend must be sqlite, postgres or both" ;;
esac

# name | body file | oha load shape
ALL_SCENARIOS=(
    "s1|page50_random.jsonl|-c 16"
    "s1-open|page50_random.jsonl|-c 64 -q 1000 --latency-correction"
    "first-page|page50_first.jsonl|-c 16"
    "deep-asc|page50_deep_asc.jsonl|-c 16"
    "first-page-desc|page50_first_desc.jsonl|-c 16"
    "deep-desc|page50_deep_desc.jsonl|-c 16"
    "filtered|page50_filtered.jsonl|-c 16"
    "last-before|page50_last_before.jsonl|-c 16"
    "total-count|page50_total_count.jsonl|-c 16"
    "total-count-filtered|page50_total_count_filtered.jsonl|-c 16"
)
SCENARIOS=()
if [[ -n $ONLY ]]; then
    IFS=, read -r -a wanted <<<"$ONLY"
    for w in "${wanted[@]}"; do
        found=0
        for s in "${ALL_SCENARIOS[@]}"; do
            if [[ ${s%%|*} == "$w" ]]; then SCENARIOS+=("$s"); found=1; fi
        done
        ((found)) || die "unknown scenario: $w"
    done
else
    SCENARIOS=("${ALL_SCENARIOS[@]}")
fi

# ---------------------------------------------------------------- constants and environment
JWT_SECRET=leadgate-bench-only-secret-0123456789abcdefghijk   # 48 characters, test only
WORKSPACE=bench
DATA_SEED=42
PG_SERVER=postgres://postgres@127.0.0.1:5432
PG_DB=leadgate_bench
SQLITE_DB=$BENCH_DIR/results/bench.sqlite
SQLITE_MARK=$SQLITE_DB.leads
CLK_TCK=$(getconf CLK_TCK)
export PGCONNECT_TIMEOUT=5

# Only the settings below reach leadgate: no inherited LEADGATE_* variable, and every
# leadgate command runs in the results directory, where no leadgate.toml is picked up.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^LEADGATE_' || true)
export LEADGATE_JWT_SECRET=$JWT_SECRET
export LEADGATE_LOG=warn

# ---------------------------------------------------------------- tools
command -v oha >/dev/null || {
    echo "run.sh: oha is not on PATH. Install it with:" >&2
    echo "    cargo install oha --locked" >&2
    exit 1
}
for tool in curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ " ${BACKENDS[*]} " == *" postgres "* ]]; then
    command -v psql >/dev/null || die "psql is required for --backend postgres"
fi
if ((PIN)); then
    command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
fi
if [[ ! -x /usr/bin/time ]] && command -v apt-get >/dev/null && ((EUID == 0)); then
    echo "installing GNU time (apt-get install time) for seed timing" >&2
    apt-get install -y -qq time >/dev/null 2>&1 || true
fi

echo "== building (cargo build --release)" >&2
(cd "$ROOT" && cargo build --release)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/leadgate
[[ -x $BIN ]] || die "no binary at $BIN"

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$BENCH_DIR/results/$RUN_ID
mkdir -p "$RUN_DIR/raw"
echo "== results: $RUN_DIR" >&2

python3 - "$RUN_DIR/env.json" "$LEADS" "$DURATION" "$REPEAT" "$PIN" "$QUICK" "$WARMUP" \
    "$(oha --version 2>/dev/null | head -n1)" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$(rustc --version 2>/dev/null || echo unknown)" <<'PY'
import json, os, platform, sys
out, leads, duration, repeat, pin, quick, warmup, oha, rev, rustc = sys.argv[1:]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
json.dump({
    "leads": int(leads), "duration_s": int(duration), "repeat": int(repeat), "pinned": pin == "1",
    "quick": quick == "1", "warmup_requests": int(warmup), "oha": oha, "git_rev": rev, "rustc": rustc,
    "cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
}, open(out, "w"), indent=1)
PY

# ---------------------------------------------------------------- process helpers
SERVER_PID=
SAMPLER_PID=
LOAD_PID=
STOP_FILE=

stop_load() {
    if [[ -n $LOAD_PID ]]; then
        # LOAD_PID is oha itself, or GNU time with oha as its only child
        pkill -TERM -P "$LOAD_PID" 2>/dev/null || true
        kill -TERM "$LOAD_PID" 2>/dev/null || true
        wait "$LOAD_PID" 2>/dev/null || true
        LOAD_PID=
    fi
}

stop_sampler() {
    if [[ -n $SAMPLER_PID ]]; then
        [[ -n $STOP_FILE ]] && : >"$STOP_FILE"
        wait "$SAMPLER_PID" 2>/dev/null || true
        [[ -n $STOP_FILE ]] && rm -f "$STOP_FILE"
        SAMPLER_PID=
    fi
}

stop_server() {
    local pid=$SERVER_PID i
    [[ -n $pid ]] || return 0
    SERVER_PID=
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do   # up to 15 s for a graceful shutdown
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: server $pid ignored SIGTERM for 15 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_load
    stop_sampler
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() {
    local stat rest
    stat=$(<"/proc/$1/stat") || return 1
    rest=${stat##*) }        # drop "pid (comm) "; the next field (state) is field 3
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

# A field of /proc/PID/status in kB (VmRSS, VmHWM), without forking.
status_kb() {
    local key val _
    while read -r key val _; do
        if [[ $key == "$2:" ]]; then echo "$val"; return 0; fi
    done <"/proc/$1/status"
    echo 0
}

# Samples VmRSS of $1 every 0.1 s into $2 (the maximum, in kB) until $3 exists; at most $4 samples.
rss_sampler() {
    local pid=$1 out=$2 stop=$3 limit=$4 max=0 n=0 v
    while ((n < limit)) && [[ ! -e $stop ]] && kill -0 "$pid" 2>/dev/null; do
        v=$(status_kb "$pid" VmRSS 2>/dev/null || echo 0)
        ((v > max)) && max=$v
        n=$((n + 1))
        echo "$max $n" >"$out"
        sleep 0.1
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

leadgate() { (cd "$RUN_DIR" && "$BIN" "$@"); }

psql_admin() {
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d postgres "$@"
}

# CPU ticks of the PostgreSQL backends serving leadgate ("pid ticks" lines).
pg_backend_ticks() {
    local pid
    psql_admin -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB' AND application_name = 'leadgate'" |
        while read -r pid; do
            [[ -n $pid ]] && echo "$pid $(cpu_ticks "$pid" 2>/dev/null || echo 0)"
        done
}

# ---------------------------------------------------------------- seeding
# Runs `leadgate seed` under /usr/bin/time -v (or a /proc-sampling fallback) and writes
# seed-<backend>.json with wall time and peak RSS.
timed_seed() {
    local backend=$1 timefile=$RUN_DIR/raw/seed-$backend.time log=$RUN_DIR/seed-$backend.log
    echo "== seeding $LEADS leads into $backend (timed)" >&2
    if [[ -x /usr/bin/time ]]; then
        (cd "$RUN_DIR" && /usr/bin/time -v -o "$timefile" "$BIN" seed --workspace "$WORKSPACE" \
            --leads "$LEADS" --seed "$DATA_SEED") 2>"$log" || { cat "$log" >&2; die "seed failed"; }
    else
        # Fallback: wall time from bash, peak RSS from VmHWM polled until the process exits.
        local pid hwm=0 v t0 t1 n=0
        t0=$(date +%s.%N)
        (cd "$RUN_DIR" && exec "$BIN" seed --workspace "$WORKSPACE" --leads "$LEADS" \
            --seed "$DATA_SEED") 2>"$log" &
        pid=$!
        while kill -0 "$pid" 2>/dev/null && ((n < 36000)); do   # at most an hour
            v=$(status_kb "$pid" VmHWM 2>/dev/null || echo 0)
            ((v > hwm)) && hwm=$v
            n=$((n + 1))
            sleep 0.1
        done
        wait "$pid" || { cat "$log" >&2; die "seed failed"; }
        t1=$(date +%s.%N)
        printf 'Elapsed (wall clock) time (h:mm:ss or m:ss): 0:%s\nMaximum resident set size (kbytes): %s\n(sampled fallback)\n' \
            "$(python3 -c "print(f'{$t1 - $t0:.2f}')")" "$hwm" >"$timefile"
    fi
    grep -v '^\s*$' "$log" | tail -n 3 >&2 || true
    python3 - "$timefile" "$RUN_DIR/seed-$backend.json" "$backend" "$LEADS" <<'PY'
import json, sys
timefile, out, backend, leads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
text = open(timefile).read()
def grab(label):
    for line in text.splitlines():
        if line.strip().startswith(label):
            return line.rsplit(": ", 1)[1].strip()
    return None
wall = grab("Elapsed (wall clock) time")
parts = [float(p) for p in wall.split(":")]
secs = 0.0
for p in parts:
    secs = secs * 60 + p
rss_kb = int(grab("Maximum resident set size") or 0)
res = {"kind": "seed", "backend": backend, "leads": leads, "wall_s": round(secs, 3),
       "leads_per_s": round(leads / secs) if secs else None, "max_rss_mb": round(rss_kb / 1024, 1),
       "user_s": float(grab("User time") or "nan"), "system_s": float(grab("System time") or "nan"),
       "method": "sampled" if "sampled fallback" in text else "/usr/bin/time -v"}
json.dump(res, open(out, "w"), indent=1)
print(f"   seed: {secs:.2f} s wall, {res['leads_per_s']:,} leads/s, max RSS {res['max_rss_mb']} MB", file=sys.stderr)
PY
}

prepare_sqlite() {
    export LEADGATE_DATABASE_URL="sqlite://$SQLITE_DB"
    local have=
    [[ -f $SQLITE_DB && -f $SQLITE_MARK ]] && have=$(<"$SQLITE_MARK")
    if ((RESEED == 0)) && [[ $have == "$LEADS" ]]; then
        echo "== sqlite: reusing $SQLITE_DB ($LEADS leads; --reseed to re-create and time the seed)" >&2
        return
    fi
    echo "== sqlite: creating $SQLITE_DB" >&2
    rm -f "$SQLITE_DB" "$SQLITE_DB-wal" "$SQLITE_DB-shm" "$SQLITE_MARK"
    leadgate migrate
    leadgate workspace create "$WORKSPACE" --name "Benchmark" >/dev/null
    timed_seed sqlite
    echo "$LEADS" >"$SQLITE_MARK"
}

prepare_postgres() {
    export LEADGATE_DATABASE_URL="$PG_SERVER/$PG_DB"
    psql_admin -Atc 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at $PG_SERVER"
    local exists have=
    exists=$(psql_admin -Atc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")
    if [[ $exists == 1 ]]; then
        have=$(leadgate workspace list 2>/dev/null |
            awk -F'\t' -v ws="$WORKSPACE" '$1 == ws { split($3, a, " "); print a[1] }' || true)
    fi
    if ((RESEED == 0)) && [[ $have == "$LEADS" ]]; then
        echo "== postgres: reusing database $PG_DB ($LEADS leads; --reseed to re-create and time the seed)" >&2
        return
    fi
    echo "== postgres: creating database $PG_DB" >&2
    psql_admin -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
    psql_admin -c "CREATE DATABASE $PG_DB"
    leadgate migrate
    leadgate workspace create "$WORKSPACE" --name "Benchmark" >/dev/null
    timed_seed postgres
}

# ---------------------------------------------------------------- server
start_server() {
    local backend=$1 port i
    port=$(free_port)
    URL=http://127.0.0.1:$port/graphql
    local cmd=("$BIN" serve --listen "127.0.0.1:$port")
    ((PIN)) && cmd=(taskset -c 0 "${cmd[@]}")
    (cd "$RUN_DIR" && exec "${cmd[@]}") >"$RUN_DIR/server-$backend.log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; ; i++)); do   # poll /readyz for up to 60 s
        if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$RUN_DIR/server-$backend.log" >&2
            die "the server exited before it was ready"
        fi
        ((i < 600)) || die "the server was not ready within 60 s"
        sleep 0.1
    done
    echo "== server pid $SERVER_PID on 127.0.0.1:$port ($backend)" >&2
    TOKEN=$(leadgate token --workspace "$WORKSPACE" --role viewer --ttl 12h)
}

# ---------------------------------------------------------------- one scenario
run_scenario() {
    local backend=$1 spec=$2 rep=$3
    local name file shape
    IFS='|' read -r name file shape <<<"$spec"
    local body=$BODIES/$file tag=$name-$backend
    ((REPEAT > 1)) && tag=$tag-r$rep
    local raw=$RUN_DIR/raw/$tag.oha.json out=$RUN_DIR/$tag.json
    echo "-- $name ($backend, run $rep/$REPEAT): oha $shape -z ${DURATION}s" >&2

    if ((WARMUP > 0)); then
        python3 "$BENCH_DIR/bodies.py" --url "$URL" --token "$TOKEN" --warmup "$body" --count "$WARMUP" ||
            die "warm-up of $name failed"
    fi

    local -a shape_args client=()
    read -r -a shape_args <<<"$shape"
    ((PIN)) && client=(taskset -c 1)
    local log_before pg_before=
    log_before=$(wc -l <"$RUN_DIR/server-$backend.log")
    [[ $backend == postgres ]] && pg_before=$(pg_backend_ticks)
    local load_before ticks0 ticks1
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)

    STOP_FILE=$RUN_DIR/raw/$tag.rss.stop
    rm -f "$STOP_FILE"
    echo "0 0" >"$RUN_DIR/raw/$tag.rss"
    rss_sampler "$SERVER_PID" "$RUN_DIR/raw/$tag.rss" "$STOP_FILE" $(((DURATION + 120) * 10)) &
    SAMPLER_PID=$!

    ticks0=$(cpu_ticks "$SERVER_PID")
    local rc=0
    # oha's own CPU comes from GNU time when present (a co-located client shares the 2 cores).
    if [[ -x /usr/bin/time ]]; then
        client+=(/usr/bin/time -f '%e %U %S' -o "$RUN_DIR/raw/$tag.client.time")
    else
        : >"$RUN_DIR/raw/$tag.client.time"
    fi
    "${client[@]}" oha --no-tui --output-format json -z "${DURATION}s" --wait-ongoing-requests-after-deadline \
        "${shape_args[@]}" -m POST -T application/json \
        -H "Accept: application/graphql-response+json" -H "Authorization: Bearer $TOKEN" \
        -Z "$body" "$URL" >"$raw" 2>"$RUN_DIR/raw/$tag.oha.err" &
    LOAD_PID=$!
    wait "$LOAD_PID" || rc=$?   # in the background so a signal reaches the trap at once
    LOAD_PID=
    ticks1=$(cpu_ticks "$SERVER_PID")
    stop_sampler
    ((rc == 0)) || { cat "$RUN_DIR/raw/$tag.oha.err" >&2; die "oha failed for $name (exit $rc)"; }

    local pg_after=
    [[ $backend == postgres ]] && pg_after=$(pg_backend_ticks)
    local log_errors
    log_errors=$(tail -n +"$((log_before + 1))" "$RUN_DIR/server-$backend.log" | grep -c 'ERROR' || true)

    python3 - "$raw" "$out" <<PY
import json, sys
raw, out = sys.argv[1], sys.argv[2]
o = json.load(open(raw))
codes = {str(k): int(v) for k, v in (o.get("statusCodeDistribution") or {}).items()}
errors = {str(k): int(v) for k, v in (o.get("errorDistribution") or {}).items()}
ok = codes.get("200", 0)
total = sum(codes.values())
pct = o.get("latencyPercentiles") or {}
def ms(key):
    v = pct.get(key)
    return None if v is None else round(v * 1000, 3)
summary = o.get("summary") or {}
elapsed = summary.get("total") or $DURATION
ticks = $ticks1 - $ticks0
cpu_s = ticks / $CLK_TCK
def pg_ticks(text):
    d = {}
    for line in text.strip().splitlines():
        pid, t = line.split()
        d[pid] = int(t)
    return d
pg_before, pg_after = pg_ticks("""$pg_before"""), pg_ticks("""$pg_after""")
db_ticks = sum(t - pg_before.get(pid, 0) for pid, t in pg_after.items()) if pg_after else None
rss_kb, rss_samples = (int(x) for x in open("$RUN_DIR/raw/$tag.rss").read().split())
client = open("$RUN_DIR/raw/$tag.client.time").read().split()
client_cpu_s = float(client[1]) + float(client[2]) if len(client) >= 3 else None
res = {
    "kind": "scenario", "scenario": "$name", "backend": "$backend", "run": $rep,
    "leads": $LEADS, "duration_s": $DURATION, "oha_args": "$shape", "body_file": "$file",
    "body_lines": sum(1 for _ in open("$body")), "pinned": $PIN == 1,
    "requests_ok": ok, "requests_total": total, "non_200": total - ok + sum(errors.values()),
    "status_codes": codes, "client_errors": errors,
    "rps": round(summary.get("requestsPerSec") or 0, 1),
    "ok_rps": round(ok / elapsed, 1) if elapsed else None,
    "elapsed_s": round(elapsed, 3),
    "p50_ms": ms("p50"), "p90_ms": ms("p90"), "p99_ms": ms("p99"), "p99_9_ms": ms("p99.9"),
    "mean_ms": round((summary.get("average") or 0) * 1000, 3),
    "server_cpu_ticks": ticks, "clk_tck": $CLK_TCK,
    "server_cpu_us_per_req": round(cpu_s * 1e6 / ok, 1) if ok else None,
    "server_cpu_cores": round(cpu_s / elapsed, 2) if elapsed else None,
    "db_cpu_us_per_req": round(db_ticks / $CLK_TCK * 1e6 / ok, 1) if (db_ticks is not None and ok) else None,
    "client_cpu_us_per_req": round(client_cpu_s * 1e6 / total, 1) if (client_cpu_s and total) else None,
    "max_rss_mb": round(rss_kb / 1024, 1), "rss_samples": rss_samples,
    "server_peak_rss_mb_lifetime": round($(status_kb "$SERVER_PID" VmHWM) / 1024, 1),
    "server_error_log_lines": $log_errors,
    "loadavg_before": "$load_before".split(),
}
json.dump(res, open(out, "w"), indent=1)
print(f"   {res['ok_rps']:>9} ok req/s  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  "
      f"cpu {res['server_cpu_us_per_req']} us/req  rss {res['max_rss_mb']} MB  non-200 {res['non_200']}",
      file=sys.stderr)
PY
}

# ---------------------------------------------------------------- main
for backend in "${BACKENDS[@]}"; do
    echo "==== backend: $backend ($LEADS leads, ${DURATION} s per scenario)" >&2
    "prepare_$backend"
    start_server "$backend"
    BODIES=$BENCH_DIR/bodies/$backend
    echo "== building body files in $BODIES" >&2
    python3 "$BENCH_DIR/bodies.py" --url "$URL" --token "$TOKEN" --leads "$LEADS" --out "$BODIES" ||
        die "body files or preflight failed for $backend"
    cp "$BODIES/manifest.json" "$RUN_DIR/raw/bodies-$backend.manifest.json"
    for ((rep = 1; rep <= REPEAT; rep++)); do
        for spec in "${SCENARIOS[@]}"; do
            run_scenario "$backend" "$spec" "$rep"
        done
    done
    # The body files are checked once more after the load: a server that degraded under load
    # (errors inside 200 responses, which oha cannot see) fails the run here.
    python3 "$BENCH_DIR/bodies.py" --url "$URL" --token "$TOKEN" --check "$BODIES" ||
        die "post-run check failed for $backend"
    stop_server
done

echo >&2
python3 "$BENCH_DIR/summarize.py" "$RUN_DIR" | tee "$RUN_DIR/summary.txt"
python3 "$BENCH_DIR/summarize.py" --markdown "$RUN_DIR" >"$RUN_DIR/summary.md"
echo "results: $RUN_DIR" >&2
