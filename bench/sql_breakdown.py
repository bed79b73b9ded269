#!/usr/bin/env python3
"""Per-step timings of lmsbridge requests, from its JSON log (bench/profile.sh).

lmsbridge runs with LMSBRIDGE_LOG_FORMAT=json and
RUST_LOG=info,sqlx::query=debug,tower_http=debug: every SQL statement is logged when it
ends with its own execution time, inside the request's span, and tower_http logs when a
request starts and finishes. For each request path this prints, in request order, every
event with the mean time the statement itself took ("in SQL") and the mean time between the
previous event and the start of this one ("before": lmsbridge's own work, waiting for a
pooled connection, and the logging of the previous event), plus the whole request from
start to finish as the server saw it.

Usage: sql_breakdown.py LOG [GENERATOR_RESULT.json]
"""

import json
import sys
from collections import OrderedDict, defaultdict
from datetime import datetime
from statistics import median


def ts(s):
    # 2026-11-27T18:35:50.386364Z -> seconds (microsecond resolution)
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def label(ev):
    if ev.get("target") == "sqlx::query":
        return "SQL " + ev.get("summary", "?").replace(" …", "")
    msg = ev.get("message", "?")
    return {
        "started processing request": "request start",
        "finished processing request": "response ready",
    }.get(msg, "log: " + msg)


def batch_timeline(events, batches):
    """Splits the writer's statements into batches and times them.

    The statements that run once per batch repeat in a fixed order; the one that follows the
    longest pause (the previous batch's COMMIT and the collection of the next batch) starts a
    batch. Meaningful with one writer task (SQLite); with several they interleave.
    """
    if not batches:
        return
    counts = defaultdict(int)
    for _, _, name in events:
        counts[name] += 1
    kinds = {k for k, c in counts.items() if c == batches}
    seq = sorted(e for e in events if e[2] in kinds)
    if len(seq) < 2 * len(kinds) or len(kinds) < 2:
        return
    pauses = defaultdict(list)
    for prev, cur in zip(seq, seq[1:]):
        pauses[cur[2]].append(cur[0] - cur[1] - prev[0])
    first = max(pauses, key=lambda k: median(pauses[k]))
    groups, cur = [], []
    for e in seq:
        if e[2] == first and cur:
            groups.append(cur)
            cur = []
        cur.append(e)
    groups = [g for g in groups if len(g) == len(kinds)]
    if len(groups) < 3:
        return
    span = [g[-1][0] - (g[0][0] - g[0][1]) for g in groups]
    sql = [sum(e[1] for e in g) for g in groups]
    between = [b[0][0] - b[0][1] - a[-1][0] for a, b in zip(groups, groups[1:])]
    if median(sql) > median(span):
        # Several writer tasks (PostgreSQL) interleave their statements: no clean split.
        print("\nThe writer's batches overlap (several writer tasks): not split into batches.")
        return
    ms = lambda xs: f"{sum(xs) / len(xs) * 1e3:.2f} / {median(xs) * 1e3:.2f}"
    print(f"\nThe writer's batches ({len(groups)} complete, each starting with SQL {first}): ms, mean / p50")
    print("| per batch | ms |")
    print("|---|---:|")
    print(f"| first statement start to last statement end | {ms(span)} |")
    print(f"| of which the statements themselves | {ms(sql)} |")
    print(f"| last statement of a batch to the first of the next (commit, replies, next batch) | {ms(between)} |")


