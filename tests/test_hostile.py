"""Hostile candidate code: file writes reached through jax.numpy, CPU and memory bombs, inputs that
crash a naive checker, and bad settings. Each is rejected with a one-line reason and recorded as a
candidate; the good candidate of the same generation still trains, within seconds, not at the
worker timeout; ``load_reward`` executes nothing from a rejected file."""

import json
import math
import random
import re
import time
from pathlib import Path

import pytest

from rewardsmith.errors import UserError
from rewardsmith.evolve import loop, run
from rewardsmith import load_reward
from rewardsmith.propose.base import Proposal, Proposer
from rewardsmith.tasks import get_task
from rewardsmith.validate.isolate import CheckLimits, check_isolated
from rewardsmith.validate.static import Violation, check_source

from conftest import tiny_cfg
from test_cli import rewardsmith_cmd

CARTPOLE_FIELDS = get_task("cartpole").schema.names
HEADER = "import jax\nimport jax.numpy as jnp\nimport math\n"
LINE = re.compile(r"^\d+:\d+: \S[^\n]*$")


def reward(body: str, module: str = "") -> str:
    lines = "\n".join("    " + ln for ln in body.strip().splitlines())
    return f"{HEADER}{module}\n\ndef compute_reward(state, action, next_state):\n{lines}\n    return 0.0, {{}}\n"


def file_writes(target: str) -> dict[str, str]:
    """Several spellings of writing ``target`` through numpy's scalar classes reached from jnp."""
    t = json.dumps(target)
    return {
        "generic.dump": reward(f"jnp.generic.dump(jnp.float32.dtype.type(1), {t})"),
        "scalar.tofile": reward(f"jnp.float32.dtype.type(2).tofile({t})"),
        "bool_.dump": reward(f"jnp.bool_.dtype.type(1).dump({t})"),
        "unsignedinteger": reward(f"jnp.unsignedinteger.dump(jnp.uint8.dtype.type(1), {t})"),
        "alias": reward(f"cls = jnp.float32\ncls.dtype.type(1).dump({t})"),
        "from-import": "from jax.numpy import generic\n" + reward(f"generic.dump(jnp.float32(1), {t})"),
        "module constant": reward("x = 0.0", module=f"W = jnp.generic.dump(jnp.float32.dtype.type(1), {t})"),
        "full path": reward(f"jax.numpy.number.tofile(jnp.int32.dtype.type(1), {t})"),
        "finfo": reward(f"jnp.finfo(jnp.float32).dtype.type(1).dump({t})"),
        "save": reward(f"jnp.save({t}, next_state.x)"),
    }


BOMBS = {
    "power tower const": (reward("x = 0.0", module="BIG = 10 ** 10 ** 10"), "exponent"),
    "power tower inline": (reward("x = 10**10**10"), "exponent"),
    "power tower spaced": (reward("x = 9 ** (9 ** 9)"), "exponent"),
    "power tower names": (reward("x = A ** B", module="A = 10\nB = 10 ** 10"), "exponent"),
    "power chain": (reward("x = 2 ** 2 ** 2 ** 2 ** 2 ** 2"), "exponent"),
    "power of big": (reward("x = (10 ** 30) ** 30"), "grows past"),
    "shift": (reward("x = 1 << 10 ** 10"), "shift"),
    "aug power": (reward("x = next_state.x\nx **= 10 ** 10"), "exponent"),
    "string repeat const": (reward("x = 0.0", module="S = 'a' * 10 ** 11"), "repeating a sequence"),
    "string repeat inline": (reward("s = 'a' * 10**11"), "repeating a sequence"),
    "string repeat reversed": (reward("s = 10**11 * 'ab'"), "repeating a sequence"),
    "list repeat const": (reward("x = 0.0", module="L = [0] * 10 ** 11"), "repeating a sequence"),
    "list repeat inline": (reward("v = [0.0] * 100000000000"), "repeating a sequence"),
    "tuple repeat twice": (reward("v = (0,) * 5000 * 5000"), "repeating a sequence"),
    "list repeat name": (reward("v = [0] * N", module="N = 10 ** 11"), "repeating a sequence"),
    "concat growth": (reward("x = 0.0", module="A = 'x' * 9000\nB = A + A"), "a sequence of"),
    "sum of lists": (reward("v = sum([[0]] * 100000, [])"), "repeating a sequence"),
    "huge range literal": (reward("v = list(range(" + "9" * 30 + "))"), "range() of"),
    "huge range loop": (reward("for i in range(" + "1" * 30 + "):\n    pass"), "at most 256"),
    "range power": (reward("v = sum(range(10 ** 12))"), "range() of"),
    "long literal": (reward("x = " + "7" * 60), "integer literal of 60 digits"),
    "or chain": (reward("x = " + " or ".join(["next_state.x"] * 1000)), "a chain of 1000 operands"),
    "and chain": (reward("x = " + " and ".join(["1"] * 1000)), "a chain of 1000 operands"),
    "compare chain": (reward("x = " + " < ".join(["1"] * 500)), "a chain of 500 operands"),
    "string chain": (reward("s = " + " ".join(["'a'"] * 1000)), "adjacent string literals"),
    "string chain lines": (reward("s = (" + "\n".join(["'a'"] * 300) + ")"), "adjacent string literals"),
    "format width": (reward("s = f'{next_state.x:>{10 ** 9}}'"), "format specs"),
}

