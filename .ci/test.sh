#!/usr/bin/env bash
# herd's test command (README "Run the tests"; .ci/run calls it).
# Installs what the tests need, starts dbus and a loopback-only avahi-daemon,
# builds, runs `swift test`, and stops what it started. Run as root (or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libuv1-dev libhttp-parser-dev libnghttp2-dev libsqlite3-dev libavahi-client-dev libssl-dev
              pkg-config dbus avahi-daemon avahi-utils curl openssl ca-certificates python3 nghttp2-client systemd prometheus chromium espeak-ng)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${CI:-}" = "true" ]; then
  echo "== apt-get install ${APT_PACKAGES[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

started_dbus=""
started_avahi=""
cleanup() {
  if [ -n "$started_avahi" ]; then avahi-daemon -k 2>/dev/null || true; fi
  if [ -n "$started_dbus" ] && [ -f /run/dbus/pid ]; then
    kill "$(cat /run/dbus/pid)" 2>/dev/null || true
    rm -f /run/dbus/pid /run/dbus/system_bus_socket
  fi
}
trap cleanup EXIT

dbus_alive() { [ -f /run/dbus/pid ] && kill -0 "$(cat /run/dbus/pid)" 2>/dev/null; }
if ! dbus_alive && ! dbus-send --system --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId >/dev/null 2>&1; then
  mkdir -p /run/dbus
  rm -f /run/dbus/pid /run/dbus/system_bus_socket   # stale from an earlier run
  dbus-daemon --system --fork
  started_dbus=1
fi
if ! avahi-daemon -c 2>/dev/null; then
  # Loopback only: allow-interfaces=lo (see .ci/avahi-loopback.conf).
  avahi-daemon -f "$PWD/.ci/avahi-loopback.conf" -D
  started_avahi=1
  for _ in $(seq 100); do avahi-daemon -c 2>/dev/null && break; sleep 0.1; done
  avahi-daemon -c
fi

# A hung test must fail the run with its phase named, not stall CI: each
# `swift test` gets a watchdog (the suites take 1–3 min; minutes of nothing is a hang).
watchdog() {
  local seconds="$1"; shift
  local rc=0
  timeout --kill-after=30 "$seconds" "$@" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "!! hung: '$*' still running after ${seconds} s"; fi
  return "$rc"
}

echo "== swift build --build-tests"
swift build --build-tests
echo "== swift test"
watchdog "${HERD_TEST_WATCHDOG:-900}" swift test
echo "== no trapping conversion of an outside value (.ci/check-conversions.sh)"
bash .ci/check-conversions.sh
echo "== fault table (Tests/faults)"
bash Tests/faults/run.sh
echo "== client SDKs through herd beside the backend (Tests/clients)"
bash Tests/clients/run.sh
echo "== a multimodal fleet of real CPU engines: whisper, piper, sentence-transformers (Tests/media)"
watchdog "${HERD_MEDIA_WATCHDOG:-600}" bash Tests/media/run.sh
echo "== fuzz: each libFuzzer target for ${HERD_FUZZ_SECONDS:-45} s (Fuzz/run.sh)"
bash Fuzz/run.sh "${HERD_FUZZ_SECONDS:-45}"
echo "== deploy: install.sh into a scratch root, systemd-analyze verify, uninstall.sh"
bash .ci/verify-deploy.sh "$(swift build --show-bin-path)"
if [ "$(id -u)" = 0 ] && command -v dpkg-deb >/dev/null; then
  echo "== package: deploy/package.sh (.deb, .tar.gz, static Swift runtime), dpkg -i, run with no Swift on PATH, purge"
  bash .ci/verify-package.sh
fi
if [ -z "${HERD_SKIP_ASAN:-}" ]; then
  # The same tests under AddressSanitizer (manual memory: libuv handles, buffers).
  echo "== swift test --sanitize=address"
  swift build --build-tests --sanitize=address --scratch-path .build-asan
  watchdog "${HERD_TEST_WATCHDOG:-900}" env LSAN_OPTIONS="suppressions=$PWD/.ci/lsan.supp" \
    swift test --skip-build --sanitize=address --scratch-path .build-asan
fi
if [ -z "${HERD_SKIP_TSAN:-}" ]; then
  # The suites that share state between threads (loop threads, the SQLite
  # writer, offload) under ThreadSanitizer; a report fails the run (exit 66).
  echo "== swift test --sanitize=thread (threaded suites)"
  swift build --build-tests --sanitize=thread --scratch-path .build-tsan
  watchdog "${HERD_TEST_WATCHDOG:-900}" swift test --skip-build --sanitize=thread --scratch-path .build-tsan \
    --filter "HerdStorageTests|HerdRuntimeTests|HerdHTTPTests|ControlChannelTests"
fi
