#!/usr/bin/env python3
"""A simulated GPU inference server: one process, honest HTTP/1.1, Ollama and
OpenAI shapes, for Benchmarks/routing-real/run.sh.

The machine it simulates:
- `--slots N` requests are served at once; more wait inside, in order (as
  Ollama does past OLLAMA_NUM_PARALLEL, llama.cpp past its slots). With
  several models (`--model` more than once), each has its own N slots and
  its own queue, as Ollama runs one runner per loaded model with
  OLLAMA_NUM_PARALLEL each; they share the GPU, by `--physics`: `batch`
  (the default) the batch slowdown below counts every stream the machine
  runs, whatever its model; `timeshare` the runners take turns (two
  processes sharing a GPU's memory bandwidth or a CPU's cores do not batch
  together): a token of one model waits for a step of each other model
  running, that step's cost its own single-stream cost slowed by its own
  batch.
- `--model NAME[@SPEED]`: a model it serves; SPEED scales its decode and
  prefill rates (a 3B model beside an 8B one: @2.5). Default llama3.1:8b.
- Decoding: `--tps` tokens/s for one stream; each other stream in its batch
  slows every stream by `--batch-slowdown` of the single-stream cost per
  token (`ms(b) = a·(1 + s·(b − 1))`).
- Prefill: `--prefill-tps` prompt tokens/s, slowed by the batch the same way.
- Cold loads: models named by `--cold` take `--load-ms` before the first
  request (then stay loaded).
- The answer's length is the model's own choice, as with a real model: the
  last message's text asks for it ("answer in N words"); the client sends no
  limit, so the router cannot know it in advance.
- What it reports about itself, `--timings`: `honest` (Ollama's *_duration,
  as a real Ollama), `none` (counts only, as vLLM and most OpenAI-compatible
  servers), `absurd` (every duration 1 ns, as some servers do). It never
  reports its parallelism (no /props, no OLLAMA_NUM_PARALLEL). Like vLLM
  (Starlette), a stream's head goes out at once (its first token when a
  slot frees), and an OpenAI stream's usage only when the client asks for it
  (`stream_options.include_usage`; the load generator does not, as most
  clients do not).
- Its queue, `--gauges`: `none` (Ollama, llama-cpp-python), `vllm` or
  `llamacpp` (`/metrics` with the requests it serves and the requests
  waiting, under vLLM's or llama.cpp's server's names).

Simulation: a tick every 5 ms advances every request in a slot; a stream
gets one chunk per token as it is made. Standard library only.
"""
import argparse
import asyncio
import json
import re
import time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--name", default="sim")
p.add_argument("--slots", type=int, default=1)
p.add_argument("--tps", type=float, default=30.0)
p.add_argument("--prefill-tps", type=float, default=1500.0)
p.add_argument("--batch-slowdown", type=float, default=0.1)
p.add_argument("--model", action="append", default=[])
p.add_argument("--cold", action="append", default=[])
p.add_argument("--load-ms", type=float, default=3000.0)
p.add_argument("--timings", choices=["honest", "none", "absurd"], default="none")
p.add_argument("--default-tokens", type=int, default=100)
p.add_argument("--gauges", choices=["none", "vllm", "llamacpp"], default="none")
p.add_argument("--physics", choices=["batch", "timeshare"], default="batch")
args = p.parse_args()
speeds = {}
for spec in args.model or ["llama3.1:8b"]:
    name, _, speed = spec.partition("@")
    try:
        speed = float(speed) if speed else 1.0
    except ValueError:
        speed = float("nan")
    if not 0.01 <= speed <= 1000:
        p.error(f"--model {spec}: SPEED must be within 0.01 and 1000")
    speeds[name] = speed
models = list(speeds)
loaded = {m for m in models if m not in args.cold}
TICK = 0.005
NAME = args.name.encode()


class Job:
    def __init__(self, model, prompt_tokens, output_tokens, stream):
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.stream = stream
        self.arrived = time.monotonic()
        self.started = None
        self.prefill_left = float(prompt_tokens)
        self.decoded = 0.0
        self.emitted = 0
        self.load_ms = 0.0
        self.prompt_s = 0.0
        self.decode_s = 0.0
        self.chunks = asyncio.Queue()
        self.done = asyncio.get_running_loop().create_future()


