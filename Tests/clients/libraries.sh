#!/usr/bin/env bash
# The client libraries people build on (langchain-ollama, langchain-openai,
# litellm, llama-index) through herd beside the same calls made directly to the
# fake backend, registered as Ollama and as an OpenAI-compatible server:
# Tests/clients/libraries.py. Beside CI, not in it (the libraries and their
# dependencies are large; some fetch things from the internet, which the run
# blocks). Installed once into a venv outside the clone (HERD_LIBRARIES_VENV,
# default ~/.cache/herd/libs-venv). Against the current debug build unless a
# bin directory is given.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${HERD_LIBRARIES_VENV:-$HOME/.cache/herd/libs-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import anthropic, openai, ollama, langchain_ollama, langchain_openai, litellm, llama_index.llms.ollama, llama_index.llms.openai_like, llama_index.embeddings.ollama" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "anthropic>=0.40" "openai>=1.66" "ollama>=0.4" langchain-openai langchain-ollama \
    litellm llama-index-llms-ollama llama-index-llms-openai-like llama-index-embeddings-ollama
fi
exec "$venv/bin/python" Tests/clients/libraries.py "${1:-$(swift build --show-bin-path)}"
