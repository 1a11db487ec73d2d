#!/usr/bin/env python3
"""Builds the request-body files of the leadgate benchmark, checks them, and warms the server.

Body files are JSON lines, one GraphQL-over-HTTP request body per line, as `oha -Z` expects.
Cursors are real: they come from walking the `leads` connection of a running server, so they
are only valid against the database that server was started on.

Modes (python3 standard library only):

  build + preflight (default):
    bodies.py --url http://127.0.0.1:PORT/graphql --token T --leads N --out DIR
  preflight only, on files built earlier:
    bodies.py --url ... --token T --check DIR
  sequential warm-up (each response is checked too):
    bodies.py --url ... --token T --warmup DIR/page50_random.jsonl --count 300

Exit status: 0 on success, 1 when the server answered something unexpected, 2 on bad usage.
"""

import argparse
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

PAGE = 50
WALK_PAGE = 500
FIELDS = "id email firstName lastName companyName title country status score createdAt"
FIELD_NAMES = FIELDS.split()

# One query text for every forward scenario, so parse and validation cost the same in each
# and the p50 ratios between scenarios reflect paging work only.
Q_FORWARD = (
    "query Page($after: String, $filter: LeadFilter, $orderBy: LeadOrder) { "
    f"leads(first: {PAGE}, after: $after, filter: $filter, orderBy: $orderBy) {{ "
    f"edges {{ cursor node {{ {FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
)
# Backward paging selects the mirror image of the forward page info: `hasPreviousPage` comes
# from the look-ahead row like `hasNextPage` does forward (the other flag costs a query).
Q_BACKWARD = (
    "query PageBack($before: String, $filter: LeadFilter, $orderBy: LeadOrder) { "
    f"leads(last: {PAGE}, before: $before, filter: $filter, orderBy: $orderBy) {{ "
    f"edges {{ cursor node {{ {FIELDS} }} }} pageInfo {{ hasPreviousPage startCursor }} }} }}"
)
Q_COUNT = (
    "query PageCount($after: String, $filter: LeadFilter, $orderBy: LeadOrder) { "
    f"leads(first: {PAGE}, after: $after, filter: $filter, orderBy: $orderBy) {{ totalCount "
    f"edges {{ cursor node {{ {FIELDS} }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
)
# Cursor collection: cursors and page info only.
Q_WALK = (
    "query Walk($after: String, $filter: LeadFilter, $orderBy: LeadOrder) { "
    f"leads(first: {WALK_PAGE}, after: $after, filter: $filter, orderBy: $orderBy) {{ "
    "totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }"
)
Q_TAIL = (
    "query Tail($n: Int, $orderBy: LeadOrder) { "
    "leads(last: $n, orderBy: $orderBy) { edges { cursor } pageInfo { startCursor } } }"
)

ASC = {"field": "CREATED_AT", "direction": "ASC"}
DESC = {"field": "CREATED_AT", "direction": "DESC"}
FILTER = {"status": ["QUALIFIED"], "country": ["DE"]}
FILTER_ORDER = {"field": "COMPANY_NAME", "direction": "ASC"}
STATUS_FILTER = {"status": ["QUALIFIED"]}

# file name -> what the preflight expects of each response
FILES = {
    "page50_random.jsonl": {"edges": PAGE},
    "page50_first.jsonl": {"edges": PAGE},
    "page50_first_desc.jsonl": {"edges": PAGE},
    "page50_deep_asc.jsonl": {"edges": PAGE, "hasNextPage": False},
    "page50_deep_desc.jsonl": {"edges": PAGE, "hasNextPage": False},
    "page50_filtered.jsonl": {"edges": PAGE},
    "page50_last_before.jsonl": {"edges": PAGE, "backward": True},
    "page50_total_count.jsonl": {"edges": PAGE, "totalCount": "leads"},
    "page50_total_count_filtered.jsonl": {"edges": PAGE, "totalCount": "positive"},
}


class Fail(Exception):
    pass


