#!/usr/bin/env python3
"""Summarise wrk --latency outputs: medians over rounds and ratios to the first
target. Usage: wrk_summary.py DIR ROUNDS BASELINE TARGET... (files DIR/NAME-ROUND.txt)"""
import re, statistics, sys

def to_us(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1000, "s": 1e6}[unit]

def parse(path):
    out = {}
    with open(path) as f:
        body = f.read()
    out["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", body).group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, body, re.M)
        out["p" + pct] = to_us(m.group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", body)
    out["non2xx"] = int(errors.group(1)) if errors else 0
    sock = re.search(r"Socket errors: (.*)", body)
    out["socket_errors"] = sock.group(1) if sock else ""
    return out

def main():
    directory, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    medians = {}
    for name in names:
        runs = [parse(f"{directory}/{name}-{r}.txt") for r in range(1, rounds + 1)]
        for r, run in enumerate(runs, 1):
            print(f"  round {r} {name:<8} {run['rps']:>10.0f} req/s  p50 {run['p50']:>7.0f} µs  p99 {run['p99']:>7.0f} µs")
        medians[name] = {k: statistics.median(run[k] for run in runs) for k in ("rps", "p50", "p90", "p99")}
        medians[name]["errors"] = sum(run["non2xx"] for run in runs)
        medians[name]["socket"] = "; ".join(run["socket_errors"] for run in runs if run["socket_errors"])
    base = names[0]
    print(f"\n{'target':<12}{'req/s':>12}{'p50 µs':>10}{'p90 µs':>10}{'p99 µs':>10}{'vs ' + base + ' req/s':>18}{'p99 Δ µs':>12}  errors")
    for name in names:
        m = medians[name]
        ratio = m["rps"] / medians[base]["rps"]
        print(f"{name:<12}{m['rps']:>12.0f}{m['p50']:>10.0f}{m['p90']:>10.0f}{m['p99']:>10.0f}{ratio:>17.2f}x{m['p99'] - medians[base]['p99']:>12.0f}  {m['errors']} {m['socket']}")

main()
