#!/usr/bin/env python3
"""The table of Benchmarks/routing-real/run.sh: per router, completion times
and errors; herd's learned limits over time; the ratios against the best
baseline."""
import argparse
import collections
import json
import os

p = argparse.ArgumentParser()
p.add_argument("--seed", required=True)
p.add_argument("--rate", required=True)
p.add_argument("--fleet", required=True)
p.add_argument("--work", required=True)
p.add_argument("--routers", required=True)
args = p.parse_args()


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[index]


rows = {}
print(f"routing on real processes: seed {args.seed}, fleet {args.fleet} (slots:tokens/s:batch slowdown:timings), {args.rate} req/s")
print(f"{'router':10}{'n':>5}{'mean':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'errors':>8}   per machine")
for router in args.routers.split():
    path = os.path.join(args.work, f"result-{args.seed}-{router}.json")
    if not os.path.exists(path):
        continue
    results = json.load(open(path))["results"]
    ok = sorted(r["seconds"] for r in results if r["status"] == 200)
    errors = [r for r in results if r["status"] != 200]
    split = collections.Counter(r["machine"] or "?" for r in results if r["status"] == 200)
    mean = sum(ok) / len(ok) if ok else float("nan")
    rows[router] = (mean, percentile(ok, 0.5), percentile(ok, 0.95), percentile(ok, 0.99), len(errors))
    print(f"{router:10}{len(results):>5}{mean:>8.2f}{percentile(ok, 0.5):>8.2f}{percentile(ok, 0.95):>8.2f}{percentile(ok, 0.99):>8.2f}"
          f"{len(errors):>8}   " + " ".join(f"{k}:{v}" for k, v in sorted(split.items())))
    for e in errors[:3]:
        print(f"    error: status {e['status']} {e['error']}")
    stats_path = os.path.join(args.work, f"simstats-{args.seed}-{router}.jsonl")
    if os.path.exists(stats_path):
        machines = []
        for line in open(stats_path):
            try:
                machines.append(json.loads(line))
            except ValueError:
                continue
        parts = []
        for m in sorted(machines, key=lambda m: m.get("name", "")):
            waited = m.get("waited", 0)
            mean_wait = m.get("waited_s", 0.0) / waited if waited else 0.0
            parts.append(f"{m.get('name', '?')} {waited}/{m.get('served', 0)} ({mean_wait:.1f} s, at most {m.get('most_waiting', 0)})")
        if parts:
            print("    waited inside for a slot (requests, mean wait, most at once): " + ", ".join(parts))
    models = sorted({r.get("model", "") for r in results})
    if len(models) > 1:
        for model in models:
            mine = sorted(r["seconds"] for r in results if r["status"] == 200 and r.get("model") == model)
            where = collections.Counter(r["machine"] or "?" for r in results if r["status"] == 200 and r.get("model") == model)
            if mine:
                print(f"  {model:>24}: n {len(mine)} mean {sum(mine) / len(mine):.2f} p50 {percentile(mine, 0.5):.2f}"
                      f" p95 {percentile(mine, 0.95):.2f}   " + " ".join(f"{k}:{v}" for k, v in sorted(where.items())))

limits = os.path.join(args.work, f"limits-{args.seed}.log")
if os.path.exists(limits):
    series = collections.defaultdict(list)
    start = None
    for line in open(limits):
        stamp, _, text = line.partition(" ")
        try:
            snapshot = json.loads(text)
        except ValueError:
            continue
        t = float(stamp)
        start = start if start is not None else t
        for slot in snapshot.get("slots", []):
            series[(slot["node"], slot.get("model", ""))].append((t - start, slot["limit"], slot["in_flight"]))
    several = len({model for _, model in series}) > 1
    for (node, model), points in sorted(series.items()):
        limits_seen = [limit for _, limit, _ in points]
        at = [f"{int(t)}s:{limit}" for t, limit, _ in points[:: max(1, len(points) // 12)]]
        last_half = limits_seen[len(limits_seen) // 2:]
        print(f"herd learned limit on {node}{' ' + model if several else ''}: " + " ".join(at) + f"   (second half: min {min(last_half)} max {max(last_half)})")

baselines = [v for k, v in rows.items() if not k.startswith("herd")]
for arm in ("herdbench", "herd"):
    if arm in rows and baselines:
        for index, name in ((2, "p95"), (1, "p50"), (0, "mean")):
            best = min(b[index] for b in baselines)
            print(f"{arm} {name} / best baseline {name} = {rows[arm][index] / best:.2f}")
