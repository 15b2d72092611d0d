#!/usr/bin/env python3
"""The client libraries people build on — langchain-ollama, langchain-openai,
litellm, llama-index — through herd beside the same calls made directly to
the fake backend (registered with herd-node as Ollama, then as an
OpenAI-compatible server, when herd translates Ollama-API calls): every call
that works directly must work through herd. Beside CI (Tests/clients/
libraries.sh installs the libraries into a venv outside the clone).

Loopback only: HTTP(S)_PROXY points at a closed local port (NO_PROXY covers
127.0.0.1), so a library that would fetch something from the internet (a
tokenizer, a price table) fails the same way directly and through herd
instead of leaving the machine; litellm reads its bundled price table.

Usage: libraries.py BIN_DIR      (exit 1 if a call works directly but not through herd)
"""
import os
import sys

os.environ.update({"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost",
                   "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"})
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clients  # noqa: E402
import litellm  # noqa: E402

litellm.suppress_debug_info = True
from clients import EMBED, MODEL, table  # noqa: E402

HI = [{"role": "user", "content": "Say hi"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                         "required": ["city"]}}}


def text(value):
    value = value if isinstance(value, str) else str(value)
    if not value.strip():
        raise ValueError("empty answer")
    return value[:40]


def vector(values):
    if not values or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        raise ValueError(f"not a vector: {str(values)[:40]}")
    return f"{len(values)} dims"


def calls():
    out = []
    from langchain_ollama import ChatOllama, OllamaEmbeddings, OllamaLLM
    out += [
        ("langchain-ollama ChatOllama invoke", lambda b: text(ChatOllama(base_url=b, model=MODEL, num_predict=20).invoke("The sea is").content)),
        ("langchain-ollama ChatOllama stream", lambda b: f"{len(list(ChatOllama(base_url=b, model=MODEL, num_predict=20).stream('The sea is')))} chunks"),
        ("langchain-ollama bind_tools", lambda b: str(ChatOllama(base_url=b, model=MODEL).bind_tools([TOOL]).invoke("Weather in Paris?").tool_calls)[:40]
         or "no tool call"),
        ("langchain-ollama OllamaLLM invoke", lambda b: text(OllamaLLM(base_url=b, model=MODEL, num_predict=20).invoke("The sea is"))),
        ("langchain-ollama OllamaEmbeddings", lambda b: vector(OllamaEmbeddings(base_url=b, model=EMBED).embed_query("hello"))),
    ]
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings

    def lo(b, **kw):
        return ChatOpenAI(base_url=b + "/v1", api_key="x", model=MODEL, max_retries=0, timeout=20, **kw)
    out += [
        ("langchain-openai invoke", lambda b: text(lo(b, max_tokens=20).invoke("The sea is").content)),
        ("langchain-openai stream", lambda b: f"{len(list(lo(b, max_tokens=20).stream('The sea is')))} chunks"),
        ("langchain-openai bind_tools", lambda b: str(lo(b).bind_tools([TOOL]).invoke("Weather in Paris?").tool_calls)[:40] or "no tool call"),
        ("langchain-openai OpenAIEmbeddings", lambda b: vector(OpenAIEmbeddings(base_url=b + "/v1", api_key="x", model=EMBED, max_retries=0,
                                                                                check_embedding_ctx_length=False).embed_query("hello"))),
    ]


    def complete(model, b, **kw):
        return litellm.completion(model=model, api_base=b, messages=HI, max_tokens=20, timeout=20, num_retries=0, **kw)

    def stream(model, b, **kw):
        return f"{sum(1 for _ in complete(model, b, stream=True, **kw))} chunks"
    out += [
        ("litellm openai/", lambda b: text(complete("openai/" + MODEL, b + "/v1", api_key="x").choices[0].message.content)),
        ("litellm openai/ stream", lambda b: stream("openai/" + MODEL, b + "/v1", api_key="x")),
        ("litellm ollama/", lambda b: text(complete("ollama/" + MODEL, b).choices[0].message.content)),
        ("litellm ollama_chat/", lambda b: text(complete("ollama_chat/" + MODEL, b).choices[0].message.content)),
        ("litellm ollama_chat/ stream", lambda b: stream("ollama_chat/" + MODEL, b)),
        ("litellm ollama_chat/ tools", lambda b: str(complete("ollama_chat/" + MODEL, b, tools=[TOOL]).choices[0].message.tool_calls)[:40]),
        ("litellm anthropic/", lambda b: text(complete("anthropic/" + MODEL, b, api_key="x").choices[0].message.content)),
        ("litellm embedding ollama/", lambda b: vector(litellm.embedding(model="ollama/" + EMBED, api_base=b, input=["hello"]).data[0]["embedding"])),
        ("litellm embedding openai/", lambda b: vector(litellm.embedding(model="openai/" + EMBED, api_base=b + "/v1", api_key="x",
                                                                         input=["hello"]).data[0]["embedding"])),
    ]
    from llama_index.core.llms import ChatMessage
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.llms.ollama import Ollama
    from llama_index.llms.openai_like import OpenAILike

    def li(b):
        return Ollama(model=MODEL, base_url=b, request_timeout=20, additional_kwargs={"num_predict": 20})

    def lol(b):
        return OpenAILike(model=MODEL, api_base=b + "/v1", api_key="x", is_chat_model=True, max_tokens=20, timeout=20, max_retries=0)
    out += [
        ("llama-index Ollama complete", lambda b: text(li(b).complete("The sea is").text)),
        ("llama-index Ollama chat", lambda b: text(li(b).chat([ChatMessage(role="user", content="Say hi")]).message.content)),
        ("llama-index Ollama stream_chat", lambda b: f"{len(list(li(b).stream_chat([ChatMessage(role='user', content='Say hi')])))} chunks"),
        ("llama-index OllamaEmbedding", lambda b: vector(OllamaEmbedding(model_name=EMBED, base_url=b).get_text_embedding("hello"))),
        ("llama-index OpenAILike complete", lambda b: text(lol(b).complete("The sea is").text)),
        ("llama-index OpenAILike stream_chat", lambda b: f"{len(list(lol(b).stream_chat([ChatMessage(role='user', content='Say hi')])))} chunks"),
    ]
    return out


def main():
    every = calls()
    failures = table("Client libraries, backend registered as Ollama (passed through)", "ollama", every)
    failures += table("Client libraries, backend registered as OpenAI-compatible (Ollama-API calls translated by herd)", "openai", every)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
