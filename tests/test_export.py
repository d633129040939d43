import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rewardsmith
from rewardsmith.errors import UserError
from rewardsmith.evolve import run
from rewardsmith.export.cli import export
from rewardsmith.export.numpy_transform import NumpyExportError, to_numpy
from rewardsmith.records import Candidate, Validation
from rewardsmith.export.module import render_export
from rewardsmith.tasks import get_task, list_tasks
from rewardsmith.wrappers import GymnaxRewardWrapper

from conftest import tiny_cfg


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _random_states(schema, n, rng):
    vals = {}
    for f in schema.fields:
        lo, hi = (f.low, f.high) if f.low is not None else (-1.0, 1.0)
        vals[f.name] = rng.uniform(lo - 0.1 * abs(hi - lo), hi + 0.1 * abs(hi - lo), (n, *f.shape)).astype(np.float32)
    return vals


def _random_actions(spec, n, rng):
    if spec.kind == "discrete":
        return rng.integers(0, spec.n, n).astype(np.int32)
    return rng.uniform(spec.low, spec.high, (n, *spec.shape)).astype(np.float32)


@pytest.mark.parametrize("name", list_tasks())
@pytest.mark.parametrize("which", ["human", "sparse"])
def test_numpy_export_equals_jax_on_1000_random_states(tmp_path, name, which):
    task = get_task(name)
    src = task.human_reward if which == "human" else task.sparse_reward
    cand = Candidate(id=f"baseline-{which}", generation=0, source=src, origin=f"baseline:{which}",
                     validation=Validation(ok=True, stage="passed"))
    for fmt in ("jax", "numpy"):
        (tmp_path / f"{fmt}.py").write_text(render_export(cand, task, {"run_dir": "x", "proposer": "p"}, fmt))
    jmod, nmod = _import(tmp_path / "jax.py", f"r_jax_{name}_{which}"), _import(tmp_path / "numpy.py", f"r_np_{name}_{which}")
    rng = np.random.default_rng(0)
    n = 1000
    s, ns = _random_states(task.schema, n, rng), _random_states(task.schema, n, rng)
    a = _random_actions(task.schema.action, n, rng)
    jt, jc = jax.vmap(lambda s_, a_, n_: jmod.compute_reward(jmod.State(**s_), a_, jmod.State(**n_)))(s, a, ns)
    for i in range(n):
        st = nmod.State(**{k: v[i] for k, v in s.items()})
        nst = nmod.State(**{k: v[i] for k, v in ns.items()})
        t, c = nmod.compute_reward(st, a[i], nst)
        np.testing.assert_allclose(t, np.asarray(jt)[i], rtol=1e-5, atol=1e-5)
        for k in c:
            np.testing.assert_allclose(c[k], np.asarray(jc[k])[i], rtol=1e-5, atol=1e-5)
    assert "import jax" not in (tmp_path / "numpy.py").read_text()


def test_numpy_transform_helpers_and_refusals():
    src = ("import jax\nimport jax.numpy as jnp\nfrom jax import lax\n\n\ndef compute_reward(state, action, next_state):\n"
           "    r = jax.nn.relu(next_state.x) + lax.clamp(-1.0, next_state.x, 1.0) + jnp.exp(state.x)\n"
           "    return r, {'r': r}\n")
    out = to_numpy(src)
    assert "np.maximum" in out and "np.clip" in out and "np.exp" in out and "jax" not in out.replace("_nn_", "")
    ns = {}
    exec(out, ns)
    t, _ = ns["compute_reward"](type("S", (), {"x": 0.5})(), 0, type("S", (), {"x": 2.0})())
    assert t == pytest.approx(2.0 + 1.0 + np.exp(0.5))
    with pytest.raises(NumpyExportError, match=r"\.at"):
        to_numpy("import jax.numpy as jnp\n\ndef compute_reward(s, a, n):\n    return jnp.zeros(2).at[0].set(1.0).sum(), {}\n")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("exportrun")
    run(tiny_cfg(iterations=1, samples=2, final_eval=False), root)
    return root


