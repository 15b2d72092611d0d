#!/usr/bin/env python3
"""Open-loop, seeded load for Benchmarks/routing-real/run.sh.

Sends `--requests` chats at Poisson arrivals (`--rate` per second) to one URL,
whatever the answers do (open loop: a slow router does not slow the
arrivals). Each request's prompt and answer length vary log-uniformly over
`--spread` (4: the longest is 4× the shortest); the answer length is asked
for in the prompt's text, never as a limit the router could read. Prints one
JSON object: each request's completion time (send → last byte), status,
which machine served it.
"""
import argparse
import asyncio
import json
import math
import random
import time

p = argparse.ArgumentParser()
p.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
p.add_argument("--api", choices=["ollama", "openai"], default="ollama")
p.add_argument("--model", action="append", default=[],
               help="NAME[=SHARE], more than once for a mix: each request asks for one, drawn by share (default llama3.1:8b)")
p.add_argument("--requests", type=int, default=150)
p.add_argument("--rate", type=float, required=True)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--prompt-tokens", type=int, default=150, help="the shortest prompt")
p.add_argument("--answer-tokens", type=int, default=50, help="the shortest answer")
p.add_argument("--spread", type=float, default=4.0)
p.add_argument("--stream-share", type=float, default=0.0, help="share of requests that stream")
p.add_argument("--timeout", type=float, default=300.0)
args = p.parse_args()

mix = []
for spec in args.model or ["llama3.1:8b"]:
    name, _, share = spec.partition("=")
    try:
        share = float(share) if share else 1.0
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1e6:
        p.error(f"--model {spec}: SHARE must be within 0 and 1e6")
    mix.append((name, share))
if sum(w for _, w in mix) <= 0:
    p.error("--model: at least one SHARE above 0")
host, port = args.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
port = int(port)


def plan():
    rng = random.Random(args.seed)
    t = 0.0
    out = []
    for i in range(args.requests):
        t += rng.expovariate(args.rate)
        prompt = int(args.prompt_tokens * math.exp(rng.random() * math.log(args.spread)))
        answer = int(args.answer_tokens * math.exp(rng.random() * math.log(args.spread)))
        stream = rng.random() < args.stream_share
        # One model: no draw, so a seed's plan is what it was before mixes.
        model = mix[0][0] if len(mix) == 1 else rng.choices([m for m, _ in mix], weights=[w for _, w in mix])[0]
        out.append((t, prompt, answer, stream, i, model))
    return out


def body(prompt_tokens, answer, stream, i, model):
    filler = ("lorem ipsum dolor sit amet " * (prompt_tokens // 6 + 1))[: prompt_tokens * 4]
    text = f"request {i}: {filler} answer in {answer} words"
    if args.api == "ollama":
        return "/api/chat", {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def one(at, start, prompt, answer, stream, i, model, results):
    await asyncio.sleep(max(0.0, start + at - time.monotonic()))
    path, payload = body(prompt, answer, stream, i, model)
    data = json.dumps(payload).encode()
    sent = time.monotonic()
    status, machine, error = 0, "", None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), args.timeout)
        writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), args.timeout)
        writer.close()
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        for line in head[1:]:
            if line.lower().startswith("x-sim-machine:"):
                machine = line.split(":", 1)[1].strip()
        if status != 200:
            error = raw.split(b"\r\n\r\n", 1)[-1][:200].decode("utf-8", "replace")
    except Exception as e:  # noqa: BLE001 (every failure is a result)
        error = repr(e)[:200]
    results.append({"i": i, "seconds": time.monotonic() - sent, "status": status, "machine": machine, "error": error,
                    "prompt": prompt, "answer": answer, "stream": stream, "model": model})


async def main():
    results = []
    start = time.monotonic() + 0.2
    await asyncio.gather(*(one(at, start, prompt, answer, stream, i, model, results) for at, prompt, answer, stream, i, model in plan()))
    print(json.dumps({"results": sorted(results, key=lambda r: r["i"])}))


asyncio.run(main())
