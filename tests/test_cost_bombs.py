"""Costs that live in array shapes: rewards that pass the allow-list and jax.eval_shape (abstract,
free) and then cost minutes or gigabytes on real batches. Each is compiled on one transition in its
own limited checker process and refused with XLA's figures (or stopped by that process's limits):
it fails alone and the good reward beside it trains."""
from __future__ import annotations

import time

import pytest

from conftest import tiny_cfg
from rewardsmith.evolve import run
from rewardsmith.rundir import read_json

HEAD = "import jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n"
BOMBS = {
    "matmul": "    m = jnp.ones((2048, 2048)) * next_state.x\n    r = jnp.sum(m @ m)\n",
    "svd": "    r = jnp.sum(jnp.linalg.svd(jnp.ones((1500, 1500)) * next_state.x)[1])\n",
    "zeros": "    r = jnp.sum(jnp.zeros((30000, 30000)) + next_state.x * jnp.arange(30000.0))\n",
    "outer3": ("    v = jnp.arange(1000.0) * next_state.x\n"
               "    r = jnp.sum(v[:, None, None] * v[None, :, None] * v[None, None, :])\n"),
    "sort": "    r = jnp.sum(jnp.sort(jnp.arange(10 ** 7) * next_state.x)[:10])\n",
    "inverses": "    r = sum(jnp.sum(jnp.linalg.inv(jnp.eye(256) * (next_state.x + i))) for i in range(256))\n",
    "tile": "    r = jnp.sum(jnp.tile(jnp.stack([next_state.x, next_state.theta]), (7000, 7000)) ** 2)\n",
}
GOOD = HEAD + "    r = jnp.exp(-jnp.abs(next_state.theta) / 0.1)\n    return r, {\"upright\": r}\n"


def _source(body: str) -> str:
    return HEAD + body + "    return r, {\"r\": r}\n"


def test_each_cost_bomb_fails_alone_and_the_good_reward_trains(tmp_path):
    files = []
    for name, body in BOMBS.items():
        f = tmp_path / f"{name}.py"
        f.write_text(_source(body))
        files.append(str(f))
    good = tmp_path / "good.py"
    good.write_text(GOOD)
    t0 = time.time()
    summary = run(tiny_cfg(iterations=1, samples=1, baselines=False, seed_rewards=files + [str(good)],
                           max_generation_retries=0), tmp_path / "run")
    wall = time.time() - t0
    cands = {c["meta"].get("seed_file", "").rsplit("/", 1)[-1]: c
             for c in (read_json(p) for p in (tmp_path / "run" / "generations").rglob("candidate.json"))}
    assert cands["good.py"]["status"] == "trained" and summary["status"] == "complete"
    for name in BOMBS:
        c = cands[f"{name}.py"]
        assert c["status"] == "rejected", (name, c["status"], c["validation"])
        reason = c["validation"]["reason"]
        assert ("too costly for a reward" in reason and "flops" in reason) or "limit" in reason or \
            "longer than" in reason, (name, reason)
    assert wall < 120, wall  # the bound for such a generation on this machine


@pytest.mark.parametrize("body", ["    r = jnp.sum(jnp.square(jnp.stack([next_state.x, next_state.theta])))\n",
                                  "    r = sum(jnp.cos(next_state.theta * i) for i in range(64))\n"])
def test_everyday_rewards_are_far_from_the_cost_bounds(body):
    from rewardsmith.tasks import get_task
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.trace import cost_check, trace_check

    import jax

    from rewardsmith.validate.load import abstract_inputs, load_reward_fn

    schema = get_task("cartpole").schema
    v, _ = trace_check(_source(body), "c", schema, MAX_COMPONENTS, cost_bounds=(1e7, 16 * 2 ** 20))
    assert v.ok
    state, action = abstract_inputs(schema)
    traced = jax.jit(load_reward_fn(_source(body))).trace(state, action, state)
    tiny = cost_check(traced, 1.0, 1.0)  # the figures, under tiny bounds
    assert cost_check(traced) == "" and tiny.startswith("too costly") and "flops" in tiny


def test_a_reward_far_costlier_than_the_environment_step_is_refused_with_the_figures(tmp_path):
    """A 64 x 64 matmul (about 5e5 flops) is under the absolute bound (1e7) and nothing a reward needs
    on CartPole, whose step costs about 50 flops: refused relative to the step; accepted with the
    relative bound off; the everyday reward beside it trains."""
    heavy = tmp_path / "heavy.py"
    heavy.write_text(_source("    m = jnp.ones((64, 64)) * next_state.x\n    r = jnp.sum(m @ m)\n"))
    good = tmp_path / "good.py"
    good.write_text(GOOD)
    for relative, expected in ((1000, "rejected"), (0, "trained")):
        run(tiny_cfg(iterations=1, samples=1, baselines=False, seed_rewards=[str(heavy), str(good)],
                     max_generation_retries=0, check_relative_cost=relative), tmp_path / f"run{relative}")
        cands = {c["meta"].get("seed_file", "").rsplit("/", 1)[-1]: c
                 for c in (read_json(p) for p in (tmp_path / f"run{relative}" / "generations").rglob("candidate.json"))}
        assert cands["good.py"]["status"] == "trained"
        assert cands["heavy.py"]["status"] == expected, cands["heavy.py"]["validation"]
        if expected == "rejected":
            reason = cands["heavy.py"]["validation"]["reason"]
            assert "times the environment's own step" in reason and "check_relative_cost=1000" in reason, reason
        else:
            assert cands["heavy.py"]["validation"]["cost"]["flops"] > 1e5
    from rewardsmith.tasks import get_task
    from rewardsmith.validate.trace import env_step_flops

    assert 10 < env_step_flops(get_task("cartpole")) < 1000
