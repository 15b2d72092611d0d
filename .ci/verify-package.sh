#!/usr/bin/env bash
# Checks deploy/package.sh: the .deb and .tar.gz build; no binary needs a
# libswift* library; the .deb installs with dpkg -i, its binaries run with the
# Swift toolchain off PATH and LD_LIBRARY_PATH (herd serves a request), and it
# is removed and purged. Run as root (CI); it installs and removes herd here.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d /tmp/herd-dist.XXXXXX)"
run="$(mktemp -d /tmp/herd-pkgrun.XXXXXX)"
pid=""
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    dpkg --purge herd >/dev/null 2>&1 || true
    rm -rf "$out" "$run"
}
trap cleanup EXIT
fail() { echo "verify-package: $*" >&2; exit 1; }

bash deploy/package.sh --out "$out"
deb="$(ls "$out"/herd_*.deb)"
ls "$out"/herd-*-linux-*.tar.gz >/dev/null || fail "no .tar.gz"
dpkg-deb -x "$deb" "$run/extracted"
for binary in herd herd-control herd-proxy herd-node; do
    if ldd "$run/extracted/usr/bin/$binary" | grep -q 'libswift'; then fail "$binary needs the Swift runtime: $(ldd "$run/extracted/usr/bin/$binary")"; fi
done
echo "ldd: no binary needs a libswift* library"
for binary in herd herd-control herd-proxy herd-node; do
    page="$run/extracted/usr/share/man/man1/$binary.1.gz"
    [ -f "$page" ] || fail "no manual page for $binary"
    zcat "$page" | grep -q "^\.TH $(printf '%s' "$binary" | tr 'a-z' 'A-Z') 1" || fail "$binary.1 is not a manual page"
done
zcat "$run/extracted/usr/share/man/man1/herd-control.1.gz" | grep -q '^DESCRIPTION' || fail "herd-control.1 has no DESCRIPTION"
echo "manual pages: herd(1), herd-control(1), herd-proxy(1), herd-node(1)"

dpkg -i "$deb" >/dev/null
getent passwd herd >/dev/null || fail "the postinst made no herd user"
# The Swift toolchain out of sight: a bare PATH, no LD_LIBRARY_PATH.
bare() { env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
bare sh -c 'command -v swift' >/dev/null 2>&1 && fail "swift is on the bare PATH"
bare herd --version >/dev/null || fail "herd --version"
bare herd-node --version >/dev/null || fail "herd-node --version"
bare herd-proxy --help >/dev/null || fail "herd-proxy --help"
port=$((20000 + RANDOM % 20000)); proxy_port=$((port + 1))
# Not through `bare` (a shell function: `$!` would be the subshell, and a TERM
# to it left herd-control running after the script): env execs herd, herd execs herd-control.
env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin herd serve --port "$port" --proxy-port "$proxy_port" --data-dir "$run/data" --no-mdns >"$run/herd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$proxy_port/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$proxy_port/" >/dev/null || fail "the packaged router did not answer: $(cat "$run/herd.log")"
curl -fsS "http://127.0.0.1:$port/health" | grep -q '"status":"ok"' || fail "no health"
bare herd status --port "$port" >/dev/null || fail "herd status"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
# herd-control stops its proxies as it exits: nothing of the package may run on.
for _ in $(seq 50); do pgrep -f "$run/data" >/dev/null || break; sleep 0.1; done
if pgrep -f "$run/data" >/dev/null; then fail "a herd process outlived herd serve's TERM: $(pgrep -af "$run/data")"; fi
echo "dpkg -i, then herd serve / status with no Swift on PATH: ok"
dpkg -r herd >/dev/null
[ ! -e /usr/bin/herd-control ] || fail "dpkg -r left /usr/bin/herd-control"
dpkg --purge herd >/dev/null
getent passwd herd >/dev/null && fail "purge left the herd user"
echo "dpkg -r and --purge: ok"
