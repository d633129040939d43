"""The feedback page against other web sites and bad clients: cross-site form posts, DNS rebinding
(foreign Host), foreign Origins, the page token, content types, wrong-typed and deeply nested bodies,
unexpected errors, slow connections and a busy server. Raw http.client and sockets on 127.0.0.1 only."""

import http.client
import json
import re
import socket
import threading
import time

import pytest

from rewardsmith.feedback.records import MAX_PAIRS, FeedbackError, parse_submission
from rewardsmith.feedback.server import TOKEN_HEADER, FeedbackServer
from rewardsmith.feedback.session import Session, SessionCandidate
from rewardsmith.records import Candidate

IDS = ["g00-aaaa", "g00-bbbb", "g00-cccc"]
SECRET_SOURCE = "return -abs(s.x)  # secret reward for"


def _session(run_dir) -> Session:
    cands = [SessionCandidate(Candidate(id=cid, generation=0, source=f"def reward(s):\n    {SECRET_SOURCE} {cid}\n",
                                        origin="offline", status="trained", fitness=f, fitness_std=0.1),
                              None, [f"{cid} kept the pole up for {f:g} steps"])
             for cid, f in zip(IDS, (300.0, 200.0, 100.0))]
    return Session(run_dir=run_dir, task="cartpole", fitness_doc="steps with the pole up", generation=0,
                   candidates=cands)


@pytest.fixture
def srv(tmp_path):
    with FeedbackServer(_session(tmp_path), port=0) as s:
        yield s


GOOD = {"generation": 0, "best": IDS[0], "worst": IDS[2], "pairs": [{"a": IDS[0], "b": IDS[1], "winner": IDS[1]}],
        "comments": {IDS[1]: "wobbles"}, "overall": "keep x near zero", "selection": "preference"}