# Bombs the gate cannot see (they depend on a value it cannot evaluate): stopped by each candidate's
# CPU and memory limits while it is loaded and traced, in a process of its own.
RUNTIME_BOMBS = {
    "cpu": (reward("s = 0\nfor i in range(256):\n    for j in range(256):\n        for k in range(256):\n"
                   "            for m in range(256):\n                s = s + 1"), "CPU limit"),
    "big int": (reward("n = len(next_state) + 7\nm = ((((n ** 64) ** 64) ** 64) ** 64) ** 64"), "CPU limit"),
    "memory": (reward("v = [0.0] * (len(next_state) * 10 ** 10)"), "memory"),
    "memory str": (reward("s = 'a' * (len(next_state) * 10 ** 11)"), "memory"),
}


def _assert_one_line(violations: list[Violation]) -> None:
    assert violations
    for v in violations:
        assert LINE.match(str(v)), str(v)


@pytest.mark.parametrize("name", sorted(file_writes("x")))
def test_gate_refuses_file_writes_reached_through_jnp(name, tmp_path):
    target = tmp_path / "written"
    violations = check_source(file_writes(str(target))[name], CARTPOLE_FIELDS)
    _assert_one_line(violations)
    assert any("not allowed" in v.message for v in violations), violations
    assert not target.exists()


def test_the_file_write_payload_is_real(tmp_path):
    """The payloads above do write files when run as plain Python: the gate is what stops them."""
    import jax.numpy as jnp

    target = tmp_path / "written"
    jnp.generic.dump(jnp.float32.dtype.type(1), str(target))
    assert target.stat().st_size > 0


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_gate_refuses_bombs_with_a_reason(name):
    source, expected = BOMBS[name]
    t0 = time.perf_counter()
    violations = check_source(source, CARTPOLE_FIELDS)
    assert time.perf_counter() - t0 < 5
    _assert_one_line(violations)
    assert any(expected in v.message for v in violations), [str(v) for v in violations]


def _idiom(body: str, before: str = "", sig: str = "def compute_reward(state, action, next_state):") -> str:
    lines = "\n".join("    " + ln for ln in body.strip().splitlines())
    return (before + "\n\n" if before else "") + sig + "\n" + lines + "\n"