waiting = []
active = []
loading = {}  # model -> time its load ends
# What the machine saw, for the benchmark's table (GET /sim/stats): requests
# served, how many waited inside for a slot and for how long, and the most
# that waited at once per model.
stats = {"name": args.name, "slots": args.slots, "served": 0, "waited": 0, "waited_s": 0.0, "most_waiting": 0}


def admit(now):
    busy = {}
    for job in active:
        busy[job.model] = busy.get(job.model, 0) + 1
    # Each model's queue in order; one model's full slots do not hold another's requests.
    queued = {}
    for job in waiting:
        queued[job.model] = queued.get(job.model, 0) + 1
    stats["most_waiting"] = max([stats["most_waiting"]] + [max(0, n - max(0, args.slots - busy.get(m, 0))) for m, n in queued.items()])
    for job in list(waiting):
        if busy.get(job.model, 0) >= args.slots:
            continue
        busy[job.model] = busy.get(job.model, 0) + 1
        waiting.remove(job)
        job.started = now
        stats["served"] += 1
        # Waited for a slot: more than a tick in the queue (a request admitted at the next tick did not).
        if now - job.arrived > 2 * TICK:
            stats["waited"] += 1
            stats["waited_s"] += now - job.arrived
        if job.model not in loaded:
            end = loading.setdefault(job.model, now + args.load_ms / 1000)
            job.load_ms = max(0.0, end - now) * 1000
        active.append(job)


async def engine():
    last = time.monotonic()
    while True:
        await asyncio.sleep(TICK)
        now = time.monotonic()
        dt, last = now - last, now
        for model, end in list(loading.items()):
            if now >= end:
                loaded.add(model)
                del loading[model]
        admit(now)
        running = [j for j in active if j.model in loaded]
        b = len(running)
        if b == 0:
            continue
        slows = {}
        if args.physics == "timeshare":
            # One step of each model's runner, in that model's single-stream time
            # (1 / speed), batched over its own streams; a model's token takes them all.
            per = {}
            for job in running:
                per[job.model] = per.get(job.model, 0) + 1
            step = {m: (1 + args.batch_slowdown * (n - 1)) / speeds[m] for m, n in per.items()}
            total = sum(step.values())
            slows = {m: total * speeds[m] for m in per}
        for job in running:
            slow = slows.get(job.model, 1 + args.batch_slowdown * (b - 1))
            if job.prefill_left > 0:
                job.prefill_left -= dt * args.prefill_tps * speeds[job.model] / slow
                job.prompt_s += dt
                continue
            job.decoded += dt * args.tps * speeds[job.model] / slow
            job.decode_s += dt
            while job.emitted < min(int(job.decoded), job.output_tokens):
                job.emitted += 1
                if job.stream:
                    job.chunks.put_nowait(job.emitted)
            if job.emitted >= job.output_tokens:
                active.remove(job)
                if not job.done.done():
                    job.done.set_result(now)
        admit(now)


WORDS = re.compile(rb"answer in (\d+) words")


def wanted_tokens(body):
    found = WORDS.findall(body)
    n = int(found[-1]) if found else args.default_tokens
    return max(1, min(n, 100_000))


def durations(job, end):
    total = (end - job.arrived) * 1e9
    if args.timings == "none":
        return {}
    if args.timings == "absurd":
        return {"total_duration": 1, "load_duration": 1, "prompt_eval_duration": 1, "eval_duration": 1}
    return {"total_duration": int(total), "load_duration": int(job.load_ms * 1e6),
            "prompt_eval_duration": int(job.prompt_s * 1e9), "eval_duration": int(job.decode_s * 1e9)}


def ollama_final(job, end, chat):
    out = {"model": job.model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "done": True, "done_reason": "stop",
           "prompt_eval_count": job.prompt_tokens, "eval_count": job.output_tokens}
    out.update(durations(job, end))
    text = "tok " * (0 if job.stream else job.output_tokens)
    if chat:
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    return out


def openai_final(job, chat):
    usage = {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.output_tokens,
             "total_tokens": job.prompt_tokens + job.output_tokens}
    text = "tok " * job.output_tokens
    choice = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {"id": "cmpl-sim", "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": job.model, "choices": [choice], "usage": usage}


async def write_json(writer, status, obj):
    body = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nX-Sim-Machine: %s\r\nContent-Length: %d\r\n\r\n" % (status, reason.encode(), NAME, len(body)) + body)
    await writer.drain()


async def write_chunk(writer, data):
    writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
    await writer.drain()


