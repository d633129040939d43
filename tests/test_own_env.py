"""Your own environment with no task Python: gymnax:<id>, brax:<name> and <module>:<factory>."""
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
import yaml

from rewardsmith.errors import UserError
from rewardsmith.evolve import run
from rewardsmith.evolve.settings import resolve_task
from rewardsmith.rundir import RunDir, read_json
from rewardsmith.tasks.registry import load_task_file, task_from_mapping

from conftest import tiny_cfg

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture
def own_module(monkeypatch):
    """The worker imports the user's module from PYTHONPATH (absolute: it runs elsewhere)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.syspath_prepend(TESTS)


def test_gymnax_acrobot_schema_action_and_source_are_inferred():
    task = task_from_mapping({"description": "Swing the tip above the bar.", "env": {"source": "gymnax:Acrobot-v1"},
                              "fitness": {}, "schema": {"fields": [
                                  {"name": "joint_angle1", "unit": "rad", "doc": "first joint angle; 0 hangs down"}]}})
    assert task.name == "acrobot_v1"
    assert set(task.schema.names) == {"joint_angle1", "joint_angle2", "velocity_1", "velocity_2", "time"}
    f = task.schema.field("joint_angle1")
    assert f.unit == "rad" and f.doc == "first joint angle; 0 hangs down"  # merged over the inferred field
    assert task.schema.field("time").kind == "count"
    assert task.schema.action.kind == "discrete" and task.schema.action.n == 3
    assert "def step_env" in task.source_excerpt and "class Acrobot" in task.source_excerpt
    assert not task.human_reward and not task.sparse_reward
    # the fitness defaults to the environment's own reward
    env = task.make_env()
    obs, s = env.reset(jax.random.PRNGKey(0))
    obs2, s2, r, term, trunc = env.step(jax.random.PRNGKey(1), s, jnp.int32(0))
    view = task.schema.make_state(task.hooks.state_view(s)), task.schema.make_state(task.hooks.state_view(s2))
    assert float(task.hooks.fitness_step(view[0], jnp.int32(0), view[1], r, term)) == float(r) == -1.0
    with pytest.raises(ValueError, match="not in the environment state"):
        task_from_mapping({"description": "x", "env": {"source": "gymnax:Acrobot-v1"}, "fitness": {},
                           "schema": {"fields": [{"name": "height"}]}})


def test_user_env_factory_with_a_fitness_expression(own_module):
    task = task_from_mapping({"description": "Bring the mass to rest at the origin.",
                              "env": {"source": "own_env_fixture:make_point_mass", "kwargs": {"dt": 0.05}},
                              "fitness": {"expression": "-jnp.abs(next_state.pos)", "doc": "minus the distance"}})
    assert task.name == "make_point_mass" and set(task.schema.names) == {"pos", "vel", "step"}
    assert task.schema.action.kind == "continuous" and task.schema.action.shape == (1,)
    assert "class PointMass" in task.source_excerpt and "def step" in task.source_excerpt
    env = task.make_env()
    assert env.env.dt == 0.05 and env.max_episode_steps == 60
    _, s = env.reset(jax.random.PRNGKey(0))
    _, s2, *_ = env.step(jax.random.PRNGKey(1), s, jnp.ones(1))
    ns = task.schema.make_state(task.hooks.state_view(s2))
    assert float(task.hooks.fitness_step(ns, jnp.ones(1), ns, 0.0, False)) == pytest.approx(-abs(float(ns.pos)))
    assert float(ns.step) == 1.0
    with pytest.raises(ValueError, match="not a Python expression"):
        task_from_mapping({"description": "x", "env": {"source": "own_env_fixture:make_point_mass"},
                           "fitness": {"expression": "-("}})


@pytest.mark.parametrize("source", ["gymnax:Acrobot-v1", "own_env_fixture:make_point_mass"])
def test_one_generation_on_an_own_env_with_no_task_python(tmp_path, own_module, source):
    cfg = tiny_cfg(task={"name": None, "file": None, "env": source, "fitness": {}, "schema": {},
                         "description": "Do well on this environment."}, iterations=1, samples=2)
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "complete" and summary["best_fitness"] is not None
    rd = RunDir(tmp_path / "run")
    # the task the worker loaded is in the run directory, with its inferred schema
    spec = yaml.safe_load(rd.task_file_path.read_text())
    assert spec["env"]["source"] == source
    task = load_task_file(rd.task_file_path)
    assert task.source_excerpt and task.schema.names
    # no baselines: the environment has none, and nothing failed for it
    assert not list((tmp_path / "run").glob("baselines/*/candidate.json"))
    trained = [read_json(p) for p in (tmp_path / "run").rglob("candidate.json")]
    assert trained and all(c["status"] == "trained" for c in trained)


def test_own_env_errors_are_one_line():
    with pytest.raises(UserError, match="cannot load task.*no_such_module"):
        resolve_task({"task": {"env": "no_such_module:make"}})
    with pytest.raises(UserError, match="cannot load task"):
        resolve_task({"task": {"env": "gymnax:NoSuchEnv-v0"}})


def test_the_llm_prompt_holds_the_environment_source(tmp_path):
    """Against the local OpenAI-compatible server: an own environment's source reaches the prompt."""
    from llm_server import ScriptedLLM
    from test_llm import llm_cfg, user_contents

    from rewardsmith.propose import make_proposer
    from rewardsmith.propose.base import ProposalContext

    task = task_from_mapping({"description": "Swing the tip above the bar.", "env": {"source": "gymnax:Acrobot-v1"},
                              "fitness": {}})
    with ScriptedLLM([]) as server:
        prop = make_proposer(llm_cfg(server.url, tmp_path / "c"), run_dir=tmp_path)
        props = prop.propose(ProposalContext(task=task, generation=0, k=1, history=[]))
        prompt = user_contents(server.requests[0])
    assert props and "The environment's source (trimmed)" in prompt
    assert "def step_env" in prompt and "joint_angle1" in prompt
    # a built-in task has no source block
    with ScriptedLLM([]) as server:
        make_proposer(llm_cfg(server.url, tmp_path / "c2"), run_dir=tmp_path).propose(
            ProposalContext(task=load_task_file(Path(__file__).parents[1] / "envs" / "cartpole" / "task.yaml"),
                            generation=0, k=1, history=[]))
        assert "The environment's source" not in user_contents(server.requests[0])


