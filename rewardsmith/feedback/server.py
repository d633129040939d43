"""The feedback web page: a local HTTP server (loopback by default) showing the latest generation's top
candidates side by side (rollout, fitness, training curve, reward code), where a person picks the best
and the worst (ICPL), chooses between pairs (REvolve; ratings are Elo across pairs), writes feedback,
and submits once. Self-contained: inline script and styles, no CDN."""

from __future__ import annotations

import errno
import html
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rewardsmith.feedback.records import SELECTION_MODES, AlreadySubmitted, FeedbackError, FeedbackRecord
from rewardsmith.feedback.session import Session
from rewardsmith.report.rollout_view import VIEWER_CSS, VIEWER_JS, trace_charts, viewer_block
from rewardsmith.report.svg import chart

MAX_BODY = 256 * 1024

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
    const r = await fetch('/api/submit', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                           body: JSON.stringify(collect())});
    const body = await r.json();
    if (r.ok) { status.className = 'ok'; status.textContent = body.message; }
    else { status.className = 'err'; status.textContent = body.error; btn.disabled = r.status === 409; }
  } catch (e) { status.className = 'err'; status.textContent = 'could not reach the session: ' + e; btn.disabled = false; }
}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def render_page(session: Session) -> str:
    data = session.to_json()
    cards = []
    for i, c in enumerate(data["candidates"]):
        cid = c["id"]
        r = c["rollout"]
        body = [f"<h2>{i + 1}. {_e(cid)}</h2><div class='fit'>task fitness {_f(c['fitness'])} ± "
                f"{_f(c['fitness_std'])}</div>",
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
            f"<script>{VIEWER_JS}\nconst GENERATION = {session.generation};\n{PAGE_JS}</script></head><body>"
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


class FeedbackServer:
    """Serve one session until a submission is accepted. ``port=0`` picks a free port."""

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 8765):
        self.session = session
        self.record: FeedbackRecord | None = None
        self.submitted = threading.Event()
        self._lock = threading.Lock()
        page = render_page(session).encode("utf-8")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, obj: dict) -> None:
                self._send(code, json.dumps(obj).encode("utf-8"), "application/json")

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif path == "/api/session":
                    self._json(200, server.session.to_json())
                elif path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                else:
                    self._json(404, {"error": f"no such page: {path}"})

            def do_POST(self):
                if self.path.split("?", 1)[0] != "/api/submit":
                    self._json(404, {"error": f"no such endpoint: {self.path}"})
                    return
                try:
                    n = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    n = -1
                if n <= 0 or n > MAX_BODY:
                    self._json(400, {"error": f"a submission is a JSON body of at most {MAX_BODY} bytes"})
                    return
                try:
                    data = json.loads(self.rfile.read(n).decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    self._json(400, {"error": f"the submission is not valid JSON: {e}"})
                    return
                code, body = server.handle_submit(data)
                self._json(code, body)

        try:
            self.httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise FeedbackError(f"port {port} on {host} is in use; choose another with port=<n> "
                                    f"(port=0 picks a free one)") from None
            raise FeedbackError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

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
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> "FeedbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
