"""Tasks on your own environment, with no task Python: ``env.source`` names it.

* ``gymnax:<id>``: any gymnax environment (``gymnax:Acrobot-v1``);
* ``brax:<name>``: any registered Brax environment, including ones you register yourself;
* ``<module>:<factory>``: your own JAX environment. The factory (a function or class, called with
  ``env.kwargs``) returns an object with ``reset(key) -> (obs, state)`` and
  ``step(key, state, action) -> (obs, state, reward, done)`` (or ``..., terminated, truncated)``),
  pure JAX so that it can be jitted and vmapped, plus ``num_actions`` (discrete) or
  ``action_size`` (continuous in [-1, 1]) and optionally ``max_episode_steps``.

The state schema is inferred from the environment's state pytree: every numeric leaf becomes a
field named by its path (``joint_angle1``, ``pipeline.q``  -> ``pipeline_q``), with its shape; units and
docs are left for the task file (``schema.fields`` entries with the same name are merged over the
inferred ones) or for the LLM to read off the environment's source, which the prompt receives
trimmed to ``source_chars``. The ground-truth fitness is ``fitness.expression``, a Python
expression over ``state``, ``action``, ``next_state``, ``env_reward``, ``terminated`` and ``jnp``
(default ``env_reward``: the environment's own return), or ``fitness.function``, a
``module:function`` taking those five arguments.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from rewardsmith.tasks.base import TaskHooks

SOURCE_CHARS = 6000  # default budget for the environment source shown to the LLM (about 1500 tokens)
_STEP_NAMES = ("time", "t", "step", "steps", "timestep", "step_count")


def resolve(ref: str) -> Any:
    """``module:attr.sub`` -> the object."""
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def kind_of(source: str) -> str:
    head = source.partition(":")[0]
    return head if head in ("gymnax", "brax") else "factory"


# --- the task, from the command line ------------------------------------------------------------

def default_name(source: str) -> str:
    """A task name for an own environment: ``gymnax:Acrobot-v1`` -> ``acrobot_v1``."""
    return re.sub(r"\W+", "_", str(source).rpartition(":")[2]).strip("_").lower() or "own_env"


def task_mapping(tcfg: Mapping[str, Any]) -> dict:
    """``task=own task.env=SOURCE``: the task-file mapping of your own environment, from the
    command line (name, description, fitness, schema, episode_length, kwargs, physics, ppo)."""
    source = str(tcfg["env"])
    env = {"source": source, "kwargs": dict(tcfg.get("kwargs") or {})}
    for key in ("episode_length", "physics"):
        if tcfg.get(key):
            env[key] = tcfg[key]
    fitness = _set(tcfg.get("fitness"))
    out = {"name": tcfg.get("name") or default_name(source), "env": env, "fitness": fitness,
           "description": tcfg.get("description") or (
               f"Your own environment {source}. Goal: as much of its fitness as possible "
               f"({fitness.get('doc') or fitness.get('expression') or 'its own reward'} per episode).")}
    for key in ("schema", "ppo", "presets", "baselines"):
        if _set(tcfg.get(key)):
            out[key] = _set(tcfg[key]) if key == "schema" else tcfg[key]
    return out


def _set(mapping: Mapping[str, Any] | None) -> dict:
    """The keys given a value (the command line's task config lists every key, unset ones null)."""
    return {k: v for k, v in (mapping or {}).items() if v is not None}


# --- environments ----------------------------------------------------------------------------

class FactoryAdapter:
    """A user's own ``reset/step`` environment behind the ``EnvAdapter`` protocol."""

    def __init__(self, env: Any, episode_length: int | None = None) -> None:
        for name in ("reset", "step"):
            if not callable(getattr(env, name, None)):
                raise TypeError(f"the environment {type(env).__name__} has no {name}() method")
        self.env = env
        steps = episode_length or getattr(env, "max_episode_steps", None)
        if not steps:
            raise ValueError(f"{type(env).__name__} has no max_episode_steps: set env.episode_length in the task")
        self.max_episode_steps = int(steps)
        obs = jax.eval_shape(lambda k: env.reset(k)[0], jax.random.PRNGKey(0))
        self.obs_size = int(obs.size)

    def reset(self, key):
        obs, state = self.env.reset(key)
        return jnp.asarray(obs, jnp.float32).reshape(-1), OwnEnvState(state, jnp.int32(0))

    def step(self, key, env_state, action):
        out = self.env.step(key, env_state.inner, action)
        if len(out) == 5:
            obs, state, reward, terminated, truncated = out
        elif len(out) == 4:
            obs, state, reward, terminated = out
            truncated = False
        else:
            raise ValueError(f"{type(self.env).__name__}.step returned {len(out)} values; expected "
                             "(obs, state, reward, done) or (obs, state, reward, terminated, truncated)")
        t = env_state.t + 1
        terminated = jnp.asarray(terminated, bool).reshape(())
        truncated = (jnp.asarray(truncated, bool).reshape(()) | (t >= self.max_episode_steps)) & ~terminated
        return (jnp.asarray(obs, jnp.float32).reshape(-1), OwnEnvState(state, t),
                jnp.asarray(reward, jnp.float32).reshape(()), terminated, truncated)


@jax.tree_util.register_pytree_node_class
class OwnEnvState:
    """A factory env's state with the adapter's step counter beside it (the time limit)."""

    def __init__(self, inner: Any, t: jax.Array) -> None:
        self.inner, self.t = inner, t

    def tree_flatten(self):
        return (self.inner, self.t), None

    @classmethod
    def tree_unflatten(cls, _, children):
        return cls(*children)


def make_env(config: Mapping[str, Any]):
    """``hooks.make_env`` of an own-environment task."""
    source = str(config["source"])
    kwargs = dict(config.get("kwargs") or {})
    kind = kind_of(source)
    if kind == "gymnax":
        from rewardsmith.tasks.gymnax_env import GymnaxAdapter

        return GymnaxAdapter(source.partition(":")[2], **kwargs)
    if kind == "brax":
        from rewardsmith.tasks.brax_env import BraxAdapter

        return BraxAdapter(source.partition(":")[2], backend=config.get("physics") or "generalized",
                           episode_length=int(config.get("episode_length") or 1000), **kwargs)
    return adapt(resolve(source)(**kwargs), source, config)


def _is_gymnax(env: Any) -> bool:
    return all(callable(getattr(env, m, None)) for m in ("reset_env", "step_env", "action_space"))


def _is_brax(env: Any) -> bool:
    try:
        from brax.envs.base import Env
    except ImportError:
        return False
    return isinstance(env, Env)


def adapt(made: Any, source: str, config: Mapping[str, Any]):
    """What a ``<module>:<factory>`` returned, behind the adapter protocol: a gymnax ``(env, params)``
    pair (as ``gymnax.make`` returns) or a gymnax ``Environment`` alone (its default params), a Brax
    ``Env``, or a plain object with ``reset(key)``/``step(key, state, action)``."""
    episode_length = config.get("episode_length")
    if isinstance(made, tuple) and len(made) == 2 and _is_gymnax(made[0]):
        from rewardsmith.tasks.gymnax_env import GymnaxAdapter

        return GymnaxAdapter(source, env=made[0], params=made[1])
    if _is_gymnax(made):
        from rewardsmith.tasks.gymnax_env import GymnaxAdapter

        return GymnaxAdapter(source, env=made)
    if _is_brax(made):
        from rewardsmith.tasks.brax_env import BraxAdapter

        return BraxAdapter(source, episode_length=int(episode_length or 1000), env=made)
    if isinstance(made, tuple):
        raise TypeError(f"{source} returned a tuple of {len(made)} whose first item is not a gymnax environment "
                        "(expected (env, params) as gymnax.make returns, or one environment object)")
    return FactoryAdapter(made, episode_length)


def unwrap(adapter) -> Any:
    """The environment object itself (for its source and action space)."""
    return adapter.env


# --- the state view, inferred from the state pytree ------------------------------------------

def _leaf_name(path) -> str:
    parts = []
    for p in path:
        key = getattr(p, "name", None) or getattr(p, "key", None)
        if key is None:
            key = getattr(p, "idx", None)
        parts.append(str(key))
    name = re.sub(r"\W+", "_", "_".join(parts)).strip("_") or "state"
    return name if name[0].isalpha() else "f_" + name


def _brax_view(es) -> dict:
    """A registered Brax env: its observation, generalized coordinates and the root body's motion."""
    ps = es.inner.pipeline_state
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return {"obs": f(es.inner.obs).reshape(-1), "q": f(ps.q), "qd": f(ps.qd), "root_pos": f(ps.x.pos[0]),
            "root_rot": f(ps.x.rot[0]), "root_vel": f(ps.xd.vel[0]), "root_ang_vel": f(ps.xd.ang[0]),
            "prev_action": f(es.prev_action), "dt": f(es.dt), "step": f(es.t)}


def _inner(env_state) -> Any:
    return env_state.inner if isinstance(env_state, OwnEnvState) else env_state


def state_view(env_state) -> dict:
    """Every numeric leaf of the state pytree, named by its path (``hooks.state_view``)."""
    from rewardsmith.tasks.brax_env import BraxEnvState

    if isinstance(env_state, BraxEnvState):
        return _brax_view(env_state)
    out: dict[str, jax.Array] = {}
    leaves = jax.tree_util.tree_flatten_with_path(_inner(env_state))[0]
    for path, leaf in leaves:
        if not hasattr(leaf, "dtype") or jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            continue
        if not (jnp.issubdtype(leaf.dtype, jnp.number) or jnp.issubdtype(leaf.dtype, jnp.bool_)):
            continue
        name = _leaf_name(path) if path else "state"
        while name in out:
            name += "_"
        out[name] = jnp.asarray(leaf, jnp.float32)
    if isinstance(env_state, OwnEnvState) and "step" not in out:
        out["step"] = jnp.asarray(env_state.t, jnp.float32)
    return out


def infer_fields(adapter) -> list[dict]:
    """Schema fields (as task-file entries) from the shapes of one reset state's view."""
    state = jax.eval_shape(lambda k: adapter.reset(k)[1], jax.random.PRNGKey(0))
    view = jax.eval_shape(state_view, state)
    fields = []
    for name, leaf in view.items():
        entry: dict[str, Any] = {"name": name, "shape": list(leaf.shape), "unit": "",
                                 "doc": "inferred from the environment state (see the environment source)"}
        if name in _STEP_NAMES or name.endswith(("_time", "_step")):
            entry.update(kind="count", doc="steps elapsed in the episode")
        if name == "dt":
            entry.update(kind="constant", unit="s", doc="control time step (seconds per environment step)")
        fields.append(entry)
    return fields


def merge_fields(inferred: list[dict], given: list[dict] | None) -> list[dict]:
    """The task file's fields (docs, units, ranges, kinds) over the inferred ones, by name."""
    given = list(given or [])
    names = {f["name"] for f in inferred}
    unknown = [g["name"] for g in given if g.get("name") not in names]
    if unknown:
        raise ValueError(f"schema fields {unknown} are not in the environment state; it has: {', '.join(sorted(names))}")
    by_name = {g["name"]: g for g in given}
    return [{**f, **by_name.get(f["name"], {})} for f in inferred]


def infer_action(adapter, given: Mapping[str, Any] | None) -> dict:
    """The action spec from the environment (gymnax spaces, Brax action_size, a factory's
    num_actions / action_size), unless the task file gives one."""
    if given:
        return dict(given)
    env = unwrap(adapter)
    if hasattr(adapter, "params") and hasattr(env, "action_space"):
        # the space's type decides: gymnax's num_actions is 1 for a one-dimensional Box
        space = env.action_space(adapter.params)
        n = getattr(space, "n", None) or getattr(space, "num_categories", None)
        if n is not None:
            return {"kind": "discrete", "n": int(n), "doc": "the environment's discrete action (its Discrete space)"}
        if getattr(space, "shape", None) is not None and hasattr(space, "low") and hasattr(space, "high"):
            return {"kind": "continuous", "shape": list(space.shape) or [1], "low": _bound(jnp.min(space.low)),
                    "high": _bound(jnp.max(space.high)), "doc": "the environment's action (its Box space)"}
        raise ValueError(f"cannot tell the action of {type(env).__name__} from its {type(space).__name__} action "
                         "space: give the task's schema.action")
    n = getattr(env, "num_actions", None)
    if n is not None:
        return {"kind": "discrete", "n": int(n), "doc": "the environment's discrete action"}
    size = getattr(env, "action_size", None)
    if size is not None:
        return {"kind": "continuous", "shape": [int(size)], "low": -1.0, "high": 1.0,
                "doc": "the environment's action"}
    raise ValueError(f"cannot tell the action of {type(env).__name__}: give num_actions or action_size, "
                     "or the task's schema.action")


def _bound(x) -> float:
    """A Box bound as written (float32 0.1 is 0.10000000149 as a double)."""
    return float(f"{float(x):.7g}")


# --- fitness -----------------------------------------------------------------------------------

_FITNESS_ARGS = ("state", "action", "next_state", "env_reward", "terminated")


def fitness_fn(spec: Mapping[str, Any]) -> Callable[..., jax.Array]:
    """``fitness.expression`` (over the five arguments and ``jnp``) or ``fitness.function``."""
    if spec.get("function"):
        fn = resolve(str(spec["function"]))
        if not callable(fn):
            raise TypeError(f"fitness.function {spec['function']} is not callable")
    else:
        expr = str(spec.get("expression") or "env_reward")
        try:
            code = compile(ast.parse(expr, mode="eval"), "<fitness.expression>", "eval")
        except SyntaxError as e:
            raise ValueError(f"fitness.expression {expr!r} is not a Python expression: {e.msg}") from None

        def fn(state, action, next_state, env_reward, terminated):
            env = dict(zip(_FITNESS_ARGS, (state, action, next_state, env_reward, terminated)), jnp=jnp)
            return eval(code, {"__builtins__": {}}, env)  # the task author's own expression, not candidate code

    def fitness_step(*args):
        return jnp.asarray(fn(*args), jnp.float32).reshape(())

    return fitness_step


def hooks(fitness: Mapping[str, Any]) -> TaskHooks:
    return TaskHooks(make_env=make_env, state_view=state_view, fitness_step=fitness_fn(fitness))


# --- the environment's source, for the prompt ---------------------------------------------------

_KEEP = re.compile(r"step|obs|reward|reset|terminal|done|dynamics|physics|state", re.I)


def source_excerpt(adapter, budget: int = SOURCE_CHARS) -> str:
    """The environment class's source, trimmed to ``budget`` characters: the whole class where it
    fits, else its step/observation/reset/termination methods first."""
    env = unwrap(adapter)
    try:
        src = textwrap.dedent(inspect.getsource(type(env)))
    except (OSError, TypeError):
        return ""
    if len(src) <= budget:
        return src
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src[:budget] + "\n# ... (trimmed)\n"
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    lines = src.splitlines()
    if cls is None:
        return src[:budget] + "\n# ... (trimmed)\n"
    methods = [n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    methods.sort(key=lambda n: 0 if _KEEP.search(n.name) else 1)
    out = [lines[cls.lineno - 1]]
    used = len(out[0])
    for m in methods:
        start = (m.decorator_list[0].lineno if m.decorator_list else m.lineno) - 1
        text = "\n".join(lines[start:m.end_lineno])
        if used + len(text) > budget:
            continue
        out.append(text)
        used += len(text) + 1
    return "\n".join(out) + "\n    # ... (other methods trimmed)\n"
