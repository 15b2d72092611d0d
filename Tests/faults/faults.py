#!/usr/bin/env python3
"""herd's fault table: steady mixed load (streaming and not) through two
herd-proxy processes and two fake nodes, the production layout (herd-control
--proxies 0, proxies on their own, as under systemd), while one fault at a
time is injected. Loopback only, bounded (a few seconds per fault).

For each fault, every request the load sent ends in exactly one column:
  ok           a complete answer (non-stream: 200 + done; stream: ends with done)
  clean error  an HTTP error with a JSON error body, or a stream that ends with
               an error line in the client's format
  disconnect   the connection broke: closed or reset before the answer, or
               mid-answer before the chunked body's end (every HTTP client
               raises: the request was on a proxy that died)
  lost         a complete HTTP answer that is not one: a 200 whose body is
               well-formed but ends without done and without an error line
               (a stream cut silently), or an error status with no error
               body: must be 0
  hung         no end within the client's timeout: must be 0

Usage: faults.py BIN_DIR [--seconds N]   (exit 1 if anything was lost or hung)
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import loopback  # noqa: E402
from loopback import free_port  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
SECONDS = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 6.0
CLIENT_TIMEOUT = 30.0
WORKERS = 6




def wait_for(condition, seconds=15.0):
    return loopback.wait_for(condition, seconds, interval=0.05)


def get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def post(port, path, body, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


class Fleet:
    """herd-control (--proxies 0), two herd-proxy processes, two fake backends, two nodes."""

    def __init__(self, proxy_args=(), data_dir=None):
        self.dir = tempfile.mkdtemp(prefix="herd-faults-")
        self.data = data_dir or os.path.join(self.dir, "data")
        self.control_port = free_port()
        self.proxy_port = free_port()
        self.socket = os.path.join(self.dir, "control.sock")
        self.proxy_args = list(proxy_args)
        self.procs = {}
        self.backend_ports = {}

    def spawn(self, name, args):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERD_")}
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self.procs[name]

    def start_backend(self, name):
        port = self.backend_ports.get(name) or free_port()
        self.backend_ports[name] = port
        self.spawn("backend-" + name, [f"{BIN}/herd-fake-backend", "--port", str(port), "--name", name,
                                       "--models", "llama3:8b", "--loaded", "llama3:8b", "--tokens", "8",
                                       "--token-delay-ms", "20"])
        if not wait_for(lambda: get(port, "/api/version")[0] == 200):
            raise RuntimeError("backend did not start")

    def start_control(self):
        self.spawn("control", [f"{BIN}/herd-control", "--port", str(self.control_port), "--data-dir", self.data,
                               "--control-socket", self.socket, "--proxies", "0", "--no-mdns"])
        if not wait_for(lambda: get(self.control_port, "/health")[0] == 200):
            raise RuntimeError("control did not start: " + self.log("control"))

    def start_proxy(self, i):
        self.spawn(f"proxy-{i}", [f"{BIN}/herd-proxy", "--port", str(self.proxy_port), "--control-socket", self.socket,
                                  "--proxy-id", f"proxy-{i}"] + self.proxy_args)

    def start(self):
        for name in ("A", "B"):
            self.start_backend(name)
        self.start_control()
        for i in (0, 1):
            self.start_proxy(i)
        for name in ("A", "B"):
            self.spawn("node-" + name, [f"{BIN}/herd-node", "--control", f"http://127.0.0.1:{self.control_port}",
                                        "--ollama", f"http://127.0.0.1:{self.backend_ports[name]}", "--node-id", "node-" + name.lower(),
                                        "--interval", "0.5", "--data-dir", os.path.join(self.dir, "node-" + name)])
        ok = wait_for(lambda: len([n for n in json.loads(get(self.control_port, "/api/fleet")[1])["nodes"]
                                   if n["status"] == "online"]) == 2)
        ok = ok and wait_for(lambda: post(self.proxy_port, "/api/chat", '{"model":"llama3:8b","stream":false}')[0] == 200)
        if not ok:
            raise RuntimeError("fleet did not come up: " + self.log("control"))

    def script(self, backend, config):
        post(self.backend_ports[backend], "/_fake/config", json.dumps(config))

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(sig)
        if sig == signal.SIGKILL:
            p.wait()

    def log(self, name, tail=3000):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                return f.read()[-tail:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                if name.startswith("control") or name.startswith("proxy"):
                    os.kill(p.pid, signal.SIGCONT)
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Load:
    """WORKERS threads sending requests until stopped, each ending in one column."""

    COLUMNS = ("sent", "ok", "clean error", "disconnect", "lost", "hung")

    def __init__(self, port):
        self.port = port
        self.counts = {c: 0 for c in self.COLUMNS}
        self.examples = {}
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(WORKERS)]

    def note(self, column, example=None):
        with self.lock:
            self.counts[column] += 1
            if example and column not in self.examples:
                self.examples[column] = example

    def one(self, stream):
        body = json.dumps({"model": "llama3:8b", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)
        try:
            try:
                c.request("POST", "/api/chat", body, {"Content-Type": "application/json"})
                r = c.getresponse()
            except socket.timeout:
                return "hung", "no response head"
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine, OSError) as e:
                return "disconnect", repr(e)
            try:
                data = r.read()
            except socket.timeout:
                return "hung", "body never ended"
            except (ConnectionError, http.client.IncompleteRead, OSError) as e:
                # The chunked body never got its end: the client's HTTP library raises.
                return "disconnect", f"{r.status} body broke off: {e!r}"
            text = data.decode(errors="replace")
            if r.status != 200:
                try:
                    return ("clean error", None) if "error" in json.loads(text) else ("lost", text[:200])
                except ValueError:
                    return "lost", f"{r.status} {text[:200]}"
            lines = [l for l in text.split("\n") if l.strip()]
            try:
                parsed = [json.loads(l) for l in lines]
            except ValueError:
                return "lost", text[:200]
            if not parsed:
                return "lost", "empty 200"
            if any("error" in p for p in parsed):
                return "clean error", None
            if parsed[-1].get("done") is True:
                return "ok", None
            return "lost", text[-200:]
        finally:
            c.close()

    def worker(self, i):
        n = 0
        while self.running:
            n += 1
            self.note("sent")
            column, example = self.one(stream=(n + i) % 2 == 0)
            self.note(column, example)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.running = False
        for t in self.threads:
            t.join(CLIENT_TIMEOUT + 5)
        with self.lock:
            # A worker still inside a request after its timeout is hung.
            stuck = sum(1 for t in self.threads if t.is_alive())
            self.counts["hung"] += stuck
        return dict(self.counts)


def run(name, fault, restore=None, proxy_args=(), data_dir=None, setup=None):
    fleet = Fleet(proxy_args=proxy_args, data_dir=data_dir)
    try:
        if setup:
            setup(fleet)
        fleet.start()
        load = Load(fleet.proxy_port)
        load.start()
        time.sleep(SECONDS / 3)
        fault(fleet)
        time.sleep(SECONDS / 3)
        if restore:
            restore(fleet)
        time.sleep(SECONDS / 3)
        counts = load.stop()
        counts.update(trace_facts(fleet))
        return counts, load.examples
    finally:
        fleet.stop()


def trace_facts(fleet):
    """What control's trace says of the scenario's requests: rows, retried
    on another node, routed by a proxy on its own (control away)."""
    import sqlite3
    facts = {"traced": "-", "retried": "-", "local": "-"}
    if not wait_for(lambda: get(fleet.control_port, "/health")[0] == 200, 5):
        return facts
    time.sleep(1.0)  # the trace writer's last batch
    try:
        db = sqlite3.connect(f"file:{os.path.join(fleet.data, 'herd.db')}?mode=ro", uri=True)
        rows, retried, local = db.execute("SELECT COUNT(*), SUM(retries > 0), SUM(local) FROM request_traces").fetchone()
        facts.update(traced=rows, retried=retried or 0, local=local or 0)
    except sqlite3.Error as e:
        facts["traced"] = f"({e.__class__.__name__})"
    return facts


def kill_proxy(f):
    f.kill("proxy-0")


def restart_proxy(f):
    f.start_proxy(0)


def kill_control(f):
    f.kill("control")


def restart_control(f):
    f.start_control()


def stop_control(f):
    f.kill("control", signal.SIGSTOP)
    time.sleep(5)
    f.kill("control", signal.SIGCONT)


def slow_first_byte_then_kill(f):
    # Both answer after 1.5 s (so neither is avoided): requests on A are
    # waiting for their first byte when it dies, and go to B.
    for b in ("A", "B"):
        f.script(b, {"first_byte_delay_ms": 1500})
    time.sleep(0.7)
    f.kill("backend-A")


def kill_backend_mid_stream(f):
    # Both stream slowly (2.4 s a stream), so A has streams under way when it dies.
    for b in ("A", "B"):
        f.script(b, {"token_delay_ms": 300})
    time.sleep(1.5)
    f.kill("backend-A")


def restart_backend_a(f):
    f.start_backend("A")
    f.script("B", {"first_byte_delay_ms": 0, "token_delay_ms": 20})


def stall_mid_stream(f):
    f.script("A", {"failure": "stall:3"})


def hang_before_answering(f):
    f.script("A", {"failure": "hang"})


def heal_a(f):
    f.script("A", {"failure": "none", "first_byte_delay_ms": 0, "token_delay_ms": 20})


class FullDisk:
    """The data dir on a small tmpfs, filled once control is up."""

    def __init__(self):
        self.mount = tempfile.mkdtemp(prefix="herd-fulldisk-")
        self.mounted = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", self.mount],
                                       stderr=subprocess.DEVNULL) == 0

    def fill(self, f):
        # Unbuffered: a buffered file's close() would flush what did not fit
        # and raise ENOSPC again (seen once in CI).
        try:
            with open(os.path.join(self.mount, "filler"), "wb", buffering=0) as out:
                while True:
                    out.write(b"\0" * 65536)
        except OSError:
            pass
        self.fleet = f

    def check(self):
        """With the disk full, control says so on /health (still serving), and
        logs it once a minute, not once a batch."""
        f = self.fleet
        health = {}
        ok = wait_for(lambda: json.loads(get(f.control_port, "/health")[1]).get("status") == "degraded", 10)
        try:
            health = json.loads(get(f.control_port, "/health")[1])
        except Exception:
            pass
        lines = f.log("control", tail=10**8).count("trace write failed")
        return ok and 1 <= lines <= 2, f"/health {health.get('status')} {health.get('problems')}; {lines} log line(s)"

    def release(self):
        if self.mounted:
            subprocess.call(["umount", "-l", self.mount])
        shutil.rmtree(self.mount, ignore_errors=True)


def main():
    for binary in ("herd-control", "herd-proxy", "herd-node", "herd-fake-backend"):
        if not os.access(f"{BIN}/{binary}", os.X_OK):
            sys.exit(f"faults.py: {BIN}/{binary} is missing (swift build first)")
    quick = ["--first-byte-timeout", "2", "--upstream-idle-timeout", "2", "--connect-timeout", "1"]
    table = []
    notes = []
    scenarios = [
        ("kill -9 a proxy (restarted 2 s later)", kill_proxy, restart_proxy, quick),
        ("kill -9 control, restart it", kill_control, restart_control, quick),
        ("SIGSTOP control for 5 s", stop_control, None, quick),
        ("kill a backend before its first byte", slow_first_byte_then_kill, restart_backend_a, quick),
        ("kill a backend mid-stream", kill_backend_mid_stream, restart_backend_a, quick),
        ("a backend stalls mid-stream", stall_mid_stream, heal_a, quick),
        ("a backend hangs before answering", hang_before_answering, heal_a, quick),
    ]
    for name, fault, restore, args in scenarios:
        counts, examples = run(name, fault, restore, proxy_args=args)
        table.append((name, counts, examples))
    disk = FullDisk()
    try:
        if disk.mounted:
            verdict = {}
            def restore(f):
                verdict["health"] = disk.check()
            counts, examples = run("full disk under the data dir", disk.fill, restore, proxy_args=quick,
                                   data_dir=os.path.join(disk.mount, "data"))
            table.append(("full disk under the data dir", counts, examples))
            healthy, said = verdict.get("health", (False, "not checked"))
            notes.append(("full disk: " + said, healthy))
        else:
            table.append(("full disk under the data dir", None, {"skipped": "cannot mount a tmpfs here (not root?)"}))
    finally:
        disk.release()

    width = max(len(n) for n, _, _ in table)
    facts = ("traced", "retried", "local")
    header = f"{'fault':<{width}}  " + "  ".join(f"{c:>11}" for c in Load.COLUMNS) + " |" + "".join(f"{c:>8}" for c in facts)
    print(header)
    print("-" * len(header))
    bad = False
    for name, counts, examples in table:
        if counts is None:
            print(f"{name:<{width}}  skipped: {examples['skipped']}")
            continue
        print(f"{name:<{width}}  " + "  ".join(f"{counts[c]:>11}" for c in Load.COLUMNS) + " |"
              + "".join(f"{str(counts.get(c, '-')):>8}" for c in facts))
        if counts["lost"] or counts["hung"]:
            bad = True
            for column in ("lost", "hung"):
                if column in examples:
                    print(f"    {column}: {examples[column]}")
    for said, fine in notes:
        print(("" if fine else "FAIL: ") + said)
        bad = bad or not fine
    if bad:
        print("FAIL: requests were lost or hung, or a fault went unreported")
        sys.exit(1)
    print("ok: nothing lost, nothing hung")
    print("(traced: rows in control's trace, one per request that reached routing and ended, plus the start-up check;")
    print(" retried: served after a node failed; local: routed by a proxy while control was away or silent)")


if __name__ == "__main__":
    main()
