#!/usr/bin/env bash
# Sets up and starts a herd router on this machine (Debian 12 with Swift):
# installs the C libraries herd links (apt), builds herd in release mode, and
# runs herd-control, which starts its herd-proxy. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libuv1-dev libhttp-parser-dev libnghttp2-dev \
  libsqlite3-dev libavahi-client-dev libssl-dev pkg-config dbus avahi-daemon >/dev/null
swift build -c release
exec .build/release/herd-control "$@"
