#!/usr/bin/env python3
"""Turns the result files of a benchmark run into tables.

    bench/summarize.py bench/results/<timestamp>            # plain-text table
    bench/summarize.py --markdown bench/results/<timestamp> # markdown, for bench/README.md

Reads `<scenario>-<backend>[-rK].json` and `seed-<backend>.json` from the run directory. When a
scenario ran several times (`run.sh --repeat K`), each number is the median over the runs.
Prints the scenario table, the seed figures, the p50 ratios the targets are stated in, and a
verdict per target. Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import statistics
import sys

ORDER = [
    "s1", "s1-open", "first-page", "deep-asc", "first-page-desc", "deep-desc", "filtered",
    "last-before", "total-count", "total-count-filtered",
]
METRICS = [
    "ok_rps", "p50_ms", "p99_ms", "p99_9_ms", "server_cpu_us_per_req", "db_cpu_us_per_req",
    "client_cpu_us_per_req", "max_rss_mb", "server_peak_rss_mb_lifetime", "non_200",
]
# (label, numerator, denominator, limit)
RATIOS = [
    ("deep/first ASC", "deep-asc", "first-page", 1.1),
    ("deep/first DESC", "deep-desc", "first-page-desc", 1.1),
    ("deep DESC/first ASC", "deep-desc", "first-page", None),
    ("filtered/first", "filtered", "first-page", 1.2),
    ("last-before/first", "last-before", "first-page", None),
    ("last-before/s1 (before vs after, random cursors)", "last-before", "s1", 1.1),
    ("totalCount/first", "total-count", "first-page", 1.2),
    ("totalCount filtered/first", "total-count-filtered", "first-page", None),
]
S1_RPS = {"sqlite": 3000, "postgres": 2500}


def load(run_dir):
    scenarios, seeds = {}, {}
    for path in sorted(glob.glob(os.path.join(run_dir, "*.json"))):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(r, dict):
            continue
        if r.get("kind") == "scenario":
            scenarios.setdefault((r["backend"], r["scenario"]), []).append(r)
        elif r.get("kind") == "seed":
            seeds[r["backend"]] = r
    env = {}
    env_path = os.path.join(run_dir, "env.json")
    if os.path.exists(env_path):
        with open(env_path) as f:
            env = json.load(f)
    return scenarios, seeds, env


def median_row(runs):
    row = {"runs": len(runs)}
    for m in METRICS:
        vals = [r[m] for r in runs if r.get(m) is not None]
        row[m] = statistics.median(vals) if vals else None
    # non-200 responses are summed, not medianed: any of them matters
    row["non_200"] = sum(r.get("non_200") or 0 for r in runs)
    row["server_error_log_lines"] = sum(r.get("server_error_log_lines") or 0 for r in runs)
    for m in ("max_rss_mb", "server_peak_rss_mb_lifetime"):
        row[m] = max((r.get(m) or 0) for r in runs)
    return row


def fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def table(headers, rows, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def summarize(run_dir, markdown):
    scenarios, seeds, env = load(run_dir)
    if not scenarios and not seeds:
        sys.exit(f"summarize.py: no result files in {run_dir}")
    rows = {key: median_row(runs) for key, runs in scenarios.items()}
    backends = sorted({b for b, _ in rows}, key=lambda b: (b != "sqlite", b))
    out = []
    h = (lambda t: f"### {t}") if markdown else (lambda t: f"== {t}")

    leads = env.get("leads")
    out.append(h("Run"))
    out.append(
        f"{fmt(leads)} leads, {env.get('duration_s', '?')} s per scenario, "
        f"{env.get('repeat', 1)} run(s) per scenario (median shown), {env.get('cpus', '?')} CPUs "
        f"({env.get('cpu_model', '?')}), pinned: {env.get('pinned', False)}, "
        f"load average at start: {' '.join(env.get('loadavg_at_start', []))}, {env.get('oha', '')}, "
        f"rev {env.get('git_rev', '?')}"
    )
    out.append("")

    out.append(h("Scenarios"))
    headers = ["scenario", "backend", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU us/req",
               "DB CPU us/req", "max RSS MB", "non-200"]
    body = []
    for b in backends:
        names = [s for s in ORDER if (b, s) in rows] + sorted(s for bb, s in rows if bb == b and s not in ORDER)
        for s in names:
            r = rows[(b, s)]
            body.append([s, b, fmt(r["ok_rps"], 0), fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2),
                         fmt(r["p99_9_ms"], 2), fmt(r["server_cpu_us_per_req"], 0),
                         fmt(r["db_cpu_us_per_req"], 0), fmt(r["max_rss_mb"], 1), fmt(r["non_200"])])
    out.append(table(headers, body, markdown))
    out.append("")

    if seeds:
        out.append(h("Seed"))
        body = [[b, fmt(s["leads"]), fmt(s["wall_s"], 2), fmt(s["leads_per_s"]), fmt(s["max_rss_mb"], 1), s["method"]]
                for b, s in sorted(seeds.items())]
        out.append(table(["backend", "leads", "wall s", "leads/s", "max RSS MB", "measured with"], body, markdown))
        out.append("")

    out.append(h("Ratios (p50; CPU per request alongside)"))
    body = []
    ratio_values = {}
    for b in backends:
        for label, num, den, limit in RATIOS:
            if (b, num) not in rows or (b, den) not in rows:
                continue
            n, d = rows[(b, num)], rows[(b, den)]
            p = n["p50_ms"] / d["p50_ms"] if n["p50_ms"] and d["p50_ms"] else None
            c = (n["server_cpu_us_per_req"] / d["server_cpu_us_per_req"]
                 if n["server_cpu_us_per_req"] and d["server_cpu_us_per_req"] else None)
            ratio_values[(b, label)] = p
            body.append([label, b, fmt(p, 2), fmt(c, 2), f"<= {limit}" if limit else "-"])
    if body:
        out.append(table(["ratio", "backend", "p50 ratio", "CPU ratio", "target"], body, markdown))
    else:
        out.append("(none: the ratios need first-page, first-page-desc and s1 in the same run)")
    out.append("")

    # Verdicts
    checks = []
    def check(name, ok, value):
        if ok is None:
            checks.append([name, value, "n/a"])
        else:
            checks.append([name, value, "met" if ok else "MISSED"])
    for b in backends:
        s1 = rows.get((b, "s1"))
        if s1:
            want = S1_RPS.get(b, 3000)
            check(f"{b}: S1 >= {want:,} req/s", s1["ok_rps"] is not None and s1["ok_rps"] >= want, fmt(s1["ok_rps"], 0))
            check(f"{b}: S1 p99 < 15 ms", s1["p99_ms"] is not None and s1["p99_ms"] < 15, fmt(s1["p99_ms"], 2))
            cpu = s1["server_cpu_us_per_req"]
            check(f"{b}: S1 server CPU < 500 us/req", cpu is not None and cpu < 500, fmt(cpu, 0))
        so = rows.get((b, "s1-open"))
        if so:
            check(f"{b}: S1-open p50 < 1.5 ms", so["p50_ms"] is not None and so["p50_ms"] < 1.5, fmt(so["p50_ms"], 2))
            check(f"{b}: S1-open p99 < 4 ms", so["p99_ms"] is not None and so["p99_ms"] < 4, fmt(so["p99_ms"], 2))
            check(f"{b}: S1-open held 1,000 req/s", so["ok_rps"] is not None and so["ok_rps"] >= 990, fmt(so["ok_rps"], 0))
        for label, _, _, limit in RATIOS:
            if limit and (b, label) in ratio_values:
                v = ratio_values[(b, label)]
                check(f"{b}: {label} <= {limit}", None if v is None else v <= limit, fmt(v, 2))
        peak = max((r["max_rss_mb"] or 0) for (bb, _), r in rows.items() if bb == b)
        life = max((r["server_peak_rss_mb_lifetime"] or 0) for (bb, _), r in rows.items() if bb == b)
        check(f"{b}: server RSS < 200 MB throughout", max(peak, life) < 200,
              f"{fmt(peak, 1)} sampled / {fmt(life, 1)} VmHWM")
        bad = sum(r["non_200"] or 0 for (bb, _), r in rows.items() if bb == b)
        logged = sum(r["server_error_log_lines"] or 0 for (bb, _), r in rows.items() if bb == b)
        check(f"{b}: no non-200 responses, no ERROR log lines", bad == 0 and logged == 0, f"{bad} / {logged}")
    for b, s in sorted(seeds.items()):
        scale = f" (for {fmt(s['leads'])} leads)" if s["leads"] != 1_000_000 else ""
        check(f"{b}: seed of 1M < 10 s{scale}", s["wall_s"] < 10 if s["leads"] == 1_000_000 else None, fmt(s["wall_s"], 2))
        check(f"{b}: seed RSS < 200 MB", s["max_rss_mb"] < 200, fmt(s["max_rss_mb"], 1))
    out.append(h("Targets"))
    if leads is not None and leads != 1_000_000 or env.get("quick"):
        out.append("(not a full run: the targets are stated for 1,000,000 leads and 30-second runs on a quiet "
                   "machine; these verdicts only show the harness works)")
        out.append("")
    out.append(table(["target", "value", "verdict"], checks, markdown))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a bench/results/<timestamp> directory")
    ap.add_argument("--markdown", action="store_true", help="markdown tables")
    a = ap.parse_args()
    print(summarize(a.run_dir, a.markdown))


if __name__ == "__main__":
    main()
