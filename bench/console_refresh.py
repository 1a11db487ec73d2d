#!/usr/bin/env python3
"""The operator console against a release `leadgate serve --demo`: the weight of its page,
script and stylesheet, and the cost of one overview refresh.

A refresh is what the overview sends every 15 s: the documents of app.js named OVERVIEW_*,
sent at once on their own keep-alive connections (as the browser's Promise.all does), timed
until the last answer. Server CPU per refresh comes from /proc/<pid>/stat around the run.
Standard library only. Run it through bench/console.sh.
"""
import argparse
import gzip
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def documents():
    source = open(os.path.join(ROOT, "src/http/console/app.js"), encoding="utf-8").read()
    found = dict(re.findall(r"const (OVERVIEW_\w+) = gql`([^`]*)`", source))
    if not found:
        sys.exit("console_refresh: no OVERVIEW_* documents in app.js")
    return found


def start(binary, database_url, workdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    env.update(
        LEADGATE_DATABASE_URL=database_url,
        LEADGATE_LOG="warn",
        LEADGATE_RATE_LIMIT="off",
        LEADGATE_RATE_LIMIT_ANONYMOUS="off",
    )
    proc = subprocess.Popen(
        [binary, "serve", "--demo", "--listen", "127.0.0.1:0"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    base = token = None
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("leadgate is serving on "):
            base = line.split()[4]
        if line.count(".") == 2 and " " not in line:
            token = line
            break
    if not (base and token):
        proc.kill()
        sys.exit("console_refresh: the server printed no address or demo token")
    # keep reading, so the server never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, base, token


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def weight(base):
    host = urllib.parse.urlparse(base).netloc
    out = {}
    for path in ["/console", "/console/app.js", "/console/app.css"]:
        conn = http.client.HTTPConnection(host)
        conn.request("GET", path)
        body = conn.getresponse().read()
        out[path] = {"bytes": len(body), "gzip_bytes": len(gzip.compress(body, 9))}
        conn.close()
    return out


def refreshes(base, token, docs, count, warmup):
    host = urllib.parse.urlparse(base).netloc
    conns = {name: http.client.HTTPConnection(host) for name in docs}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/graphql-response+json, application/json",
        "Authorization": f"Bearer {token}",
        "x-leadgate-csrf": "1",
    }
    bodies = {name: json.dumps({"query": doc}) for name, doc in docs.items()}

    def send(name, failures):
        conn = conns[name]
        conn.request("POST", "/graphql", bodies[name], headers)
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200 or data.get("errors"):
            failures.append((name, response.status, data.get("errors")))

    def one():
        failures = []
        threads = [threading.Thread(target=send, args=(n, failures)) for n in docs]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        if failures:
            sys.exit(f"console_refresh: a refresh failed: {failures}")
        return took

    for _ in range(warmup):
        one()
    return [one() for _ in range(count)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--refreshes", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin)

    docs = documents()
    with tempfile.TemporaryDirectory() as workdir:
        url = args.database_url or f"sqlite://{workdir}/console.db"
        proc, base, token = start(args.bin, url, workdir)
        try:
            sizes = weight(base)
            before = cpu_seconds(proc.pid)
            times = refreshes(base, token, docs, args.refreshes, args.warmup)
            # the warm-up's CPU is in `before`…`after` too: count it in the divisor
            cpu = cpu_seconds(proc.pid) - before
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ms = sorted(t * 1000 for t in times)
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    result = {
        "backend": args.backend,
        "documents": sorted(docs),
        "refreshes": args.refreshes,
        "refresh_ms": {"p50": statistics.median(ms), "p90": p(0.90), "p99": p(0.99), "max": ms[-1]},
        "server_cpu_ms_per_refresh": cpu * 1000 / (args.refreshes + args.warmup),
        "weight": sizes,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    total = sum(v["bytes"] for v in sizes.values())
    total_gz = sum(v["gzip_bytes"] for v in sizes.values())
    print(f"console: page + script + stylesheet {total:,} bytes ({total_gz:,} gzipped)")
    print(
        f"console: overview refresh ({len(docs)} requests at once, {args.backend}, demo workspace of 10,000 leads): "
        f"p50 {result['refresh_ms']['p50']:.2f} ms, p90 {result['refresh_ms']['p90']:.2f} ms, "
        f"p99 {result['refresh_ms']['p99']:.2f} ms over {args.refreshes}; "
        f"server CPU {result['server_cpu_ms_per_refresh']:.2f} ms per refresh"
    )
    print(f"console: results in {args.out}")


if __name__ == "__main__":
    main()
