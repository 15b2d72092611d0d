#!/usr/bin/env bash
# Removes what deploy/install.sh installed: stops and disables the units,
# deletes the binaries, units and sysctl file. Keeps the data (/var/lib/herd,
# /var/lib/herd-node), the settings (/etc/default/herd*) and the herd user
# unless --purge.
#
#   sudo deploy/uninstall.sh            # keep data and settings
#   sudo deploy/uninstall.sh --purge    # remove everything, the herd user too
#   deploy/uninstall.sh --root DIR      # files under DIR only (packaging, tests)
set -euo pipefail

root=""
purge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root="${2:?--root needs a directory}"; shift ;;
        --purge) purge=1 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then echo "uninstall.sh: run as root (sudo)" >&2; exit 1; fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    units=$(systemctl list-units --all --plain --no-legend 'herd-*.service' | awk '{print $1}')
    # shellcheck disable=SC2086
    [ -n "$units" ] && systemctl disable --now $units >/dev/null 2>&1 || true
    systemctl disable herd-control.service herd-node.service >/dev/null 2>&1 || true
fi
pidfile="$root/run/herd/herd-control.pid"
if [ -z "$root" ] && [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"   # started by install.sh where systemd does not run
    for _ in $(seq 200); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
fi
rm -f "$root/usr/local/bin/herd" "$root/usr/local/bin/herd-control" "$root/usr/local/bin/herd-proxy" "$root/usr/local/bin/herd-node" \
      "$root/etc/systemd/system/herd-control.service" "$root/etc/systemd/system/herd-proxy@.service" \
      "$root/etc/systemd/system/herd-node.service" "$root/etc/sysctl.d/60-herd.conf"
rm -rf "$root/etc/systemd/system/herd-control.service.wants"
[ -z "$root" ] && [ -d /run/systemd/system ] && systemctl daemon-reload
if [ "$purge" = 1 ]; then
    rm -rf "$root/var/lib/herd" "$root/var/lib/herd-node" "$root/run/herd" "$root/var/log/herd" "$root/etc/default/herd" "$root/etc/default/herd-node"
    if [ -z "$root" ] && getent passwd herd >/dev/null; then userdel herd || true; fi
    echo "herd uninstall: removed, with its data, settings and user"
else
    echo "herd uninstall: removed; data in /var/lib/herd and settings in /etc/default/herd kept (--purge removes them)"
fi
