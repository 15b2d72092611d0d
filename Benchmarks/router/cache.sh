#!/usr/bin/env bash
# What a response-cache hit costs beside the backend's own answer: the same
# embedding request (a) straight to the fake backend, (b) through herd with
# the cache on (every request after the first is a hit), (c) through herd
# with X-Herd-Cache: off (routed to the backend). Release build, loopback,
# hey with 8 connections; prints requests/s and latency p50/p99 for each.
#
# Run:   bash Benchmarks/router/cache.sh        (REQUESTS=20000)
# Needs: hey (apt-get install -y hey).
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${REQUESTS:-20000}
swift build -c release >/dev/null
B=.build/release
BACKEND=18901; PROXY=18903; CONTROL=18904
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start() { "$@" & pids+=($!); }
start "$B/herd-fake-backend" --port $BACKEND --models nomic-embed-text --loaded nomic-embed-text >/dev/null 2>&1
HERD_CACHE_MB=64 start "$B/herd-control" --port $CONTROL --proxy-port $PROXY --data-dir "$work/data" --no-mdns 2>"$work/control.log"
start "$B/herd-node" --control http://127.0.0.1:$CONTROL --ollama http://127.0.0.1:$BACKEND --node-id cache --data-dir "$work/node" 2>/dev/null
body='{"model":"nomic-embed-text","input":["the quick brown fox","jumps over the lazy dog"]}'
for _ in $(seq 300); do curl -sf -o /dev/null -d "$body" http://127.0.0.1:$PROXY/api/embed && break; sleep 0.2; done
measure() { # name, url, extra header
  local out
  out=$(hey -n "$REQUESTS" -c 8 -m POST -T application/json ${3:+-H "$3"} -d "$body" "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '/ 50% in/ {print $3*1000}' <<<"$out")
  p99=$(awk '/ 99% in/ {print $3*1000}' <<<"$out")
  printf "%-34s %10.0f req/s   p50 %6.3f ms   p99 %6.3f ms   %s\n" "$1" "$rps" "$p50" "$p99" "$(grep -E '^\s+\[' <<<"$out" | tr -s ' ' | tr '\n' ' ')"
}
measure "direct to the backend" "http://127.0.0.1:$BACKEND/api/embed"
measure "through herd, cache hits" "http://127.0.0.1:$PROXY/api/embed"
measure "through herd, X-Herd-Cache: off" "http://127.0.0.1:$PROXY/api/embed" "X-Herd-Cache: off"
curl -s -D - -o /dev/null -d "$body" http://127.0.0.1:$PROXY/api/embed | grep -i "x-herd-cache"