async def serve_inference(writer, path, body):
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        await write_json(writer, 400, {"error": "invalid JSON"})
        return
    model = request.get("model", "")
    match = next((m for m in models if m == model or m == model + ":latest"), None)
    if match is None:
        await write_json(writer, 404, {"error": f"model '{model}' not found"})
        return
    ollama = path.startswith("/api/")
    chat = path.endswith("/chat") or path.endswith("/chat/completions")
    stream = bool(request.get("stream", ollama))
    # The client's own limit caps the answer, as any server does.
    limit = (request.get("options") or {}).get("num_predict") if isinstance(request.get("options"), dict) else None
    limit = limit or request.get("max_tokens") or request.get("max_completion_tokens")
    wanted = wanted_tokens(body)
    if isinstance(limit, int) and limit > 0:
        wanted = min(wanted, limit)
    job = Job(match, max(1, len(body) // 4), wanted, stream)
    waiting.append(job)
    if not stream:
        end = await job.done
        await write_json(writer, 200, ollama_final(job, end, chat) if ollama else openai_final(job, chat))
        return
    ctype = b"application/x-ndjson" if ollama else b"text/event-stream"
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nX-Sim-Machine: " + NAME + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    await writer.drain()
    sent = 0
    while sent < job.output_tokens:
        sent = await job.chunks.get()
        if ollama:
            piece = {"model": job.model, "done": False}
            piece["message" if chat else "response"] = {"role": "assistant", "content": "tok "} if chat else "tok "
            await write_chunk(writer, json.dumps(piece).encode() + b"\n")
        else:
            delta = {"content": "tok "} if chat else None
            chunk = {"id": "cmpl-sim", "object": "chat.completion.chunk", "model": job.model,
                     "choices": [{"index": 0, "delta": delta} if chat else {"index": 0, "text": "tok "}]}
            await write_chunk(writer, b"data: " + json.dumps(chunk).encode() + b"\n\n")
    end = await job.done
    if ollama:
        await write_chunk(writer, json.dumps(ollama_final(job, end, chat)).encode() + b"\n")
    else:
        # Like vLLM: a stream's usage only when the client asks for it.
        options = request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            final = {"id": "cmpl-sim", "object": "chat.completion.chunk", "model": job.model, "choices": [], "usage": openai_final(job, chat)["usage"]}
            await write_chunk(writer, b"data: " + json.dumps(final).encode() + b"\n\n")
        await write_chunk(writer, b"data: [DONE]\n\n")
    await write_chunk(writer, b"")


def tags():
    return {"models": [{"name": m, "model": m, "size": 4_900_000_000, "digest": "0" * 64,
                        "details": {"family": "llama", "parameter_size": "8B", "quantization_level": "Q4_K_M"}} for m in models]}


def ps():
    return {"models": [{"name": m, "model": m, "size": 5_600_000_000, "size_vram": 5_600_000_000, "digest": "0" * 64,
                        "context_length": 8192, "expires_at": "2099-01-01T00:00:00Z"} for m in models if m in loaded]}


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            path = path.split("?", 1)[0]
            if method == "GET" and path == "/api/tags":
                await write_json(writer, 200, tags())
            elif method == "GET" and path == "/api/ps":
                await write_json(writer, 200, ps())
            elif method == "GET" and path == "/api/version":
                await write_json(writer, 200, {"version": "0.0.0-sim"})
            elif method == "GET" and path == "/v1/models":
                await write_json(writer, 200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "sim"} for m in models]})
            elif method == "GET" and path == "/sim/stats":
                await write_json(writer, 200, stats)
            elif method == "GET" and path == "/metrics" and args.gauges != "none":
                if args.gauges == "vllm":
                    names = ('vllm:num_requests_running{model_name="%s"}' % models[0], 'vllm:num_requests_waiting{model_name="%s"}' % models[0])
                else:
                    names = ("llamacpp:requests_processing", "llamacpp:requests_deferred")
                text = "%s %d\n%s %d\n" % (names[0], len(active), names[1], len(waiting))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(text) + text.encode())
                await writer.drain()
            elif method in ("GET", "HEAD") and path == "/":
                await write_json(writer, 200, {"status": "ok", "name": args.name})
            elif method == "POST" and path in ("/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"):
                await serve_inference(writer, path, body)
            else:
                await write_json(writer, 404, {"error": "not found"})
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    asyncio.get_running_loop().create_task(engine())
    server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
