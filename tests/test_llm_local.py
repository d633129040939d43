"""llm=local and answers that count: mechanical repairs, error feedback that quotes the line, the
llama.cpp server's lifecycle (a stand-in server here), and, under the ``local_llm`` marker, the real
model where its GGUF file is present."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewardsmith.errors import UserError
from rewardsmith.evolve import run
from rewardsmith.propose import make_proposer
from rewardsmith.propose.base import ProposalContext
from rewardsmith.propose.llm import describe_trace_error, extract_code, state_misuse
from rewardsmith.propose.llm_client import LLMSettings, request_seed
from rewardsmith.propose.repair import repair_source
from rewardsmith.tasks import get_task
from rewardsmith.validate.static import check_source

from conftest import tiny_cfg

CARTPOLE = ("x", "x_dot", "theta", "theta_dot", "step")
HEAD = "def compute_reward(state, action, next_state):\n"


def fix(src, arrays=False, fields=CARTPOLE):
    new, names, diff = repair_source(textwrap.dedent(src), fields, arrays=arrays)
    return new, names, diff


# -- repairs --------------------------------------------------------------------------------------------

def test_import_jnp_becomes_jax_numpy():
    new, names, diff = fix("import jnp\n\n" + HEAD + "    r = jnp.clip(next_state.theta, -1.0, 1.0)\n"
                           "    return r, {'r': r}\n")
    assert new.startswith("import jax.numpy as jnp\n") and names == ["import jnp -> import jax.numpy as jnp"]
    assert "-import jnp" in diff and "+import jax.numpy as jnp" in diff
    assert not check_source(new, CARTPOLE)


def test_other_aliases_of_jax_numpy_and_numpy_become_jnp():
    new, names, _ = fix("import jax.numpy as jp\n\n" + HEAD + "    r = jp.cos(next_state.theta) + np.pi * 0.0\n"
                        "    return r, {'r': r}\n")
    assert "jp." not in new and "np.pi" not in new.replace("jnp.pi", "")
    assert "jnp.cos(next_state.theta) + jnp.pi" in new
    assert set(names) == {"import jax.numpy as jp -> as jnp", "np. without an import -> jnp."}
    assert not check_source(new, CARTPOLE)
    new, names, _ = fix("import numpy as np\n\n" + HEAD + "    r = np.exp(-np.abs(next_state.x))\n"
                        "    return r, {'r': r}\n")
    assert "import jax.numpy as jnp" in new and "numpy as np" not in new and "jnp.exp(-jnp.abs(" in new
    assert not check_source(new, CARTPOLE)
    new, _, _ = fix("from jax import numpy as jp\n\n" + HEAD + "    r = jp.square(next_state.x)\n"
                    "    return r, {'r': r}\n")
    assert "import jax.numpy as jnp" in new and "jnp.square" in new and not check_source(new, CARTPOLE)


def test_np_without_import_and_undefined_pi():
    new, names, _ = fix(HEAD + "    d = np.abs(next_state.theta) / pi\n    return -d, {'d': -d}\n")
    assert new.startswith("import jax.numpy as jnp\n")
    assert "jnp.abs(next_state.theta) / jnp.pi" in new
    assert "undefined pi -> jnp.pi" in names and not check_source(new, CARTPOLE)


def test_a_defined_pi_and_attribute_names_are_left_alone():
    src = "import jax.numpy as jnp\npi = 3.14\n\n" + HEAD + "    r = jnp.pi + pi + next_state.x\n    return r, {'r': r}\n"
    new, names, _ = fix(src)
    assert new == textwrap.dedent(src) and names == []


def test_torch_style_annotations_are_removed_with_their_import():
    src = ("import jax.numpy as jnp\nimport torch\nfrom typing import Dict, Tuple\n\n"
           "def compute_reward(state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor)"
           " -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:\n"
           "    upright: torch.Tensor = jnp.cos(next_state.theta)\n    return upright, {'upright': upright}\n")
    assert check_source(src, CARTPOLE)
    new, names, _ = fix(src)
    assert names == ["annotations removed"] and "torch" not in new
    assert "upright = jnp.cos(next_state.theta)" in new and not check_source(new, CARTPOLE)


def test_field_subscripts_and_unpacking_by_field_name():
    new, names, _ = fix("import jax.numpy as jnp\n\n" + HEAD + "    x, theta = next_state\n"
                        "    c = -jnp.abs(state['x'])\n    return c + jnp.cos(theta), {'c': c}\n")
    assert "x = next_state.x\n" in new and "theta = next_state.theta\n" in new and "state.x" in new
    assert len(names) == 2
    # names that are not fields are not guessed
    src = "import jax.numpy as jnp\n\n" + HEAD + "    pos, vel = next_state\n    return pos, {'p': pos}\n"
    assert fix(src)[1] == []


def test_python_control_flow_on_arrays_becomes_jnp():
    src = ("import jax.numpy as jnp\nimport math\n\n" + HEAD +
           "    if abs(next_state.theta) < 0.1 and abs(next_state.x) < 1.0:\n        bonus = 1.0\n"
           "    elif -0.2 < next_state.theta < 0.2:\n        bonus = 0.5\n    else:\n        bonus = 0.0\n"
           "    r = 1.0\n    if next_state.x > 2.0:\n        r -= 1.0\n"
           "    c = math.cos(next_state.theta)\n    t = float(c) if c > 0 else 0.0\n"
           "    d = min(abs(next_state.theta), 0.5)\n"
           "    return bonus + r + t + d, {'bonus': bonus, 'r': r, 't': t, 'd': d}\n")
    assert fix(src)[1] == []  # the names-only set leaves it: this code passes the gate
    new, names, _ = fix(src, arrays=True)
    for expected in ("bonus = jnp.where(jnp.logical_and(", "jnp.where(jnp.logical_and(-0.2 < next_state.theta, "
                     "next_state.theta < 0.2), 0.5, 0.0))", "r = jnp.where(next_state.x > 2.0, r - 1.0, r)",
                     "c = jnp.cos(next_state.theta)", "t = jnp.where(c > 0, jnp.float32(c), 0.0)",
                     "d = jnp.minimum(abs(next_state.theta), 0.5)"):
        assert expected in new, (expected, new)
    assert "if " not in new.replace(" if ", "") and not check_source(new, CARTPOLE)
    import jax

    from rewardsmith.validate.load import load_reward_fn

    schema = get_task("cartpole").schema
    s = schema.make_state({n: jax.numpy.float32(0.05) for n in schema.names})
    total, comps = jax.jit(load_reward_fn(new))(s, jax.numpy.int32(0), s)
    assert float(comps["bonus"]) == 1.0 and float(comps["r"]) == 1.0 and float(comps["d"]) == pytest.approx(0.05)


def test_a_python_list_given_to_a_jnp_reduction_becomes_an_array():
    """numpy takes ``np.min([a, b])``; jnp refuses the list (seen in a real answer, three times in a row
    after the error was fed back): the same values as one array, with the same meaning."""
    src = ("import jax.numpy as jnp\n\n" + HEAD + "    e = jnp.abs(next_state.theta)\n"
           "    near = jnp.exp(-e / 0.24) * jnp.min([1.0, e]) + jnp.linalg.norm((next_state.x, next_state.x_dot))\n"
           "    z = jnp.zeros((2,)).sum()\n    return near + z, {'near': near}\n")
    new, names, _ = fix(src, arrays=True)
    assert "jnp.min(jnp.array([1.0, e]))" in new and "jnp.linalg.norm(jnp.array((next_state.x, next_state.x_dot)))" in new
    assert "jnp.zeros((2,))" in new  # a shape is not a list of values
    assert set(names) == {"jnp.min([a, b]) -> jnp.min(jnp.array([a, b]))",
                          "jnp.linalg.norm([a, b]) -> jnp.linalg.norm(jnp.array([a, b]))"}
    import jax

    from rewardsmith.validate.load import load_reward_fn

    schema = get_task("cartpole").schema
    s = schema.make_state({n: jax.numpy.float32(0.5) for n in schema.names})
    _, comps = jax.jit(load_reward_fn(new))(s, jax.numpy.int32(0), s)
    assert float(comps["near"]) == pytest.approx(float(jax.numpy.exp(-0.5 / 0.24) * 0.5 + 0.5 * 2 ** 0.5), rel=1e-5)
    text = describe_trace_error(src, "tracing failed: line 5: TypeError: min requires ndarray or scalar arguments, "
                                     "got <class 'list'> at position 0.", CARTPOLE)
    assert "`near = jnp.exp(" in text and "jnp.minimum(a, b)" in text


def test_working_code_is_never_changed_and_unparseable_code_comes_back():
    good = ("import jax.numpy as jnp\n\n" + HEAD + "    r = jnp.where(next_state.x > 0, 1.0, 0.0) * jnp.pi\n"
            "    return r, {'r': r}\n")
    for arrays in (False, True):
        assert fix(good, arrays=arrays) == (good, [], "")
    assert fix("def compute_reward(:\n", arrays=True) == ("def compute_reward(:\n", [], "")


# -- error feedback -------------------------------------------------------------------------------------

def test_state_read_as_an_array_is_named_with_the_line():
    code = "import jax.numpy as jnp\n\n" + HEAD + "    r = state[1] - state[-1]\n    return r, {'r': r}\n"
    misuse = state_misuse(code)
    assert misuse and misuse[0].startswith("4:")
    from rewardsmith.propose.llm import describe_violations

    text = describe_violations(code, misuse, CARTPOLE)
    assert "`r = state[1] - state[-1]`" in text and "next_state.x" in text


def test_trace_errors_quote_the_failing_line_and_say_the_fix():
    code = "import jax.numpy as jnp\n\n" + HEAD + "    if next_state.theta > 0:\n        r = 1.0\n" \
           "    else:\n        r = 0.0\n    return r, {'r': r}\n"
    text = describe_trace_error(code, "tracing failed: line 4: TracerBoolConversionError: Attempted boolean "
                                      "conversion of traced array with shape bool[].", CARTPOLE)
    assert "`if next_state.theta > 0:`" in text and "jnp.where(cond, a, b)" in text
    text = describe_trace_error("a\nb\nc\n    r = next_state.angle\n", "tracing failed: line 4: AttributeError: "
                                "'State' object has no attribute 'angle'", CARTPOLE)
    assert "`r = next_state.angle`" in text and "x, x_dot, theta, theta_dot, step" in text


def test_a_code_block_cut_by_the_stop_sequence_still_counts():
    assert extract_code("idea\n```python\nimport jax.numpy as jnp\ndef compute_reward(state, action, next_state):\n"
                        "    return 1.0, {}") is not None
    assert extract_code("```python\nx = 1\n") is None


# -- settings -----------------------------------------------------------------------------------------

def test_local_settings_need_a_model_file_or_a_server():
    with pytest.raises(UserError, match="llm=local needs llm.model_path"):
        LLMSettings.from_cfg({"provider": "local"})
    s = LLMSettings.from_cfg(_local_yaml() | {"api_base": "http://127.0.0.1:1/v1"})
    assert s.model_id == "openai/local" and s.threads == 1 and s.concurrency == 1 and s.n_mode == "fanout"
    assert s.stop == ["\n```\n"] and s.seed_requests and s.max_tokens_per_call <= 800


def test_request_seeds_differ_by_draw_and_repeat_for_the_same_one():
    seeds = {request_seed(0, g, r, s, a) for g in range(3) for r in range(2) for s in range(4) for a in range(3)}
    assert len(seeds) == 72 and request_seed(1, 2, 0, 3, 1) == request_seed(1, 2, 0, 3, 1)


def _local_yaml() -> dict:
    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "conf" / "llm" / "local.yaml").read_text())
    return {k: v for k, v in cfg.items() if v is not None}


# -- the server's lifecycle, with a stand-in llama_cpp.server --------------------------------------------

FAKE_SERVER = r'''
"""A stand-in for `python -m llama_cpp.server`: an OpenAI-compatible server that logs each request."""
import argparse, json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
for a in ("--model", "--model_alias", "--host", "--port", "--n_ctx", "--n_threads", "--n_threads_batch",
          "--n_gpu_layers"):
    p.add_argument(a)
args = p.parse_args()
LOG = os.environ["FAKE_LLAMA_LOG"]
with open(LOG, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid()}) + "\n")
ANSWERS = [
    "```python\nimport jnp\n\ndef compute_reward(state, action, next_state):\n"
    "    r = jnp.exp(-jnp.abs(next_state.theta) / 0.1)\n    return r, {'upright': r}\n```\n",
    "```python\nimport jax.numpy as jnp\n\ndef compute_reward(state, action, next_state):\n"
    "    r = state[2]\n    return r, {'r': r}\n",
]
GOOD = ("```python\nimport jax.numpy as jnp\n\ndef compute_reward(state, action, next_state):\n"
        "    r = jnp.exp(-jnp.abs(next_state.theta) / {t})\n    return r, {{'upright': r}}\n")
count = [0]

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _send(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"object": "list", "data": [{"id": args.model_alias, "object": "model"}]})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with open(LOG, "a") as f:
            f.write(json.dumps({"body": body}) + "\n")
        i = count[0]
        count[0] += 1
        fixing = any("could not be used" in (m.get("content") or "") for m in body["messages"])
        text = GOOD.format(t=0.05 + 0.01 * i) if fixing or i >= len(ANSWERS) else ANSWERS[i]
        self._send({"id": "x", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 60, "total_tokens": 360}})

ThreadingHTTPServer((args.host, int(args.port)), H).serve_forever()
'''


@pytest.fixture
def fake_llama(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg" / "llama_cpp"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "server.py").write_text(FAKE_SERVER)
    log = tmp_path / "fake_llama.jsonl"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "fakepkg"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_LLAMA_LOG", str(log))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    return gguf, log


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has ended
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_run_starts_the_server_repairs_and_feeds_back_then_stops_it(tmp_path, fake_llama):
    gguf, log = fake_llama
    llm = _local_yaml() | {"model_path": str(gguf), "cache_dir": str(tmp_path / "cache"), "threads": 1}
    cfg = tiny_cfg(llm=llm, iterations=1, samples=3, baselines=False)
    summary = run(cfg, tmp_path / "run")
    entries = _log(log)
    start = entries[0]
    argv = start["argv"]
    assert argv[argv.index("--n_threads") + 1] == "1" and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--n_gpu_layers") + 1] in ("0", "-1")
    assert not _alive(start["pid"])  # stopped with the run
    bodies = [e["body"] for e in entries if "body" in e]
    assert all(b["stop"] == ["\n```\n"] and b["max_tokens"] == llm["max_tokens_per_call"] for b in bodies)
    assert len({b["seed"] for b in bodies}) == len(bodies)
    assert summary["status"] == "complete"
    cands = [json.loads(p.read_text()) for p in (tmp_path / "run").rglob("candidate.json")]
    assert sorted(c["status"] for c in cands) == ["trained"] * 3
    repaired = [c for c in cands if c["meta"].get("repairs")]
    assert len(repaired) == 1 and repaired[0]["meta"]["repairs"] == ["import jnp -> import jax.numpy as jnp"]
    assert "+import jax.numpy as jnp" in repaired[0]["meta"]["repair_diff"]
    fed_back = [c for c in cands if len(c["meta"]["attempts"]) == 2]
    assert len(fed_back) == 1 and "`r = state[2]`" in fed_back[0]["meta"]["attempts"][0]["error"]
    fix_request = next(b for b in bodies if any("could not be used" in m["content"] for m in b["messages"]))
    assert "it is not an array" in fix_request["messages"][-1]["content"]
    per_gen = summary["per_generation_best"][0]
    assert per_gen["propose_s"] > 0 and per_gen["train_s"] > 0
    assert summary["llm"]["tokens_per_s"] > 0 and summary["llm"]["calls"] == 4
    assert "llama.cpp server (model.gguf, 1 thread(s)" in summary["proposer"]


def test_the_server_dies_with_a_run_that_is_killed(tmp_path, fake_llama):
    gguf, log = fake_llama
    code = ("import os, sys, time\nfrom rewardsmith.propose.local_server import LocalServer\n"
            f"s = LocalServer({str(gguf)!r})\nprint(s.start(), flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        pid = _log(log)[0]["pid"]
        assert _alive(pid)
        proc.send_signal(signal.SIGKILL)  # no atexit, no finally: the kernel tells the server
        proc.wait()
        deadline = time.time() + 10
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_server_that_cannot_start_is_one_line(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(UserError, match="the llama.cpp server exited at start"):
        make_proposer(_local_yaml() | {"model_path": str(gguf), "server_python": sys.executable,
                                       "server_start_timeout_s": 30}, run_dir=tmp_path / "run")
    with pytest.raises(UserError, match="no such GGUF file"):
        make_proposer(_local_yaml() | {"model_path": str(tmp_path / "missing.gguf")})


# -- the real model (where its GGUF file is present) -----------------------------------------------------

DEV = Path.home() / ".cache" / "rewardsmith-dev" / "llama"
GGUF = Path(os.environ.get("REWARDSMITH_LOCAL_GGUF", DEV / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
SERVER_PYTHON = os.environ.get("REWARDSMITH_LOCAL_PYTHON", str(DEV / "venv" / "bin" / "python"))


def _real_model_or_skip(request):
    if "local_llm" not in (request.config.getoption("-m") or ""):
        pytest.skip("the real model runs for minutes: select it with -m local_llm")
    if not GGUF.is_file() or not Path(SERVER_PYTHON).is_file():
        pytest.skip(f"no real local model: {GGUF} (REWARDSMITH_LOCAL_GGUF) or {SERVER_PYTHON} "
                    "(REWARDSMITH_LOCAL_PYTHON) missing")


@pytest.mark.local_llm
@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
def test_real_model_answers_train(tmp_path, task, request):
    """Qwen2.5-Coder-1.5B on 1 thread: most samples of generation 0 reach training (gate and trace).
    Run with ``pytest -m local_llm tests/test_llm_local.py`` (about 3 minutes a task on 2 shared cores)."""
    _real_model_or_skip(request)
    prop = make_proposer(_local_yaml() | {"model_path": str(GGUF), "server_python": SERVER_PYTHON,
                                          "model": "qwen2.5-coder-1.5b-instruct", "cache": "off"},
                         run_dir=tmp_path / "run")
    try:
        props = prop.propose(ProposalContext(task=get_task(task), generation=0, k=4, history=[], seed=0))
        pid = prop.server.proc.pid
    finally:
        prop.close()
    assert not _alive(pid)
    usable = [p for p in props if p.source and not p.provider_error and not p.error
              and not check_source(p.source, get_task(task).schema.names)]
    assert len(usable) >= 3, [p.meta.get("attempts") for p in props]
    assert prop.usage()["tokens_per_s"] > 5


def test_if_blocks_of_several_assignments_pick_with_where_and_zero_where_unbound():
    src = ("import jax.numpy as jnp\n\n" + HEAD + "    total = 0.0\n"
           "    if next_state.x > 2.0:\n        over = next_state.x - 2.0\n        total += over * 0.5\n"
           "    else:\n        total -= 1.0\n"
           "    return total, {'over': over, 'total': total}\n")
    new, names, _ = fix(src, arrays=True)
    assert names == ["if on an array -> jnp.where"] and "if " not in new
    assert "cond_1 = next_state.x > 2.0" in new and "over = jnp.where(cond_1, next_state.x - 2.0, 0.0)" in new
    import jax

    from rewardsmith.validate.load import load_reward_fn

    schema = get_task("cartpole").schema
    fn = jax.jit(load_reward_fn(new))
    for x, total, over in ((3.0, 0.5, 1.0), (0.0, -1.0, 0.0)):
        s = schema.make_state({n: jax.numpy.float32(x if n == "x" else 0.0) for n in schema.names})
        t, comps = fn(s, jax.numpy.int32(0), s)
        assert float(t) == pytest.approx(total) and float(comps["over"]) == pytest.approx(over)


def test_clip_keywords_and_bare_field_names():
    src = "import jax.numpy as jnp\n\n" + HEAD + "    r = jnp.clip(theta, min_val=-1.0, max_val=1.0)\n    return r, {'r': r}\n"
    new, names, _ = fix(src)
    assert "next_state.theta" in new and "a field read as a bare name -> next_state.field" in names
    new, names, _ = fix(new, arrays=True)
    assert "jnp.clip(next_state.theta, -1.0, 1.0)" in new and names == ["jnp.clip keywords -> positional"]


@pytest.mark.parametrize("task", ["cartpole", "pendulum", "mountain_car_continuous", "hopper_jump"])
def test_the_worked_example_uses_the_tasks_own_fields_and_runs(task):
    from rewardsmith.propose.llm import schema_example
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.trace import trace_check

    schema = get_task(task).schema
    text = schema_example(schema)
    code = extract_code(text)
    assert code and "not a reward for this task" in text
    assert not check_source(code, schema.names)
    assert trace_check(code, "example", schema, MAX_COMPONENTS)[0].ok


def test_every_hint_renders():
    from rewardsmith.propose.llm import _HINTS, _hint

    for _, hint in _HINTS:
        assert hint.format(field="x", fields="x, theta")
    assert "jnp.where" in _hint("TracerBoolConversionError: ...", CARTPOLE)
    text = describe_trace_error("a\n    return total\n", "compute_reward must return (total_reward, components_dict); "
                                "got Array", CARTPOLE)
    assert 'return total, {"name": value, ...}' in text
