#!/usr/bin/env python3
"""Soak: MINUTES of steady mixed load (streaming and not) through two herd-proxy
processes and two fake nodes (the production layout of Tests/faults), with a
failure injected every 30 s in turn: a backend stalls mid-stream, a backend is
killed and restarted, control is stopped (SIGSTOP) for 3 s, proxy-1 is killed
with -9 and restarted. Every 10 s it samples the resident memory and open file
descriptors of each process. At the end: growth of each process that ran the
whole time, from its sample after warm-up (WARMUP s) to the last (target:
<= 5 %), the outcome of every request, and whether the trace has a row for
each request that reached routing.

Usage: soak.py BIN_DIR [--minutes 10] [--warmup 120]
"""
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "faults"))
import faults  # noqa: E402  (Fleet, Load)

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release"
MINUTES = float(sys.argv[sys.argv.index("--minutes") + 1]) if "--minutes" in sys.argv else 10.0
WARMUP = float(sys.argv[sys.argv.index("--warmup") + 1]) if "--warmup" in sys.argv else 120.0
faults.BIN = BIN


def sample(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return rss / 1024.0, fds
    except (OSError, StopIteration):
        return None, None


def main():
    fleet = faults.Fleet(proxy_args=["--first-byte-timeout", "2", "--upstream-idle-timeout", "2"])
    fleet.start()
    load = faults.Load(fleet.proxy_port)
    load.start()
    watched = ["control", "proxy-0", "proxy-1", "node-A", "node-B"]
    samples = {name: [] for name in watched}   # (t, rss MiB, fds, pid)
    injections = []
    began = time.time()
    end = began + MINUTES * 60
    next_sample = began
    next_fault = began + 30
    turn = 0
    print(f"soak: {MINUTES:g} min, {faults.WORKERS} clients, binaries {BIN}", flush=True)
    while time.time() < end:
        now = time.time()
        if now >= next_sample:
            for name in watched:
                pid = fleet.procs[name].pid
                rss, fds = sample(pid)
                if rss is not None:
                    samples[name].append((now - began, rss, fds, pid))
            next_sample += 10
        if now >= next_fault:
            kind = turn % 4
            if kind == 0:
                fleet.script("A", {"failure": "stall:3"})
                time.sleep(3)
                fleet.script("A", {"failure": "none"})
                injections.append("backend A stalls mid-stream for 3 s")
            elif kind == 1:
                fleet.kill("backend-B")
                time.sleep(1)
                fleet.start_backend("B")
                injections.append("backend B killed, restarted 1 s later")
            elif kind == 2:
                fleet.kill("control", signal.SIGSTOP)
                time.sleep(3)
                fleet.kill("control", signal.SIGCONT)
                injections.append("control stopped (SIGSTOP) for 3 s")
            else:
                fleet.kill("proxy-1")
                time.sleep(1)
                fleet.start_proxy(1)
                injections.append("proxy-1 killed -9, restarted 1 s later")
            turn += 1
            next_fault += 30
        time.sleep(0.2)
    counts = load.stop()
    time.sleep(3)  # the last results reach control and its trace writer
    rows = sqlite3.connect(os.path.join(fleet.data, "herd.db")).execute("SELECT COUNT(*) FROM request_traces").fetchone()[0]
    fleet.stop()

    print("\nfailures injected:", len(injections), "(" + "; ".join(sorted(set(injections))) + ")")
    print("\nrequests:", "  ".join(f"{c} {counts[c]}" for c in faults.Load.COLUMNS))
    # Requests on a proxy killed mid-request never report to control: they are the disconnects.
    expected = counts["sent"] - counts["disconnect"]
    print(f"trace rows: {rows} for {expected} requests that reached routing and ended"
          f" ({'complete' if rows >= expected else f'{expected - rows} missing'}; the load's warm-up request adds one)")
    print(f"\n{'process':<9} {'samples':>7} {'RSS after warm-up':>18} {'RSS end':>8} {'growth':>7} {'fds after':>9} {'fds end':>7}  verdict")
    flat = True
    for name in watched:
        points = samples[name]
        pids = {p[3] for p in points}
        after = [p for p in points if p[0] >= WARMUP]
        if not after:
            print(f"{name:<9} {len(points):>7}  too short for a warm-up of {WARMUP:g} s")
            continue
        last_pid = points[-1][3]
        run = [p for p in after if p[3] == last_pid]
        first, last = run[0], run[-1]
        growth = (last[1] - first[1]) / first[1] * 100
        restarted = len(pids) > 1
        verdict = "restarted by the soak (excluded)" if restarted else ("flat" if growth <= 5 else "GROWS")
        if not restarted and growth > 5:
            flat = False
        print(f"{name:<9} {len(points):>7} {first[1]:>15.1f} MB {last[1]:>6.1f} MB {growth:>6.1f}% {first[2]:>9} {last[2]:>7}  {verdict}")
    ok = flat and counts["lost"] == 0 and counts["hung"] == 0 and rows >= expected
    print("\nsoak:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
