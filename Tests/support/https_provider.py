"""A cloud provider for tests, on loopback over HTTPS with its own CA:
an OpenAI-compatible chat endpoint and Anthropic's Messages, recording what they were sent.

    python3 https_provider.py DIR PORT [--mode ok|garbage|down|slow]

Makes DIR/ca.pem (the CA to trust: herd's --provider-ca) and serves
https://localhost:PORT and https://127.0.0.1:PORT with a certificate for
both. GET /_provider/requests lists what came: path, model, authorization.
"""
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

directory, port = sys.argv[1], int(sys.argv[2])
mode = sys.argv[sys.argv.index("--mode") + 1] if "--mode" in sys.argv else "ok"
seen = []
lock = threading.Lock()


def make_certificates():
    ca_key, ca, key, csr, cert = (os.path.join(directory, n) for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = os.path.join(directory, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
    if not os.path.exists(ca):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=herd test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return cert, key


class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_provider/requests":
            with lock:
                return self.reply(200, list(seen))
        if self.path.endswith("/models"):
            return self.reply(200, {"object": "list", "data": [{"id": "gpt-cloud", "object": "model"}]})
        self.reply(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with lock:
            seen.append({"path": self.path, "model": body.get("model"), "authorization": self.headers.get("Authorization"),
                         "x_api_key": self.headers.get("x-api-key"), "stream": bool(body.get("stream")),
                         "anthropic_version": self.headers.get("anthropic-version")})
        if mode == "garbage":
            self.wfile.write(b"this is not HTTP at all\r\n\r\n")
            self.close_connection = True
            return
        if mode == "down":
            return self.reply(503, {"error": {"message": "overloaded"}})
        if mode == "slow":
            time.sleep(30)
        if self.path.endswith("/messages"):
            return self.reply(200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                                    "content": [{"type": "text", "text": "Paris, from the Anthropic cloud."}],
                                    "stop_reason": "end_turn", "usage": {"input_tokens": 9, "output_tokens": 6}})
        if not self.path.endswith("/chat/completions"):
            return self.reply(404, {"error": {"message": "not found"}})
        text = "Paris, from the cloud."
        usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (text[:6], text[6:]):
                event = {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model"),
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self.chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            final = {"id": "c1", "object": "chat.completion.chunk", "model": body.get("model"),
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
            self.chunk(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
            self.chunk(b"")
            return
        self.reply(200, {"id": "c1", "object": "chat.completion", "model": body.get("model"),
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                         "usage": usage})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()


cert, key = make_certificates()
server = ThreadingHTTPServer(("127.0.0.1", port), Provider)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"listening on https://127.0.0.1:{port}", flush=True)
server.serve_forever()