_R = "r = 1.0 - jnp.abs(next_state.theta)\nreturn r, {'upright': r}"
# One harmless idiom each, as LLMs write them every day (the 17 the gate used to refuse).
IDIOMS = {
    "return annotation Tuple": _idiom(_R, "from typing import Dict, Tuple",
                                      "def compute_reward(state, action, next_state) -> Tuple[jnp.ndarray, "
                                      "Dict[str, jnp.ndarray]]:"),
    "parameter annotations": _idiom(_R, "from typing import Any",
                                    "def compute_reward(state: Any, action: jnp.ndarray, next_state: Any):"),
    "variable annotation": _idiom("r: float = 1.0 - jnp.abs(next_state.theta)\nreturn r, {'upright': r}"),
    "future annotations": "from __future__ import annotations\n" + HEADER + _idiom(
        _R, sig="def compute_reward(state, action, next_state) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:"),
    "jit decorator": _idiom(_R, sig="@jax.jit\ndef compute_reward(state, action, next_state):"),
    "items": _idiom("c = {'a': -jnp.abs(next_state.x), 'b': -jnp.abs(next_state.theta)}\ntotal = 0.0\n"
                    "for k, v in c.items():\n    total = total + v\nreturn total, c"),
    "values": _idiom("c = {'a': -jnp.abs(next_state.x)}\ntotal = 0.0\nfor v in c.values():\n"
                     "    total = total + v\nreturn total, c"),
    "keys": _idiom("c = {'a': -jnp.abs(next_state.x)}\nout = {}\nfor k in c.keys():\n    out[k] = c[k]\n"
                   "return out['a'], out"),
    "copy": _idiom("c = {'a': -jnp.abs(next_state.x)}\nd = c.copy()\nv = next_state.theta.copy()\n"
                   "return d['a'] - jnp.abs(v), d"),
    "literal default": _idiom("r = helper(jnp.abs(next_state.theta))\nreturn r, {'r': r}",
                              "def helper(x, scale=0.5, mode='exp', w=(1.0, 2.0)):\n    return jnp.exp(-x / scale) * w[0]"),
    "jnp.array constant": _idiom("r = W[0] * jnp.cos(next_state.theta) - W[1] * jnp.abs(next_state.x)\n"
                                 "return r, {'r': r}", "W = jnp.array([1.0, 0.1])"),
    "math constant": _idiom("r = jnp.cos(next_state.theta) - jnp.abs(next_state.theta) * DEG\nreturn r, {'r': r}",
                            "DEG = math.pi / 180"),
    "range len action": _idiom("a = jnp.atleast_1d(action)  # CartPole's action is a scalar\ntotal = 1.0\n"
                               "for i in range(len(a)):\n    total = total - 0.01 * a[i] ** 2\n"
                               "return total, {'t': total}"),
    "sum genexp": _idiom("parts = (next_state.x, next_state.theta)\nr = -sum(jnp.abs(p) for p in parts)\n"
                         "return r, {'r': r}"),
    "f-string names": _idiom("c = {}\nfor i, v in enumerate((next_state.x, next_state.theta)):\n"
                             "    c[f'term_{i}'] = -jnp.abs(v)\nreturn c['term_0'] + c['term_1'], c"),
    "zip": _idiom("r = 0.0\nfor w, v in zip((1.0, 2.0), (next_state.x, next_state.theta)):\n"
                  "    r = r - w * jnp.abs(v)\nreturn r, {'r': r}"),
    "docstring and comments": '"""Keep the pole up."""\n' + HEADER + _idiom(
        '"""Upright bonus."""\n# near 1 when upright\n' + _R),
}
assert len(IDIOMS) == 17


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_gate_accepts_harmless_idioms(name):
    assert check_source(_with_header(IDIOMS[name]), CARTPOLE_FIELDS) == []


def _with_header(src: str) -> str:
    return src if "import jax.numpy" in src else HEADER + "\n" + src


def test_idioms_pass_the_gate_and_the_checker_and_train(tmp_path, monkeypatch):
    """All 17 idioms in one real generation: each passes the gate and the isolated trace check, and trains."""
    sources = [_with_header(src) for src in IDIOMS.values()]
    monkeypatch.setattr(loop, "make_proposer", lambda *a, **k: _FixedProposer(list(sources)))
    summary = run(tiny_cfg(iterations=1, samples=len(sources), baselines=False, max_generation_retries=0),
                  tmp_path / "run")
    records = {json.loads(p.read_text())["source"]: json.loads(p.read_text())
               for p in (tmp_path / "run").rglob("candidate.json")}
    assert summary["status"] == "complete" and len(records) == 17
    for name, src in zip(IDIOMS, sources):
        rec = records[src]
        assert rec["status"] == "trained", (name, rec["status"], rec["validation"])
        assert rec["fitness"] is not None and math.isfinite(rec["fitness"]), name


