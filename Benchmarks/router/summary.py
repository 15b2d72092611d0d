#!/usr/bin/env python3
"""Medians and ratios for Benchmarks/router/bench.sh.
Usage: summary.py DIR ROUNDS IDLE_RSS BUSY_RSS STREAM_IDLE_RSS (KiB) [TARGETS…] (default: direct nginx herd; "base" = BASELINE build)"""
import json, re, statistics, sys

d, rounds = sys.argv[1], int(sys.argv[2])
idle_rss, busy_rss, sidle_rss = (int(x) for x in sys.argv[3:6])
T = tuple(sys.argv[6:]) or ("direct", "nginx", "herd")
R = range(1, rounds + 1)
med = statistics.median

def wrk(path):
    body = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", body).group(1))
    def us(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, body, re.M)
        return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", body)
    return rps, us("50"), us("99"), int(bad.group(1)) if bad else 0

print("\n== closed loop, wrk -t1 -c32 (medians of %d rounds)" % rounds)
print(f"{'endpoint':<22}{'target':<8}{'req/s':>10}{'p50 µs':>9}{'p99 µs':>9}{'vs nginx':>10}  non-2xx")
for ep, name in (("chat", "/api/chat"), ("v1", "/v1/chat/completions")):
    res = {t: [wrk(f"{d}/{ep}-{t}-{r}.txt") for r in R] for t in T}
    n = med(x[0] for x in res["nginx"])
    for t in T:
        rows = res[t]
        rps = med(x[0] for x in rows)
        print(f"{name:<22}{t:<8}{rps:>10.0f}{med(x[1] for x in rows):>9.0f}{med(x[2] for x in rows):>9.0f}{rps / n:>9.2f}x  {sum(x[3] for x in rows)}")

print("\n== fixed rate (herd-loadgen, open loop), added latency over direct")
print(f"{'rate':<7}{'target':<8}{'p50 µs':>9}{'p99 µs':>9}{'+p50 µs':>9}{'+p99 µs':>9}{'achieved':>10} errors")
for rate in (1000, 5000):
    res = {t: [json.load(open(f"{d}/rate{rate}-{t}-{r}.json")) for r in R] for t in T}
    base50 = med(x["p50_us"] for x in res["direct"]); base99 = med(x["p99_us"] for x in res["direct"])
    for t in T:
        rows = res[t]
        p50 = med(x["p50_us"] for x in rows); p99 = med(x["p99_us"] for x in rows)
        print(f"{rate:<7}{t:<8}{p50:>9.0f}{p99:>9.0f}{p50 - base50:>9.0f}{p99 - base99:>9.0f}{med(x['achieved_rate'] for x in rows):>10.0f} {sum(x['errors'] for x in rows)}")

print("\n== herd's CPU during the fixed-rate runs (% of one core; herd-control includes its trace writer thread)")
for rate in (1000, 5000):
    rows = [[int(v) for v in open(f"{d}/cpu{rate}-{r}.txt").read().split()] for r in R]
    print(f"{rate:<7}herd-control {med(x[0] for x in rows):>3.0f} %   herd-proxy {med(x[1] for x in rows):>3.0f} %")

print("\n== control hop: ROUTE → ROUTE_OK at 5,000/s")
for t in [x for x in T if x in ("herd", "base")]:
    rows = [json.load(open(f"{d}/route-{t}-{r}.json")) for r in R]
    print(f"{t:<6} p50 {med(x['p50_us'] for x in rows):.0f} µs, p90 {med(x['p90_us'] for x in rows):.0f} µs, p99 {med(x['p99_us'] for x in rows):.0f} µs, errors {sum(x['errors'] for x in rows)}")

print("\n== streaming: per-chunk delivery delay after the backend stamped it")
print(f"{'target':<8}{'p50 µs':>9}{'p99 µs':>9}{'+p50 µs':>9}{'+p99 µs':>9}{'chunks':>9} errors  herd-proxy RSS peak")
res = {t: [json.load(open(f"{d}/stream-{t}-{r}.json")) for r in R] for t in T}
base50 = med(x["p50_us"] for x in res["direct"]); base99 = med(x["p99_us"] for x in res["direct"])
for t in T:
    rows = res[t]
    p50 = med(x["p50_us"] for x in rows); p99 = med(x["p99_us"] for x in rows)
    peak = max(int(v) for r in R for v in open(f"{d}/stream-rss-{t}-{r}.txt").read().split() if v.isdigit()) if t in ("herd", "base") else 0
    extra = f"  {peak / 1024:.1f} MB" if t in ("herd", "base") else ""
    print(f"{t:<8}{p50:>9.0f}{p99:>9.0f}{p50 - base50:>9.0f}{p99 - base99:>9.0f}{med(x['chunks'] for x in rows):>9.0f} {sum(x['errors'] for x in rows)}{extra}")

print(f"\n== herd-proxy RSS: idle {idle_rss / 1024:.1f} MB (streaming fleet idle {sidle_rss / 1024:.1f} MB), after the closed-loop rounds {busy_rss / 1024:.1f} MB")
