#!/usr/bin/env bash
# Routing on a fleet as users have it, with real processes: simulated GPU
# servers (Benchmarks/routing-real/simgpu.py: slots, batch slowdown, prefill,
# cold loads, honest HTTP, Ollama and OpenAI shapes) of very different speed,
# which report neither their parallelism nor useful timings, each behind its
# own herd-node; the same seeded open-loop workload (loadgen.py: Poisson
# arrivals, prompts and answers varying SPREAD×, the answer's length unknown
# to the router) through HAProxy `balance leastconn`, nginx round-robin and
# herd (release, default flags) in the same run. Every router starts from a
# fresh fleet (servers restarted: nothing learned, nothing loaded twice).
#
# Run:   bash Benchmarks/routing-real/run.sh
#        SEEDS="1 2 3" bash Benchmarks/routing-real/run.sh
# Knobs: REQUESTS (150), LOAD (0.65: arrival rate as a share of the fleet's
#        decode capacity), SPREAD (4), STREAM_SHARE (0: share of streams),
#        API (ollama | openai), ROUTERS ("haproxy nginx herd"; add herdbench: herd after
#        `herd benchmark` of the fresh fleet, BENCH_DURATION per machine, 30s),
#        KEEP=DIR keeps each request's result (result-SEED-ROUTER.json), herd's limits and its herd.db there;
#        FLEET: one machine per word, slots:tokens_per_s:batch_slowdown:timings[:gauges]
#          (timings: none | absurd | honest; gauges: none | vllm | llamacpp — a
#          machine with gauges serves its queue at /metrics and is registered
#          with its herd-node as an OpenAI-compatible server), default
#          "4:80:0.06:absurd 2:30:0.15:none 1:10:0.3:none" (the issue's fleet);
#        MODELS: the model mix, one per word, NAME[=SHARE][@SPEED] (default
#          "llama3.1:8b"): every machine serves every model, each with its own
#          slots (Ollama: a runner per loaded model), SPEED scaling its rates
#          on every machine; each request asks for one, drawn by SHARE (the
#          same draws for every router), e.g. "llama3.1:8b=0.7 qwen2.5:3b=0.3@2.5";
#        COLD: models not loaded at start on any machine (each machine's
#          first request for one waits LOAD_MS, 3000);
#        PHYSICS: how a machine's models share it (batch | timeshare: their
#          runners take turns instead of batching together; simgpu.py).
# Prints per router: mean, p50, p95, p99 (seconds, send → last byte), errors,
# requests per machine, and what waited inside each machine for a slot (how
# many, their mean wait, the most at once: the simulated servers count it);
# for herd, its learned limit per machine over time
# (from /api/v1/queues every second); last lines:
#   herd p95 / best baseline p95 = X
#   herd p50 / best baseline p50 = Y
#   herd mean / best baseline mean = Z
# Needs: haproxy nginx python3 (apt-get install -y haproxy nginx).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=Benchmarks/routing-real
REQUESTS=${REQUESTS:-150}
LOAD=${LOAD:-0.65}
SPREAD=${SPREAD:-4}
STREAM_SHARE=${STREAM_SHARE:-0}
API=${API:-ollama}
ROUTERS=${ROUTERS:-haproxy nginx herd}
FLEET=${FLEET:-4:80:0.06:absurd 2:30:0.15:none 1:10:0.3:none}
SEEDS=${SEEDS:-1}
ANSWER=${ANSWER:-50}
MODELS=${MODELS:-llama3.1:8b}
COLD=${COLD:-}
LOAD_MS=${LOAD_MS:-3000}
PHYSICS=${PHYSICS:-batch}
sim_models=(); gen_models=()
for m in $MODELS; do
  name=${m%%[=@]*}; speed=1; share=1
  [[ $m == *@* ]] && speed=${m##*@}
  rest=${m%%@*}; [[ $rest == *=* ]] && share=${rest##*=}
  sim_models+=(--model "$name@$speed"); gen_models+=(--model "$name=$share")
done
for m in $COLD; do sim_models+=(--cold "$m"); done
PROMPT=${PROMPT:-150}
command -v haproxy >/dev/null && command -v nginx >/dev/null || { echo "needs haproxy and nginx: apt-get install -y haproxy nginx"; exit 2; }
swift build -c release --product herd-control >/dev/null
swift build -c release --product herd-proxy >/dev/null
swift build -c release --product herd-node >/dev/null
B=.build/release
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/result-*.json "$work"/limits-*.log "$work"/simstats-*.jsonl "$work"/*-control-*.log "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
ROUTER_PORT=18801; CONTROL_PORT=18802; SIM_BASE=18810

# The arrival rate: LOAD × the fleet's decode capacity (tokens/s at each
# machine's full batch) ÷ the mean answer length.
# With a mix, the mean answer takes the mix's mean time per token (a faster model's answer costs less).
RATE=$(python3 - "$FLEET" "$LOAD" "$ANSWER" "$SPREAD" "$MODELS" <<'PY'
import math, sys
fleet, load, answer, spread = sys.argv[1].split(), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
shares = []
for m in sys.argv[5].split():
    rest, _, speed = m.partition("@")
    _, _, share = rest.partition("=")
    try:
        w, v = float(share) if share else 1.0, float(speed) if speed else 1.0
    except ValueError:
        w = v = float("nan")
    if not (0 <= w <= 1e6 and 0.01 <= v <= 1000):
        sys.exit(f"MODELS: {m}: SHARE within 0 and 1e6, SPEED within 0.01 and 1000")
    shares.append((w, v))
if sum(w for w, _ in shares) <= 0:
    sys.exit("MODELS: at least one SHARE above 0")
cost = sum(w / v for w, v in shares) / sum(w for w, _ in shares)
capacity = 0.0
for m in fleet:
    slots, tps, slow = m.split(":")[:3]
    slots, tps, slow = int(slots), float(tps), float(slow)
    capacity += slots * tps / (1 + slow * (slots - 1))
mean_answer = answer * (spread - 1) / math.log(spread) if spread > 1 else answer
print(f"{load * capacity / (mean_answer * cost):.4f}")
PY
)

sims=()
start_sims() {
  sims=()
  local i=0
  for m in $FLEET; do
    IFS=: read -r slots tps slow timings gauges <<<"$m"
    python3 $here/simgpu.py --port $((SIM_BASE + i)) --name "m$i-${slots}slot" --slots "$slots" --tps "$tps" \
      --batch-slowdown "$slow" --timings "$timings" --gauges "${gauges:-none}" --load-ms "$LOAD_MS" --physics "$PHYSICS" "${sim_models[@]}" &
    sims+=($!); pids+=($!)
    i=$((i + 1))
  done
  for j in $(seq 0 $((i - 1))); do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((SIM_BASE + j))/api/tags" >/dev/null && break; sleep 0.05; done
  done
}
stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

servers() { local i=0; for _ in $FLEET; do echo "127.0.0.1:$((SIM_BASE + i))"; i=$((i + 1)); done; }

run_haproxy() {
  { cat <<CONF
global
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend f
  bind 127.0.0.1:$ROUTER_PORT
  default_backend b
backend b
  balance leastconn
CONF
    local i=0; for s in $(servers); do echo "  server s$i $s"; i=$((i + 1)); done; } > "$work/haproxy.cfg"
  haproxy -f "$work/haproxy.cfg" -db & local p=$!; pids+=($p)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$ROUTER_PORT/" && break; sleep 0.05; done
  loadgen "$1" haproxy
  stop $p
}

run_nginx() {
  { echo "worker_processes 1; error_log $work/nginx.err; pid $work/nginx.pid; events { worker_connections 8192; }"
    echo "http { access_log off; client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf; uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;"
    echo "  upstream be {"; for s in $(servers); do echo "    server $s;"; done; echo "    keepalive 64; }"
    echo "  server { listen 127.0.0.1:$ROUTER_PORT; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_read_timeout 600s; proxy_buffering off; } } }"
  } > "$work/nginx.conf"
  nginx -c "$work/nginx.conf" -g 'daemon off;' & local p=$!; pids+=($p)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$ROUTER_PORT/" && break; sleep 0.05; done
  loadgen "$1" nginx
  stop $p
}

run_herd() { herd_arm "$1" herd; }
run_herdbench() { herd_arm "$1" herdbench; }

herd_arm() { # seed name
  rm -rf "$work/herd"; mkdir -p "$work/herd"
  $B/herd-control --port $CONTROL_PORT --proxy-port $ROUTER_PORT --data-dir "$work/herd/control" --no-mdns 2>"$work/herd/control.log" &
  local control=$!; pids+=($control)
  local nodes=() i=0
  local machines=($FLEET)
  for s in $(servers); do
    local backend=(--ollama "http://$s")
    IFS=: read -r _ _ _ _ gauges <<<"${machines[$i]}"
    [ "${gauges:-none}" = none ] || backend=(--ollama none --backend "openai=http://$s")
    $B/herd-node --control http://127.0.0.1:$CONTROL_PORT "${backend[@]}" --node-id "m$i" --data-dir "$work/herd/node$i" \
      --no-meeting-detection 2>"$work/herd/node$i.log" &
    nodes+=($!); pids+=($!)
    i=$((i + 1))
  done
  local n=$i
  for _ in $(seq 200); do
    [ "$(curl -s -H 'Host: 127.0.0.1' "http://127.0.0.1:$CONTROL_PORT/api/v1/nodes" | grep -o '"status":"online"' | wc -l)" -ge "$n" ] && break
    sleep 0.1
  done
  if [ "$2" = herdbench ]; then
    $B/herd-control benchmark --port $CONTROL_PORT --router-port $ROUTER_PORT --duration "${BENCH_DURATION:-30s}" --max-concurrency 8 \
      --max-tokens "$ANSWER" --prompt-tokens "$PROMPT" > "$work/bench-$1.txt" 2>&1 || true
    cat "$work/bench-$1.txt"
  fi
  ( while true; do
      printf '%s ' "$(date +%s.%N)"; curl -s -H 'Host: 127.0.0.1' "http://127.0.0.1:$CONTROL_PORT/api/v1/queues" || true; echo
      sleep 1
    done ) > "$work/limits-$1$([ "$2" = herd ] || echo "-$2").log" 2>/dev/null &
  local poller=$!; pids+=($poller)
  loadgen "$1" "$2"
  stop $poller "${nodes[@]}" $control
  cp "$work/herd/control.log" "$work/$2-control-$1.log"
  # herd's own record of each request (request_traces: concurrency, times, tokens), to see why it routed and learned as it did.
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work/herd/control/herd.db" "$KEEP/herd-$1-$2.db" 2>/dev/null || true; fi
}

loadgen() { # seed router
  python3 $here/loadgen.py --url "http://127.0.0.1:$ROUTER_PORT" --api "$API" --requests "$REQUESTS" --rate "$RATE" --seed "$1" \
    --spread "$SPREAD" --stream-share "$STREAM_SHARE" --answer-tokens "$ANSWER" --prompt-tokens "$PROMPT" "${gen_models[@]}" > "$work/result-$1-$2.json"
}

for seed in $SEEDS; do
  for router in $ROUTERS; do
    start_sims
    "run_$router" "$seed"
    # What each machine saw: requests that waited inside it for a slot.
    for s in $(servers); do curl -s "http://$s/sim/stats" || true; echo; done > "$work/simstats-$seed-$router.jsonl"
    stop "${sims[@]}"
  done
  python3 $here/report.py --seed "$seed" --rate "$RATE" --fleet "$FLEET" --work "$work" --routers "$ROUTERS"
  echo
done