TORCH = {  # a PyTorch or Isaac Gym idiom -> the fix the gate's answer names
    "clamp": ("r = next_state.theta.clamp(-1.0, 1.0)", "attribute 'clamp' is not allowed: use jnp.clip(x, low, high)"),
    "norm dim": ("r = -jnp.linalg.norm(action, dim=-1)", "keyword dim= is PyTorch's; JAX uses axis="),
    "norm method": ("r = -action.norm()", "attribute 'norm' is not allowed: use jnp.linalg.norm(x, axis=...)"),
    "unsqueeze": ("r = jnp.sum(action.unsqueeze(-1))", "use x[..., None] or jnp.expand_dims(x, axis)"),
    "keepdim": ("r = jnp.sum(action, keepdim=True)", "keyword keepdim= is PyTorch's; JAX uses keepdims="),
    "torch function": ("r = torch.clamp(next_state.theta, -1.0, 1.0)", "unknown name 'torch': PyTorch is not available"),
    "detach": ("r = next_state.theta.detach()", "attribute 'detach' is not allowed: not needed in JAX"),
}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_pytorch_idioms_are_answered_with_the_fix(name):
    body, expected = TORCH[name]
    violations = check_source(reward(body + "\nr = r * 1.0"), CARTPOLE_FIELDS)
    assert any(expected in v.message for v in violations), [str(v) for v in violations]


def test_torch_imports_and_jit_script_are_answered_with_the_fix():
    src = ("import torch\n\n\n@torch.jit.script\ndef compute_reward(state, action, next_state):\n"
           "    r = torch.cat([action, action]).sum() + torch.exp(next_state.x)\n    return r, {'r': r}\n")
    msgs = [v.message for v in check_source(src, CARTPOLE_FIELDS)]
    assert any(m.startswith("import of 'torch' is not allowed: PyTorch is not available here") for m in msgs), msgs
    assert "@torch.jit.script is not needed: the reward is traced and compiled with jax.jit already; " \
           "remove the decorator" in msgs
    assert "torch.cat is not allowed: use jnp.concatenate" in msgs
    assert "torch.exp is not allowed: use jnp.exp" in msgs


def test_isaac_names_are_answered_with_the_field_to_read():
    # the ant reads up_proj and heading_proj directly; a schema with only the vectors gets the hint
    ant = get_task("ant").schema.names
    fields = tuple(n for n in ant if n not in ("up_proj", "heading_proj"))
    src = (HEADER + "\n\ndef compute_reward(state, action, next_state):\n"
           "    r = next_state.potentials - next_state.prev_potentials + next_state.up_proj + next_state.heading_proj\n"
           "    return r, {'r': r}\n")
    assert [v.message for v in check_source(src, ant)] == [
        "next_state has no field 'prev_potentials': use state.potentials (before the step) and next_state.potentials (after)"]
    msgs = [v.message for v in check_source(src, fields)]
    assert any("no field 'prev_potentials': use state.potentials" in m for m in msgs), msgs
    assert any("no field 'up_proj': use next_state.up_vec[2]" in m for m in msgs), msgs
    assert any("no field 'heading_proj': use next_state.heading_vec[0]" in m for m in msgs), msgs
    # where the schema lacks the field a hint would name, the answer lists the fields instead
    msgs = [v.message for v in check_source(src.replace("next_state.potentials - ", ""), CARTPOLE_FIELDS)]
    assert any("no field 'up_proj'; fields:" in m for m in msgs), msgs
    eureka = (HEADER + "\n\ndef compute_reward(root_states, actions, dt):\n    r = root_states[7]\n"
              "    return r, {'r': r}\n")
    msgs = [v.message for v in check_source(eureka, fields)]
    assert any("an Eureka-style signature: read those as fields, e.g. next_state.root_states" in m for m in msgs)


# -- the checker itself never raises ---------------------------------------------------------------

