import jax
import numpy as np
import pytest

from rewardsmith.tasks import get_task
from rewardsmith.contract import MAX_COMPONENTS
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.population import train_population
from rewardsmith.train.stats import member_results
from rewardsmith.validate.trace import rollout_check, shape_check

from conftest import TINY_TRAIN

NAN_REWARD = """import jax.numpy as jnp


def compute_reward(state, action, next_state):
    r = jnp.log(next_state.x)
    return r, {"log_x": r}
"""

LATE_NAN_REWARD = """import jax.numpy as jnp


def compute_reward(state, action, next_state):
    # finite for a random policy, NaN once an episode runs past 30 steps
    r = jnp.where(next_state.step > 30.0, jnp.nan, 1.0)
    return r, {"r": r}
"""


@pytest.fixture(scope="module")
def cartpole():
    return get_task("cartpole")


def branch(task, source, name="c"):
    v, b = shape_check(source, name, task, MAX_COMPONENTS)
    assert v.ok, v.reason
    return b


@pytest.mark.parametrize("body,expected", [
    ("return 1.0", "must return (total_reward, components_dict)"),
    ("return jnp.zeros(3), {}", "total reward must be a scalar"),
    ("return 1.0, {'a': jnp.zeros(2)}", "component 'a' must be a scalar"),
    ("return 1.0, [1.0]", "components must be a dict"),
    ("return next_state.x + jnp.zeros((2, 3)) @ jnp.zeros((4,)), {}", "tracing failed: line 5"),
    ("return 1.0, {" + ", ".join(f"'c{i}': 1.0" for i in range(9)) + "}", "at most 8 components"),
])
def test_shape_check_rejects_bad_outputs(cartpole, body, expected):
    src = f"import jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n    {body}\n"
    v, b = shape_check(src, "bad", cartpole, MAX_COMPONENTS)
    assert not v.ok and b is None
    assert expected in v.reason, v.reason


def test_shape_check_accepts_baselines_and_names_components(cartpole):
    v, b = shape_check(cartpole.human_reward, "h", cartpole, MAX_COMPONENTS)
    assert v.ok and v.components == ["alive"] and b is not None


def test_loader_blocks_imports_outside_the_allow_list(cartpole):
    v, _ = shape_check("import os\n\ndef compute_reward(state, action, next_state):\n    return 1.0, {}\n",
                       "x", cartpole, MAX_COMPONENTS)
    assert not v.ok and "import of 'os' is not allowed" in v.reason


def test_rollout_check_flags_nan_and_passes_finite(cartpole):
    reasons = rollout_check(cartpole, [branch(cartpole, cartpole.human_reward), branch(cartpole, NAN_REWARD)])
    assert reasons[0] is None
    assert reasons[1] is not None and "not finite" in reasons[1] and "x=" in reasons[1]


def test_nan_member_is_masked_and_siblings_are_unaffected(cartpole):
    """A member whose reward goes NaN mid-training is reported; its siblings train exactly as without it."""
    cfg = PPOConfig.from_dict({**cartpole.ppo, **TINY_TRAIN})
    good = branch(cartpole, cartpole.human_reward, "good")
    late_nan = branch(cartpole, LATE_NAN_REWARD, "nan")
    other = branch(cartpole, cartpole.sparse_reward, "other")
    out_nan, timing = train_population(cartpole, cfg, [good, late_nan], [0, 1, 0, 1], [0, 0, 1, 1])
    out_ref, _ = train_population(cartpole, cfg, [good, other], [0, 1, 0, 1], [0, 0, 1, 1])
    assert timing["devices"] == 2
    for m in (0, 2):  # the good members
        np.testing.assert_allclose(out_nan["eval"]["fitness"][m], out_ref["eval"]["fitness"][m], rtol=1e-6)
        np.testing.assert_allclose(out_nan["curve"]["reward"][m], out_ref["curve"]["reward"][m], rtol=1e-6)
        assert out_nan["nonfinite_rewards"][m] == 0
    assert out_nan["nonfinite_rewards"][1] > 0
    one = jax.tree.map(lambda v: v[1], out_nan)
    rec = member_results(one, 0, ["r"], cartpole, cfg)
    assert rec.ok is False and rec.fitness is None and "NaN" in rec.reason
    good_one = jax.tree.map(lambda v: v[0], out_nan)
    rec = member_results(good_one, 0, ["alive"], cartpole, cfg)
    assert rec.ok and rec.fitness > 0
    assert len(rec.fitness_curve) == len(rec.checkpoints) == len(rec.component_curves["alive"])


