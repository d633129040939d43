"""Trace check, run in the worker: ``jax.eval_shape`` for structure, then one short jitted
random-policy rollout that evaluates every surviving candidate and checks the rewards are finite."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rewardsmith.records import Validation
from rewardsmith.tasks.autoreset import reset_where_done
from rewardsmith.tasks.base import Task
from rewardsmith.tasks.schema import StateSchema
from rewardsmith.validate.load import (RewardLoadError, abstract_inputs, describe_exception, load_reward_fn,
                                       make_branch, output_structure_error)


def shape_check(source: str, name: str, task: Task, max_components: int) -> tuple[Validation, Callable | None]:
    """Load and ``eval_shape`` one candidate; returns its validation and, if it passed, its branch.

    This executes the candidate in the calling process: call it only on code that passed
    ``rewardsmith.validate.isolate.check_isolated`` (or in a process that is itself limited)."""
    return trace_check(source, name, task.schema, max_components)


def trace_check(source: str, name: str, schema: StateSchema, max_components: int,
                       cost_bounds: tuple[float, float] | None = None) -> tuple[Validation, Callable | None]:
    """Trace once on the schema's abstract transition; with ``cost_bounds`` (flops, bytes) that same
    trace is compiled and its cost checked too (``cost_check``)."""
    try:
        fn = load_reward_fn(source, name)
    except RewardLoadError as e:
        return Validation(ok=False, stage="trace", reason=str(e)), None
    state, action = abstract_inputs(schema)
    try:
        traced = jax.jit(fn).trace(state, action, state)
    except Exception as e:  # noqa: BLE001
        return Validation(ok=False, stage="trace", reason=f"tracing failed: {describe_exception(e, name)}"), None
    err, names = output_structure_error(traced.out_info, max_components)
    if err:
        return Validation(ok=False, stage="trace", reason=err), None
    cost: dict = {}
    if cost_bounds is not None:
        cost = cost_figures(traced)
        reason = cost_check(traced, *cost_bounds, figures=cost)
        if reason:
            return Validation(ok=False, stage="cost", reason=reason, cost=cost), None
    return (Validation(ok=True, stage="passed", components=names, cost=cost),
            make_branch(fn, names, max_components))


# The trainer evaluates the reward on every stored transition of every member, so a reward that costs
# like a 2048 x 2048 matmul holds the whole generation. A Brax ant's reward costs about a thousand
# flops and a few kilobytes; the bounds (CheckLimits.max_flops, max_mb) are far above that.
def cost_figures(traced) -> dict:
    """Compile a reward traced on one abstract transition (``jax.jit(fn).trace(...)``) and read XLA's
    cost and memory analysis: flops, bytes accessed, temporary bytes."""
    compiled = traced.lower().compile()
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) and cost else cost) or {}
    memory = compiled.memory_analysis()
    temp = float(getattr(memory, "temp_size_in_bytes", 0) or 0) if memory is not None else 0.0
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0)),
            "temp_bytes": temp}


def cost_check(traced, max_flops: float = 1e7, max_bytes: float = 16 * 2 ** 20, *,
               figures: dict | None = None) -> str:
    """'' when the reward's compiled cost (``cost_figures``) is within the bounds, else one line with the figures."""
    f = figures if figures is not None else cost_figures(traced)
    flops, accessed, temp = f["flops"], f["bytes"], f["temp_bytes"]
    over = [f"{name} {value:.3g} > {bound:.3g}" for name, value, bound in (
        ("flops", flops, max_flops), ("bytes accessed", accessed, max_bytes), ("temporary bytes", temp, max_bytes))
        if value > bound]
    if not over:
        return ""
    return (f"too costly for a reward: on one transition, compiled, it needs {', '.join(over)} (the trainer "
            f"evaluates it on every transition of every member; cost per transition: {flops:.3g} flops, "
            f"{accessed:.3g} bytes accessed, {temp:.3g} temporary bytes)")


