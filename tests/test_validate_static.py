import re

import pytest

from rewardsmith.propose.base import ProposalContext
from rewardsmith.propose.offline import OfflineProposer
from rewardsmith.tasks import get_task, list_tasks
from rewardsmith.validate.static import check_source

FIELDS = ("x", "theta")
HEADER = "import jax\nimport jax.numpy as jnp\nimport math\n"


def fn(body: str, sig: str = "state, action, next_state") -> str:
    lines = "\n".join("    " + ln for ln in body.strip().splitlines())
    return f"{HEADER}\n\ndef compute_reward({sig}):\n{lines}\n"


GOOD = fn("""
r = jnp.exp(-jnp.abs(next_state.theta) / 0.2) - 0.1 * jnp.square(state.x)
r = r + jax.nn.relu(next_state.x) * math.pi + jax.lax.clamp(-1.0, next_state.x, 1.0)
parts = [next_state.x * k for k in (1.0, 2.0)]
for i in range(3):
    r = r + 0.0 * i
v = jnp.zeros(3).at[0].set(1.0).sum()
return r + v + parts[0], {"upright": r, "extra": v}
""")


def test_accepts_good_code():
    assert check_source(GOOD, FIELDS) == []


@pytest.mark.parametrize("name", list_tasks())
def test_accepts_every_builtin_baseline(name):
    task = get_task(name)
    assert check_source(task.human_reward, task.schema.names) == []
    assert check_source(task.sparse_reward, task.schema.names) == []


def test_accepts_offline_proposals():
    task = get_task("pendulum")
    props = OfflineProposer().propose(ProposalContext(task=task, generation=0, k=8, history=[]))
    assert len(props) == 8
    for p in props:
        assert check_source(p.source, task.schema.names) == [], p.source