def _call(srv, method, path, body=None, headers=None, host="default"):
    """One request with exactly the headers given (http.client adds no Host when ``host`` is None)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host == "default":
            host = f"127.0.0.1:{srv.port}"
        if host is not None:
            conn.putheader("Host", host)
        for k, v in (headers or {}).items():
            for one in (v if isinstance(v, list) else [v]):
                conn.putheader(k, one)
        if body is not None:
            body = body if isinstance(body, bytes) else body.encode("utf-8")
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _token(srv) -> str:
    status, _, page = _call(srv, "GET", "/")
    assert status == 200
    m = re.search(r'const TOKEN = "([A-Za-z0-9_-]+)";', page.decode("utf-8"))
    assert m, "the page carries its token"
    return m.group(1)


def _submit(srv, body, token, ctype="application/json", extra=None):
    headers = {"Content-Type": ctype, TOKEN_HEADER: token, **(extra or {})}
    return _call(srv, "POST", "/api/submit", body if isinstance(body, (str, bytes)) else json.dumps(body), headers)


def _one_line_error(status, headers, body, code) -> str:
    assert status == code, (status, body[:300])
    assert headers.get("Content-Type") == "application/json"
    text = body.decode("utf-8")
    assert "\n" not in text and len(text) < 600, text[:600]
    err = json.loads(text)["error"]
    assert isinstance(err, str) and err
    return err


def _nothing_stored(srv, run_dir):
    assert not (run_dir / "feedback.json").exists()
    assert srv.record is None and not srv.submitted.is_set()


# -- other web sites ----------------------------------------------------------------------------------

def test_cross_site_form_post_is_refused_and_stores_nothing(srv, tmp_path):
    port = srv.port
    form = json.dumps({**GOOD, "selection": "preference"})  # what a text/plain <form> can carry
    evil = {"Content-Type": "text/plain", "Origin": "http://evil.example", "Referer": "http://evil.example/page"}
    # DNS rebinding: the request is addressed to the attacker's name
    status, h, body = _call(srv, "POST", "/api/submit", form, evil, host=f"evil.example:{port}")
    _one_line_error(status, h, body, 403)
    # a plain cross-site form: right address, foreign Origin
    status, h, body = _call(srv, "POST", "/api/submit", form, evil)
    _one_line_error(status, h, body, 403)
    # a form whose browser sends no Origin still has no token
    status, h, body = _call(srv, "POST", "/api/submit", form, {"Content-Type": "text/plain"})
    assert "token" in _one_line_error(status, h, body, 403)
    # even with the token, only application/json is taken
    token = _token(srv)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                  "application/json; charset=latin-1", "application/jsonp", "", "application/json; x=1"):
        status, h, body = _submit(srv, form, token, ctype)
        assert "application/json" in _one_line_error(status, h, body, 415), ctype
    status, h, body = _submit(srv, form, token, extra={"Content-Type": ["application/json", "text/plain"]})
    _one_line_error(status, h, body, 415)
    _nothing_stored(srv, tmp_path)


def test_submission_needs_the_page_token(srv, tmp_path):
    token = _token(srv)
    same = {"Origin": f"http://127.0.0.1:{srv.port}"}
    status, h, body = _call(srv, "POST", "/api/submit", json.dumps(GOOD), {"Content-Type": "application/json", **same})
    assert "token" in _one_line_error(status, h, body, 403)
    for wrong in ("x" * len(token), token[:-1], token + "x", "", "\u00e9" * 10, token.upper()):
        if wrong == token:
            continue
        status, h, body = _submit(srv, GOOD, wrong, extra=same)
        _one_line_error(status, h, body, 403)
    status, h, body = _submit(srv, GOOD, [token, "x"], extra=same)  # two token headers
    _one_line_error(status, h, body, 403)
    # another server's token does not open this one
    with FeedbackServer(_session(tmp_path / "other"), port=0) as other:
        assert other.token != srv.token
        status, h, body = _submit(srv, GOOD, _token(other), extra=same)
        _one_line_error(status, h, body, 403)
    _nothing_stored(srv, tmp_path)


def test_foreign_host_or_origin_is_refused_for_every_request(srv):
    port = srv.port
    for path in ("/", "/index.html", "/api/session", "/favicon.ico", "/nowhere"):
        for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"localhost.evil.example:{port}",
                     f"[::1]:{port}", f"127.0.0.1:{port}.evil.example", None):
            status, h, body = _call(srv, "GET", path, host=host)
            _one_line_error(status, h, body, 403)
            assert SECRET_SOURCE.encode() not in body and srv.token.encode() not in body
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}",
                       f"http://evil.example:{port}"):
            status, h, body = _call(srv, "GET", path, headers={"Origin": origin})
            _one_line_error(status, h, body, 403)
            assert SECRET_SOURCE.encode() not in body and srv.token.encode() not in body
        status, h, body = _call(srv, "GET", path, host=None,  # two Host headers
                                headers={"Host": [f"127.0.0.1:{port}", f"evil.example:{port}"]})
        _one_line_error(status, h, body, 403)
    # the page itself, on its own address
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        status, h, page = _call(srv, "GET", "/", host=host)
        assert status == 200 and srv.token.encode() in page
        assert h["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
    status, _, _ = _call(srv, "GET", "/", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200
    # /api/session holds every candidate's source: it needs the token as well
    status, h, body = _call(srv, "GET", "/api/session")
    _one_line_error(status, h, body, 403)
    status, _, body = _call(srv, "GET", "/api/session", headers={TOKEN_HEADER: srv.token})
    assert status == 200 and SECRET_SOURCE in json.loads(body)["candidates"][0]["source"]


def test_a_submission_with_the_page_token_is_stored_once(srv, tmp_path):
    token = _token(srv)
    status, _, body = _submit(srv, GOOD, token, "application/json; charset=UTF-8",
                              extra={"Origin": f"http://127.0.0.1:{srv.port}"})
    assert status == 200, body
    assert srv.wait(1) is not None
    rec = json.loads((tmp_path / "feedback.json").read_text())["records"][0]
    assert rec["source"] == "web" and rec["best"] == IDS[0] and rec["selection"] == "preference"
    assert rec["pairs"] == [{"a": IDS[0], "b": IDS[1], "winner": IDS[1]}]
    before = (tmp_path / "feedback.json").read_bytes()
    status, h, body = _submit(srv, {**GOOD, "overall": "again"}, token)
    assert "already submitted" in _one_line_error(status, h, body, 409)
    assert (tmp_path / "feedback.json").read_bytes() == before


# -- wrong types, odd bodies ----------------------------------------------------------------------------

def _with(**fields) -> str:
    return json.dumps({"overall": "fine", "best": IDS[0], **fields})


DEEP = "[" * 100000 + "]" * 100000
BAD_BODIES = [
    ('{"generation": "abc", "overall": "x"}', "generation"),
    ('{"generation": 1e999, "overall": "x"}', "generation"),
    ('{"generation": -1e999, "overall": "x"}', "generation"),
    ('{"generation": true, "overall": "x"}', "generation"),
    ('{"generation": 1.5, "overall": "x"}', "generation"),
    ('{"generation": 0.0, "overall": "x"}', "generation"),
    ('{"generation": [0], "overall": "x"}', "generation"),
    ('{"generation": NaN, "overall": "x"}', "NaN"),
    ('{"generation": Infinity, "overall": "x"}', "Infinity"),
    ('{"generation": ' + "9" * 5000 + ', "overall": "x"}', "not valid JSON"),
    ('{"generation": 1, "overall": "x"}', "generation 1, but the session is for generation 0"),
    (_with(pairs=5), "pairs"),
    (_with(pairs="x"), "pairs"),
    (_with(pairs=["x"]), "a pair must be"),
    (_with(pairs={"a": IDS[0]}), "pairs"),
    (_with(pairs=[{"a": 5, "b": IDS[1], "winner": IDS[1]}]), "pair candidate"),
    (_with(pairs=[{"a": IDS[0], "b": IDS[1], "winner": 5}]), "winner"),
    (_with(pairs=[{"a": IDS[0], "b": IDS[1], "winner": [IDS[0]]}]), "winner"),
    (_with(pairs=[{"a": IDS[0], "b": IDS[1], "winner": IDS[0]}] * (MAX_PAIRS + 1)), "limit"),
    (_with(comments="x"), "comments"),
    (_with(comments=["x"]), "comments"),
    (_with(comments={IDS[0]: 5}), "comment on"),
    (_with(comments={IDS[0]: ["text"]}), "comment on"),
    (_with(comments={"5": "text"}), "not one of the candidates shown"),
    (_with(best=5), "best"),
    (_with(best=["a"]), "best"),
    (_with(best={"id": IDS[0]}), "best"),
    (_with(best="x" * 100000), "not one of the candidates shown"),
    (_with(worst=5.5), "worst"),
    (_with(overall=7), "overall"),
    (_with(overall=0), "overall"),
    (_with(overall=["fine"]), "overall"),
    (_with(selection=3), "selection"),
    (_with(selection=["both"]), "selection"),
    (_with(selection=True), "selection"),
    (DEEP, "nested too deeply"),
    ('{"overall": ' + DEEP + "}", "nested too deeply"),
    ('{"comments": ' + "{\"a\": " * 30000 + "1" + "}" * 30001, "nested too deeply"),
    ("[]", "JSON object"),
    ('["overall"]', "JSON object"),
    ('"overall"', "JSON object"),
    ("5", "JSON object"),
    ("null", "JSON object"),
    ("{", "not valid JSON"),
    (b"\xff\xfe{}", "UTF-8"),
    (_with(rating=3), "unknown feedback keys"),
]


def test_wrong_types_get_a_one_line_400_and_store_nothing(srv, tmp_path, capfd):
    token = _token(srv)
    for body, words in BAD_BODIES:
        status, h, answer = _submit(srv, body, token)
        err = _one_line_error(status, h, answer, 400)
        assert words in err, (body[:80], err)
        assert not (tmp_path / "feedback.json").exists(), body[:80]
    _nothing_stored(srv, tmp_path)
    # an empty or missing body, and one longer than the limit
    status, h, answer = _submit(srv, "", token)
    _one_line_error(status, h, answer, 400)
    status, h, answer = _call(srv, "POST", "/api/submit", None, {"Content-Type": "application/json",
                                                                TOKEN_HEADER: token})
    _one_line_error(status, h, answer, 400)
    status, h, answer = _submit(srv, "x" * (300 * 1024), token)
    _one_line_error(status, h, answer, 413)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    # the server still takes a good submission
    status, _, answer = _submit(srv, GOOD, token)
    assert status == 200, answer


def test_parse_submission_checks_types_for_every_mode():
    """The terminal and file modes share the checks: wrong types are a one-line FeedbackError."""
    cases = [({"generation": "0", "overall": "x"}, "generation must be a whole number"),
             ({"generation": float("inf"), "overall": "x"}, "generation must be a whole number, got inf"),
             ({"generation": False, "overall": "x"}, "generation must be a whole number"),
             ({"generation": 10 ** 5000, "overall": "x"}, "a very large number"),
             ({"pairs": 5, "overall": "x"}, "pairs must be a list"),
             ({"pairs": [[IDS[0], IDS[1]]]}, "a pair must be"),
             ({"comments": "x"}, "comments must be an object"),
             ({"comments": {IDS[0]: 3}}, "must be text, got 3"),
             ({"best": ["a"]}, "best must be a candidate id"),
             ({"best": "y" * 100000}, "not one of the candidates shown"),
             ({"overall": 7}, "overall feedback must be text"),
             ({"overall": "x", "selection": 3}, "selection must be one of"),
             ({1: "x", "overall": "x"}, "unknown feedback keys"),
             ({"k" * 100000: 1, "overall": "x"}, "unknown feedback keys"),
             (["overall"], "must be a JSON object"),
             ("overall", "must be a JSON object")]
    for data, msg in cases:
        with pytest.raises(FeedbackError, match=re.escape(msg)) as e:
            parse_submission(data, 0, IDS, "file")
        assert "\n" not in str(e.value) and len(str(e.value)) < 400, str(e.value)[:400]
    assert parse_submission({"generation": 0, "overall": " x ", "selection": None}, 0, IDS, "file").overall == "x"


def test_an_unexpected_error_is_a_one_line_500(srv, tmp_path, monkeypatch, capfd):
    def broken(data, source):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(srv.session, "submit", broken)
    status, h, body = _submit(srv, GOOD, srv.token)
    assert "RuntimeError" in _one_line_error(status, h, body, 500)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "internal error" in err and len(err.strip().splitlines()) == 1, err
    _nothing_stored(srv, tmp_path)


# -- slow and many connections ----------------------------------------------------------------------------

def _slow(port: int, n: int) -> list[socket.socket]:
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(b"POST /api/submit HTTP/1.1\r\n")
        else:  # whole headers, part of the body
            s.sendall(f"POST /api/submit HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 1000\r\n\r\n{{\"overall\":".encode())
        socks.append(s)
    return socks


def test_slow_connections_hold_no_thread_and_do_not_block_a_submission(srv, tmp_path):
    threads = threading.active_count()
    socks = _slow(srv.port, 100)
    try:
        time.sleep(0.5)  # let the server take them all
        assert threading.active_count() < threads + 10  # not a thread per stalled connection
        t0 = time.monotonic()
        status, _, body = _submit(srv, GOOD, _token(srv))
        assert status == 200, body
        assert time.monotonic() - t0 < 3.0
        assert (tmp_path / "feedback.json").exists()
        for s in socks[:5]:  # the stalled ones were kept waiting, not answered
            s.settimeout(0.05)
            with pytest.raises(socket.timeout):
                s.recv(1)
    finally:
        for s in socks:
            s.close()


def _closed_or_answered(s: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``s`` (b"" for a bare close), or None if still open."""
    s.settimeout(within)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        return None
    except ConnectionResetError:
        return data


