#!/usr/bin/env bash
# Two builds of herd side by side (A and B: control + proxy + node each, one fake
# backend), the order of A and B alternating every round so that neither always
# runs second. Layout as in bench.sh: herd on core 0, backend and load on core 1.
#
# Run:   bash Benchmarks/router/ab.sh cpu  A_BUILD B_BUILD    (ROUNDS=4 N=100000)
#          hey -n N -c 32 per round; CPU time (utime+stime, every thread) of herd-control
#          and herd-proxy divided by the requests served, the achieved req/s, and context
#          switches per request (every thread).
#        bash Benchmarks/router/ab.sh rate A_BUILD B_BUILD    (ROUNDS=6 RATE=1000 DURATION=5)
#          herd-loadgen rate (open loop): p50/p90/p99 from each scheduled send.
# A build is a release folder, e.g. .build/release or /tmp/herd-base/.build/release.
# A_FLAGS / B_FLAGS: herd-control's flags for each side (default: --max-concurrency 100000,
# as bench.sh); A_FLAGS= B_FLAGS=--max-concurrency=100000 compares default flags with the cap lifted.
# Needs: hey (apt-get install -y hey).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?cpu or rate}; A=${2:?A build}; B=${3:?B build}
ROUNDS=${ROUNDS:-$([ "$MODE" = cpu ] && echo 4 || echo 6)}; N=${N:-100000}; RATE=${RATE:-1000}; DURATION=${DURATION:-5}
work=$(mktemp -d); pids=()
# Each run's nodes learn their capacity afresh (not from an earlier run's load).
export HERD_DATA_DIR="$work/node-data"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
start() { "$@" & pids+=($!); }
start taskset -c 1 "$A/herd-fake-backend" --port 18701 --models llama3:8b --loaded llama3:8b --tokens 8 >/dev/null
declare -A BUILD=([A]=$A [B]=$B) CONTROL=([A]=18702 [B]=18704) PROXY=([A]=18703 [B]=18705) CPID PPID_
declare -A FLAGS=([A]="${A_FLAGS---max-concurrency 100000}" [B]="${B_FLAGS---max-concurrency 100000}")
for x in A B; do
  # shellcheck disable=SC2086 # the flags split into words on purpose
  taskset -c 0 "${BUILD[$x]}/herd-control" --port ${CONTROL[$x]} --proxy-port ${PROXY[$x]} --data-dir "$work/$x" \
    ${FLAGS[$x]} --no-mdns 2>"$work/$x.log" & pids+=($!); CPID[$x]=$!
  start taskset -c 1 "${BUILD[$x]}/herd-node" --control http://127.0.0.1:${CONTROL[$x]} --ollama http://127.0.0.1:18701 --node-id "n$x" 2>/dev/null
done
for x in A B; do
  for _ in $(seq 100); do curl -sf -o /dev/null -d '{"model":"llama3:8b","stream":false}' "http://127.0.0.1:${PROXY[$x]}/api/chat" && break; sleep 0.1; done
  PPID_[$x]=$(grep -o 'proxy-0 (pid [0-9]*' "$work/$x.log" | grep -o '[0-9]*$' | head -1)
done
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# Context switches of every thread of a process (each one a wake-up or a preemption).
switches() { cat /proc/$1/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }
body='{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}'
for r in $(seq "$ROUNDS"); do
  order="A B"; [ $((r % 2)) = 0 ] && order="B A"
  for x in $order; do
    url="http://127.0.0.1:${PROXY[$x]}/api/chat"
    if [ "$MODE" = cpu ]; then
      c0=$(ticks "${CPID[$x]}"); p0=$(ticks "${PPID_[$x]}"); cs0=$(switches "${CPID[$x]}"); ps0=$(switches "${PPID_[$x]}"); t0=$(date +%s.%N)
      taskset -c 1 hey -n "$N" -c 32 -m POST -T application/json -d "$body" "$url" > "$work/hey.txt"
      t1=$(date +%s.%N); c1=$(ticks "${CPID[$x]}"); p1=$(ticks "${PPID_[$x]}"); cs1=$(switches "${CPID[$x]}"); ps1=$(switches "${PPID_[$x]}")
      ok=$(awk '/\[200\]/ {print $2}' "$work/hey.txt")
      python3 -c "t=$(getconf CLK_TCK); c=($c1-$c0)*1e6/t/$ok; p=($p1-$p0)*1e6/t/$ok
print('round $r $x: control %.1f µs/req, proxy %.1f µs/req, together %.1f, %.0f req/s; context switches per request: control %.2f, proxy %.2f' % (c, p, c+p, $ok/($t1-$t0), ($cs1-$cs0)/$ok, ($ps1-$ps0)/$ok))"
    else
      taskset -c 1 "$A/herd-loadgen" rate --url "$url" --rate "$RATE" --duration "$DURATION" \
        | python3 -c "import json,sys; d=json.load(sys.stdin); print('round $r $x: p50 %d µs, p90 %d, p99 %d, errors %d' % (d['p50_us'], d['p90_us'], d['p99_us'], d['errors']))"
    fi
  done
done