REJECT = {
    "import os": (HEADER + "import os\n\ndef compute_reward(state, action, next_state):\n    return 0.0, {}\n",
                  "import of 'os'"),
    "exec": (fn("exec('1')\nreturn 0.0, {}"), "'exec' is not allowed"),
    "eval": (fn("return eval('1'), {}"), "'eval' is not allowed"),
    "open": (fn("open('/etc/passwd')\nreturn 0.0, {}"), "'open' is not allowed"),
    "getattr": (fn("return getattr(state, 'x'), {}"), "'getattr' is not allowed"),
    "format dunder": (fn("s = '{0.__class__}'.format(state)\nreturn 0.0, {}"), "attribute 'format'"),
    "dunder attr": (fn("return state.__class__, {}"), "dunder attribute '__class__'"),
    "dunder name": (fn("return __builtins__, {}"), "dunder name '__builtins__'"),
    "generator frame": (fn("g = [1 for _ in (1,)]\nreturn g.gi_frame.f_back, {}"), "attribute 'gi_frame'"),
    "jax callback": (fn("jax.debug.callback(abs, 1)\nreturn 0.0, {}"), "jax.debug.callback is not allowed"),
    "pure_callback": (fn("return jax.pure_callback(abs, 1), {}"), "jax.pure_callback is not allowed"),
    "jnp io": (fn("return jnp.load('x.npy'), {}"), "jax.numpy.load is not allowed"),
    "array tofile": (fn("next_state.x.tofile('x')\nreturn 0.0, {}"), "attribute 'tofile'"),
    "decorator": (HEADER + "\n@jax.vmap\ndef compute_reward(state, action, next_state):\n    return 0.0, {}\n",
                  "decorators are not allowed"),
    "decorator call": (HEADER + "\n@jax.jit(static_argnums=0)\ndef compute_reward(state, action, next_state):\n"
                       "    return 0.0, {}\n", "decorators are not allowed"),
    "default arg": (HEADER + "\ndef helper(v, k=print('x')):\n    return v\n\n"
                    "def compute_reward(state, action, next_state):\n    return 0.0, {}\n",
                    "default argument for 'k'"),
    "nfkc identifier": (fn("return ｏｐｅｎ('x'), {}"), "must be ASCII"),
    "while": (fn("while True:\n    pass\nreturn 0.0, {}"), "while loops are not allowed"),
    "class": (HEADER + "\nclass A:\n    pass\n\ndef compute_reward(state, action, next_state):\n    return 0.0, {}\n",
              "class definitions are not allowed"),
    "global": (fn("global X\nreturn 0.0, {}"), "`global` is not allowed"),
    "yield": (fn("yield 1"), "generators (`yield`)"),
    "lambda": (fn("f = lambda: 1\nreturn 0.0, {}"), "lambda is not allowed"),
    "f-string width": (fn("s = f'{state:{10 ** 10}}'\nreturn 0.0, {}"), "format specs may only"),
    "f-string format": (fn("s = f'{0:.{999999}f}'\nreturn 0.0, {}"), "format specs may only"),
    "module statement": (HEADER + "jnp.zeros(3)\n\ndef compute_reward(state, action, next_state):\n"
                         "    return 0.0, {}\n", "module level may only hold"),
    "module loop": (HEADER + "for i in range(3):\n    pass\n\ndef compute_reward(state, action, next_state):\n"
                    "    return 0.0, {}\n", "module level may only hold"),
    "unknown field": (fn("return next_state.velocity, {}"), "next_state has no field 'velocity'"),
    "unknown name": (fn("return os.getcwd(), {}"), "unknown name 'os'"),
    "unbounded loop": (fn("for i in range(10 ** 9):\n    pass\nreturn 0.0, {}"), "at most 256 iterations"),
    "loop over call": (fn("for i in jnp.arange(10):\n    pass\nreturn 0.0, {}"), "loops must iterate"),
    "long loop": (fn("for i in range(100000):\n    pass\nreturn 0.0, {}"), "at most 256 iterations"),
    "wrong signature": (fn("return 0.0, {}", sig="s, a, ns"), "must take exactly"),
    "no reward fn": (HEADER + "X = 1\n", "no module-level `def compute_reward"),
    "syntax error": (fn("return (0.0, {}"), "syntax error"),
    "import in function": (fn("import os\nreturn 0.0, {}"), "imports are only allowed at module level"),
    "from import star": (HEADER + "from math import *\n\ndef compute_reward(state, action, next_state):\n"
                         "    return 0.0, {}\n", "import *"),
    "try": (fn("try:\n    pass\nexcept Exception:\n    pass\nreturn 0.0, {}"), "try/except is not allowed"),
    "with": (fn("with x:\n    pass\nreturn 0.0, {}"), "`with` is not allowed"),
    "walrus": (fn("return (y := 1), {}"), "assignment expressions"),
    "indirect call": (fn("return [abs][0](1.0), {}"), "calls must name a function directly"),
}


@pytest.mark.parametrize("case", sorted(REJECT))
def test_rejects_forbidden_construct_with_located_reason(case):
    source, expected = REJECT[case]
    violations = check_source(source, FIELDS)
    assert violations, f"{case} was accepted"
    text = [str(v) for v in violations]
    assert any(expected in t for t in text), text
    for t in text:
        assert re.match(r"^\d+:\d+: \S", t), t  # every reason is one line with line:column
        assert "\n" not in t


def test_reason_points_at_the_offending_line():
    src = fn("a = 1.0\nb = eval('2')\nreturn a, {}")
    (v,) = [v for v in check_source(src, FIELDS) if "eval" in v.message]
    assert src.splitlines()[v.line - 1].strip().startswith("b = eval")
    assert v.col == src.splitlines()[v.line - 1].index("eval") + 1


def test_size_cap_and_deep_nesting_are_rejected_before_libcst():
    big = fn("return 0.0, {}") + "# " + "x" * 30000 + "\n"
    assert "limit is" in str(check_source(big, FIELDS)[0])
    deep = fn("return " + "abs(" * 150 + "1" + ")" * 150 + ", {}")
    assert "nesting deeper" in str(check_source(deep, FIELDS)[0])
    for n in (300, 3000):  # a long operator chain: rejected by the depth cap or by ast.parse itself
        chain = fn("return " + "+".join(["1"] * n) + ", {}")
        msg = str(check_source(chain, FIELDS)[0])
        assert "nesting deeper" in msg or "cannot be parsed safely" in msg, msg
