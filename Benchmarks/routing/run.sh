#!/usr/bin/env bash
# Routing quality in virtual time: herd's real scorer, queue and learning code
# (HerdRouting's Scheduler, driven as herd-control drives it) against
# round-robin, least-connections and Ollama Herd's weighted-sum scorer
# (reimplemented from its description), over the same simulated fleet and the
# same seeded workload. No sockets, no sleeping: the clock is the simulation's.
#
# Run:   bash Benchmarks/routing/run.sh [--seed N] [--minutes M] [--rate conversations-per-minute] [--verbose]
#          [--reports all|nothing|absurd]  what the machines tell herd: their slots and Ollama's
#              timings (all, the default), neither (most installs), or no slots and every duration 1 ns
#          [--stream-share S]  share of requests that stream (1; the rest are non-streaming)
#          [--fleet real [--requests 150] [--load 0.65]]  the routing-real fleet instead of the home lab:
#              4, 2 and 1 slots at 80, 30, 10 tokens/s reporting no slots (the first 1 ns durations),
#              one-shot non-streaming chats at Poisson arrivals, answers 50–200 tokens unknown to the router
#          [--verbose]  per machine: requests, p50, mean, time waiting in the router / inside / running;
#              herd's learned limits every 10 s, each queueing decision with its candidates, and how
#              the waits herd expected compare with the waits that came
#        SEEDS="1 2 3" bash Benchmarks/routing/run.sh   (one table per seed)
# Ollama Herd's weighted sum is told the machines' parallelism only when they report it
# (`--reports all`); else it runs its documented default of 1 per node:model.
# Prints: per router mean, p50, p95, p99 completion time (arrival → last
# token), loads, loads started while a hot replica had room, needless loads
# (that hot replica would have finished sooner), failures; last lines:
#   herd p95 / best baseline p95 = X, then the same for p50 and the mean
# The fleet, the workload and the events (a machine throttles at 30 % of the
# run, a laptop's owner is in a meeting from 50 to 80 %) are in
# Benchmarks/RoutingSim/main.swift.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product herd-routesim >/dev/null
if [ -n "${SEEDS:-}" ]; then
    for seed in $SEEDS; do .build/release/herd-routesim --seed "$seed" "$@"; echo; done
else
    exec .build/release/herd-routesim "$@"
fi
