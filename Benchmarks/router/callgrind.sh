#!/usr/bin/env bash
# Instructions per proxied request: herd-proxy (or, with TARGET=control,
# herd-control) under callgrind, everything else outside it, instrumentation
# switched on only for the measured load. Instruction counts are stable where time is not: compare two
# versions of the hot path with this, not with wall-clock numbers.
#
# Run:   bash Benchmarks/router/callgrind.sh [BUILD_DIR]     (default .build/release; REQUESTS=4000; TARGET=proxy|control;
#        STREAM=true: streamed chats of 8 tokens instead of plain ones; API=openai: /v1/chat/completions)
# Needs: valgrind, hey (apt-get install -y valgrind hey).
# Prints: requests served while measured, total instructions, instructions per request,
# and the top functions (callgrind_annotate) to $OUT (default /tmp/herd-callgrind).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-.build/release}
REQUESTS=${REQUESTS:-4000}
OUT=${OUT:-/tmp/herd-callgrind}
BACKEND=18601; PROXY=18603; CONTROL=18604
[ -x "$B/herd-proxy" ] || swift build -c release >/dev/null
work=$(mktemp -d)
# Each run's nodes learn their capacity afresh (not from an earlier run's load).
export HERD_DATA_DIR="$work/node-data"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start() { "$@" & pids+=($!); }

TARGET=${TARGET:-proxy}
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out.*
measured=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out.%p")
start "$B/herd-fake-backend" --port $BACKEND --models llama3:8b --loaded llama3:8b --tokens 8
if [ "$TARGET" = control ]; then
  start "${measured[@]}" "$B/herd-control" --port $CONTROL --proxies 0 --data-dir "$work/data" --max-concurrency 100000 --no-mdns 2>"$work/control.log"
  vg=$!
else
  start "$B/herd-control" --port $CONTROL --proxies 0 --data-dir "$work/data" --max-concurrency 100000 --no-mdns 2>"$work/control.log"
fi
start "$B/herd-node" --control http://127.0.0.1:$CONTROL --ollama http://127.0.0.1:$BACKEND --node-id cg 2>/dev/null
for _ in $(seq 300); do [ -S "$work/data/control.sock" ] && break; sleep 0.1; done
if [ "$TARGET" = control ]; then
  start "$B/herd-proxy" --port $PROXY --control-socket "$work/data/control.sock" 2>"$work/proxy.log"
else
  start "${measured[@]}" "$B/herd-proxy" --port $PROXY --control-socket "$work/data/control.sock" 2>"$work/proxy.log"
  vg=$!
fi
path=/api/chat; [ "${API:-ollama}" = openai ] && path=/v1/chat/completions
body='{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":'"${STREAM:-false}"'}'
for _ in $(seq 300); do curl -sf -o /dev/null -d "$body" http://127.0.0.1:$PROXY$path && break; sleep 0.2; done
# Warm up (pools, caches), then measure exactly REQUESTS requests over 8 connections.
for _ in $(seq 50); do curl -sf -o /dev/null -d "$body" http://127.0.0.1:$PROXY$path; done
callgrind_control -i on "$vg" >/dev/null
hey -n "$REQUESTS" -c 8 -m POST -T application/json -d "$body" "http://127.0.0.1:$PROXY$path" > "$work/hey.txt"
callgrind_control -d "$vg" >/dev/null # dump part 1: the measured load only
served=$(awk '/\[200\]/ {print $2}' "$work/hey.txt")
kill -INT "$vg"; wait "$vg" 2>/dev/null || true
file=$(ls "$OUT"/callgrind.out.*.1 | head -1)
total=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
[ -n "$total" ] || total=$(grep -m1 '^totals:' "$file" | awk '{print $2}')
echo "requests measured: $served"
echo "instructions: $total"
echo "instructions per request: $((total / served))"
if [ "$TARGET" = proxy ]; then
  # The route decision on the ticket path: spending a ticket (look-up, affinity, take).
  callgrind_annotate --inclusive=yes "$file" > "$OUT/inclusive.txt" 2>/dev/null || true
  spend=$(awk '/ControlClientC11spendTicket/ {gsub(",", "", $1); print $1; exit}' "$OUT/inclusive.txt")
  [ -n "$spend" ] && echo "ticket-path decision (ControlClient.spendTicket, inclusive): $((spend / served)) instructions per request"
fi
callgrind_annotate --inclusive=no "$file" 2>/dev/null | head -40 > "$OUT/top.txt"
echo "top functions: $OUT/top.txt"
