#!/usr/bin/env bash
# The router's overhead: direct to a fast fake backend, through nginx
# (proxy_pass, upstream keepalive, 1 worker) and through herd (herd-control +
# one herd-proxy + herd-node), interleaved in the same run, ROUNDS rounds, medians.
#
# Run:   bash Benchmarks/router/bench.sh        (ROUNDS=3 DURATION=5; STREAMS=1000 CHUNKS=200 CHUNK_MS=50)
#        BASELINE=/path/to/other/.build/release bash Benchmarks/router/bench.sh
#          also runs that build of herd ("base") in the same interleaved rounds: before/after in one run.
#        herd runs with its default flags; HERD_FLAGS="--max-concurrency 100000" lifts the concurrency
#        cap (BASELINE_FLAGS, default HERD_FLAGS, for the baseline build).
# Needs: wrk, nginx (apt-get install -y wrk nginx); builds in release.
# Layouts: each run reports two tables, `pinned` (backend and load generator on
# core 1; nginx / herd on core 0) and `unpinned` (the scheduler places
# everything, as on a user's machine); LAYOUTS="pinned" for one.
#  closed loop:  wrk -t1 -c32 -d${DURATION}s -s post.lua URL   (non-streaming /api/chat and /v1/chat/completions)
#  fixed rate:   herd-loadgen rate --rate 1000|5000 --duration $DURATION   (open loop; latency from each send)
#  streaming:    herd-loadgen stream --streams $STREAMS (each $CHUNKS chunks, $CHUNK_MS ms apart); per-chunk delay vs the backend's stamp
#  control hop:  herd-loadgen route --rate 5000   (ROUTE → ROUTE_OK on the control socket)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${LAYOUT:-}" ]; then
  for layout in ${LAYOUTS:-pinned unpinned}; do
    echo "=== layout: $layout"
    LAYOUT=$layout bash "$0" "$@"
  done
  exit 0
fi
pin() { if [ "$LAYOUT" = pinned ]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
STREAMS=${STREAMS:-1000}
CHUNKS=${CHUNKS:-200}
CHUNK_MS=${CHUNK_MS:-50}
BACKEND=18501; NGINX=18502; PROXY=18503; CONTROL=18504; SBACKEND=18505; SPROXY=18506; SCONTROL=18507; SNGINX=18508
BPROXY=18513; BCONTROL=18514; SBPROXY=18516; SBCONTROL=18517
BASELINE=${BASELINE:-}
HERD_FLAGS=${HERD_FLAGS:-}
BASELINE_FLAGS=${BASELINE_FLAGS-$HERD_FLAGS}
TARGETS="direct nginx herd"
[ -n "$BASELINE" ] && TARGETS="direct nginx herd base"
# herd and base swap places every other round, so neither always runs after nginx.
order() { if [ -n "$BASELINE" ] && [ $(($1 % 2)) = 0 ]; then echo "direct nginx base herd"; else echo "$TARGETS"; fi; }

command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx: apt-get install -y wrk nginx"; exit 2; }
swift build -c release >/dev/null
B=.build/release
work=$(mktemp -d)
# Each run's nodes learn their capacity afresh (not from an earlier run's load).
export HERD_DATA_DIR="$work/node-data"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

nginx_conf() { # port backend_port
cat > "$work/nginx-$1.conf" <<CONF
worker_processes 1;
error_log $work/nginx-$1.err;
pid $work/nginx-$1.pid;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $work/b$1; proxy_temp_path $work/p$1; fastcgi_temp_path $work/f$1; uwsgi_temp_path $work/u$1; scgi_temp_path $work/s$1;
  keepalive_requests 1000000;
  upstream be { server 127.0.0.1:$2; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$1;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
                 proxy_buffering off; proxy_request_buffering off; }
  }
}
CONF
}
start() { # core command...: a background process, pinned to core in the pinned layout
  if [ "$LAYOUT" = pinned ]; then taskset -c "$1" "${@:2}" & else "${@:2}" & fi
  pids+=($!)
}

# Fast fleet: one backend answering at once.
start 1 $B/herd-fake-backend --port $BACKEND --models llama3:8b --loaded llama3:8b --tokens 8
nginx_conf $NGINX $BACKEND; start 0 nginx -c "$work/nginx-$NGINX.conf" -g 'daemon off;'
start 0 $B/herd-control --port $CONTROL --proxy-port $PROXY --data-dir "$work/data" $HERD_FLAGS --no-mdns 2>"$work/control.log"
control_pid=${pids[-1]}
start 1 $B/herd-node --control http://127.0.0.1:$CONTROL --ollama http://127.0.0.1:$BACKEND --node-id bench 2>/dev/null
for _ in $(seq 100); do curl -sf -o /dev/null -d '{"model":"llama3:8b","stream":false}' http://127.0.0.1:$PROXY/api/chat && break; sleep 0.1; done
if [ -n "$BASELINE" ]; then
  start 0 "$BASELINE/herd-control" --port $BCONTROL --proxy-port $BPROXY --data-dir "$work/bdata" $BASELINE_FLAGS --no-mdns 2>"$work/bcontrol.log"
  start 1 "$BASELINE/herd-node" --control http://127.0.0.1:$BCONTROL --ollama http://127.0.0.1:$BACKEND --node-id bbench 2>/dev/null
  for _ in $(seq 100); do curl -sf -o /dev/null -d '{"model":"llama3:8b","stream":false}' http://127.0.0.1:$BPROXY/api/chat && break; sleep 0.1; done
fi
proxy_pid=$(grep -o 'proxy-0 (pid [0-9]*' "$work/control.log" | grep -o '[0-9]*$' | head -1)
rss() { grep VmRSS "/proc/$1/status" | awk '{print $2}'; }
# CPU a process (all its threads) has used, in clock ticks (1/100 s).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle_rss=$(rss "$proxy_pid")