def test_candidate_code_runs_jax_ops_first_in_a_fresh_process():
    """jaxlib imports through the calling frame's builtins; the guarded loader must allow that."""
    import subprocess
    import sys

    code = (
        "import jax, jax.numpy as jnp\n"
        "from rewardsmith.validate.load import load_reward_fn\n"
        "src = 'import jax.numpy as jnp\\n\\ndef compute_reward(state, action, next_state):\\n"
        "    r = jnp.exp(-jnp.abs(next_state) / 0.3)\\n    return r, {\"r\": r}\\n'\n"
        "fn = load_reward_fn(src)\n"
        "s = jax.ShapeDtypeStruct((), jnp.float32)\n"
        "print(jax.eval_shape(fn, s, s, s)[0].shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "()"


def test_chunked_training_equals_one_shot_bitwise(cartpole):
    """Chunks only decide when the loop looks at the members: the numbers are the same to the bit."""
    good = branch(cartpole, cartpole.human_reward, "good")
    other = branch(cartpole, cartpole.sparse_reward, "other")
    outs = []
    for chunk in (1, 7, 10_000):
        cfg = PPOConfig.from_dict({**cartpole.ppo, **TINY_TRAIN, "chunk_updates": chunk})
        seen = []
        out, timing = train_population(cartpole, cfg, [good, other], [0, 1], [3, 3],
                                       on_chunk=lambda done, total, m: seen.append((done, m["reward"].shape)))
        assert [d for d, _ in seen] == sorted({min(u, cfg.num_updates) for u in range(chunk, cfg.num_updates + chunk, chunk)})
        assert seen[-1] == (cfg.num_updates, (2, cfg.num_updates))
        outs.append(out)
    for out in outs[1:]:
        for key in ("reward", "fitness_sum", "components"):
            np.testing.assert_array_equal(out["curve"][key], outs[0]["curve"][key])
        np.testing.assert_array_equal(out["eval"]["fitness"], outs[0]["eval"]["fitness"])


def test_split_and_fused_programs_agree(cartpole):
    """The trainer compiled once (rewards as their own program) trains like the one-program generation:
    the same first updates to float precision (later, float order may drift, as vmapped runs do)."""
    good = branch(cartpole, cartpole.human_reward, "good")
    cfgs = {p: PPOConfig.from_dict({**cartpole.ppo, **TINY_TRAIN, "program": p}) for p in ("split", "fused")}
    split, t_split = train_population(cartpole, cfgs["split"], [good], [0, 0], [0, 1])
    fused, t_fused = train_population(cartpole, cfgs["fused"], [good], [0, 0], [0, 1])
    assert t_split["program"] == "split" and t_fused["program"] == "fused"
    np.testing.assert_allclose(split["curve"]["reward"][:, :4], fused["curve"]["reward"][:, :4], rtol=1e-5)
    np.testing.assert_allclose(split["curve"]["fitness_sum"][:, :4], fused["curve"]["fitness_sum"][:, :4], rtol=1e-5)


def test_member_that_goes_nan_in_a_later_chunk_is_stopped_and_siblings_continue(cartpole):
    cfg = PPOConfig.from_dict({**cartpole.ppo, **TINY_TRAIN, "chunk_updates": 4})
    good = branch(cartpole, cartpole.human_reward, "good")
    late_nan = branch(cartpole, LATE_NAN_REWARD, "nan")
    other = branch(cartpole, cartpole.sparse_reward, "other")
    out, _ = train_population(cartpole, cfg, [good, late_nan], [0, 1, 0, 1], [0, 0, 1, 1])
    ref, _ = train_population(cartpole, cfg, [good, other], [0, 1, 0, 1], [0, 0, 1, 1])
    stopped = out["stopped_at_update"]
    assert stopped[0] == stopped[2] == -1
    assert stopped[1] > 0 and stopped[1] % 4 == 0 and stopped[1] < cfg.num_updates  # at a chunk boundary
    for m in (0, 2):  # the siblings trained to the end, exactly as beside a finite reward
        np.testing.assert_array_equal(out["curve"]["reward"][m], ref["curve"]["reward"][m])
        np.testing.assert_array_equal(out["eval"]["fitness"][m], ref["eval"]["fitness"][m])
    rec = member_results(jax.tree.map(lambda v: v[1], out), 0, ["r"], cartpole, cfg)
    assert not rec.ok and f"stopped after update {stopped[1]} of {cfg.num_updates}" in rec.reason


def test_successive_halving_stops_the_weak_and_survivors_train_as_with_a_uniform_budget(cartpole):
    from rewardsmith.train.population import Halving, train_halving

    cfg = PPOConfig.from_dict({**cartpole.ppo, **TINY_TRAIN, "total_timesteps": 4096})  # 64 updates
    good = branch(cartpole, cartpole.human_reward, "good")
    sparse = branch(cartpole, cartpole.sparse_reward, "sparse")
    bad = branch(cartpole, NAN_REWARD, "nan")  # NaN from the first step: fitness -inf at the rung
    fns = [good, sparse, bad, good]
    member_branch = [b for b in range(4) for _ in range(2)]
    member_seed = [s for _ in range(4) for s in range(2)]
    rungs_seen = []
    halving = Halving(eta=2, rungs=3, protected=(1,))
    outs, timing = train_halving(cartpole, cfg, fns, member_branch, member_seed, halving,
                                 on_rung=lambda *a: rungs_seen.append(a))
    assert halving.rung_updates(cfg.num_updates) == [16, 32, 64] == timing["rung_updates"]
    per_update = cfg.num_envs * cfg.num_steps
    # rung 1: 3 open candidates keep 1, the protected sparse baseline always trains on; the NaN one is out
    assert [r[0] for r in rungs_seen] == [1, 2]
    assert 2 in rungs_seen[0][4] and 1 in rungs_seen[0][3] and len(rungs_seen[0][3]) == 2
    by_branch = {b: [o for o, mb in zip(outs, member_branch) if mb == b] for b in range(4)}
    assert all(o["rung"] == 3 and o["env_steps"] == 64 * per_update for o in by_branch[1])
    assert all(o["rung"] == 1 and o["env_steps"] == 16 * per_update and len(o["curve"]["reward"]) == 16
               for o in by_branch[2])
    finished = [b for b in (0, 3) if by_branch[b][0]["rung"] == 3]
    assert len(finished) == 1  # one open candidate gets the whole budget
    assert timing["env_steps"] == sum(o["env_steps"] for o in outs) < len(outs) * 64 * per_update
    # a survivor's training is the same as under a uniform budget (state moved between populations)
    ref, _ = train_population(cartpole, cfg, fns, member_branch, member_seed)
    for m, (o, b) in enumerate(zip(outs, member_branch)):
        n = len(o["curve"]["reward"])
        np.testing.assert_array_equal(o["curve"]["reward"], ref["curve"]["reward"][m][:n])
        if o["rung"] == 3:
            np.testing.assert_array_equal(o["eval"]["fitness"], ref["eval"]["fitness"][m])
    rec = member_results(outs[member_branch.index(2)], 0, ["log_x"], cartpole, cfg)
    assert rec.rung == 1 and rec.rungs == 3 and rec.env_steps == 16 * per_update
