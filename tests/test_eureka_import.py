"""rewardsmith-import: Eureka / Isaac Gym rewards in PyTorch into the reward contract."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewardsmith
from rewardsmith.convert.cli import main as import_main
from rewardsmith.convert.eureka import ConvertError, convert
from rewardsmith.tasks import get_task
from rewardsmith.validate.load import load_reward_fn

FIX = Path(__file__).parent / "fixtures" / "eureka"


def _ant_transitions(n=12):
    """Real ant transitions (random actions from several resets): (state, action, next_state) triples."""
    task = get_task("ant")
    env = task.make_env()
    view = lambda s: task.schema.make_state(task.hooks.state_view(s))  # noqa: E731
    out = []
    step = jax.jit(env.step)
    for k in range(3):
        _, s = env.reset(jax.random.PRNGKey(k))
        for i in range(n // 3):
            a = jax.random.uniform(jax.random.PRNGKey(100 * k + i), (8,), minval=-1.0, maxval=1.0)
            _, s2, *_ = step(jax.random.PRNGKey(i), s, a)
            out.append((view(s), a, view(s2)))
            s = s2
    return out


def test_an_eureka_ant_reward_converts_loads_and_equals_the_hand_written_jax(tmp_path, capsys):
    out = tmp_path / "ant_reward.py"
    assert import_main([f"file={FIX / 'ant_forward.py'}", "task=ant", f"out={out}"]) == 0
    text = out.read_text()
    code = text.split('"""', 2)[2]
    assert "import torch" not in code and "torch." not in code and "Tuple" not in code
    assert "# task: ant" in text and "Conventions that differ" in text and "prev_potentials = state.potentials" in text
    loaded = rewardsmith.load_reward(out)  # the same gate and isolated trace check as the search
    assert loaded.task == "ant" and set(loaded.components) == {
        "forward_reward", "progress_reward", "upright_reward", "electricity_cost", "penalty"}
    reference = load_reward_fn((FIX / "ant_forward_jax.py").read_text())
    for s, a, ns in _ant_transitions():
        got, got_c = loaded(s, a, ns)
        want, want_c = reference(s, a, ns)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-5, atol=1e-6)
        for k in want_c:
            np.testing.assert_allclose(float(got_c[k]), float(want_c[k]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("code, needle", [
    ("def compute_reward(root_states):\n    return torch.sum(root_states[:, 2], dim=0), {}\n", "dim=0 reduces over the batch"),
    ("def compute_reward(root_states):\n    n = root_states.shape[0]\n    return root_states[:, 2], {}\n",
     "shape[0] is the number of environments"),
    ("def compute_reward(root_states, obs_magic):\n    return root_states[:, 2], {}\n", "'obs_magic' has no field"),
    ("def compute_reward(root_states):\n    return torch.bucketize(root_states, root_states), {}\n",
     "torch.bucketize has no JAX counterpart"),
    ("def compute_reward(root_states):\n    return root_states.max(dim=-1), {}\n", "returns (values, indices)"),
    ("def helper(x):\n    return x\n", "no reward function"),
])
def test_what_cannot_be_converted_is_one_line_naming_it(code, needle, tmp_path, capsys):
    with pytest.raises(ConvertError) as e:
        convert(code, get_task("ant").schema)
    assert needle in str(e.value) and str(e.value).startswith("line ")
    src = tmp_path / "r.py"
    src.write_text(code)
    assert import_main([f"file={src}", "task=ant", f"out={tmp_path / 'o.py'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not (tmp_path / "o.py").exists()


def test_tensor_idioms_become_jax():
    code = ("import torch\n@torch.jit.script\ndef compute_reward(dof_pos: torch.Tensor, actions: torch.Tensor):\n"
            "    x = dof_pos.unsqueeze(1).float().detach()\n"
            "    n = actions.norm(p=2, dim=-1)\n"
            "    y = dof_pos.clone()\n"
            "    y[0] += 1.0\n"
            "    return torch.sum(x, dim=-1)[0] + n + y[0], {'n': n}\n")
    out = convert(code, get_task("ant").schema).source
    assert "jnp.expand_dims(dof_pos, 0).astype(jnp.float32)" in out
    assert "jnp.linalg.norm(actions, ord=2, axis=-1)" in out and "y = y.at[0].add(1.0)" in out
    fn = load_reward_fn(out)
    s = get_task("ant").schema.make_state({f.name: jnp.ones(f.shape, jnp.float32) for f in get_task("ant").schema.fields})
    total, comps = fn(s, jnp.ones(8), s)
    assert float(total) == pytest.approx(8.0 + np.sqrt(8) + 2.0, rel=1e-5)


def test_an_imported_reward_seeds_the_search(tmp_path):
    from conftest import tiny_cfg

    from rewardsmith.errors import UserError
    from rewardsmith.evolve import run
    from rewardsmith.rundir import read_json

    seed = tmp_path / "cartpole_seed.py"
    assert import_main([f"file={FIX / 'cartpole_upright.py'}", "task=cartpole", f"out={seed}"]) == 0
    summary = run(tiny_cfg(iterations=1, samples=2, seed_rewards=[str(seed)]), tmp_path / "run")
    cands = [read_json(p) for p in (tmp_path / "run" / "generations").rglob("candidate.json")]
    seeded = [c for c in cands if c["origin"] == "seed"]
    assert len(cands) == 3 and len(seeded) == 1  # the proposer's 2 and the seed
    assert seeded[0]["status"] == "trained" and seeded[0]["source"] == seed.read_text()
    assert "seed reward cartpole_seed.py" in seeded[0]["note"] and summary["status"] == "complete"
    with pytest.raises(UserError, match="no such file"):
        run(tiny_cfg(seed_rewards=[str(tmp_path / "absent.py")]), tmp_path / "run2")
    with pytest.raises(UserError, match="must be a list"):
        run(tiny_cfg(seed_rewards=str(seed)), tmp_path / "run3")
