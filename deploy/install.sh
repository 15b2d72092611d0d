#!/usr/bin/env bash
# Installs herd as systemd services on this machine (Debian 12 with Swift) and
# starts the router: herd-control plus N herd-proxy instances on :11435.
# Re-running upgrades in place (rebuilds, replaces binaries and units, restarts).
#
#   sudo deploy/install.sh                 # router: control + 2 proxies
#   sudo deploy/install.sh --proxies 4     # more proxies (one per core is plenty)
#   sudo deploy/install.sh --node          # also this machine's herd-node agent
#   sudo deploy/install.sh --node-only     # only the agent (a machine running Ollama)
#
# What goes where: binaries in /usr/local/bin, units in /etc/systemd/system,
# settings in /etc/default/herd (kept on upgrade), data in /var/lib/herd,
# the control socket in /run/herd, net.ipv4.tcp_migrate_req=1 in
# /etc/sysctl.d/60-herd.conf; a `herd` system user runs it all.
# Remove with deploy/uninstall.sh (data kept unless --purge).
#
# For packaging and tests: --root DIR installs the files under DIR only (no
# user, sysctl or systemctl), --from DIR takes built binaries from DIR
# instead of building, --no-start installs without starting.
set -euo pipefail
cd "$(dirname "$0")/.."

root=""
from=""
proxies=2
router=1
node=0
start=1
deps=1
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift ;;
        --from) from="${2:?--from needs a directory}"; shift ;;
        --proxies) proxies="${2:?--proxies needs a number}"; shift ;;
        --node) node=1 ;;
        --node-only) node=1; router=0 ;;
        --no-start) start=0 ;;
        --no-deps) deps=0 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$proxies" in ''|*[!0-9]*) echo "install.sh: --proxies must be a number" >&2; exit 2 ;; esac
if [ "$router" = 1 ] && [ "$proxies" -lt 1 ]; then echo "install.sh: a router needs at least one proxy" >&2; exit 2; fi
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (sudo)" >&2; exit 1; fi

say() { echo "herd install: $*"; }

if [ "$deps" = 1 ] && [ -z "$root" ]; then
    say "installing the C libraries herd links (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libuv1-dev libhttp-parser-dev libnghttp2-dev \
        libsqlite3-dev libavahi-client-dev libssl-dev pkg-config dbus avahi-daemon curl >/dev/null
fi

if [ -z "$from" ]; then
    say "building release binaries"
    swift build -c release --product herd-control >/dev/null
    swift build -c release --product herd-proxy >/dev/null
    swift build -c release --product herd-node >/dev/null
    swift build -c release --product herd >/dev/null
    from="$(swift build -c release --show-bin-path)"
fi
for binary in herd herd-control herd-proxy herd-node; do
    [ -x "$from/$binary" ] || { echo "install.sh: $from/$binary is missing" >&2; exit 1; }
done

bin="$root/usr/local/bin"
units="$root/etc/systemd/system"
install -d -m 0755 "$bin" "$units" "$root/etc/default" "$root/etc/sysctl.d"
# Replaced atomically (a running binary is not overwritten in place).
for binary in herd herd-control herd-proxy herd-node; do
    install -m 0755 "$from/$binary" "$bin/.$binary.new"
    mv -f "$bin/.$binary.new" "$bin/$binary"
done
install -m 0644 deploy/systemd/herd-control.service deploy/systemd/herd-proxy@.service deploy/systemd/herd-node.service "$units/"
install -m 0644 deploy/systemd/60-herd.conf "$root/etc/sysctl.d/60-herd.conf"
if [ ! -e "$root/etc/default/herd" ]; then
    cat > "$root/etc/default/herd" <<'EOF'
# herd-control and herd-proxy settings (every flag has an HERD_* twin; see
# herd-control --help and herd-proxy --help). Apply: systemctl restart herd-control
# (or systemctl reload herd-control for the fleet key file).
#
# Serve the LAN (default: this machine only):
#HERD_HOST=0.0.0.0
# Nodes must sign heartbeats with this key (16+ characters), or put it in /var/lib/herd/fleet.key:
#HERD_FLEET_KEY=
#HERD_PROXY_PORT=11435
#HERD_QUEUE_TIMEOUT=30
EOF
    chmod 0640 "$root/etc/default/herd"
