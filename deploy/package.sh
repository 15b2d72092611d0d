#!/usr/bin/env bash
# Builds herd's packages: herd_<version>_<arch>.deb and herd-<version>-linux-<arch>.tar.gz,
# release binaries with the Swift runtime linked statically (--static-swift-stdlib):
# they need only Debian's runtime libraries, not the Swift toolchain.
#
#   deploy/package.sh [--out DIR]          (default DIR: dist/)
#
# The .deb: /usr/bin/{herd,herd-control,herd-proxy,herd-node}, the systemd units
# (herd-control pulls in herd-proxy@0 and @1), /etc/default/herd and herd-node
# (conffiles), the sysctl file; its postinst creates the herd user and enables
# nothing. Then, on the router:
#   apt install ./herd_*.deb && systemctl enable --now herd-control
# and on each machine with a model server:
#   apt install ./herd_*.deb && systemctl enable --now herd-node
set -euo pipefail
cd "$(dirname "$0")/.."
out=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="${2:?--out DIR}"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
version="$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/HerdBounds/HerdVersion.swift)"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
binaries=(herd herd-control herd-proxy herd-node)

echo "package.sh: building herd $version ($arch), Swift runtime linked statically"
scratch=.build-static
for binary in "${binaries[@]}"; do
    swift build -c release --static-swift-stdlib --scratch-path "$scratch" --product "$binary" >/dev/null
done
bin="$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)"
for binary in "${binaries[@]}"; do
    if ldd "$bin/$binary" | grep -q 'libswift\|libFoundation\|libdispatch'; then
        echo "package.sh: $binary still needs the Swift runtime:" >&2
        ldd "$bin/$binary" >&2
        exit 1
    fi
done

stage="$(mktemp -d /tmp/herd-package.XXXXXX)"
trap 'rm -rf "$stage"' EXIT
root="$stage/herd_${version}_${arch}"
install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system/herd-control.service.wants" "$root/etc/default" "$root/etc/sysctl.d" \
    "$root/usr/share/doc/herd" "$root/usr/share/man/man1" "$root/DEBIAN"
for binary in "${binaries[@]}"; do
    install -m 0755 -s "$bin/$binary" "$root/usr/bin/$binary"
done
for unit in herd-control.service herd-proxy@.service herd-node.service; do
    sed 's#/usr/local/bin/#/usr/bin/#g; s#deploy/install.sh#the herd package#' "deploy/systemd/$unit" > "$root/lib/systemd/system/$unit"
    chmod 0644 "$root/lib/systemd/system/$unit"
done
# Two proxies start and stop with herd-control (enabling herd-control is enough).
ln -s ../herd-proxy@.service "$root/lib/systemd/system/herd-control.service.wants/herd-proxy@0.service"
ln -s ../herd-proxy@.service "$root/lib/systemd/system/herd-control.service.wants/herd-proxy@1.service"
install -m 0644 deploy/systemd/60-herd.conf "$root/etc/sysctl.d/60-herd.conf"
cat > "$root/etc/default/herd" <<'CONF'
# herd-control and herd-proxy settings (every flag has an HERD_* twin; see
# herd-control --help and herd-proxy --help). Apply: systemctl restart herd-control.
# Serve the LAN (default: this machine only):
#HERD_HOST=0.0.0.0
# Nodes must sign heartbeats with this key (16+ characters), or put it in /var/lib/herd/fleet.key:
#HERD_FLEET_KEY=
#HERD_PROXY_PORT=11435
CONF
cat > "$root/etc/default/herd-node" <<'CONF'
# herd-node settings (see herd-node --help). Default: find the router over mDNS
# and report the Ollama on 127.0.0.1:11434.
#HERD_CONTROL=http://ROUTER:11436
#HERD_FLEET_KEY=
CONF
chmod 0640 "$root/etc/default/herd" "$root/etc/default/herd-node"
install -m 0644 README.md "$root/usr/share/doc/herd/README.md"
# Manual pages (man herd-node): each binary's own --help, which is written as one.
manpage() { # binary summary
    local upper
    upper="$(printf '%s' "$1" | tr 'a-z' 'A-Z')"
    {
        printf '.TH %s 1 "" "herd %s" "herd manual"\n.SH NAME\n%s \\- %s\n.SH SYNOPSIS AND DESCRIPTION\n.nf\n' "$upper" "$version" "$1" "$2"
        "$bin/$1" --help 2>&1 | sed -e 's/\\/\\e/g' -e 's/^[.'"'"']/\\\&&/'
        printf '.fi\n'
    } | gzip -9n > "$root/usr/share/man/man1/$1.1.gz"
    chmod 0644 "$root/usr/share/man/man1/$1.1.gz"
}
manpage herd "one endpoint for a fleet of model servers"
manpage herd-control "the router's control plane: fleet, routing decisions, dashboard"
manpage herd-proxy "the router's data plane: one Ollama, OpenAI and Anthropic endpoint"
manpage herd-node "the agent on each machine with a model server"
printf '/etc/default/herd\n/etc/default/herd-node\n/etc/sysctl.d/60-herd.conf\n' > "$root/DEBIAN/conffiles"
size="$(du -sk "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: herd
Version: $version
Architecture: $arch
Maintainer: herd <herd@localhost>
Installed-Size: $size
Depends: libuv1, libhttp-parser2.9, libnghttp2-14, libsqlite3-0, libavahi-client3, libssl3, adduser | passwd
Recommends: avahi-daemon
Section: net
Priority: optional
Description: one endpoint for a fleet of model servers (Ollama, llama.cpp, vLLM)
 herd routes each request to the machine that will finish it soonest, queues
 when every machine is busy, retries elsewhere when one dies, and shows the
 fleet on a live dashboard. herd-control and its herd-proxy children are the
 router; herd-node is the agent on each machine; herd is the one command.
CONTROL
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd herd >/dev/null; then
        useradd --system --home-dir /var/lib/herd --no-create-home --shell /usr/sbin/nologin --user-group herd
    fi
    chgrp herd /etc/default/herd /etc/default/herd-node 2>/dev/null || true
    sysctl -q -p /etc/sysctl.d/60-herd.conf 2>/dev/null || true
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    echo "herd installed. Router: systemctl enable --now herd-control   Node: systemctl enable --now herd-node   (or run: herd)"
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop herd-node.service herd-control.service 'herd-proxy@*.service' 2>/dev/null || true
fi
exit 0
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/herd /var/lib/herd-node
    if getent passwd herd >/dev/null; then userdel herd 2>/dev/null || true; fi
fi
if [ -d /run/systemd/system ]; then systemctl daemon-reload 2>/dev/null || true; fi
exit 0
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --build --root-owner-group "$root" "$out/herd_${version}_${arch}.deb" >/dev/null

tarball="herd-$version-linux-$arch"
install -d "$stage/$tarball/bin" "$stage/$tarball/systemd" "$stage/$tarball/man/man1"
cp -a "$root/usr/bin/." "$stage/$tarball/bin/"
cp -a deploy/systemd/. "$stage/$tarball/systemd/"
cp -a "$root/usr/share/man/man1/." "$stage/$tarball/man/man1/"
cp README.md "$stage/$tarball/"
tar -C "$stage" -czf "$out/$tarball.tar.gz" "$tarball"
echo "package.sh: $out/herd_${version}_${arch}.deb ($(du -h "$out/herd_${version}_${arch}.deb" | cut -f1)), $out/$tarball.tar.gz"
