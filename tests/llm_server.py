"""A local OpenAI-compatible HTTP server for tests: scripted chat completions, every request kept."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = '''Here is a reward that keeps the pole upright and the cart centred.

```python
import jax.numpy as jnp


def compute_reward(state, action, next_state):
    upright = jnp.exp(-jnp.abs(next_state.theta) / {temp})
    centred = -0.1 * jnp.square(next_state.x / 2.4)
    return upright + centred, {{"upright": upright, "centred": centred}}
```
'''

BAD_CODE = '''```python
import os


def compute_reward(state, action, next_state):
    return float(open("/etc/passwd").read() != ""), {}
```
'''

PROSE = "I think the reward should favour an upright pole and a centred cart."


def good(i: int) -> str:
    return GOOD.format(temp=round(0.05 + 0.01 * i, 3))


class ScriptedLLM:
    """``script`` is consumed by first-attempt requests, in order: "good", "bad", "prose",
    "429" (rate limited, then the next item), "timeout" (sleep past the client's timeout, then the
    next item), "hang" (no answer until the server stops), "500" (an internal server error). Every
    request, a retry too, takes the next item. Requests that carry a fix-up conversation (more than 2
    messages with a code-error prompt) get ``fixes`` in order, then good code. When the script runs
    out, every request gets good code."""

    def __init__(self, script: list[str], sleep_s: float = 3.0, fixes: list[str] | None = None):
        self.script = list(script)
        self.fixes = list(fixes or [])  # answers to fix-up requests, in order, before they get good code
        self.sleep_s = sleep_s
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.counter = 0
        self.stopped = threading.Event()  # set on exit: a hanging request ends with the server
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(404)
                self.end_headers()

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.requests.append({"path": self.path, "body": body})
                    msgs = body.get("messages", [])
                    fixing = any("could not be used" in (m.get("content") or "") for m in msgs if m["role"] == "user")
                    if fixing:
                        action = server.fixes.pop(0) if server.fixes else "good"
                    else:
                        action = server.script.pop(0) if server.script else "good"
                    server.counter += 1
                    idx = server.counter
                if action == "429":
                    return self._json(429, {"error": {"message": "rate limited", "type": "rate_limit_error"}})
                if action == "500":
                    return self._json(500, {"error": {"message": "internal error", "type": "server_error"}})
                if action == "hang":
                    server.stopped.wait(60.0)
                    return
                if action == "timeout":
                    time.sleep(server.sleep_s)
                    return self._json(200, _completion(body, [good(idx)]))
                n = int(body.get("n") or 1)
                texts = {"good": None, "bad": BAD_CODE, "prose": PROSE}
                content = [texts[action] or good(idx * 10 + j) for j in range(n)]
                self._json(200, _completion(body, content))

            def _json(self, status, payload):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(body: dict, contents: list[str]) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": c}}
                    for i, c in enumerate(contents)],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50 * len(contents), "total_tokens": 100 + 50 * len(contents)},
    }