fi
if [ "$node" = 1 ] && [ ! -e "$root/etc/default/herd-node" ]; then
    cat > "$root/etc/default/herd-node" <<'EOF'
# herd-node settings (see herd-node --help). Default: find the router over mDNS
# and report the Ollama on 127.0.0.1:11434.
#HERD_CONTROL=http://ROUTER:11436
#HERD_FLEET_KEY=
#HERD_BACKENDS="openai=http://127.0.0.1:8080 stt=http://127.0.0.1:8000#Systran/faster-whisper-tiny.en"
EOF
    chmod 0640 "$root/etc/default/herd-node"
fi

if [ -n "$root" ]; then
    say "files installed under $root"
    exit 0
fi

if ! getent passwd herd >/dev/null; then
    say "creating the herd system user"
    useradd --system --home-dir /var/lib/herd --no-create-home --shell /usr/sbin/nologin --user-group herd
fi
chgrp herd /etc/default/herd
[ -e /etc/default/herd-node ] && chgrp herd /etc/default/herd-node
sysctl -q -p /etc/sysctl.d/60-herd.conf || say "could not set net.ipv4.tcp_migrate_req (kernel < 5.14?): a killed proxy's queued connections are lost"

install -d -o herd -g herd -m 0750 /var/lib/herd
install -d -o herd -g herd -m 0755 /run/herd
if [ ! -d /run/systemd/system ]; then
    # No systemd (a container): herd-control runs its proxies itself, as herd,
    # in the background; a re-run replaces it.
    pidfile=/run/herd/herd-control.pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        say "stopping the running herd-control (pid $(cat "$pidfile"))"
        kill -TERM "$(cat "$pidfile")"
        for _ in $(seq 200); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    fi
    [ "$router" = 1 ] || { say "installed; systemd is not running: start herd-node by hand"; exit 0; }
    [ "$start" = 1 ] || { say "installed, not started (no systemd)"; exit 0; }
    install -d -o herd -g herd -m 0750 /var/log/herd
    set -a; [ -f /etc/default/herd ] && . /etc/default/herd; set +a
    setsid runuser -u herd -- env HERD_DATA_DIR=/var/lib/herd HERD_CONTROL_SOCKET=/run/herd/control.sock \
        /usr/local/bin/herd-control --proxies "$proxies" >>/var/log/herd/herd-control.log 2>&1 </dev/null &
    echo $! > "$pidfile"
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:${HERD_PORT:-11436}/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:${HERD_PORT:-11436}/health" >/dev/null 2>&1 || { say "herd-control did not start: see /var/log/herd/herd-control.log"; exit 1; }
    say "systemd is not running here: started herd-control (pid $(cat "$pidfile"), $proxies proxies) in the background; log /var/log/herd/herd-control.log"
    say "clients: http://127.0.0.1:${HERD_PROXY_PORT:-11435}; fleet: herd-control status"
    exit 0
fi
systemctl daemon-reload
wanted=()
if [ "$router" = 1 ]; then
    wanted+=(herd-control.service)
    # Proxies beyond the count from an earlier install are stopped.
    for unit in $(systemctl list-units --all --plain --no-legend 'herd-proxy@*.service' | awk '{print $1}'); do
        n="${unit#herd-proxy@}"; n="${n%.service}"
        if [ "$n" -ge "$proxies" ] 2>/dev/null; then systemctl disable --now "$unit" >/dev/null 2>&1 || true; fi
    done
    for ((i = 0; i < proxies; i++)); do wanted+=("herd-proxy@$i.service"); done
fi
[ "$node" = 1 ] && wanted+=(herd-node.service)
systemctl enable "${wanted[@]}" >/dev/null 2>&1
if [ "$start" = 1 ]; then
    # restart: starts a fresh install, upgrades a running one.
    systemctl restart "${wanted[@]}"
    say "running: ${wanted[*]}"
    [ "$router" = 1 ] && say "clients: http://127.0.0.1:\${HERD_PROXY_PORT:-11435}; fleet: herd-control status"
else
    say "installed and enabled, not started: systemctl start ${wanted[*]}"
fi
