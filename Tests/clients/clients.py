#!/usr/bin/env python3
"""The official client SDKs through herd, beside the same calls made directly
to the backend: every call that works directly must work through herd.

A fake backend (herd-fake-backend: Ollama's API, OpenAI's /v1, Anthropic
Messages, OpenAI Responses, rerank), herd-control with its proxy, and a
herd-node, all on loopback. Each call runs twice, against the backend and
against herd, and the table says what each did.

Usage: clients.py BIN_DIR      (exit 1 if a call works directly but not through herd)
Needs: pip install anthropic openai ollama   (Tests/clients/run.sh does it in a venv)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import anthropic
import ollama
import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import loopback  # noqa: E402
from loopback import free_port  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
MODEL = "llama3:8b"
EMBED = "nomic-embed-text"




def wait_for(condition, seconds=20.0):
    return loopback.wait_for(condition, seconds, interval=0.1)


class Fleet:
    """kind: how herd-node registers the fake backend: `ollama`, or `openai`
    (then Ollama-API requests reach it translated to OpenAI's)."""

    def __init__(self, kind="ollama", backend_args=()):
        self.kind = kind
        self.backend_args = list(backend_args)
        self.dir = tempfile.mkdtemp(prefix="herd-clients-")
        self.procs = []
        self.backend_port, self.control_port, self.proxy_port = free_port(), free_port(), free_port()

    def spawn(self, name, args):
        log = open(os.path.join(self.dir, name + ".log"), "w")
        self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))

    def start(self):
        self.spawn("backend", [f"{BIN}/herd-fake-backend", "--port", str(self.backend_port), "--name", "A",
                               "--models", f"{MODEL},{EMBED}", "--loaded", MODEL, *self.backend_args])
        self.spawn("control", [f"{BIN}/herd-control", "--port", str(self.control_port), "--proxy-port", str(self.proxy_port),
                               "--data-dir", os.path.join(self.dir, "data"), "--no-mdns"])
        backend = f"http://127.0.0.1:{self.backend_port}"
        registered = ["--ollama", backend] if self.kind == "ollama" else ["--ollama", "none", "--backend", f"openai={backend}"]
        self.spawn("node", [f"{BIN}/herd-node", "--control", f"http://127.0.0.1:{self.control_port}", *registered,
                            "--node-id", "node-a", "--interval", "0.5", "--data-dir", os.path.join(self.dir, "node")])

        def listed():
            with urllib.request.urlopen(f"http://127.0.0.1:{self.proxy_port}/api/tags", timeout=2) as r:
                return MODEL in r.read().decode()
        if not wait_for(listed):
            self.stop()
            raise SystemExit("the fleet did not come up:\n" + self.logs())

    def logs(self):
        out = []
        for name in os.listdir(self.dir):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name)) as f:
                    out.append(f"--- {name}\n{f.read()[-3000:]}")
        return "\n".join(out)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# Each call: (name, function(base_url) -> short description of the result).
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def anthropic_client(base):
    return anthropic.Anthropic(base_url=base, api_key="sk-local", max_retries=0, timeout=20)


def openai_client(base):
    return openai.OpenAI(base_url=base + "/v1", api_key="sk-local", max_retries=0, timeout=20)


def ollama_client(base):
    return ollama.Client(host=base, timeout=20)


def a_create(base):
    m = anthropic_client(base).messages.create(model=MODEL, max_tokens=64, system="Be brief.",
                                               messages=[{"role": "user", "content": "Hi"}])
    assert m.content[0].type == "text" and m.content[0].text, m
    return f"{m.usage.output_tokens} tokens"


def a_tools(base):
    client = anthropic_client(base)
    m = client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS_ANTHROPIC,
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    use = next(b for b in m.content if b.type == "tool_use")
    assert m.stop_reason == "tool_use" and use.input == {"city": "Paris"}, m
    done = client.messages.create(model=MODEL, max_tokens=64, tools=TOOLS_ANTHROPIC, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump() for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}]}])
    assert done.stop_reason == "end_turn", done
    return "tool_use, then end_turn"


def a_stream(base):
    with anthropic_client(base).messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.stop_reason == "end_turn", final
    return f"{len(text)} chars streamed"


def a_stream_tools(base):
    with anthropic_client(base).messages.stream(model=MODEL, max_tokens=64, tools=TOOLS_ANTHROPIC,
                                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        final = s.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.input == {"city": "Paris"}, final
    return "tool_use streamed"


def a_count(base):
    n = anthropic_client(base).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    assert n.input_tokens > 0
    return f"{n.input_tokens} tokens"


def o_chat(base):
    r = openai_client(base).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.content
    return f"{r.usage.completion_tokens} tokens"


def o_chat_stream(base):
    chunks = list(openai_client(base).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True,
                                                              stream_options={"include_usage": True}))
    assert chunks and chunks[-1].usage is not None
    return f"{len(chunks)} chunks"


def o_responses(base):
    r = openai_client(base).responses.create(model=MODEL, input="Say hi", instructions="Be brief")
    assert r.output_text, r
    return f"{r.usage.output_tokens} tokens"