def _generated_sources(n: int, seed: int = 1234):
    rng = random.Random(seed)
    base = reward("r = jnp.exp(-jnp.abs(next_state.theta)) - 0.1 * jnp.square(state.x)")
    pieces = ["(", ")", "[", "]", "{", "}", ":", ",", ".", "**", "*", " ", "\n", "\t", "'", '"', "f'", "0",
              "9" * 45, "jnp.", "__", "lambda", " or ", " and ", "<", "\\", "#", "\x00", "ｏｐｅｎ", "é", "\u202e",
              "\ud800", "@", "async ", "yield", "1e999", "0x", "=", "not ", "if ", "else "]
    for i in range(n):
        kind = i % 8
        if kind == 0:  # random bytes decoded
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).decode("latin-1")
        elif kind == 1:  # random unicode
            yield "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(1, 200)))
        elif kind == 2:  # mutations of a valid reward
            s = list(base)
            for _ in range(rng.randrange(1, 6)):
                pos = rng.randrange(len(s))
                if rng.random() < 0.5:
                    s.insert(pos, rng.choice(pieces))
                else:
                    del s[pos]
            yield "".join(s)
        elif kind == 3:  # deep nesting of every bracket kind
            d = rng.randrange(10, 4000)
            o, c = rng.choice([("(", ")"), ("[", "]"), ("{", "}"), ("abs(", ")"), ("-(", ")"), ("not (", ")")])
            yield reward("x = " + o * d + "1" + c * d)
        elif kind == 4:  # wide chains of every operator
            w = rng.randrange(10, 3000)
            op = rng.choice([" or ", " and ", " + ", " * ", " ** ", " < ", " == ", " ", ", ", " if 1 else "])
            atom = rng.choice(["1", "'a'", "next_state.x", "x", "True", "9" * 20])
            yield reward("x = " + op.join([atom] * w))
        elif kind == 5:  # random token soup
            yield "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 400)))
        elif kind == 6:  # deep block nesting
            d = rng.randrange(5, 200)
            body = "".join("    " * j + "if x:\n" for j in range(d)) + "    " * d + "pass\n"
            yield reward("x = 1\n" + body)
        else:  # big literals and repeats
            a, b = rng.randrange(1, 10 ** rng.randrange(1, 50)), rng.randrange(0, 10 ** rng.randrange(1, 15))
            op = rng.choice(["**", "*", "<<", "+", "//", "%"])
            left = rng.choice([str(a), "'ab'", "[0]", "(1,)", "x"])
            yield reward(f"v = {left} {op} {b}")


def test_generated_inputs_never_raise_out_of_the_checker():
    count = 0
    t0 = time.perf_counter()
    for src in _generated_sources(1200):
        out = check_source(src, CARTPOLE_FIELDS)
        assert isinstance(out, list) and all(isinstance(v, Violation) for v in out)
        for v in out:
            assert "\n" not in v.message
        count += 1
    assert count >= 1000
    assert time.perf_counter() - t0 < 240


# -- a generation with bombs, through the loop ----------------------------------------------------------

class _FixedProposer(Proposer):
    """Proposes the same sources once (what an LLM might answer); nothing after."""

    label = "fixed test proposer"
    origin = "test:fixed"

    def __init__(self, sources: list[str]):
        self.sources = sources

    def propose(self, ctx):
        out, self.sources = [Proposal(source=s) for s in self.sources], []
        return out


def test_bombs_fail_alone_and_the_good_candidate_trains(tmp_path, monkeypatch):
    task = get_task("cartpole")
    target = tmp_path / "written"
    hostile = {**{f"write {k}": (v, "not allowed") for k, v in file_writes(str(target)).items()},
               **{k: BOMBS[k] for k in ("power tower const", "power tower inline", "string repeat inline",
                                        "list repeat const", "or chain", "huge range literal", "string chain")},
               **RUNTIME_BOMBS}
    sources = [task.human_reward] + [src for src, _ in hostile.values()]
    monkeypatch.setattr(loop, "make_proposer", lambda *a, **k: _FixedProposer(list(sources)))
    cfg = tiny_cfg(iterations=1, samples=len(sources), baselines=False, check_cpu_s=3, check_memory_mb=1024,
                   max_generation_retries=0, worker_timeout_s=900)
    t0 = time.perf_counter()
    summary = run(cfg, tmp_path / "run")
    wall = time.perf_counter() - t0
    records = {json.loads(p.read_text())["source"]: json.loads(p.read_text())
               for p in (tmp_path / "run").rglob("candidate.json")}
    assert len(records) == len(sources)  # every answer is a candidate record
    good = records[task.human_reward]
    assert good["status"] == "trained" and good["fitness"] is not None
    assert summary["best_candidate_id"] == good["id"]
    for name, (src, expected) in hostile.items():
        rec = records[src]
        reason = rec["validation"]["reason"]
        assert rec["status"] == "rejected", (name, rec["status"], reason)
        assert expected in reason and "\n" not in reason, (name, reason)
    assert not target.exists()
    gen = json.loads((tmp_path / "run" / "generations" / "gen_00" / "generation.json").read_text())
    assert gen["worker_error"] == ""
    assert wall < 180, wall  # seconds (3 s CPU limit per bomb), not the 900 s worker timeout