def test_export_cli_standalone_modules(tiny_run, tmp_path):
    exe = Path(sys.executable).with_name("rewardsmith-export")
    for fmt in ("jax", "numpy"):
        out = tmp_path / f"my_reward_{fmt}.py"
        r = subprocess.run([str(exe), f"run_dir={tiny_run}", f"out={out}", f"format={fmt}"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        text = out.read_text()
        assert "candidate:" in text and "written by: offline proposer" in text and "class State" in text
        code = (f"import importlib.util, sys\nspec = importlib.util.spec_from_file_location('m', {str(out)!r})\n"
                "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
                "s = m.State(x=0.1, x_dot=0.0, theta=0.01, theta_dot=0.0, step=3.0)\n"
                "t, c = m.compute_reward(s, 1, s)\nprint(float(t), sorted(c) == sorted(m.COMPONENTS), 'rewardsmith' in sys.modules)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        total, comps_ok, imported = r.stdout.split()
        assert comps_ok == "True" and imported == "False"
    # any candidate, not only the best
    some = next(tiny_run.glob("generations/gen_00/candidates/*/candidate.json")).parent.name
    export(tiny_run, tmp_path / "other.py", "jax", candidate=some)
    assert f"candidate:  {some}" in (tmp_path / "other.py").read_text()
    with pytest.raises(UserError, match="no candidate 'nope'"):
        export(tiny_run, tmp_path / "x.py", "jax", candidate="nope")
    bad = subprocess.run([str(exe), "run_dir=/nonexistent", "out=x.py"], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a rewardsmith run directory" in bad.stderr


def test_load_reward_validates(tiny_run, tmp_path):
    r = rewardsmith.load_reward(tiny_run)
    assert r.task == "cartpole" and r.components and r.schema.names[0] == "x"
    s = r.make_state(x=jnp.float32(0.1), x_dot=jnp.float32(0.0), theta=jnp.float32(0.0),
                     theta_dot=jnp.float32(0.0), step=jnp.float32(1.0))
    total, comps = r(s, jnp.int32(0), s)
    assert set(comps) == set(r.components) and jnp.isfinite(total)
    evil = tmp_path / "evil.py"
    evil.write_text("# task: cartpole\nimport os\n\ndef compute_reward(state, action, next_state):\n    return 0.0, {}\n")
    with pytest.raises(UserError, match="static gate: .*import of 'os'"):
        rewardsmith.load_reward(evil)


def test_gymnax_wrapper_trains_in_a_plain_loop(tiny_run):
    """REINFORCE with a linear policy on CartPole, rewarded by the exported best reward."""
    import gymnax
    import optax

    reward = rewardsmith.load_reward(tiny_run)
    env, params = gymnax.make("CartPole-v1")
    env = GymnaxRewardWrapper(env, reward)

    def rollout(w, key, steps=64):
        obs, state = env.reset(key, params)

        def step(carry, k):
            obs, state, alive = carry
            k1, k2 = jax.random.split(k)
            logits = obs @ w
            a = jax.random.categorical(k1, logits)
            obs2, state2, r, term, trunc, info = env.step(k2, state, a, params)
            logp = jax.nn.log_softmax(logits)[a]
            out = (logp * alive, r * alive, info["reward_components"])
            return (obs2, state2, alive * (1 - (term | trunc))), out

        _, (logp, r, comps) = jax.lax.scan(step, (obs, state, 1.0), jax.random.split(key, steps))
        return logp, r, comps

    def loss(w, key):
        logp, r, _ = rollout(w, key)
        ret = jnp.cumsum(r[::-1])[::-1]
        return -(logp * jax.lax.stop_gradient(ret - ret.mean())).sum()

    w = jnp.zeros((4, 2))
    opt = optax.adam(1e-2)
    opt_state = opt.init(w)
    grad = jax.jit(jax.grad(loss))
    for i in range(5):
        g = grad(w, jax.random.PRNGKey(i))
        upd, opt_state = opt.update(g, opt_state)
        w = optax.apply_updates(w, upd)
    assert jnp.all(jnp.isfinite(w)) and float(jnp.abs(w).sum()) > 0
    _, r, comps = rollout(w, jax.random.PRNGKey(9))
    assert set(comps) == set(reward.components) and jnp.all(jnp.isfinite(r))


def test_brax_wrapper_trains_with_brax_own_ppo(tmp_path):
    """Export a reward for a Brax task and train with brax.training.agents.ppo.train through the wrapper."""
    pytest.importorskip("brax")
    from brax import envs
    from brax.training.agents.ppo import train as brax_ppo

    from rewardsmith.wrappers import BraxRewardWrapper

    task = get_task("inverted_pendulum")
    reward_file = tmp_path / "ip_reward.py"
    reward_file.write_text("# task: inverted_pendulum\n" + task.human_reward.replace(
        'alive = jnp.float32(1.0)', 'alive = jnp.float32(1.0) - 0.1 * jnp.abs(next_state.pole_angle)'))
    reward = rewardsmith.load_reward(reward_file)
    env = BraxRewardWrapper(envs.get_environment("inverted_pendulum", backend="spring"), reward)
    s = jax.jit(env.reset)(jax.random.PRNGKey(0))
    s2 = jax.jit(env.step)(s, jnp.zeros(env.action_size))
    assert float(s2.reward) == pytest.approx(1.0 - 0.1 * abs(float(s2.pipeline_state.q[1])), rel=1e-5)
    assert "reward/alive" in s2.metrics and int(s2.info["rs_t"]) == 1
    make_policy, params, metrics = brax_ppo.train(
        environment=env, num_timesteps=512, episode_length=50, num_envs=4, batch_size=4, num_minibatches=2,
        unroll_length=8, num_updates_per_batch=1, num_evals=2, seed=0)
    assert np.isfinite(metrics["eval/episode_reward"])
    assert "eval/episode_reward/alive" in metrics
