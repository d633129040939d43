"""Turning validated source into a JAX reward branch. Runs only inside the keyless worker."""

from __future__ import annotations

import ast
import builtins
import math
import importlib
import os
import sys
import traceback
from typing import Any, Callable

import jax
import jax.numpy as jnp

from rewardsmith.validate import rules


class RewardLoadError(Exception):
    pass


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    # C extensions (jaxlib's dispatch) import through the *calling frame's* builtins via
    # PyImport_Import, which passes an empty list as fromlist; import statements pass None or a
    # tuple. Those internal imports only ever fetch modules that are already loaded.
    if isinstance(fromlist, list) and not fromlist and level == 0 and name in sys.modules:
        return importlib.__import__(name, globals, locals, fromlist, level)
    if level != 0:
        raise ImportError("relative imports are not allowed in reward code")
    wanted = {name} | {f"{name}.{f}" for f in (fromlist or ()) if f"{name}.{f}" in rules.ALLOWED_MODULES}
    if name not in rules.ALLOWED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed in reward code")
    for mod in wanted:
        importlib.import_module(mod)
    return importlib.__import__(name, globals, locals, fromlist, level)


def safe_builtins() -> dict[str, Any]:
    table = {n: getattr(builtins, n) for n in rules.ALLOWED_BUILTINS if hasattr(builtins, n)}
    table["__import__"] = _guarded_import
    return table


class _StripAnnotations(ast.NodeTransformer):
    """Annotations never run: the gate does not check them, so they are removed before compiling
    (``from __future__ import annotations`` with them)."""

    def visit_FunctionDef(self, node: ast.FunctionDef):
        self.generic_visit(node)
        node.returns = None
        for a in node.args.args + node.args.posonlyargs + node.args.kwonlyargs:
            a.annotation = None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None:
            return ast.copy_location(ast.Pass(), node)
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)

    def visit_ImportFrom(self, node: ast.ImportFrom):
        return ast.copy_location(ast.Pass(), node) if node.module == "__future__" else node


def compile_reward(source: str, name: str):
    tree = _StripAnnotations().visit(ast.parse(source, f"<reward {name}>"))
    return compile(ast.fix_missing_locations(tree), f"<reward {name}>", "exec", dont_inherit=True)


# Test-only hook (tests/test_sandbox.py): run candidate code with the full builtins, as if the
# in-process defences had a hole, to show what the OS sandbox alone still stops. Never a setting.
UNGUARDED_TEST_HOOK = "REWARDSMITH_TEST_ONLY_UNGUARDED_REWARDS"


def load_reward_fn(source: str, name: str = "candidate") -> Callable:
    """Execute reward source in a namespace with allow-listed builtins; return compute_reward."""
    table = builtins.__dict__ if os.environ.get(UNGUARDED_TEST_HOOK) == "1" else safe_builtins()
    namespace: dict[str, Any] = {"__builtins__": table, "__name__": f"rewardsmith_reward_{name}"}
    try:
        exec(compile_reward(source, name), namespace)
    except Exception as e:  # noqa: BLE001 - any failure is the candidate's
        raise RewardLoadError(f"loading failed: {describe_exception(e, name)}") from None
    fn = namespace.get(rules.REWARD_FN)
    if not callable(fn):
        raise RewardLoadError(f"source defines no callable {rules.REWARD_FN}")
    return fn


def describe_exception(e: BaseException, name: str) -> str:
    """One line: exception type, message, and the candidate's own line number when known."""
    where = ""
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if frame.filename == f"<reward {name}>":
            where = f"line {frame.lineno}: "
            break
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{where}{type(e).__name__}: {msg}"[:400]


def make_branch(fn: Callable, component_names: list[str], max_components: int) -> Callable:
    """Wrap a reward so every candidate returns the same pytree: (total[], components[max])."""
    names = list(component_names)

    def branch(state, action, next_state):
        total, comps = fn(state, action, next_state)
        values = [jnp.asarray(comps[n], jnp.float32).reshape(()) for n in names]
        values += [jnp.float32(0.0)] * (max_components - len(values))
        return jnp.asarray(total, jnp.float32).reshape(()), jnp.stack(values)

    return branch


def output_structure_error(out: Any, max_components: int) -> tuple[str | None, list[str]]:
    """Check an ``eval_shape`` result; return (error or None, component names)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return (f"{rules.REWARD_FN} must return (total_reward, components_dict); got {type(out).__name__}", [])
    total, comps = out
    if not hasattr(total, "shape") or math.prod(total.shape) != 1:
        return (f"total reward must be a scalar; got shape {getattr(total, 'shape', type(total).__name__)}", [])
    if not isinstance(comps, dict):
        return (f"components must be a dict of name -> scalar; got {type(comps).__name__}", [])
    if len(comps) > max_components:
        return (f"at most {max_components} components; got {len(comps)}", [])
    for k, v in comps.items():
        if not isinstance(k, str):
            return (f"component names must be strings; got {k!r}", [])
        if not hasattr(v, "shape") or math.prod(v.shape) != 1:
            return (f"component {k!r} must be a scalar; got shape {getattr(v, 'shape', type(v).__name__)}", [])
    if not jnp.issubdtype(total.dtype, jnp.floating) and not jnp.issubdtype(total.dtype, jnp.integer) \
            and total.dtype != jnp.bool_:
        return (f"total reward must be numeric; got {total.dtype}", [])
    return None, sorted(comps)


def abstract_inputs(schema) -> tuple[Any, Any]:
    state = schema.make_state({f.name: jax.ShapeDtypeStruct(f.shape, jnp.float32) for f in schema.fields})
    act = schema.action
    if act.kind == "discrete":
        action = jax.ShapeDtypeStruct((), jnp.int32)
    else:
        action = jax.ShapeDtypeStruct(act.shape, jnp.float32)
    return state, action
