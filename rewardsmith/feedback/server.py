"""The feedback web page: a local HTTP server (loopback by default) showing the latest generation's top
candidates side by side (rollout, fitness, training curve, reward code), where a person picks the best
and the worst (ICPL), chooses between pairs (REvolve; ratings are Elo across pairs), writes feedback,
and submits once. Self-contained: inline script and styles, no CDN.

Only the page itself may use the server, not other web sites open in the same browser:

* every request must be addressed to the address the server bound (the ``Host`` header: ``127.0.0.1:PORT``,
  ``localhost:PORT`` for a loopback bind, ``[::1]:PORT`` for IPv6), which stops DNS-rebinding pages, and an
  ``Origin`` header, where a browser sends one, must be that same address;
* a submission (and /api/session) must carry the page's secret token (``X-Rewardsmith-Token``, a new one
  per server, written into the page), and a submission must be ``application/json``, which a plain
  cross-site ``<form>`` cannot send;
* every field is checked by type and size (records.parse_submission), and any failure is a one-line
  JSON answer, never a traceback or a dropped connection;
* connections that send their request slowly cost no thread: one reader collects each request (with a
  deadline and a bound on how many may wait, the oldest dropped first) and only complete requests are
  answered, by at most ``MAX_ACTIVE`` threads at once (503 beyond that).
"""

from __future__ import annotations

import errno
import hmac
import html
import io
import ipaddress
import itertools
import json
import queue
import re
import secrets
import selectors
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from rewardsmith.evaluate.ranking import SELECTION_MODES
from rewardsmith.feedback.records import AlreadySubmitted, FeedbackError, FeedbackRecord
from rewardsmith.feedback.session import Session
from rewardsmith.records import fmt
from rewardsmith.report.rollout_view import VIEWER_CSS, VIEWER_JS, trace_charts, viewer_block
from rewardsmith.report.svg import chart

