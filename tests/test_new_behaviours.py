"""New-behaviour tasks (no environment reward to copy): their fitness, their two baselines, and a few
updates of training on each."""

import math
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from rewardsmith.tasks import get_task  # noqa: E402
from rewardsmith.tasks import brax_env  # noqa: E402
from rewardsmith.tasks.registry import load_task_file  # noqa: E402
from rewardsmith.train.population import train_population  # noqa: E402
from rewardsmith.contract import MAX_COMPONENTS  # noqa: E402
from rewardsmith.train.ppo import PPOConfig  # noqa: E402
from rewardsmith.validate.load import load_reward_fn  # noqa: E402
from rewardsmith.validate.trace import shape_check  # noqa: E402

NEW = ["hopper_jump", "halfcheetah_backflip", "ant_spin"]


def _sum_steps(fn, states):
    return float(sum(fn(a, None, b, 0.0, False) for a, b in zip(states, states[1:])))


def test_backflip_fitness_counts_backward_turns_across_the_wrap():
    # pitch falls from 0 through -pi (where the wrapped angle jumps to +pi) and on round: 1.5 turns
    angles = [math.remainder(-0.1 * i, 2 * math.pi) for i in range(int(3 * math.pi / 0.1) + 1)]
    states = [SimpleNamespace(torso_angle=jnp.float32(a)) for a in angles]
    turns = _sum_steps(brax_env._backward_turns, states)
    assert turns == pytest.approx(0.1 * (len(angles) - 1) / (2 * math.pi), rel=1e-4)
    assert turns > 1.4
    # forward rotation counts against it; rocking back and forth nets nothing
    assert _sum_steps(brax_env._backward_turns, states[::-1]) == pytest.approx(-turns, rel=1e-4)
    rock = [SimpleNamespace(torso_angle=jnp.float32(a)) for a in (0.0, -1.0, 0.0, -1.0, 0.0)]
    assert _sum_steps(brax_env._backward_turns, rock) == pytest.approx(0.0, abs=1e-6)


def test_spin_fitness_counts_counter_clockwise_turns_of_the_heading():
    yaws = [0.2 * i for i in range(64)]  # 12.6 rad counter-clockwise: 2.0 turns
    states = [SimpleNamespace(heading_vec=jnp.array([math.cos(y), math.sin(y), 0.1], jnp.float32)) for y in yaws]
    turns = _sum_steps(brax_env._ccw_turns, states)
    assert turns == pytest.approx(0.2 * 63 / (2 * math.pi), rel=1e-4)
    assert _sum_steps(brax_env._ccw_turns, states[::-1]) == pytest.approx(-turns, rel=1e-4)


@pytest.mark.parametrize("name", NEW)
def test_sparse_baseline_pays_only_for_success(name):
    task = get_task(name)
    sparse = load_reward_fn(task.sparse_reward)
    base = {f.name: jnp.zeros(f.shape, jnp.float32) for f in task.schema.fields}
    success = dict(base)
    if name == "hopper_jump":
        base["torso_pos"] = jnp.array([0.0, 0.0, 1.25])  # standing
        success["torso_pos"] = jnp.array([0.0, 0.0, 1.6])
    elif name == "halfcheetah_backflip":
        base["torso_angle"] = jnp.float32(3.0)  # lying on its back, still
        success.update(torso_angle=jnp.float32(3.0), torso_ang_vel=jnp.float32(-4.0))
    else:
        base["torso_ang_vel"] = jnp.array([0.0, 0.0, -3.0])  # spinning the wrong way
        success["torso_ang_vel"] = jnp.array([0.0, 0.0, 3.0])
    make = task.schema.make_state
    assert float(sparse(make(base), jnp.zeros(task.schema.action.shape), make(base))[0]) == 0.0
    assert float(sparse(make(base), jnp.zeros(task.schema.action.shape), make(success))[0]) == 1.0


@pytest.mark.parametrize("name", NEW)
def test_new_behaviour_trains_a_few_updates_with_both_baselines(name):
    task = get_task(name)
    # the human column is a hand-written reference (no environment reward exists for the behaviour)
    assert "reference: reference_reward.py" in open(task.source_file).read()
    assert task.human_label == "reference reward" and get_task("hopper").human_label == "human baseline"
    cfg = PPOConfig.from_dict({**task.ppo, "num_envs": 4, "num_steps": 8, "total_timesteps": 96,
                               "num_minibatches": 2, "update_epochs": 1, "num_eval_envs": 2})
    branches = []
    for label, src in (("reference", task.human_reward), ("sparse", task.sparse_reward)):
        verdict, branch = shape_check(src, label, task, MAX_COMPONENTS)
        assert verdict.ok, verdict.reason
        branches.append(branch)
    out, timing = train_population(task, cfg, branches, [0, 1], [0, 0])
    assert timing["members"] == 2 and np.all(out["params_finite"])
    fit, length = np.asarray(out["eval"]["fitness"]), np.asarray(out["eval"]["length"])
    assert np.all(np.isfinite(fit)) and np.all(length >= 1)
    if name == "hopper_jump":
        # the episode's highest torso point, not a sum over its steps: a standing start is ~1.25 m
        assert np.all((fit > 0.7) & (fit < 2.5)), fit
        assert np.all(length > 3)
    else:
        assert np.all(np.abs(fit) < 0.2 * length), (fit, length)  # turns: far fewer than steps


def test_fitness_reduce_is_checked(tmp_path):
    src = open(get_task("hopper_jump").source_file).read().replace("reduce: max", "reduce: mean")
    for f in ("reference_reward.py", "sparse_reward.py"):
        (tmp_path / f).write_text(open(get_task("hopper_jump").source_file.replace("task.yaml", f)).read())
    (tmp_path / "task.yaml").write_text(src)
    with pytest.raises(ValueError, match="fitness.reduce must be 'sum' or 'max'"):
        load_task_file(tmp_path / "task.yaml")
    assert get_task("hopper_jump").fitness_reduce == "max" and get_task("hopper").fitness_reduce == "sum"
