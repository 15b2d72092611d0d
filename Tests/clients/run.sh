#!/usr/bin/env bash
# The official SDKs (anthropic, openai, ollama) through herd beside the same
# calls made directly (Tests/clients/clients.py), against the current debug
# build. The SDKs come from PyPI into a venv kept outside the clone
# (HERD_CLIENTS_VENV, default ~/.cache/herd/clients-venv). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${HERD_CLIENTS_VENV:-$HOME/.cache/herd/clients-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import anthropic, openai, ollama" 2>/dev/null; then
  python3 -m venv "$venv" || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check "anthropic>=0.40" "openai>=1.66" "ollama>=0.4"
fi
exec "$venv/bin/python" Tests/clients/clients.py "${1:-$(swift build --show-bin-path)}"
