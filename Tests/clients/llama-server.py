#!/usr/bin/env python3
"""The SDKs side by side: each call made directly to llama.cpp's own
`llama-server` (CPU, Gemma 3 270M) and the same call through herd in front of
it. llama-server answers /v1/messages and /v1/responses itself: herd passes
them through untouched (it translates only for a backend that answered 404 to
them). Ollama-API calls reach it translated. Beside CI, not in it: building
llama-server takes minutes (Tests/clients/llama-server.sh builds it once into
~/.cache/herd).

Usage: llama-server.py BIN_DIR LLAMA_SERVER GGUF
Exit 1 when a call that works directly fails through herd.
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

BIN, SERVER, GGUF = sys.argv[1], sys.argv[2], sys.argv[3]
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


def text(value):
    assert value and value.strip(), "empty answer"
    return value.strip()[:40].replace("\n", " ")


def calls(base):
    """Each call against `base` (a server's root URL): name → thunk."""
    oc = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=120)
    an = anthropic.Anthropic(base_url=base, api_key="x", max_retries=0, timeout=120)
    ol = ollama.Client(host=base, timeout=120)
    hi = [{"role": "user", "content": "Write a short poem about the sea."}]
    tool = {"name": "get_weather", "description": "The weather in a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}

    def a_stream():
        with an.messages.stream(model=MODEL, max_tokens=40, messages=hi) as s:
            return text("".join(s.text_stream))

    def a_stream_events():
        with an.messages.stream(model=MODEL, max_tokens=20, system="Be brief.", messages=hi) as s:
            kinds = [e.type for e in s]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
        return f"{len(kinds)} events"

    def a_tools():
        m = an.messages.create(model=MODEL, max_tokens=40, tools=[tool],
                               messages=[{"role": "user", "content": "What is the weather in Paris?"}])
        return f"stop_reason={m.stop_reason}, {[b.type for b in m.content]}"

    def a_tool_result():
        m = an.messages.create(model=MODEL, max_tokens=30, tools=[tool], messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny, 21 C"}]}])
        return f"stop_reason={m.stop_reason}, {len(m.content)} blocks"

    def o_stream():
        n = sum(1 for c in oc.chat.completions.create(model=MODEL, messages=hi, max_tokens=40, stream=True,
                                                       stream_options={"include_usage": True}) if c.choices)
        assert n > 0
        return f"{n} chunks"

    def r_stream():
        kinds = [e.type for e in oc.responses.create(model=MODEL, input="Write a short poem about the sea.", stream=True,
                                                      max_output_tokens=40)]
        assert "response.completed" in kinds, kinds[-3:]
        return f"{len(kinds)} events"

    return [
        ("openai chat.completions.create", lambda: text(oc.chat.completions.create(model=MODEL, messages=hi, max_tokens=40).choices[0].message.content)),
        ("openai chat.completions stream + include_usage", o_stream),
        ("openai completions.create", lambda: text(oc.completions.create(model=MODEL, prompt="The sea is", max_tokens=30).choices[0].text)),
        ("openai models.list", lambda: [m.id for m in oc.models.list().data]),
        ("openai models.retrieve", lambda: oc.models.retrieve(MODEL).id),
        ("openai responses.create", lambda: text(oc.responses.create(model=MODEL, input="Write a short poem about the sea.", max_output_tokens=40).output_text)),
        ("openai responses stream", r_stream),
        ("anthropic messages.create", lambda: text(an.messages.create(model=MODEL, max_tokens=40, messages=hi).content[0].text)),
        ("anthropic messages.create, system prompt", lambda: text(an.messages.create(model=MODEL, max_tokens=40, system="Answer in French.", messages=hi).content[0].text)),
        ("anthropic messages.stream", a_stream),
        ("anthropic messages.stream events", a_stream_events),
        ("anthropic messages.create, tools", a_tools),
        ("anthropic messages.create, tool result", a_tool_result),
        ("anthropic messages.count_tokens", lambda: an.messages.count_tokens(model=MODEL, messages=hi).input_tokens),
        ("ollama chat", lambda: text(ol.chat(model=MODEL, messages=hi, options={"num_predict": 40}).message.content)),
        ("ollama chat stream", lambda: f"{len(list(ol.chat(model=MODEL, messages=hi, stream=True, options={'num_predict': 40})))} parts"),
        ("ollama generate", lambda: text(ol.generate(model=MODEL, prompt="The sky is", options={"num_predict": 40}).response)),
        ("ollama list", lambda: [m.model for m in ol.list().models]),
        ("ollama show", lambda: ol.show(MODEL).capabilities),
        ("ollama ps", lambda: [m.model for m in ol.ps().models]),
    ] + libraries(base, hi)


def libraries(base, hi):
    """The client libraries people build on, where installed (HERD_CLIENTS_VENV
    gets them with HERD_CLIENT_LIBRARIES=1)."""
    out = []
    try:
        from langchain_openai import ChatOpenAI
        lo = ChatOpenAI(base_url=base + "/v1", api_key="x", model=MODEL, max_tokens=30, max_retries=0, timeout=120)
        out += [("langchain-openai invoke", lambda: text(lo.invoke("The sea is").content)),
                ("langchain-openai stream", lambda: f"{len(list(lo.stream('The sea is')))} chunks")]
    except ImportError:
        pass
    try:
        from langchain_ollama import ChatOllama
        lc = ChatOllama(base_url=base, model=MODEL, num_predict=30)
        out += [("langchain-ollama invoke", lambda: text(lc.invoke("The sea is").content)),
                ("langchain-ollama stream", lambda: f"{len(list(lc.stream('The sea is')))} chunks")]
    except ImportError:
        pass
    try:
        import litellm
        out += [("litellm openai/", lambda: text(litellm.completion(model="openai/" + MODEL, api_base=base + "/v1", api_key="x", messages=hi,
                                                                     max_tokens=30).choices[0].message.content)),
                ("litellm ollama/", lambda: text(litellm.completion(model="ollama/" + MODEL, api_base=base, messages=hi,
                                                                     max_tokens=30).choices[0].message.content)),
                ("litellm ollama_chat/", lambda: text(litellm.completion(model="ollama_chat/" + MODEL, api_base=base, messages=hi,
                                                                          max_tokens=30).choices[0].message.content)),
                ("litellm anthropic/", lambda: text(litellm.completion(model="anthropic/" + MODEL, api_base=base, api_key="x", messages=hi,
                                                                        max_tokens=30).choices[0].message.content))]
    except ImportError:
        pass
    try:
        from llama_index.llms.ollama import Ollama
        from llama_index.llms.openai_like import OpenAILike
        li = Ollama(model=MODEL, base_url=base, request_timeout=120, additional_kwargs={"num_predict": 30})
        lo2 = OpenAILike(model=MODEL, api_base=base + "/v1", api_key="x", is_chat_model=True, max_tokens=30, timeout=120)
        out += [("llama-index Ollama complete", lambda: text(li.complete("The sea is").text)),
                ("llama-index Ollama stream_complete", lambda: f"{len(list(li.stream_complete('The sea is')))} chunks"),
                ("llama-index OpenAILike complete", lambda: text(lo2.complete("The sea is").text))]
    except ImportError:
        pass
    return out


def run(base):
    out = {}
    for name, call in calls(base):
        try:
            out[name] = (True, str(call())[:60])
        except Exception as e:
            out[name] = (False, f"{type(e).__name__}: {str(e)[:120]}")
    return out


def main():
    work = tempfile.mkdtemp(prefix="herd-llama-server-")
    llama, control, proxy = free_port(), free_port(), free_port()
    procs = []

    def spawn(name, args):
        procs.append(subprocess.Popen(args, stdout=open(os.path.join(work, name + ".log"), "w"), stderr=subprocess.STDOUT))

    spawn("llama-server", [SERVER, "-m", GGUF, "--alias", MODEL, "--host", "127.0.0.1", "--port", str(llama), "-c", "4096",
                           "-t", "2", "-np", "2", "--jinja"])
    spawn("control", [f"{BIN}/herd-control", "--port", str(control), "--proxy-port", str(proxy), "--data-dir", work + "/data", "--no-mdns"])
    spawn("node", [f"{BIN}/herd-node", "--control", f"http://127.0.0.1:{control}", "--ollama", "none", "--backend",
                   f"openai=http://127.0.0.1:{llama}", "--node-id", "cpu", "--interval", "0.5", "--data-dir", work + "/node"])
    broken = []
    try:
        if not wait_for(f"http://127.0.0.1:{llama}/health", "ok") or not wait_for(f"http://127.0.0.1:{proxy}/api/tags", MODEL):
            raise SystemExit("the fleet did not come up")
        direct = run(f"http://127.0.0.1:{llama}")
        herd = run(f"http://127.0.0.1:{proxy}")
        for name, (ok_d, said_d) in direct.items():
            ok_h, said_h = herd[name]
            mark = "ok  " if ok_h or not ok_d else "FAIL"
            if ok_d and not ok_h:
                broken.append(name)
            print(f"{mark} {name}\n       direct: {'works' if ok_d else 'fails'} — {said_d}\n       herd:   {'works' if ok_h else 'fails'} — {said_h}")
        n = len(direct)
        print(f"\n{sum(v[0] for v in direct.values())} of {n} calls work directly, {sum(v[0] for v in herd.values())} through herd; "
              f"{len(broken)} that work directly fail through herd")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if broken:
            for name in ("llama-server", "control", "node"):
                print(f"--- {name}\n" + open(os.path.join(work, name + ".log")).read()[-2000:])
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
