#!/usr/bin/env bash
# Checks deploy/: install.sh lays out every file under a scratch root (the
# binaries of the build given as $1), `systemd-analyze verify` finds nothing to
# say about any unit, and uninstall.sh removes the install (keeping data and
# settings) and --purge the rest. Nothing is installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${1:?usage: verify-deploy.sh BUILD_BIN_DIR}"
root="$(mktemp -d /tmp/herd-deploy.XXXXXX)"
trap 'rm -rf "$root"' EXIT
fail() { echo "verify-deploy: $*" >&2; exit 1; }

bash -n deploy/install.sh deploy/uninstall.sh
deploy/install.sh --root "$root" --from "$bin_dir" --no-deps --node >/dev/null
for f in usr/local/bin/herd usr/local/bin/herd-control usr/local/bin/herd-proxy usr/local/bin/herd-node \
         etc/systemd/system/herd-control.service etc/systemd/system/herd-proxy@.service \
         etc/systemd/system/herd-node.service etc/sysctl.d/60-herd.conf etc/default/herd etc/default/herd-node; do
    [ -e "$root/$f" ] || fail "install.sh did not install $f"
done
grep -qx 'net.ipv4.tcp_migrate_req = 1' "$root/etc/sysctl.d/60-herd.conf" || fail "sysctl file lacks tcp_migrate_req"

# systemd-analyze verify resolves dependencies and ExecStart paths inside the root.
mkdir -p "$root/usr/lib/systemd" "$root/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp /usr/bin/kill "$root/bin/kill"
out="$(systemd-analyze verify --root="$root" /etc/systemd/system/herd-control.service \
      /etc/systemd/system/herd-proxy@0.service /etc/systemd/system/herd-proxy@1.service \
      /etc/systemd/system/herd-node.service 2>&1)" || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "systemd-analyze verify: herd-control.service herd-proxy@0.service herd-proxy@1.service herd-node.service clean"

# Upgrade in place: a second install over the first keeps edited settings.
echo "HERD_HOST=0.0.0.0" >> "$root/etc/default/herd"
deploy/install.sh --root "$root" --from "$bin_dir" --no-deps >/dev/null
grep -q '^HERD_HOST=0.0.0.0' "$root/etc/default/herd" || fail "re-install overwrote /etc/default/herd"

mkdir -p "$root/var/lib/herd" && touch "$root/var/lib/herd/herd.db"
deploy/uninstall.sh --root "$root" >/dev/null
for f in usr/local/bin/herd usr/local/bin/herd-control usr/local/bin/herd-proxy usr/local/bin/herd-node \
         etc/systemd/system/herd-control.service etc/systemd/system/herd-proxy@.service etc/sysctl.d/60-herd.conf; do
    [ ! -e "$root/$f" ] || fail "uninstall.sh left $f"
done
[ -e "$root/var/lib/herd/herd.db" ] && [ -e "$root/etc/default/herd" ] || fail "uninstall.sh removed data or settings without --purge"
deploy/uninstall.sh --root "$root" --purge >/dev/null
[ ! -e "$root/var/lib/herd" ] && [ ! -e "$root/etc/default/herd" ] || fail "uninstall.sh --purge left data or settings"
echo "install.sh / uninstall.sh: install, upgrade, uninstall, purge ok"
