"""Brax tasks: schema views, baselines through the validator, a tiny training run (kept short for CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from rewardsmith.tasks import get_task  # noqa: E402
from rewardsmith.contract import MAX_COMPONENTS  # noqa: E402
from rewardsmith.train.ppo import PPOConfig  # noqa: E402
from rewardsmith.train.population import train_population  # noqa: E402
from rewardsmith.validate.static import check_source  # noqa: E402
from rewardsmith.validate.trace import shape_check  # noqa: E402

BRAX_TASKS = ["ant", "humanoid", "halfcheetah", "hopper", "inverted_pendulum", "reacher",
              "hopper_jump", "halfcheetah_backflip", "ant_spin"]


@pytest.mark.parametrize("name", BRAX_TASKS)
def test_brax_task_schema_matches_the_state(name):
    task = get_task(name)
    env = task.make_env()
    _, es = env.reset(jax.random.PRNGKey(0))
    view = jax.eval_shape(task.hooks.state_view, es)
    assert set(view) == set(task.schema.names)
    for f in task.schema.fields:
        assert view[f.name].shape == f.shape, (f.name, view[f.name].shape, f.shape)
        assert view[f.name].dtype == jnp.float32
    assert task.schema.action.shape == (env.action_size,)
    assert {"cpu", "cpu_smoke", "gpu"} <= set(task.presets)
    for src in (task.human_reward, task.sparse_reward):
        assert check_source(src, task.schema.names) == []
        v, _ = shape_check(src, "baseline", task, MAX_COMPONENTS)
        assert v.ok, v.reason


def test_ant_exposes_isaac_gym_names_consistently():
    task = get_task("ant")
    env = task.make_env()
    _, es = jax.jit(env.reset)(jax.random.PRNGKey(1))
    v = jax.jit(task.hooks.state_view)(es)
    np.testing.assert_allclose(v["root_states"][:3], v["torso_pos"], rtol=1e-6)
    np.testing.assert_allclose(v["root_states"][3:7], jnp.concatenate([v["torso_rot"][1:], v["torso_rot"][:1]]))
    np.testing.assert_allclose(v["dof_pos"], v["joint_pos"])
    np.testing.assert_allclose(np.linalg.norm(v["up_vec"]), 1.0, rtol=1e-5)
    assert v["up_vec"][2] > 0.9  # starts upright
    expected = -np.linalg.norm((v["targets"] - v["torso_pos"])[:2]) / v["dt"]
    np.testing.assert_allclose(v["potentials"], expected, rtol=1e-5)


def test_ant_isaac_fields_after_real_steps():
    """up_proj, heading_proj, the torso velocities in its own frame and the joint limits, as Isaac
    Gym's ant computes them, on a tumbling ant (random torques)."""
    task = get_task("ant")
    env = task.make_env()
    _, es = jax.jit(env.reset)(jax.random.PRNGKey(2))
    step, view = jax.jit(env.step), jax.jit(task.hooks.state_view)
    for i in range(15):
        _, es, *_ = step(jax.random.PRNGKey(i), es, jax.random.uniform(jax.random.PRNGKey(50 + i), (8,), minval=-1, maxval=1))
    v = {k: np.asarray(x, np.float64) for k, x in view(es).items()}
    assert v["up_proj"] == pytest.approx(v["up_vec"][2], abs=1e-6)
    to_target = (v["targets"] - v["torso_pos"]) * np.array([1.0, 1.0, 0.0])
    assert v["heading_proj"] == pytest.approx(v["heading_vec"] @ (to_target / np.linalg.norm(to_target)), abs=1e-5)
    # the local-frame velocities rotate back to the world-frame ones (w, x, y, z quaternion)
    w, x, y, z = v["torso_rot"]
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                    [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                    [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rot @ v["vel_loc"], v["torso_vel"], atol=1e-4)
    np.testing.assert_allclose(rot @ v["angvel_loc"], v["torso_ang_vel"], atol=1e-4)
    assert abs(v["vel_loc"][0] - v["heading_vec"] @ v["torso_vel"]) < 1e-4  # [0] is along the facing direction
    # joint limits in joint order: the model's ranges (hips +-30 degrees, knees 30-70 degrees)
    lo, hi = v["dof_limits_lower"], v["dof_limits_upper"]
    assert lo.shape == hi.shape == (8,) and np.all(lo < hi)
    np.testing.assert_allclose(np.abs(hi - lo)[[0, 2, 4, 6]], np.radians(60), rtol=1e-5)
    assert task.schema.field("dof_limits_lower").kind == "constant"


def test_tiny_brax_training_in_one_program():
    task = get_task("inverted_pendulum")
    cfg = PPOConfig.from_dict({**task.ppo, "num_envs": 4, "num_steps": 8, "total_timesteps": 64,
                               "num_minibatches": 2, "update_epochs": 1, "num_eval_envs": 2})
    branches = [shape_check(src, n, task, MAX_COMPONENTS)[1]
                for n, src in (("h", task.human_reward), ("s", task.sparse_reward))]
    out, timing = train_population(task, cfg, branches, [0, 1], [0, 0])
    assert timing["members"] == 2
    assert np.all(np.isfinite(out["eval"]["fitness"])) and np.all(out["params_finite"])
    assert np.all(out["eval"]["length"] >= 1)


def test_brax_run_writes_fitness_baselines_and_viewable_rollouts(tmp_path):
    """A tiny Brax run through the whole loop: final evaluation records rollouts (viewer + GIF)."""
    from conftest import tiny_cfg
    from rewardsmith.evolve import run

    cfg = tiny_cfg(task={"name": "inverted_pendulum", "file": None, "physics": "spring"}, iterations=1,
                   samples=1, eval_seeds=1, final_eval=True,
                   train={"num_envs": 4, "num_steps": 8, "total_timesteps": 256, "num_minibatches": 2,
                          "update_epochs": 1, "num_eval_envs": 2})
    summary = run(cfg, tmp_path)
    assert summary["status"] == "complete"
    assert summary["human_baseline_fitness"] is not None and summary["final_evaluation"]["human"]["fitness_mean"]
    rollouts = tmp_path / "final" / "rollouts"
    for key in ("final-best", "final-human", "final-sparse"):
        assert (rollouts / f"{key}.json").exists() and (rollouts / f"{key}.gif").stat().st_size > 100
        page = (rollouts / f"{key}.html").read_text()
        external = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "rsViewer(" in page and "https://" not in external and "http://" not in external
        assert "<svg" in page  # charts of the state fields and reward over the episode
    report = (tmp_path / "report.html").read_text()
    assert "data:image/gif;base64," in report and "final/rollouts/final-best.html" in report


@pytest.mark.parametrize("name", ["ant", "ant_spin", "humanoid"])
def test_the_schema_states_which_joint_each_action_drives(name):
    """Brax's actuators are not in joint order (ant: action 0 drives joint 6); the docs the LLM and
    the user read give the map, and it is the model's own actuator table."""
    import re

    import numpy as np

    task = get_task(name)
    env = task.make_env().env
    qd_start = 6  # a free root joint: 6 velocity coordinates before the first joint
    actual = [int(i) - qd_start for i in np.asarray(env.sys.actuator.qd_id)]
    docs = {f.name: f.doc for f in task.schema.fields}
    for text in (task.schema.action.doc, docs["joint_pos"], docs["joint_vel"]):
        stated = re.search(r"\[([\d, ]+)\]", text)
        assert stated, text
        assert [int(x) for x in stated.group(1).split(",")] == actual