MAX_BODY = 256 * 1024  # a submission's JSON body
MAX_HEAD = 32 * 1024  # a request's first line and headers
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its whole request, and for each read or write after
MAX_PENDING = 128  # connections still sending their request; beyond this the oldest is dropped
MAX_ACTIVE = 32  # requests answered at once; beyond this the answer is 503
TOKEN_HEADER = "X-Rewardsmith-Token"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin:0 0 12px}
.cards{display:flex;gap:12px;overflow-x:auto;align-items:flex-start;padding-bottom:8px}
.card{flex:0 0 460px;border:1px solid #ddd;border-radius:6px;padding:10px;background:#fff}
.card h2{font-size:16px;margin:0 0 4px}.fit{font-variant-numeric:tabular-nums;color:#1a5}
.charts{display:flex;flex-wrap:wrap;gap:6px} pre{background:#f8f8f8;padding:8px;overflow-x:auto;font-size:12px}
textarea{width:100%;box-sizing:border-box;min-height:54px;font:inherit}
.choose label{margin-right:14px} table{border-collapse:collapse} td{padding:3px 8px;border-bottom:1px solid #eee}
#status{margin-top:10px;font-weight:600} .err{color:#c62828} .ok{color:#1a7f37}
button{font-size:15px;padding:6px 16px} .summary{font-size:12.5px;color:#444}
"""

PAGE_JS = """
function collect() {
  const v = name => { const e = document.querySelector('input[name="' + name + '"]:checked'); return e ? e.value : null; };
  const pairs = [];
  document.querySelectorAll('tr.pair').forEach(tr => {
    const w = v(tr.dataset.name);
    pairs.push({a: tr.dataset.a, b: tr.dataset.b, winner: w === 'skip' ? null : w});
  });
  const comments = {};
  document.querySelectorAll('textarea.comment').forEach(t => { comments[t.dataset.id] = t.value; });
  return {generation: GENERATION, best: v('best'), worst: v('worst'), pairs: pairs, comments: comments,
          overall: document.getElementById('overall').value, selection: document.getElementById('selection').value};
}
async function submitFeedback() {
  const status = document.getElementById('status'), btn = document.getElementById('submit');
  btn.disabled = true; status.className = ''; status.textContent = 'sending...';
  try {
    const r = await fetch('/api/submit', {method: 'POST', credentials: 'omit',
                                           headers: {'Content-Type': 'application/json', 'X-Rewardsmith-Token': TOKEN},
                                           body: JSON.stringify(collect())});
    const body = await r.json();
    if (r.ok) { status.className = 'ok'; status.textContent = body.message; }
    else { status.className = 'err'; status.textContent = body.error; btn.disabled = r.status === 409; }
  } catch (e) { status.className = 'err'; status.textContent = 'could not reach the session: ' + e; btn.disabled = false; }
}
"""


def _e(x) -> str:
    return html.escape(str(x))


def render_page(session: Session, token: str = "") -> str:
    """The page; ``token`` is the server's secret, which the page's script sends with its submission."""
    data = session.to_json()
    cards = []
    for i, c in enumerate(data["candidates"]):
        cid = c["id"]
        r = c["rollout"]
        body = [f"<h2>{i + 1}. {_e(cid)}</h2><div class='fit'>task fitness {fmt(c['fitness'])} ± "
                f"{fmt(c['fitness_std'])}</div>",
                "<div class='summary'>" + "<br>".join(_e(s) for s in c["summary"]) + "</div>"]
        if r:
            body.append(viewer_block(r, f"viewer-{i}", views=("side",)))
            body.append(trace_charts(r, max_fields=4, width=220, height=130))
        else:
            body.append("<p class='sub'>no rollout recorded for this candidate</p>")
        if c["checkpoints"]:
            body.append(chart([{"label": "task fitness", "x": c["checkpoints"], "y": c["fitness_curve"]}],
                              "fitness during training", "env steps", "fitness", width=440, height=170))
        body.append(f"<details><summary>reward code</summary><pre>{_e(c['source'])}</pre></details>")
        body.append(f"<div class='choose'><label><input type='radio' name='best' value='{_e(cid)}'> best</label>"
                    f"<label><input type='radio' name='worst' value='{_e(cid)}'> worst</label></div>")
        body.append(f"<textarea class='comment' data-id='{_e(cid)}' placeholder='what is right or wrong with "
                    f"{_e(cid)}?'></textarea>")
        cards.append(f"<div class='card' id='card-{_e(cid)}'>{''.join(body)}</div>")
    pairs = []
    for n, (a, b) in enumerate(itertools.combinations(session.ids, 2)):
        name = f"pair{n}"
        pairs.append(f"<tr class='pair' data-name='{name}' data-a='{_e(a)}' data-b='{_e(b)}'><td>"
                     f"<label><input type='radio' name='{name}' value='{_e(a)}'> {_e(a)}</label></td><td>vs</td><td>"
                     f"<label><input type='radio' name='{name}' value='{_e(b)}'> {_e(b)}</label></td><td>"
                     f"<label><input type='radio' name='{name}' value='skip' checked> no preference</label></td></tr>")
    options = "".join(f"<option value='{m}'{' selected' if m == 'both' else ''}>{m}</option>"
                      for m in SELECTION_MODES)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>rewardsmith feedback · "
            f"{_e(session.task)} · generation {session.generation}</title><style>{CSS}{VIEWER_CSS}</style>"
            f"<script>{VIEWER_JS}\nconst GENERATION = {session.generation};\nconst TOKEN = {json.dumps(token)};\n"
            f"{PAGE_JS}</script></head><body>"
            f"<h1>rewardsmith · {_e(session.task)} · generation {session.generation}</h1>"
            f"<p class='sub'>Watch what each trained policy does. Task fitness: {_e(session.fitness_doc)}. "
            f"Pick the best and the worst, choose between pairs, and say what is wrong: your words go to the "
            f"next generation's proposer, your choices into how candidates are ranked.</p>"
            f"<div class='cards'>{''.join(cards)}</div>"
            + (f"<h2>Which is better?</h2><table>{''.join(pairs)}</table>" if pairs else "")
            + f"<h2>Overall</h2><textarea id='overall' placeholder='what should the next rewards do differently?'>"
              f"</textarea><p>Rank candidates from now on by <select id='selection'>{options}</select> "
              f"(fitness: the task metric only; preference: your choices first; both: an even mix)</p>"
              f"<button id='submit' type='button' onclick='submitFeedback()'>Submit feedback</button>"
              f"<div id='status' role='status'></div></body></html>")


_HEAD_END = re.compile(rb"\n\r?\n")
_IP_HOST = re.compile(r"\[([0-9a-f:.]+)\](?::(\d{1,5}))?|([0-9.]+)(?::(\d{1,5}))?")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$")


def _request_state(buf: bytes | bytearray) -> str:
    """``more`` while a request is still arriving, ``ready`` once its headers and (declared) body are in,
    ``too large`` when the headers exceed MAX_HEAD. A body over MAX_BODY is not waited for: the handler
    refuses it from the headers alone."""
    m = _HEAD_END.search(buf, 0, MAX_HEAD + 2)
    if m is None:
        return "too large" if len(buf) > MAX_HEAD else "more"
    cl = _CONTENT_LENGTH.search(buf, 0, m.start() + 1)
    n = int(cl.group(1)) if cl else 0
    if n > MAX_BODY:
        return "ready"
    return "ready" if len(buf) >= m.end() + n else "more"


def _json_content_type(values: list[str]) -> bool:
    """``application/json``, optionally with ``charset=utf-8``, and nothing else."""
    if len(values) != 1:
        return False
    main, *params = (x.strip() for x in values[0].split(";"))
    if main.lower() != "application/json":
        return False
    for prm in params:
        if not prm:
            continue
        key, _, value = prm.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_body(raw: bytes):
    """A submission's body as JSON; FeedbackError (one line) when it cannot be read."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FeedbackError("the submission is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise FeedbackError("the submission is nested too deeply to be feedback") from None
    except ValueError as e:  # JSONDecodeError, and numbers too long to convert
        msg = (str(e).splitlines() or [""])[0][:200]
        raise FeedbackError(f"the submission is not valid JSON: {msg}") from None


def _response(code: int, obj: dict) -> bytes:
    """A whole short HTTP answer, for the reader thread (which answers without a handler)."""
    body = json.dumps(obj).encode("utf-8")
    reason = BaseHTTPRequestHandler.responses.get(code, ("Error",))[0]
    return (f"HTTP/1.0 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1") + body


class _Pending:
    __slots__ = ("addr", "deadline", "buf")

    def __init__(self, addr, deadline: float):
        self.addr, self.deadline, self.buf = addr, deadline, bytearray()


class FeedbackHTTPServer(HTTPServer):
    """An HTTP server whose slow clients cost no thread. Accepted connections go to one reader thread
    that collects each request without blocking (``request_timeout`` seconds at most, ``max_pending``
    connections at most, the oldest dropped first); a complete request is answered by a handler thread,
    ``max_active`` at most at once (503 beyond). One request per connection (HTTP/1.0 answers)."""

    request_queue_size = 128

    def __init__(self, address, handler, family: int = socket.AF_INET):
        self.address_family = family
        self.request_timeout = REQUEST_TIMEOUT
        self.max_pending = MAX_PENDING
        self.max_active = MAX_ACTIVE
        self._active = threading.BoundedSemaphore(MAX_ACTIVE)
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        super().__init__(address, handler)  # closes everything above through server_close when it cannot bind

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._active = threading.BoundedSemaphore(self.max_active)
        self._stopping.clear()
        reader = threading.Thread(target=self._read_requests, daemon=True, name="feedback-reader")
        reader.start()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._stopping.set()
            self._wake()
            reader.join(5)

    def process_request(self, request, client_address) -> None:
        self._incoming.put((request, client_address, time.monotonic() + self.request_timeout))
        self._wake()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away needs no traceback; handlers answer their own errors

    def server_close(self) -> None:
        super().server_close()
        while True:
            try:
                sock = self._incoming.get_nowait()[0]
            except queue.Empty:
                break
            self._close(sock)
        self._wake_r.close()
        self._wake_w.close()

    # -- the reader ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (the reader will look anyway) or closed
            pass

    @staticmethod
    def _close(sock) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _answer_now(self, sock, code: int, message: str) -> None:
        try:
            sock.send(_response(code, {"error": message}))
        except OSError:
            pass
        self._close(sock)

    def _read_requests(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        pending: dict[socket.socket, _Pending] = {}

        def drop(sock, answer: tuple[int, str] | None = None) -> None:
            sel.unregister(sock)
            del pending[sock]
            if answer is None:
                self._close(sock)
            else:
                self._answer_now(sock, *answer)

        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                first = min((p.deadline for p in pending.values()), default=now + 0.5)
                for key, _ in sel.select(min(0.5, max(0.0, first - now))):
                    if key.fileobj is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                        while True:
                            try:
                                sock, addr, deadline = self._incoming.get_nowait()
                            except queue.Empty:
                                break
                            sock.setblocking(False)
                            pending[sock] = _Pending(addr, deadline)
                            sel.register(sock, selectors.EVENT_READ)
                            while len(pending) > self.max_pending:
                                drop(next(iter(pending)))  # the oldest waiting connection
                        continue
                    sock = key.fileobj
                    p = pending.get(sock)
                    if p is None:  # dropped earlier in this round
                        continue
                    try:
                        chunk = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        drop(sock)
                        continue
                    if not chunk:
                        drop(sock)
                        continue
                    p.buf += chunk
                    state = _request_state(p.buf)
                    if state == "too large":
                        drop(sock, (431, f"the request headers are over {MAX_HEAD} bytes"))
                    elif state == "ready":
                        sel.unregister(sock)
                        del pending[sock]
                        self._dispatch(sock, p.addr, bytes(p.buf))
                now = time.monotonic()
                for sock in [s for s, p in pending.items() if p.deadline <= now]:
                    drop(sock, (408, f"the request did not arrive within {self.request_timeout:g} s"))
        finally:
            for sock in list(pending):
                drop(sock)
            sel.close()

    def _dispatch(self, sock, addr, data: bytes) -> None:
        if not self._active.acquire(blocking=False):
            self._answer_now(sock, 503, "the feedback page is busy; try again in a moment")
            return
        try:
            threading.Thread(target=self._answer, args=(sock, addr, data), daemon=True).start()
        except RuntimeError:  # no thread could be started
            self._active.release()
            self._answer_now(sock, 503, "the feedback page is busy; try again in a moment")

    def _answer(self, sock, addr, data: bytes) -> None:
        try:
            sock.setblocking(True)
            self.RequestHandlerClass(sock, addr, self, data)
        except Exception:  # noqa: BLE001 - the client went away (reset, timeout); handlers answer the rest
            pass
        finally:
            self._close(sock)
            self._active.release()


def _host_name(ip) -> str:
    return f"[{ip.compressed}]" if ip.version == 6 else ip.compressed


class FeedbackServer:
    """Serve one session until a submission is accepted. ``port=0`` picks a free port."""

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 8765):
        self.session = session
        self.record: FeedbackRecord | None = None
        self.submitted = threading.Event()
        self._lock = threading.Lock()
        self.token = secrets.token_urlsafe(32)
        token = self.token.encode("ascii")
        page = render_page(session, self.token).encode("utf-8")
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT  # each read and write on the connection
            server_version = "rewardsmith-feedback"
            sys_version = ""

            def __init__(self, request, client_address, httpd, prebuffered: bytes = b""):
                self._prebuffered = prebuffered
                self._answered = False
                super().__init__(request, client_address, httpd)

            def setup(self):
                super().setup()
                self.rfile.close()
                self.rfile = io.BytesIO(self._prebuffered)  # the reader collected the whole request

            def log_message(self, *a):
                pass

            def log_request(self, *a):
                pass

            def send_error(self, code, message=None, explain=None):
                self.close_connection = True
                self._json(code, {"error": message or self.responses.get(code, ("error",))[0]})

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self._answered = True
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.send_header("X-Frame-Options", "DENY")
                self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, code: int, obj: dict) -> None:
                self._send(code, json.dumps(obj).encode("utf-8"), "application/json")

            def _refusal(self) -> str | None:
                """Why this request is refused (403), or None: it must be addressed to this server's own
                address, and come from this server's own page where a browser says where it comes from."""
                hosts = [h.strip().lower() for h in self.headers.get_all("Host") or []]
                if len(hosts) != 1 or not server.host_allowed(hosts[0]):
                    return f"this page answers only requests addressed to {server.url.rstrip('/')}"
                origins = [o.strip().lower() for o in self.headers.get_all("Origin") or []]
                if len(origins) > 1 or (origins and origins[0] != "http://" + hosts[0]):
                    return "requests from other web pages are refused"
                return None

            def _token_ok(self) -> bool:
                given = self.headers.get_all(TOKEN_HEADER) or []
                return len(given) == 1 and hmac.compare_digest(given[0].strip().encode("utf-8", "replace"), token)

            def _guarded(self, answer) -> None:
                try:
                    why = self._refusal()
                    if why:
                        self._json(403, {"error": why})
                    else:
                        answer(self.path.split("?", 1)[0])
                except (ConnectionError, TimeoutError):
                    self.close_connection = True  # the client went away or stalled: nobody to answer
                except Exception as e:  # noqa: BLE001 - one line to the client and the console, no traceback
                    detail = (str(e).splitlines() or [""])[0][:200]
                    print(f"rewardsmith-feedback: internal error answering {self.command} {self.path[:100]}: "
                          f"{type(e).__name__}: {detail}", file=sys.stderr)
                    if not self._answered:
                        self._json(500, {"error": f"the feedback page failed to answer ({type(e).__name__}); "
                                                  f"see the console it runs in"})

            def do_GET(self):
                self._guarded(self._get)

            def do_HEAD(self):
                self._guarded(self._get)

            def do_POST(self):
                self._guarded(self._post)

            def _get(self, path: str) -> None:
                if path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif path == "/api/session":
                    if not self._token_ok():
                        self._json(403, {"error": f"the session needs this page's token ({TOKEN_HEADER})"})
                    else:
                        self._json(200, server.session.to_json())
                elif path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                else:
                    self._json(404, {"error": f"no such page: {path[:100]}"})

            def _post(self, path: str) -> None:
                if path != "/api/submit":
                    self._json(404, {"error": f"no such endpoint: {path[:100]}"})
                    return
                if not self._token_ok():
                    self._json(403, {"error": "a submission needs this page's token: reload the page and "
                                              "submit from it; nothing was stored"})
                    return
                if not _json_content_type(self.headers.get_all("Content-Type") or []):
                    self._json(415, {"error": "a submission must be sent as application/json; nothing was stored"})
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n > MAX_BODY:
                    self._json(413, {"error": f"a submission is a JSON body of at most {MAX_BODY} bytes"})
                    return
                raw = self.rfile.read(n) if n > 0 else b""
                if n <= 0 or len(raw) < n:
                    self._json(400, {"error": f"a submission is a JSON body of at most {MAX_BODY} bytes"})
                    return
                try:
                    data = parse_body(raw)
                except FeedbackError as e:
                    self._json(400, {"error": str(e)})
                    return
                code, body = server.handle_submit(data)
                self._json(code, body)

        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        family = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
        try:
            self.httpd = FeedbackHTTPServer((host, port), Handler, family)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise FeedbackError(f"port {port} on {host} is in use; choose another with port=<n> "
                                    f"(port=0 picks a free one)") from None
            raise FeedbackError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
        self.host, self.port = self.httpd.server_address[:2]
        self._hosts, self._any_address = self._allowed_hosts()
        self._thread: threading.Thread | None = None

    def _allowed_hosts(self) -> tuple[set[str], bool]:
        """The Host header values that name this server: its bound address and port (and ``localhost``
        for a loopback bind). A wildcard bind (0.0.0.0, ::) takes any IP address literal with the port,
        which a DNS-rebinding page cannot send, and ``localhost``."""
        ip = ipaddress.ip_address(self.host)
        any_address = ip.is_unspecified
        names = {"localhost"} if any_address or ip.is_loopback else set()
        if not any_address:
            names.add(_host_name(ip))
        hosts = {f"{n}:{self.port}" for n in names}
        if self.port == 80:
            hosts |= names
        return hosts, any_address

    def host_allowed(self, host: str) -> bool:
        """Whether a (lower-cased) Host header names this server."""
        if host in self._hosts:
            return True
        if not self._any_address:
            return False
        m = _IP_HOST.fullmatch(host)
        if m is None or (m.group(2) or m.group(4) or "80") != str(self.port):
            return False
        try:
            return ipaddress.ip_address(m.group(1) or m.group(3)).version == (6 if m.group(1) else 4)
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}/"

    def handle_submit(self, data) -> tuple[int, dict]:
        with self._lock:
            if self.record is not None:
                return 409, {"error": f"feedback for generation {self.session.generation} was already submitted; "
                                      f"nothing was changed"}
            try:
                self.record = self.session.submit(data, source="web")
            except AlreadySubmitted as e:
                return 409, {"error": str(e)}
            except FeedbackError as e:
                return 400, {"error": str(e)}
        self.submitted.set()
        return 200, {"ok": True, "message": f"Thanks: feedback for generation {self.session.generation} saved to "
                                            f"feedback.json. The search continues with it.",
                     "record": self.record.to_json()}

    def start(self) -> "FeedbackServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> FeedbackRecord | None:
        self.submitted.wait(timeout)
        return self.record

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FeedbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