def env_step_flops(task: Task) -> float:
    """What one step of the task's environment costs (XLA's analysis of the lowered step, not compiled:
    a fraction of a second even for Brax); 0 where it cannot be read."""
    try:
        env = task.make_env()
        key = jax.random.PRNGKey(0)
        _, es = jax.eval_shape(env.reset, key)
        act = task.schema.action
        a = jax.ShapeDtypeStruct((), jnp.int32) if act.kind == "discrete" else \
            jax.ShapeDtypeStruct(tuple(act.shape), jnp.float32)
        cost = jax.jit(env.step).lower(key, es, a).cost_analysis()
        cost = (cost[0] if isinstance(cost, (list, tuple)) and cost else cost) or {}
        return float(cost.get("flops", 0.0))
    except Exception:  # noqa: BLE001 - no figure: the absolute bound alone applies
        return 0.0


def relative_cost_check(v: Validation, step_flops: float, factor: float) -> Validation:
    """A reward that passed the absolute bounds, refused where it costs more than ``factor`` times the
    environment's own step (``check_relative_cost``): the trainer runs both on every transition."""
    flops = float((v.cost or {}).get("flops", 0.0))
    if not v.ok or factor <= 0 or step_flops <= 0 or flops <= factor * step_flops:
        return v
    return Validation(ok=False, stage="cost", cost=v.cost, reason=(
        f"too costly for a reward: {flops:.3g} flops per transition, {flops / step_flops:.0f} times the "
        f"environment's own step ({step_flops:.3g} flops; the bound is check_relative_cost={factor:g} times)"))


def rollout_check(task: Task, branches: list[Callable], *, num_envs: int = 32, num_steps: int = 64,
                  seed: int = 0, before_run: Callable[[], None] | None = None) -> list[str | None]:
    """Evaluate all branches on one random-policy rollout; return a reason per branch (None = finite).
    The program is compiled first; ``before_run`` is called between compiling and running it."""
    if not branches:
        return []
    env = task.make_env()
    schema = task.schema
    act = schema.action

    def view(es):
        return schema.make_state(task.hooks.state_view(es))

    def random_action(key):
        if act.kind == "discrete":
            return jax.random.randint(key, (), 0, act.n).astype(jnp.int32)
        return jax.random.uniform(key, act.shape, minval=act.low, maxval=act.high)

    @jax.jit
    def rollout(key):
        k0, key = jax.random.split(key)
        _, es = jax.vmap(env.reset)(jax.random.split(k0, num_envs))

        def step(carry, _):
            es, key = carry
            key, ka, ks, kr = jax.random.split(key, 4)
            a = jax.vmap(random_action)(jax.random.split(ka, num_envs))
            _, es2, _, term, trunc = jax.vmap(env.step)(jax.random.split(ks, num_envs), es, a)
            s, ns = jax.vmap(view)(es), jax.vmap(view)(es2)
            outs = [jax.vmap(b)(s, a, ns) for b in branches]
            finite = jnp.stack([jnp.isfinite(t) & jnp.all(jnp.isfinite(c), -1) for t, c in outs])  # [B, N]
            _, es_next = reset_where_done(env, kr, term | trunc, es2)
            return (es_next, key), (finite, ns)

        _, (finite, states) = jax.lax.scan(step, (es, key), None, num_steps)
        return finite, states

    key = jax.random.PRNGKey(seed)
    program = rollout.lower(key).compile()
    if before_run is not None:
        before_run()
    finite, states = jax.device_get(program(key))
    reasons: list[str | None] = []
    for b in range(len(branches)):
        ok = np.asarray(finite[:, b])  # [T, N]
        if ok.all():
            reasons.append(None)
            continue
        t, n = np.argwhere(~ok)[0]
        at = ", ".join(f"{f}={float(np.ravel(getattr(states, f)[t, n])[0]):.4g}" for f in schema.names)
        reasons.append(f"reward is not finite (NaN or inf) in {int((~ok).sum())} of {ok.size} random-policy "
                       f"steps, e.g. at next_state ({at})")
    return reasons