cat > "$work/ollama.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}],"stream":false}'
wrk.headers["Content-Type"] = "application/json"
LUA
cat > "$work/openai.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"llama3:8b","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA

declare -A PORT=([direct]=$BACKEND [nginx]=$NGINX [herd]=$PROXY [base]=$BPROXY)
echo "warm-up"
for t in $TARGETS; do pin 1 wrk -t1 -c32 -d2s -s "$work/ollama.lua" "http://127.0.0.1:${PORT[$t]}/api/chat" >/dev/null; done
for r in $(seq "$ROUNDS"); do
  echo "round $r: closed loop"
  for t in $(order "$r"); do
    pin 1 wrk -t1 -c32 -d"${DURATION}s" --latency -s "$work/ollama.lua" "http://127.0.0.1:${PORT[$t]}/api/chat" > "$work/chat-$t-$r.txt"
    pin 1 wrk -t1 -c32 -d"${DURATION}s" --latency -s "$work/openai.lua" "http://127.0.0.1:${PORT[$t]}/v1/chat/completions" > "$work/v1-$t-$r.txt"
  done
  echo "round $r: fixed rate"
  for rate in 1000 5000; do
    for t in $(order "$r"); do
      c0=$(ticks "$control_pid"); p0=$(ticks "$proxy_pid"); t0=$(date +%s%N)
      pin 1 $B/herd-loadgen rate --url "http://127.0.0.1:${PORT[$t]}/api/chat" --rate $rate --duration "$DURATION" > "$work/rate$rate-$t-$r.json"
      # herd's processes' CPU over the herd run: % of one core.
      if [ "$t" = herd ]; then
        echo "$(( ($(ticks "$control_pid") - c0) * 1000000000 / ($(date +%s%N) - t0) )) $(( ($(ticks "$proxy_pid") - p0) * 1000000000 / ($(date +%s%N) - t0) ))" > "$work/cpu$rate-$r.txt"
      fi
    done
  done
  echo "round $r: control hop"
  pin 1 $B/herd-loadgen route --socket "$work/data/control.sock" --control http://127.0.0.1:$CONTROL --rate 5000 --duration "$DURATION" > "$work/route-herd-$r.json"
  if [ -n "$BASELINE" ]; then
    pin 1 "$BASELINE/herd-loadgen" route --socket "$work/bdata/control.sock" --control http://127.0.0.1:$BCONTROL --rate 5000 --duration "$DURATION" > "$work/route-base-$r.json"
  fi
done
busy_rss=$(rss "$proxy_pid")

# Streaming fleet: chunks paced by the backend.
start 1 $B/herd-fake-backend --port $SBACKEND --models llama3:8b --loaded llama3:8b --tokens "$CHUNKS" --token-delay-ms "$CHUNK_MS"
nginx_conf $SNGINX $SBACKEND; start 0 nginx -c "$work/nginx-$SNGINX.conf" -g 'daemon off;'
start 0 $B/herd-control --port $SCONTROL --proxy-port $SPROXY --data-dir "$work/sdata" $HERD_FLAGS --no-mdns 2>"$work/scontrol.log"
start 1 $B/herd-node --control http://127.0.0.1:$SCONTROL --ollama http://127.0.0.1:$SBACKEND --node-id sbench 2>/dev/null
for _ in $(seq 100); do curl -sf -o /dev/null -d '{"model":"llama3:8b","stream":false}' http://127.0.0.1:$SPROXY/api/chat && break; sleep 0.1; done
sproxy_pid=$(grep -o 'proxy-0 (pid [0-9]*' "$work/scontrol.log" | grep -o '[0-9]*$' | head -1)
sidle_rss=$(rss "$sproxy_pid")
sbproxy_pid=$sproxy_pid
if [ -n "$BASELINE" ]; then
  start 0 "$BASELINE/herd-control" --port $SBCONTROL --proxy-port $SBPROXY --data-dir "$work/sbdata" $BASELINE_FLAGS --no-mdns 2>"$work/sbcontrol.log"
  start 1 "$BASELINE/herd-node" --control http://127.0.0.1:$SBCONTROL --ollama http://127.0.0.1:$SBACKEND --node-id sbbench 2>/dev/null
  for _ in $(seq 100); do curl -sf -o /dev/null -d '{"model":"llama3:8b","stream":false}' http://127.0.0.1:$SBPROXY/api/chat && break; sleep 0.1; done
  sbproxy_pid=$(grep -o 'proxy-0 (pid [0-9]*' "$work/sbcontrol.log" | grep -o '[0-9]*$' | head -1)
fi
declare -A SPORT=([direct]=$SBACKEND [nginx]=$SNGINX [herd]=$SPROXY [base]=$SBPROXY)
declare -A SPID=([direct]=$sproxy_pid [nginx]=$sproxy_pid [herd]=$sproxy_pid [base]=$sbproxy_pid)
for r in $(seq "$ROUNDS"); do
  echo "round $r: $STREAMS streams × $CHUNKS chunks"
  for t in $(order "$r"); do
    peak=0
    ( while true; do v=$(rss "${SPID[$t]}"); echo "$v"; sleep 0.2; done ) > "$work/stream-rss-$t-$r.txt" &
    sampler=$!
    pin 1 $B/herd-loadgen stream --url "http://127.0.0.1:${SPORT[$t]}/api/chat" --body '{"model":"llama3:8b"}' --streams "$STREAMS" > "$work/stream-$t-$r.json"
    kill $sampler 2>/dev/null || true
  done
done

python3 Benchmarks/router/summary.py "$work" "$ROUNDS" "$idle_rss" "$busy_rss" "$sidle_rss" $TARGETS