def test_stalled_connections_time_out_and_the_oldest_give_way(srv):
    srv.httpd.max_pending = 10
    socks = _slow(srv.port, 30)
    try:
        time.sleep(0.5)
        outcome = [_closed_or_answered(s, 0.05 if i >= 20 else 2.0) for i, s in enumerate(socks)]
        assert all(o is not None for o in outcome[:20]), outcome  # the oldest were dropped
        assert all(o is None for o in outcome[20:]), outcome  # the newest ten still wait
        status, _, body = _submit(srv, GOOD, srv.token)
        assert status == 200, body
    finally:
        for s in socks:
            s.close()
    srv.httpd.request_timeout = 0.5
    s = _slow(srv.port, 1)[0]
    try:
        t0 = time.monotonic()
        answer = _closed_or_answered(s, 5.0)
        assert answer is not None and answer.startswith(b"HTTP/1.0 408 ") and time.monotonic() - t0 < 3.0
        assert b"\n" not in answer.split(b"\r\n\r\n", 1)[1]
    finally:
        s.close()


def test_a_busy_server_answers_503(tmp_path):
    server = FeedbackServer(_session(tmp_path), port=0)
    server.httpd.max_active = 1
    entered, release = threading.Event(), threading.Event()
    real = server.session.submit

    def slow_submit(data, source):
        entered.set()
        release.wait(10)
        return real(data, source)

    server.session.submit = slow_submit
    with server:
        first: list = []
        t = threading.Thread(target=lambda: first.append(_submit(server, GOOD, server.token)))
        t.start()
        try:
            assert entered.wait(5)  # the first is being answered
            status, h, body = _call(server, "GET", "/")
            assert "busy" in _one_line_error(status, h, body, 503)
        finally:
            release.set()
            t.join(10)
        assert first and first[0][0] == 200
        deadline = time.monotonic() + 5  # the slot frees just after the first answer has gone out
        while (status := _call(server, "GET", "/")[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert status == 200


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_loopback_server_answers_its_own_address_only(tmp_path):
    try:
        server = FeedbackServer(_session(tmp_path), host="::1", port=0)
    except FeedbackError as e:
        pytest.skip(f"cannot bind ::1: {e}")
    with server:
        assert server.url == f"http://[::1]:{server.port}/"

        def get(host):
            conn = http.client.HTTPConnection("::1", server.port, timeout=10)
            try:
                conn.putrequest("GET", "/", skip_host=True)
                conn.putheader("Host", host)
                conn.endheaders()
                return conn.getresponse().status
            finally:
                conn.close()

        assert get(f"[::1]:{server.port}") == 200 and get(f"localhost:{server.port}") == 200
        assert get(f"127.0.0.1:{server.port}") == 403 and get(f"evil.example:{server.port}") == 403


def test_a_port_in_use_is_a_clear_error(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(FeedbackError, match=f"port {port} on 127.0.0.1 is in use"):
            FeedbackServer(_session(tmp_path), port=port)
    finally:
        taken.close()


def test_other_methods_get_a_one_line_json_answer(srv, tmp_path):
    for method in ("OPTIONS", "PUT", "DELETE"):
        status, h, body = _call(srv, method, "/api/submit", headers={"Origin": "http://evil.example"})
        _one_line_error(status, h, body, 501)
    status, h, body = _call(srv, "HEAD", "/", host=f"evil.example:{srv.port}")
    assert status == 403 and body == b""
    status, h, body = _call(srv, "POST", "/api/elsewhere", json.dumps(GOOD),
                            {"Content-Type": "application/json", TOKEN_HEADER: srv.token})
    _one_line_error(status, h, body, 404)
    _nothing_stored(srv, tmp_path)