def test_a_brax_env_the_user_registered():
    from brax import envs
    from brax.envs.inverted_pendulum import InvertedPendulum

    envs.register_environment("my_pendulum", InvertedPendulum)
    task = task_from_mapping({"description": "Keep the pole up.", "fitness": {"expression": "jnp.float32(1.0)"},
                              "env": {"source": "brax:my_pendulum", "episode_length": 100, "physics": "spring"}})
    assert {"obs", "q", "qd", "root_pos", "root_vel", "prev_action", "dt", "step"} <= set(task.schema.names)
    assert task.schema.field("dt").kind == "constant" and task.schema.field("step").kind == "count"
    assert task.schema.action.kind == "continuous" and task.schema.action.shape == (1,)
    assert "class InvertedPendulum" in task.source_excerpt
    env = task.make_env()
    _, s = env.reset(jax.random.PRNGKey(0))
    view = task.hooks.state_view(s)
    assert view["q"].shape == (2,) and env.max_episode_steps == 100
    with pytest.raises(UserError, match="task=own needs the environment"):
        resolve_task({"task": {"env": "???"}})


def test_an_own_env_runs_best_reward_loads_and_exports(tmp_path, own_module):
    """load_reward and rewardsmith-export find an own environment's task in its run directory."""
    import rewardsmith
    from rewardsmith.export.cli import main as export_main

    cfg = tiny_cfg(task={"name": None, "file": None, "env": "own_env_fixture:make_point_mass",
                         "fitness": {"expression": "-jnp.abs(next_state.pos)"}}, iterations=1, samples=2)
    run(cfg, tmp_path / "run")
    loaded = rewardsmith.load_reward(tmp_path / "run")
    assert loaded.task == "make_point_mass" and set(loaded.schema.names) == {"pos", "vel", "step"}
    s = loaded.make_state(pos=jnp.float32(0.5), vel=jnp.float32(0.0), step=jnp.float32(1))
    total, _ = loaded(s, jnp.zeros(1), s)
    assert jnp.isfinite(total)
    assert export_main([f"run_dir={tmp_path / 'run'}", f"out={tmp_path / 'r.py'}"]) == 0
    assert "compute_reward" in (tmp_path / "r.py").read_text()


# -- actions: the space's type decides, and the action must reach the environment ----------------------
BOX = {"gymnax:Pendulum-v1": ((1,), -2.0, 2.0), "gymnax:MountainCarContinuous-v0": ((1,), -1.0, 1.0),
       "gymnax:PointRobot-misc": ((2,), -0.1, 0.1), "gymnax:Reacher-misc": ((2,), -1.0, 1.0),
       "gymnax:Swimmer-misc": ((2,), -1.0, 1.0)}