def main():
    log = sys.argv[1]
    by_request = defaultdict(list)
    background = defaultdict(list)  # statements outside any request: the batch writer
    writer_events = []
    with open(log) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            span = ev.get("span") or {}
            rid = span.get("request_id")
            if not rid and ev.get("target") == "sqlx::query":
                name = ev.get("summary", "?").replace(" …", "")
                el = ev.get("elapsed_secs", 0.0)
                background[name].append(el)
                writer_events.append((ts(ev["timestamp"]), el, name))
                continue
            if not rid or ev.get("message") == "end of stream":
                continue
            by_request[rid].append(ev)

    # path -> step label -> [sum elapsed, sum gap, count]; and order of first appearance
    steps = defaultdict(OrderedDict)
    totals = defaultdict(list)
    for events in by_request.values():
        path = events[0]["span"].get("path")
        if events[0].get("message") != "started processing request":
            continue
        if events[-1].get("message") != "finished processing request":
            continue
        if events[-1].get("status") not in (302, 303):
            continue
        start = ts(events[0]["timestamp"])
        totals[path].append(ts(events[-1]["timestamp"]) - start)
        prev = start
        seen = defaultdict(int)
        for ev in events[1:]:
            end = ts(ev["timestamp"])
            elapsed = ev.get("elapsed_secs", 0.0) if ev.get("target") == "sqlx::query" else 0.0
            gap = max(0.0, end - elapsed - prev)
            name = label(ev)
            seen[name] += 1
            if seen[name] > 1:
                name = f"{name} (#{seen[name]})"
            acc = steps[path].setdefault(name, ([], []))
            acc[0].append(elapsed)
            acc[1].append(gap)
            prev = end

    for path in sorted(totals):
        n = len(totals[path])
        t = sorted(totals[path])
        mean = sum(t) / n
        print(f"\n{path}: {n} successful requests, server time mean {mean * 1e6:.0f} µs, "
              f"p50 {t[n // 2] * 1e6:.0f} µs")
        print("| step (in request order) | in SQL µs, mean / p50 | before it µs, mean / p50 |")
        print("|---|---:|---:|")
        sums = [0.0, 0.0, 0.0, 0.0]
        for name, (e, g) in steps[path].items():
            if len(e) < n * 0.9:
                continue  # steps most requests did not take
            row = [sum(e) / len(e), median(e), sum(g) / len(g), median(g)]
            sums = [a + b for a, b in zip(sums, row)]
            print(f"| {name} | {row[0] * 1e6:.0f} / {row[1] * 1e6:.0f} | {row[2] * 1e6:.0f} / {row[3] * 1e6:.0f} |")
        print(f"| **sum** | **{sums[0] * 1e6:.0f} / {sums[1] * 1e6:.0f}** | **{sums[2] * 1e6:.0f} / {sums[3] * 1e6:.0f}** |")

    launches = len(totals.get("/lti/launch", []))
    if launches and background:
        # Every batch starts with its checks: one call on SQLite (BEGIN IMMEDIATE and the
        # checks), one statement on PostgreSQL (WITH w AS (SELECT ... FROM UNNEST ...)).
        batches = sum(len(xs) for name, xs in background.items()
                      if name.startswith("BEGIN IMMEDIATE") or name.startswith("WITH w AS")) or None
        size = f", {launches / batches:.1f} launches per batch on average" if batches else ""
        print(f"\nOutside requests (the launch batch writer, the passback worker, upkeep): "
              f"statements that ran at least once per 10 launches{size}")
        print("| statement | runs | mean µs | µs per launch |")
        print("|---|---:|---:|---:|")
        per_launch_sum = 0.0
        for name, xs in sorted(background.items(), key=lambda kv: -sum(kv[1])):
            if len(xs) < launches / 10:
                continue
            per_launch = sum(xs) / launches
            per_launch_sum += per_launch
            print(f"| SQL {name} | {len(xs)} | {sum(xs) / len(xs) * 1e6:.0f} | {per_launch * 1e6:.0f} |")
        print(f"| **sum** | | | **{per_launch_sum * 1e6:.0f}** |")

        batch_timeline(writer_events, batches)

    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            runs = json.load(f)
        for r in runs:
            print(f"\ngenerator at concurrency {r['concurrency']}: "
                  f"login p50 {r['login']['p50_ms']:.2f} ms, launch p50 {r['launch']['p50_ms']:.2f} ms, "
                  f"{r['launches_per_sec']:.0f} launches/s, "
                  f"lmsbridge CPU {r['cpu'].get('tool_ms') or 0:.2f} ms per launch")


if __name__ == "__main__":
    main()
