#!/usr/bin/env bash
# HTTP server overhead: herd's HTTP/1.1 server (HerdHTTP's HTTPServer with a
# handler answering a fixed 200 "Ollama is running": `herd-fake-backend --fixed-200`)
# against nginx (1 worker, `return 200`
# with the same body), closed loop, in interleaved rounds.
#
# Run:   bash Benchmarks/http-server/bench.sh            (ROUNDS=3 DURATION=5 CONNECTIONS=32)
# Needs: wrk, nginx (apt-get install -y wrk nginx); a release build is made here.
# Layout: the server under test on core 0 (taskset -c 0), wrk on core 1.
# Load:  wrk -t1 -c32 -d5s --latency http://127.0.0.1:PORT/
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
HERD_PORT=${HERD_PORT:-18480}
NGINX_PORT=${NGINX_PORT:-18481}

command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "needs wrk and nginx: apt-get install -y wrk nginx"; exit 2; }
swift build -c release --product herd-fake-backend >/dev/null
work=$(mktemp -d)
cleanup() { kill "${herd_pid:-}" "${nginx_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
error_log $work/error.log;
pid $work/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type "text/plain; charset=utf-8"; return 200 "Ollama is running"; }
  }
}
CONF
taskset -c 0 nginx -c "$work/nginx.conf" -g 'daemon off;' & nginx_pid=$!
taskset -c 0 .build/release/herd-fake-backend --fixed-200 --port "$HERD_PORT" > "$work/herd.log" & herd_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HERD_PORT/" >/dev/null && curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null && break; sleep 0.1; done

run() { taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/" > "$work/$2-$3.txt"; }
echo "warm-up"; run "$HERD_PORT" herd 0; run "$NGINX_PORT" nginx 0
for r in $(seq "$ROUNDS"); do
  echo "round $r"; run "$NGINX_PORT" nginx "$r"; run "$HERD_PORT" herd "$r"
done
python3 Benchmarks/wrk_summary.py "$work" "$ROUNDS" nginx herd