@pytest.mark.parametrize("source", sorted(BOX))
def test_gymnax_box_actions_are_continuous(source):
    """gymnax's num_actions is 1 (or 2) for these Box spaces: the space's type decides, not it."""
    task = task_from_mapping({"description": "x", "env": {"source": source}, "fitness": {}})
    shape, low, high = BOX[source]
    a = task.schema.action
    assert (a.kind, a.shape, a.low, a.high) == ("continuous", shape, low, high)


def _own(source, **extra):
    return {"name": None, "file": None, "env": source, "fitness": {}, "schema": {},
            "description": "Do well on this environment.", **extra}


def test_different_rewards_reach_different_fitness_on_pendulum(tmp_path):
    """Before the fix every policy sent the same action: every candidate scored the same to all digits."""
    summary = run(tiny_cfg(task=_own("gymnax:Pendulum-v1"), iterations=1, samples=3, seeds=2), tmp_path / "run")
    cands = [read_json(p) for p in (tmp_path / "run" / "generations").rglob("candidate.json")]
    fits = [c["fitness"] for c in cands if c["status"] == "trained"]
    assert len(fits) >= 2 and len(set(fits)) == len(fits)
    assert summary["identical_policies"] == []


def test_an_env_that_ignores_its_action_is_refused_in_one_line(tmp_path, own_module):
    with pytest.raises(UserError) as e:
        run(tiny_cfg(task=_own("own_env_fixture:make_deaf_point_mass")), tmp_path / "run")
    msg = str(e.value)
    assert "does not reach the environment" in msg and "task.schema.action" in msg and "\n" not in msg
    assert "float32 [1] in [-1, 1]" in msg  # the action it inferred
    assert not (tmp_path / "run" / "summary.json").exists()  # refused before any work


def test_a_wrong_action_given_by_hand_is_refused(tmp_path):
    cfg = tiny_cfg(task=_own("gymnax:Pendulum-v1", schema={"action": {"kind": "discrete", "n": 1, "doc": "x"}}))
    with pytest.raises(UserError, match="actions 0 and 0 gave the same next state"):
        run(cfg, tmp_path / "run")


def test_identical_policies_are_reported_not_ranked(tmp_path, monkeypatch, capsys):
    """With the action check out of the way, one discrete action: every policy is the same; the run
    says so on the console, in the generation record and in summary.json, and not for a normal run."""
    from rewardsmith.cli.display import Display
    from rewardsmith.evolve import loop

    monkeypatch.setattr(loop, "check_task_action", lambda task: None)
    cfg = tiny_cfg(task=_own("gymnax:Pendulum-v1", schema={"action": {"kind": "discrete", "n": 1, "doc": "x"}}),
                   iterations=1, samples=3, seeds=2)
    summary = run(cfg, tmp_path / "run", display=Display(live=False))
    out = capsys.readouterr().out
    assert summary["identical_policies"] == [0]
    assert "every trained member (3 rewards) has bit-identical evaluation" in out
    assert "there is no search result" in out
    gen = read_json(next((tmp_path / "run" / "generations" / "gen_00").glob("generation*.json")))
    assert gen["identical_policies"] is True


def test_a_gymnax_style_user_module_runs_a_search(tmp_path, monkeypatch):
    """The README's example: a gymnax Environment subclass whose factory returns (env, params)."""
    root = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.syspath_prepend(root)
    task = task_from_mapping({"description": "x", "env": {"source": "envs.examples.point_mass:make_env",
                                                          "kwargs": {"dt": 0.05}}, "fitness": {}})
    assert set(task.schema.names) == {"pos", "vel", "time"} and task.make_env().params.dt == 0.05
    assert task.schema.action.kind == "continuous" and task.schema.action.shape == (1,)
    summary = run(tiny_cfg(task=_own("envs.examples.point_mass:make_env", kwargs={"dt": 0.05},
                                     fitness={"expression": "-jnp.abs(next_state.pos)"}), iterations=1, samples=2),
                  tmp_path / "run")
    assert summary["status"] == "complete" and summary["best_fitness"] is not None


def test_a_factory_returning_a_brax_env_or_a_gymnax_env(own_module, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # envs.examples
    task = task_from_mapping({"description": "x", "env": {"source": "own_env_fixture:make_brax_pendulum",
                                                          "episode_length": 50}, "fitness": {}})
    assert {"q", "qd", "root_pos", "prev_action", "dt"} <= set(task.schema.names)
    assert task.schema.action.kind == "continuous" and task.schema.action.shape == (1,)
    assert task.make_env().max_episode_steps == 50
    # a gymnax Environment alone (no params): its default params
    task = task_from_mapping({"description": "x", "env": {"source": "gymnax_single:make"}, "fitness": {}})
    assert task.schema.action.kind == "continuous" and task.make_env().max_episode_steps == 100