class Client:
    """One keep-alive HTTP connection to the GraphQL endpoint (127.0.0.1 only)."""

    def __init__(self, url, token, timeout=60.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost"):
            raise Fail(f"refusing {url}: the benchmark only talks to http://127.0.0.1")
        self.host, self.port = u.hostname, u.port or 80
        self.path = u.path or "/graphql"
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/graphql-response+json",
            "Authorization": f"Bearer {token}",
        }
        self.conn = None

    def post_raw(self, body: bytes):
        """Returns (status, parsed JSON or None, raw bytes); reconnects once on a dropped link."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request("POST", self.path, body=body, headers=self.headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        return resp.status, doc, raw

    def query(self, query, variables):
        body = json.dumps({"query": query, "variables": variables}).encode()
        status, doc, raw = self.post_raw(body)
        if status != 200 or not isinstance(doc, dict) or doc.get("errors"):
            raise Fail(f"HTTP {status}: {raw[:400]!r}")
        return doc["data"]

    def close(self):
        if self.conn is not None:
            self.conn.close()


def body(query, variables):
    return json.dumps({"query": query, "variables": variables}, separators=(",", ":"))


def walk(client, filter_=None, order=None, keep=None, keep_all=False, limit_pages=None):
    """Pages through a connection with `first: 500`, cursors only.

    Returns (total_count, walked, kept): `kept` maps a 0-based position to its cursor for the
    positions in `keep` (or every position with `keep_all`)."""
    variables = {}
    if filter_ is not None:
        variables["filter"] = filter_
    if order is not None:
        variables["orderBy"] = order
    kept = {} if not keep_all else None
    all_cursors = [] if keep_all else None
    keep = keep or set()
    position = 0
    total = None
    after = None
    pages = 0
    started = time.monotonic()
    while True:
        if limit_pages is not None and pages >= limit_pages:
            raise Fail(f"walk did not end within {limit_pages} pages; is the data changing?")
        data = client.query(Q_WALK, dict(variables, after=after))["leads"]
        pages += 1
        if total is None:
            total = data["totalCount"]
        for edge in data["edges"]:
            if keep_all:
                all_cursors.append(edge["cursor"])
            elif position in keep:
                kept[position] = edge["cursor"]
            position += 1
        info = data["pageInfo"]
        if not info["hasNextPage"]:
            break
        if not data["edges"]:
            raise Fail("hasNextPage is true on an empty page")
        after = info["endCursor"]
        if pages % 200 == 0:
            rate = position / max(time.monotonic() - started, 1e-9)
            print(f"  walked {position} leads ({rate:,.0f}/s)", file=sys.stderr)
    return total, position, (all_cursors if keep_all else kept)


def sample(rng, lo, hi, k):
    """k distinct integers from [lo, hi], or all of them when there are fewer."""
    if hi < lo:
        return []
    n = hi - lo + 1
    return sorted(rng.sample(range(lo, hi + 1), min(k, n)))


def build(client, leads, out, seed, distinct):
    rng = random.Random(seed)
    t0 = time.monotonic()

    # Positions whose cursor we need from the main walk (CREATED_AT ASC, the default order).
    # A forward page after position p is full when p <= N-51; a backward page before p when
    # p >= 50.
    fwd = sample(rng, 0, leads - PAGE - 1, distinct)
    back = sample(rng, PAGE, leads - 1, distinct)
    deep = leads - PAGE - 1
    check_positions = set(range(PAGE + 1)) | {leads - 1}
    keep = set(fwd) | set(back) | {deep} | check_positions
    print(f"walking {leads} leads (CREATED_AT ASC, first: {WALK_PAGE})", file=sys.stderr)
    total, walked, kept = walk(client, keep=keep, limit_pages=leads // WALK_PAGE + 10)
    if total != leads or walked != leads:
        raise Fail(f"expected {leads} leads, server reports totalCount={total} and walked {walked}")

    # Deep cursors: the 51st-from-last lead in each order, i.e. the cursor after which exactly
    # 50 leads remain. `last: 51` without `before` returns that lead first; for ASC it must agree
    # with the walk, which checks backward paging against forward paging.
    tail_asc = client.query(Q_TAIL, {"n": PAGE + 1, "orderBy": ASC})["leads"]
    tail_desc = client.query(Q_TAIL, {"n": PAGE + 1, "orderBy": DESC})["leads"]
    for name, tail in (("ASC", tail_asc), ("DESC", tail_desc)):
        if len(tail["edges"]) != PAGE + 1:
            raise Fail(f"last: {PAGE + 1} in {name} returned {len(tail['edges'])} edges")
    if tail_asc["pageInfo"]["startCursor"] != kept[deep]:
        raise Fail("last: 51 (ASC) does not start at the lead the forward walk found at N-51")
    if tail_asc["edges"][-1]["cursor"] != kept[leads - 1]:
        raise Fail("last: 51 (ASC) does not end at the last lead of the forward walk")
    deep_desc = tail_desc["pageInfo"]["startCursor"]

    print("walking the filtered connection (QUALIFIED in DE, COMPANY_NAME ASC)", file=sys.stderr)
    ftotal, fwalked, fcursors = walk(
        client, filter_=FILTER, order=FILTER_ORDER, keep_all=True, limit_pages=leads // WALK_PAGE + 10
    )
    if fwalked <= PAGE:
        raise Fail(f"the filtered connection has only {fwalked} leads; seed more leads")
    ffwd = sample(rng, 0, fwalked - PAGE - 1, distinct)

    os.makedirs(out, exist_ok=True)
    files = {
        "page50_random.jsonl": [body(Q_FORWARD, {"after": kept[p]}) for p in fwd],
        "page50_first.jsonl": [body(Q_FORWARD, {})],
        "page50_first_desc.jsonl": [body(Q_FORWARD, {"orderBy": DESC})],
        "page50_deep_asc.jsonl": [body(Q_FORWARD, {"after": kept[deep]})],
        "page50_deep_desc.jsonl": [body(Q_FORWARD, {"after": deep_desc, "orderBy": DESC})],
        "page50_filtered.jsonl": [
            body(Q_FORWARD, {"after": fcursors[p], "filter": FILTER, "orderBy": FILTER_ORDER}) for p in ffwd
        ],
        "page50_last_before.jsonl": [body(Q_BACKWARD, {"before": kept[p]}) for p in back],
        "page50_total_count.jsonl": [body(Q_COUNT, {})],
        "page50_total_count_filtered.jsonl": [body(Q_COUNT, {"filter": STATUS_FILTER})],
    }
    for name, lines in files.items():
        rng.shuffle(lines)
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, os.path.join(out, name))

    manifest = {
        "leads": leads,
        "seed": seed,
        "filtered_leads": fwalked,
        "filtered_total_count": ftotal,
        "lines": {name: len(lines) for name, lines in files.items()},
        "first_cursors": [kept[p] for p in range(PAGE)],
        "last_cursor": kept[leads - 1],
        "built_in_s": round(time.monotonic() - t0, 2),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(
        f"built {len(files)} body files in {manifest['built_in_s']} s "
        f"({len(fwd)} random cursors, {len(back)} before-cursors, {len(ffwd)} filtered cursors "
        f"of {fwalked} filtered leads)",
        file=sys.stderr,
    )


def check_response(name, expect, status, doc, raw, manifest, line):
    """Raises Fail unless the response is what the body file promises."""
    where = f"{name}: {line[:160]}"
    if status != 200:
        raise Fail(f"{where}\n  HTTP {status}: {raw[:400]!r}")
    if not isinstance(doc, dict) or "errors" in doc or not isinstance(doc.get("data"), dict):
        raise Fail(f"{where}\n  GraphQL errors: {raw[:400]!r}")
    conn = doc["data"].get("leads") or {}
    edges = conn.get("edges") or []
    if len(edges) != expect["edges"]:
        raise Fail(f"{where}\n  expected {expect['edges']} edges, got {len(edges)}")
    for edge in edges:
        node = edge.get("node") or {}
        missing = [f for f in FIELD_NAMES if f not in node]
        if missing or not edge.get("cursor"):
            raise Fail(f"{where}\n  an edge lacks {missing or ['cursor']}")
    info = conn.get("pageInfo") or {}
    if "hasNextPage" in expect and info.get("hasNextPage") != expect["hasNextPage"]:
        raise Fail(f"{where}\n  expected hasNextPage={expect['hasNextPage']}, got {info}")
    if expect.get("backward"):
        if info.get("startCursor") != edges[0]["cursor"]:
            raise Fail(f"{where}\n  startCursor is not the first edge's cursor")
    elif info.get("endCursor") != edges[-1]["cursor"]:
        raise Fail(f"{where}\n  endCursor is not the last edge's cursor")
    if expect.get("totalCount") == "leads" and conn.get("totalCount") != manifest["leads"]:
        raise Fail(f"{where}\n  totalCount {conn.get('totalCount')} != {manifest['leads']}")
    if expect.get("totalCount") == "positive" and not (conn.get("totalCount") or 0) > 0:
        raise Fail(f"{where}\n  totalCount is {conn.get('totalCount')}")
    return edges


def preflight(client, out, per_file=5, seed=1):
    """Sends the first line and a few random lines of every body file once."""
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    rng = random.Random(seed)
    sent = 0
    for name, expect in FILES.items():
        with open(os.path.join(out, name)) as f:
            lines = [ln for ln in f.read().splitlines() if ln]
        if not lines:
            raise Fail(f"{name} is empty")
        picks = [0] + rng.sample(range(len(lines)), min(per_file, len(lines)))
        for i in sorted(set(picks)):
            status, doc, raw = client.post_raw(lines[i].encode())
            edges = check_response(name, expect, status, doc, raw, manifest, lines[i])
            sent += 1
            cursors = [e["cursor"] for e in edges]
            if name == "page50_first.jsonl" and cursors != manifest["first_cursors"]:
                raise Fail("the first page differs from the start of the forward walk")
            if name == "page50_deep_asc.jsonl" and cursors[-1] != manifest["last_cursor"]:
                raise Fail("the deep ASC page does not end at the last lead")
    print(f"preflight ok: {sent} requests over {len(FILES)} body files", file=sys.stderr)


def warmup(client, path, count, manifest_dir):
    """Sends the first `count` lines of a body file in order (cycling), checking each reply."""
    name = os.path.basename(path)
    expect = FILES.get(name, {"edges": PAGE})
    manifest_path = os.path.join(manifest_dir, "manifest.json")
    manifest = {"leads": None}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines() if ln]
    if not lines:
        raise Fail(f"{path} is empty")
    t0 = time.monotonic()
    for i in range(count):
        line = lines[i % len(lines)]
        status, doc, raw = client.post_raw(line.encode())
        check_response(name, expect, status, doc, raw, manifest, line)
    dt = time.monotonic() - t0
    print(f"  warm-up: {count} sequential requests in {dt:.2f} s, all valid", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="GraphQL endpoint, http://127.0.0.1:PORT/graphql")
    ap.add_argument("--token", required=True, help="bearer token (a viewer token is enough)")
    ap.add_argument("--leads", type=int, help="number of leads the workspace holds")
    ap.add_argument("--out", help="directory for the body files")
    ap.add_argument("--seed", type=int, default=20240601, help="random seed for cursor picks")
    ap.add_argument("--distinct", type=int, default=10000, help="distinct random cursors per file")
    ap.add_argument("--no-check", action="store_true", help="build without the preflight")
    ap.add_argument("--check", metavar="DIR", help="only run the preflight on DIR")
    ap.add_argument("--warmup", metavar="FILE", help="only send FILE's lines sequentially")
    ap.add_argument("--count", type=int, default=300, help="requests for --warmup")
    a = ap.parse_args()

    client = Client(a.url, a.token)
    try:
        if a.warmup:
            warmup(client, a.warmup, a.count, os.path.dirname(os.path.abspath(a.warmup)))
        elif a.check:
            preflight(client, a.check)
        else:
            if a.leads is None or a.out is None:
                ap.error("--leads and --out are required to build")
            if a.leads <= PAGE + 1:
                ap.error(f"--leads must be more than {PAGE + 1}")
            if a.distinct < 1:
                ap.error("--distinct must be positive")
            build(client, a.leads, a.out, a.seed, a.distinct)
            if not a.no_check:
                preflight(client, a.out)
    except Fail as e:
        print(f"bodies.py: FAILED: {e}", file=sys.stderr)
        return 1
    except (OSError, http.client.HTTPException) as e:
        print(f"bodies.py: cannot reach {a.url}: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