# -- load_reward ----------------------------------------------------------------------------------------

def test_load_reward_runs_nothing_from_a_hostile_file(tmp_path):
    target = tmp_path / "written"
    files = {**{f"write_{i}": src for i, src in enumerate(file_writes(str(target)).values())},
             "bomb_const": BOMBS["power tower const"][0], "bomb_list": BOMBS["list repeat const"][0],
             "bomb_cpu": RUNTIME_BOMBS["cpu"][0], "bomb_memory": RUNTIME_BOMBS["memory"][0]}
    for name, src in files.items():
        path = tmp_path / f"{name}.py"
        path.write_text("# task: cartpole\n" + src)
        t0 = time.perf_counter()
        with pytest.raises(UserError) as e:
            load_reward(path, limits=CheckLimits(cpu_s=2, memory_mb=1024))
        msg = str(e.value)
        assert "\n" not in msg and ("static gate" in msg or "trace check" in msg), msg
        if name.startswith("bomb_cpu"):
            assert "CPU limit" in msg
        if name.startswith("bomb_memory"):
            assert "memory" in msg
        assert time.perf_counter() - t0 < 60
    assert not target.exists()


def test_limits_hold_even_without_the_gate(tmp_path):
    """The isolated check does not rely on the gate: a file write there is stopped by its file-size limit."""
    from rewardsmith.contract import MAX_COMPONENTS

    task = get_task("cartpole")
    target = tmp_path / "written"
    src = reward(f"jnp.generic.dump(jnp.float32.dtype.type(1), {json.dumps(str(target))})")
    res = check_isolated([("w", src)], task.schema.to_json(), MAX_COMPONENTS, CheckLimits(cpu_s=5))
    assert not res["w"].ok and "write a file" in res["w"].reason, res["w"].reason
    assert not target.exists() or target.stat().st_size == 0  # created empty at most: nothing written


# -- settings and exit codes --------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("worker_timeout_s", 0), ("worker_timeout_s", -5), ("worker_timeout_s", "abc"),
                                       ("worker_timeout_s", float("nan")), ("check_cpu_s", 0),
                                       ("check_memory_mb", 1), ("check_memory_mb", "lots"),
                                       ("max_generation_retries", -1), ("seed", "x")])
def test_bad_settings_are_refused_before_any_work(tmp_path, key, value):
    with pytest.raises(UserError, match=key):
        run(tiny_cfg(**{key: value}), tmp_path / "run")
    assert not (tmp_path / "run").exists() or not list(Path(tmp_path / "run").iterdir())


def test_cli_run_where_nothing_trained_exits_non_zero(tmp_path):
    r = rewardsmith_cmd("iterations=1", "samples=2", "seeds=1", "baselines=false", "final_eval=false",
                        "max_generation_retries=0", "worker_timeout_s=0.5", "live=false", cwd=tmp_path)
    assert r.returncode == 3, (r.returncode, r.stderr[-2000:])
    (line,) = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("rewardsmith:")]
    assert line.startswith("rewardsmith: error: no candidate trained (2 failed)")
    assert "no candidate trained" in r.stdout
    (summary,) = list((tmp_path / "outputs" / "cartpole").glob("*/summary.json"))
    assert json.loads(summary.read_text())["status"] == "no_candidate_trained"