def o_responses_stream(base):
    events = list(openai_client(base).responses.create(model=MODEL, input="Say hi", stream=True))
    assert events[-1].type == "response.completed", events[-1]
    return f"{len(events)} events"


def o_embed(base):
    r = openai_client(base).embeddings.create(model=EMBED, input=["a", "b"])
    assert len(r.data) == 2
    return f"{len(r.data[0].embedding)} dims"


def o_models(base):
    ids = [m.id for m in openai_client(base).models.list()]
    assert MODEL in ids
    one = openai_client(base).models.retrieve(MODEL)
    assert one.id == MODEL
    return f"{len(ids)} models"


def l_chat(base):
    r = ollama_client(base).chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert r.message.content
    return f"{r.eval_count} tokens"


def l_chat_stream(base):
    parts = list(ollama_client(base).chat(model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert parts[-1].done
    return f"{len(parts)} parts"


def l_generate(base):
    r = ollama_client(base).generate(model=MODEL, prompt="Hi")
    assert r.response
    return f"{r.eval_count} tokens"


def l_embed(base):
    r = ollama_client(base).embed(model=EMBED, input=["a", "b"])
    assert len(r.embeddings) == 2
    return f"{len(r.embeddings)} vectors"


def l_list_ps_show(base):
    client = ollama_client(base)
    names = [m.model for m in client.list().models]
    assert MODEL in names, names
    loaded = [m.model for m in client.ps().models]
    show = client.show(MODEL)
    assert show.details is not None
    return f"{len(names)} listed, {len(loaded)} loaded"


def l_manage(base):
    client = ollama_client(base)
    progress = list(client.pull("qwen2.5:0.5b", stream=True))
    assert progress[-1].status == "success", progress[-1]
    client.copy(MODEL, "my-llama")
    client.delete("my-llama")  # right after the copy: before a heartbeat lists it
    return f"pull ({len(progress)} progress lines), copy, delete"


CALLS = [
    ("anthropic messages.create", a_create), ("anthropic messages.create tools", a_tools),
    ("anthropic messages.stream", a_stream), ("anthropic messages.stream tools", a_stream_tools),
    ("anthropic messages.count_tokens", a_count),
    ("openai chat.completions.create", o_chat), ("openai chat.completions stream", o_chat_stream),
    ("openai responses.create", o_responses), ("openai responses.create stream", o_responses_stream),
    ("openai embeddings.create", o_embed), ("openai models.list/retrieve", o_models),
    ("ollama chat", l_chat), ("ollama chat stream", l_chat_stream), ("ollama generate", l_generate),
    ("ollama embed", l_embed), ("ollama list/ps/show", l_list_ps_show), ("ollama pull/copy/delete", l_manage),
]


def run(call, base):
    try:
        return True, call(base)
    except Exception as e:  # the table shows what went wrong
        detail = f"{type(e).__name__}: {e}".replace("\n", " ")
        if os.environ.get("HERD_CLIENTS_TRACE"):
            traceback.print_exc()
        return False, detail[:100]


def table(title, kind, calls, backend_args=()):
    """Runs `calls` directly and through herd; returns the failures herd adds."""
    fleet = Fleet(kind, backend_args)
    fleet.start()
    failures = 0
    try:
        direct_base = f"http://127.0.0.1:{fleet.backend_port}"
        herd_base = f"http://127.0.0.1:{fleet.proxy_port}"
        print(f"\n{title}\n{'call':34} {'direct':40} herd")
        works_direct = works_herd = 0
        for name, call in calls:
            d_ok, d = run(call, direct_base)
            h_ok, h = run(call, herd_base)
            works_direct += d_ok
            works_herd += h_ok
            mark = "" if h_ok or not d_ok else "   <-- works directly, fails through herd"
            failures += 0 if mark == "" else 1
            print(f"{name:34} {('ok ' if d_ok else 'no ') + d:40.40} {('ok ' if h_ok else 'no ') + h}{mark}")
        print(f"{works_direct}/{len(calls)} calls work directly, {works_herd}/{len(calls)} through herd")
        if failures:
            print(fleet.logs())
    finally:
        fleet.stop()
    return failures


def main():
    failures = table("Every SDK, backend registered as Ollama (passed through)", "ollama", CALLS)
    ollama_calls = [(name, call) for name, call in CALLS if name.startswith("ollama") and call is not l_manage]
    failures += table("Ollama SDK, backend registered as OpenAI-compatible (translated by herd)", "openai", ollama_calls)
    anthropic_calls = [(name, call) for name, call in CALLS if name.startswith("anthropic")]
    failures += table("Anthropic SDK, backend without /v1/messages (older Ollama; translated by herd)", "ollama", anthropic_calls,
                      ["--no-anthropic"])
    responses_calls = [(name, call) for name, call in CALLS if name.startswith("openai responses")]
    failures += table("OpenAI SDK Responses, backend without /v1/responses (translated by herd)", "ollama", responses_calls, ["--no-responses"])
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
