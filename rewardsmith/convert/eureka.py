"""Turn an Eureka / Isaac Gym reward written in PyTorch into rewardsmith's reward contract.

A libcst transform, not a translator of arbitrary PyTorch: it handles what Eureka's rewards are made
of and names, in one line each, what it cannot convert.

* ``@torch.jit.script`` and every type annotation are dropped; ``import torch`` becomes
  ``import jax.numpy as jnp`` and ``typing`` imports go.
* The signature ``compute_reward(root_states, dof_vel, actions, prev_potentials, dt, ...)`` becomes
  ``compute_reward(state, action, next_state)``; each old parameter is bound at the top of the body
  from the task's schema (``root_states = next_state.root_states``, ``prev_potentials =
  state.potentials``, ``actions = action``, ``up_proj = next_state.up_proj``).
* The batch axis goes: ``x[:, i]`` -> ``x[i]``, ``dim=1`` -> ``axis=0``, ``dim=-1`` stays; a reduction
  over the batch (``dim=0``) or the batch size (``x.shape[0]``) cannot be converted.
* ``torch.f`` -> ``jnp.f`` (``clamp`` -> ``clip``, ``norm`` -> ``linalg.norm``, ``cat`` ->
  ``concatenate``, ...), tensor methods to functions (``x.clamp(...)`` -> ``jnp.clip(x, ...)``,
  ``x.pow(2)`` -> ``x ** 2``, ``.unsqueeze`` -> ``jnp.expand_dims``; ``.detach()``/``.to()``/... vanish),
  and in-place writes to ``.at[].set()`` (``jnp.where`` for a boolean mask, which jit needs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from rewardsmith.tasks.schema import StateSchema
from rewardsmith.validate import rules
from rewardsmith.validate.static import dotted_name as _dotted

# Eureka / Isaac Gym inputs that read another field or the state before the step.
_ISAAC_INPUTS = {
    "prev_potentials": "state.potentials",
    "actions": "action",
    "action": "action",
    "torso_position": "next_state.torso_pos",
    "torso_rotation": "next_state.torso_rot",
    "velocity": "next_state.torso_vel",
    "ang_velocity": "next_state.torso_ang_vel",
    "progress_buf": "next_state.step",
    "velocities": "next_state.torso_vel",
    "dof_force_tensor": "next_state.dof_force",
}
# Isaac Gym inputs this environment has no counterpart for, and why
_NO_COUNTERPART = {
    "sensor_force_torques": "the Brax body has no foot force sensors",
    "vec_sensor_tensor": "the Brax body has no foot force sensors",
    "contact_forces": "the spring physics computes no contact forces for the reward",
}
# Isaac Gym's task settings (IsaacGymEnvs cfg/task/Ant.yaml, Humanoid.yaml) under the names the task
# object gives them: an Eureka reward that takes one as a parameter gets its value.
ISAAC_SETTINGS = {
    "ant": {"power_scale": 1.0, "heading_weight": 0.5, "up_weight": 0.1, "actions_cost_scale": 0.005,
            "energy_cost_scale": 0.05, "dof_vel_scale": 0.2, "contact_force_scale": 0.1,
            "joints_at_limit_cost_scale": 0.1, "death_cost": -2.0, "termination_height": 0.31},
    "humanoid": {"power_scale": 1.0, "heading_weight": 0.5, "up_weight": 0.1, "actions_cost_scale": 0.01,
                 "energy_cost_scale": 0.05, "dof_vel_scale": 0.1, "angular_velocity_scale": 0.25,
                 "contact_force_scale": 0.01, "joints_at_limit_cost_scale": 0.25, "death_cost": -1.0,
                 "termination_height": 0.8},
}
# torch.nn.functional -> JAX (normalize is written out: x / max(|x|, eps))
_FUNCTIONAL = {
    "relu": "jax.nn.relu", "relu6": "jax.nn.relu6", "sigmoid": "jax.nn.sigmoid", "softplus": "jax.nn.softplus",
    "elu": "jax.nn.elu", "selu": "jax.nn.selu", "celu": "jax.nn.celu", "gelu": "jax.nn.gelu", "silu": "jax.nn.silu",
    "leaky_relu": "jax.nn.leaky_relu", "softmax": "jax.nn.softmax", "log_softmax": "jax.nn.log_softmax",
    "tanh": "jnp.tanh", "hardtanh": "jnp.clip", "softsign": "jax.nn.soft_sign", "logsigmoid": "jax.nn.log_sigmoid",
    "hardswish": "jax.nn.hard_swish", "mish": "jax.nn.mish",
}
_METHOD_TO_FUNCTION = {
    "exp": "jnp.exp", "log": "jnp.log", "sqrt": "jnp.sqrt", "abs": "jnp.abs", "tanh": "jnp.tanh",
    "sin": "jnp.sin", "cos": "jnp.cos", "sign": "jnp.sign", "square": "jnp.square", "sigmoid": "jax.nn.sigmoid",
    "clamp": "jnp.clip", "clip": "jnp.clip", "clamp_min": "jnp.maximum", "clamp_max": "jnp.minimum",
    "unsqueeze": "jnp.expand_dims", "norm": "jnp.linalg.norm", "pow": "jnp.power", "atan2": "jnp.arctan2",
}
_VANISH = {"detach", "cpu", "cuda", "to", "clone", "contiguous", "requires_grad_"}
_DROP_KWARGS = {"device", "requires_grad", "non_blocking", "memory_format", "layout", "pin_memory"}
_BATCH_METHODS = {"view", "expand", "repeat", "numel", "size", "item", "tolist", "index_select", "gather",
                  "scatter", "masked_fill", "nonzero"}


class ConvertError(ValueError):
    """What cannot be converted, one line per construct."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclasses.dataclass
class Converted:
    source: str
    inputs: dict[str, str]  # old parameter -> what it reads now
    changes: list[str]


def _expr(code: str) -> cst.BaseExpression:
    return cst.parse_expression(code)


def _int_value(node: cst.BaseExpression) -> int | None:
    if isinstance(node, cst.Integer):
        return int(node.value)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus) \
            and isinstance(node.expression, cst.Integer):
        return -int(node.expression.value)
    return None


def _is_full_slice(el: cst.SubscriptElement) -> bool:
    s = el.slice
    return isinstance(s, cst.Slice) and s.lower is None and s.upper is None and s.step is None


def _looks_boolean(node: cst.BaseExpression) -> bool:
    if isinstance(node, (cst.Comparison, cst.BooleanOperation)):
        return True
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, (cst.BitInvert, cst.Not)):
        return True
    if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, (cst.BitAnd, cst.BitOr)):
        return True
    return False


class _Transformer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, reward_name: str, inputs: dict[str, str]):
        super().__init__()
        self.reward_name, self.inputs = reward_name, inputs
        self.problems: list[str] = []
        self.changes: set[str] = set()
        self._masks: set[str] = set()  # names assigned a boolean expression

    def _fail(self, node: cst.CSTNode, what: str) -> None:
        line = self.get_metadata(PositionProvider, node).start.line
        self.problems.append(f"line {line}: {what}")

    # -- imports, decorators, annotations ------------------------------------------------------
    def leave_Import(self, original, updated):
        names = [_dotted(a.name) for a in updated.names]
        if any(rules.is_torch(n) for n in names):
            self.changes.add("import torch -> import jax.numpy as jnp")
            return cst.parse_statement("import jax.numpy as jnp").body[0]
        if all(n in ("typing", "math") for n in names):
            return updated if names == ["math"] else cst.RemovalSentinel.REMOVE
        return updated

    def leave_ImportFrom(self, original, updated):
        module = _dotted(updated.module) if updated.module else ""
        if module in ("typing", "__future__") or rules.is_torch(module) or module.startswith("isaacgym"):
            self.changes.add(f"from {module} import ... removed")
            return cst.RemovalSentinel.REMOVE
        return updated

    def leave_Decorator(self, original, updated):
        target = updated.decorator.func if isinstance(updated.decorator, cst.Call) else updated.decorator
        if rules.is_torch(_dotted(target)):
            self.changes.add("@torch.jit.script removed (jax.jit compiles the reward)")
            return cst.RemovalSentinel.REMOVE
        return updated

    def leave_Param(self, original, updated):
        if updated.annotation is not None:
            self.changes.add("type annotations removed")
        return updated.with_changes(annotation=None)

    def leave_AnnAssign(self, original, updated):
        self.changes.add("type annotations removed")
        if updated.value is None:
            return cst.RemovalSentinel.REMOVE
        return cst.Assign(targets=[cst.AssignTarget(updated.target)], value=updated.value)

    def leave_FunctionDef(self, original, updated):
        updated = updated.with_changes(returns=None)
        if updated.name.value != self.reward_name:
            return updated
        prologue = [cst.parse_statement(f"{old} = {new}\n") for old, new in self.inputs.items()
                    if old not in ("state", "action", "next_state") or new != old]
        body = list(updated.body.body)
        doc = body[:1] if body and _is_docstring(body[0]) else []
        params = cst.Parameters(params=[cst.Param(cst.Name(n)) for n in ("state", "action", "next_state")])
        self.changes.add("signature -> compute_reward(state, action, next_state), inputs read from the schema")
        return updated.with_changes(name=cst.Name("compute_reward"), params=params,
                                    body=updated.body.with_changes(body=doc + prologue + body[len(doc):]))

    # -- the batch axis --------------------------------------------------------------------------
    def leave_Subscript(self, original, updated):
        els = list(updated.slice)
        if any(isinstance(e.slice, cst.Index) and isinstance(e.slice.value, cst.List) for e in els):
            # PyTorch indexes with a list; JAX needs an array
            self.changes.add("list indices -> jnp.array([...])")
            els = [e.with_changes(slice=cst.Index(cst.Call(func=_expr("jnp.array"), args=[cst.Arg(e.slice.value)])))
                   if isinstance(e.slice, cst.Index) and isinstance(e.slice.value, cst.List) else e for e in els]
            updated = updated.with_changes(slice=els)
        if len(els) >= 2 and _is_full_slice(els[0]):
            self.changes.add("batch axis removed: x[:, i] -> x[i]")
            rest = els[1:]
            rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated.with_changes(slice=rest)
        if isinstance(updated.value, cst.Attribute) and updated.value.attr.value == "shape":
            idx = _int_value(els[0].slice.value) if isinstance(els[0].slice, cst.Index) else None
            if idx == 0:
                self._fail(original, "x.shape[0] is the number of environments: there is no batch here "
                                     "(write the per-environment value)")
        return updated

    def _axis(self, node: cst.CSTNode, arg: cst.Arg) -> cst.Arg | None:
        value = _int_value(arg.value)
        if value is None:
            self._fail(node, "dim= with a computed value cannot be converted: give the axis as a number")
            return arg
        if value == 0:
            self._fail(node, "dim=0 reduces over the batch of environments: there is one environment here")
            return arg
        self.changes.add("dim=k -> axis=k-1 (no batch axis); keepdim -> keepdims")
        return arg.with_changes(keyword=cst.Name("axis"), value=_expr(str(value - 1 if value > 0 else value)))

    def _args(self, node: cst.CSTNode, args) -> list[cst.Arg]:
        out = []
        for a in args:
            kw = a.keyword.value if a.keyword else None
            if kw in _DROP_KWARGS:
                continue
            if kw == "dim":
                a = self._axis(node, a)
            elif kw == "keepdim":
                a = a.with_changes(keyword=cst.Name("keepdims"))
            elif kw == "dtype":
                a = a.with_changes(value=self._dtype(a.value))
            out.append(a)
        if out:
            out[-1] = out[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return out

    def _dtype(self, value: cst.BaseExpression) -> cst.BaseExpression:
        name = _dotted(value)
        if rules.is_torch(name):
            kind = name.split(".")[-1]
            return _expr(f"jnp.{ {'float': 'float32', 'long': 'int32', 'int': 'int32', 'bool': 'bool_'}.get(kind, kind)}")
        return value

    # -- calls -------------------------------------------------------------------------------------
    def leave_Call(self, original, updated):
        func = updated.func
        name = _dotted(func)
        self._batch_reduction(original, updated, name)
        args = self._args(original, updated.args)
        if name and rules.is_torch(name):
            parts = name.split(".")
            fn = parts[-1]
            if parts[1:3] == ["nn", "functional"] and len(parts) == 4:
                return self._functional(original, fn, args)
            if len(parts) == 2:
                target = rules.TORCH_FUNCTION_HINTS.get(fn) or (f"jnp.{fn}" if fn in rules.JNP_ALLOW else "")
                if fn in ("tensor", "as_tensor"):
                    target = "jnp.asarray"
                positional = [a for a in args if a.keyword is None]
                if fn in ("max", "min"):
                    if any(a.keyword and a.keyword.value == "axis" for a in args) or (
                            len(positional) == 2 and _int_value(positional[1].value) is not None):
                        self._fail(original, f"torch.{fn}(x, dim) returns (values, indices) in PyTorch: write "
                                             f"jnp.{fn}(x, axis=...) (or jnp.arg{fn})")
                        return updated.with_changes(args=args)
                    if len(positional) == 2:  # torch.max(a, b) is elementwise
                        self.changes.add("torch.max(a, b) -> jnp.maximum(a, b)")
                        target = "jnp.maximum" if fn == "max" else "jnp.minimum"
                if fn == "norm":
                    args = _p_to_ord(args)
                if not target or "." not in target:
                    self._fail(original, f"torch.{'.'.join(parts[1:])} has no JAX counterpart here: write it with jnp")
                    return updated.with_changes(args=args)
                self.changes.add("torch.f -> jnp.f")
                return updated.with_changes(func=_expr(target), args=args)
            self._fail(original, f"{name} cannot be converted: write it with jnp")
            return updated
        if isinstance(func, cst.Attribute):
            method = func.attr.value
            obj = func.value
            if _dotted(obj) in ("jnp", "jax", "jax.numpy", "math", "jax.nn", "jax.lax"):
                return updated.with_changes(args=args)
            if method in _VANISH:
                self.changes.add(".detach()/.to()/.cpu()/.clone() removed")
                return obj
            if method == "float":
                self.changes.add(".float() -> .astype(jnp.float32)")
                return cst.Call(func=cst.Attribute(obj, cst.Name("astype")), args=[cst.Arg(_expr("jnp.float32"))])
            if method == "type" or method == "type_as":
                return obj
            if method in ("view", "reshape") and len(args) == 1 and _int_value(args[0].value) == -1:
                self.changes.add("x.view(-1) -> jnp.squeeze(x) (one environment: its value)")
                return cst.Call(func=_expr("jnp.squeeze"), args=[cst.Arg(obj)])
            if method == "expand_as" and len(args) == 1:
                self.changes.add("x.expand_as(y) -> jnp.broadcast_to(x, y.shape)")
                return cst.Call(func=_expr("jnp.broadcast_to"), args=[
                    cst.Arg(obj, comma=_comma()), cst.Arg(cst.Attribute(_paren(args[0].value), cst.Name("shape")))])
            if method in ("max", "min") and any(a.keyword and a.keyword.value == "axis" for a in args):
                self._fail(original, f".{method}(dim=...) returns (values, indices) in PyTorch: write "
                                     f"jnp.{method}(x, axis=...) (or jnp.arg{method})")
                return updated.with_changes(args=args)
            if method == "pow" and len(args) == 1:
                self.changes.add("x.pow(n) -> x ** n")
                return cst.BinaryOperation(left=_paren(obj), operator=cst.Power(), right=_paren(args[0].value),
                                           lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            if method in ("clamp", "clip"):
                args = [a.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT) if a.keyword is None else a
                        for a in args]
            if method == "unsqueeze" and len(args) == 1:
                axis = _int_value(args[0].value)
                if axis is not None and axis >= 1:
                    args = [args[0].with_changes(value=_expr(str(axis - 1)))]
            if method == "norm":
                args = _p_to_ord(args)
                if args and args[0].keyword is None:  # x.norm(2) -> ord=2
                    args[0] = args[0].with_changes(keyword=cst.Name("ord"), equal=cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))
            if method in _METHOD_TO_FUNCTION:
                self.changes.add("tensor methods -> jnp functions (x.clamp(...) -> jnp.clip(x, ...))")
                first = cst.Arg(obj, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")) if args else
                                cst.MaybeSentinel.DEFAULT)
                return cst.Call(func=_expr(_METHOD_TO_FUNCTION[method]), args=[first, *args])
            if method in _BATCH_METHODS:
                self._fail(original, f".{method}() cannot be converted: reshape/index the per-environment value "
                                     "with jnp instead")
                return updated.with_changes(args=args)
        return updated.with_changes(args=args)

    def leave_Attribute(self, original, updated):
        name = _dotted(updated)
        if rules.is_torch(name) and len(name.split(".")) == 2 and name.split(".")[1] in (
                "pi", "e", "inf", "nan", "float32", "float64", "int32", "int64", "bool", "float", "long"):
            self.changes.add("torch constants -> jnp")
            return self._dtype(updated) if name.split(".")[1] in ("float", "long") else _expr(
                "jnp." + {"bool": "bool_"}.get(name.split(".")[1], name.split(".")[1]))
        return updated

    def _batch_reduction(self, node: cst.CSTNode, call: cst.Call, name: str) -> None:
        """Every PyTorch tensor of an Eureka reward carries the batch of environments first, so a
        reduction with no dim (torch.mean(x), x.min()) reduces over the batch: no per-environment
        counterpart."""
        if any(a.keyword and a.keyword.value in ("dim", "axis") for a in call.args):
            return
        if rules.is_torch(name) and len(name.split(".")) == 2:
            fn, n_pos = name.split(".")[1], sum(1 for a in call.args if a.keyword is None)
            if fn in _REDUCTIONS and n_pos == 1 and not _is_literal(call.args[0].value):
                self._fail(node, f"torch.{fn}(x) with no dim reduces over every environment of the batch: "
                                 "there is one environment here (give dim, or drop the batch statistic)")
        elif isinstance(call.func, cst.Attribute) and call.func.attr.value in _REDUCTIONS and not call.args \
                and not _dotted(call.func.value).startswith(("jnp", "jax", "math")):
            self._fail(node, f"x.{call.func.attr.value}() with no dim reduces over every environment of the batch: "
                             "there is one environment here (give dim, or drop the batch statistic)")

    def _functional(self, node: cst.CSTNode, fn: str, args: list[cst.Arg]) -> cst.BaseExpression:
        """torch.nn.functional.f(...) -> its JAX counterpart."""
        if fn == "normalize":
            x = next((a.value for a in args if a.keyword is None), None)
            kw = {a.keyword.value: a.value for a in args if a.keyword}
            pos = [a.value for a in args if a.keyword is None][1:]
            ord_ = kw.get("p", pos[0] if pos else cst.Float("2.0"))
            axis = kw.get("axis", pos[1] if len(pos) > 1 else cst.Integer("0"))  # torch's default dim=1
            eps = kw.get("eps", pos[2] if len(pos) > 2 else cst.Float("1e-12"))
            if x is None:
                self._fail(node, "torch.nn.functional.normalize without its input cannot be converted")
                return cst.Name("None")
            self.changes.add("F.normalize(x) -> x / jnp.maximum(jnp.linalg.norm(x, ...), eps)")
            norm = cst.Call(func=_expr("jnp.linalg.norm"), args=[
                cst.Arg(x, comma=_comma()), cst.Arg(ord_, keyword=cst.Name("ord"), comma=_comma(), equal=_eq()),
                cst.Arg(axis, keyword=cst.Name("axis"), comma=_comma(), equal=_eq()),
                cst.Arg(cst.Name("True"), keyword=cst.Name("keepdims"), equal=_eq())])
            den = cst.Call(func=_expr("jnp.maximum"), args=[cst.Arg(norm, comma=_comma()), cst.Arg(eps)])
            return cst.BinaryOperation(left=_paren(x), operator=cst.Divide(), right=den)
        if fn not in _FUNCTIONAL:
            self._fail(node, f"torch.nn.functional.{fn} has no JAX counterpart here: write it with jnp")
            return cst.Name("None")
        self.changes.add("torch.nn.functional.f -> jax.nn.f")
        if fn == "hardtanh":
            args = [a for a in args if a.keyword is None][:1] + [cst.Arg(cst.Float("-1.0")), cst.Arg(cst.Float("1.0"))]
            args = [a.with_changes(comma=_comma()) for a in args[:-1]] + [args[-1]]
        if fn == "leaky_relu":
            args = [a.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT)
                    if a.keyword and a.keyword.value == "negative_slope" else a for a in args]
        args = [a for a in args if not (a.keyword and a.keyword.value == "inplace")]
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return cst.Call(func=_expr(_FUNCTIONAL[fn]), args=args)

    def leave_SimpleStatementLine(self, original, updated):
        """``device = x.device`` (there is one device here) goes."""
        body = [st for st in updated.body if not (
            isinstance(st, cst.Assign) and isinstance(st.value, cst.Attribute) and st.value.attr.value == "device")]
        if len(body) < len(updated.body):
            self.changes.add("device = x.device removed (device= arguments go)")
            if not body:
                return cst.RemovalSentinel.REMOVE
            return updated.with_changes(body=body)
        return updated

    def leave_Module(self, original, updated):
        """Eureka saves the function alone: add the imports the converted code uses."""
        code = updated.code
        have = {_dotted(a.name) + (f" as {a.asname.name.value}" if a.asname else "")
                for st in updated.body if isinstance(st, cst.SimpleStatementLine)
                for imp in st.body if isinstance(imp, cst.Import) for a in imp.names}
        wanted = []
        if "jax." in code.replace("jax.numpy", "") and "jax" not in have:
            wanted.append("import jax\n")
        if "jnp." in code and "jax.numpy as jnp" not in have:
            wanted.append("import jax.numpy as jnp\n")
        if not wanted:
            return updated
        self.changes.add("imports added: " + ", ".join(w.strip() for w in wanted))
        return updated.with_changes(body=[cst.parse_statement(w) for w in wanted] + list(updated.body))

    # -- in-place writes ------------------------------------------------------------------------------
    def visit_Assign(self, node):
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) and _looks_boolean(node.value):
            self._masks.add(node.targets[0].target.value)
        return True

    def _is_mask(self, el: cst.SubscriptElement) -> bool:
        s = el.slice
        if not isinstance(s, cst.Index):
            return False
        v = s.value
        return _looks_boolean(v) or (isinstance(v, cst.Name) and v.value in self._masks)

    def leave_Assign(self, original, updated):
        target = updated.targets[0].target if len(updated.targets) == 1 else None
        if isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name):
            return self._functional_write(target, updated.value, "set")
        return updated

    def leave_AugAssign(self, original, updated):
        if isinstance(updated.target, cst.Subscript) and isinstance(updated.target.value, cst.Name):
            op = {cst.AddAssign: "add", cst.SubtractAssign: "subtract", cst.MultiplyAssign: "multiply",
                  cst.DivideAssign: "divide"}.get(type(updated.operator))
            if op is None:
                self._fail(original, "this in-place operator on an indexed array cannot be converted")
                return updated
            return self._functional_write(updated.target, updated.value, op)
        return updated

    def _functional_write(self, target: cst.Subscript, value: cst.BaseExpression, op: str):
        name = target.value.value
        els = list(target.slice)
        if len(els) == 1 and self._is_mask(els[0]):
            mask = els[0].slice.value
            self.changes.add("masked writes -> jnp.where(mask, value, x)")
            new = {"set": value}.get(op) or cst.BinaryOperation(
                left=cst.Name(name), operator={"add": cst.Add(), "subtract": cst.Subtract(),
                                               "multiply": cst.Multiply(), "divide": cst.Divide()}[op], right=value)
            call = cst.Call(func=_expr("jnp.where"), args=[cst.Arg(mask, comma=_comma()), cst.Arg(new, comma=_comma()),
                                                           cst.Arg(cst.Name(name))])
            return cst.Assign(targets=[cst.AssignTarget(cst.Name(name))], value=call)
        self.changes.add("in-place writes -> x = x.at[i].set(v)")
        at = cst.Subscript(value=cst.Attribute(cst.Name(name), cst.Name("at")), slice=els)
        call = cst.Call(func=cst.Attribute(at, cst.Name(op)), args=[cst.Arg(value)])
        return cst.Assign(targets=[cst.AssignTarget(cst.Name(name))], value=call)

    # -- the Isaac Gym task object (self.*) -----------------------------------------------------------
    def visit_Attribute(self, node):
        if isinstance(node.value, cst.Name) and node.value.value == "self":
            self._fail(node, f"self.{node.attr.value} is the Isaac Gym task object: pass the value as a field instead")
        return True


_REDUCTIONS = {"sum", "mean", "max", "min", "prod", "std", "var", "amax", "amin", "median", "logsumexp"}


def _is_literal(node: cst.BaseExpression) -> bool:
    """A constant written in the code (no batch axis): torch.tensor([...]) or a number."""
    if isinstance(node, (cst.Integer, cst.Float, cst.List, cst.Tuple)):
        return True
    return isinstance(node, cst.Call) and _dotted(node.func) in ("torch.tensor", "torch.as_tensor")


def _comma() -> cst.Comma:
    return cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _eq() -> cst.AssignEqual:
    return cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


def _p_to_ord(args: list[cst.Arg]) -> list[cst.Arg]:
    """torch's norm(x, p=2) is jnp.linalg.norm(x, ord=2)."""
    return [a.with_changes(keyword=cst.Name("ord")) if a.keyword and a.keyword.value == "p" else a for a in args]


def _paren(node: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(node, (cst.Name, cst.Integer, cst.Float, cst.Call, cst.Attribute, cst.Subscript)):
        return node
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _reward_function(module: cst.Module) -> cst.FunctionDef:
    fns = [s for s in module.body if isinstance(s, cst.FunctionDef)]
    for f in fns:
        if f.name.value == "compute_reward":
            return f
    named = [f for f in fns if f.name.value.startswith("compute_") and "reward" in f.name.value]
    if named:
        return named[0]
    raise ConvertError(["line 1: no reward function: expected def compute_reward(...) (Eureka's name)"])


def input_bindings(params: list[str], schema: StateSchema) -> tuple[dict[str, str], list[str]]:
    """What each Eureka parameter reads in this schema, and the parameters with no counterpart."""
    fields = set(schema.names)
    out, missing = {}, []
    for p in params:
        if p in ("state", "action", "next_state"):
            continue
        if p in _ISAAC_INPUTS and (not _ISAAC_INPUTS[p].startswith(("state.", "next_state."))
                                   or _ISAAC_INPUTS[p].split(".")[1] in fields):
            out[p] = _ISAAC_INPUTS[p]
        elif p in fields:
            out[p] = f"next_state.{p}"
        else:
            missing.append(p)
    return out, missing


def _constant_bindings(missing: list[str], task: str, constants: dict[str, float],
                       fields: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Parameters that are settings, not state: given on the command line, or Isaac Gym's own value."""
    settings = {**ISAAC_SETTINGS.get(task.split("_")[0], {}), **constants}
    out, problems = {}, []
    for p in missing:
        if p in settings:
            out[p] = repr(float(settings[p]))
        elif p in _NO_COUNTERPART:
            problems.append(f"line 1: input {p!r} cannot be converted: {_NO_COUNTERPART[p]}")
        else:
            problems.append(f"line 1: input {p!r} has no field in this task's schema and is no Isaac Gym setting of "
                            f"this task: if it is a constant, give its value (const.{p}=VALUE); fields: "
                            f"{', '.join(fields)}")
    return out, problems


def convert(source: str, schema: StateSchema, task: str = "", constants: dict[str, float] | None = None) -> Converted:
    """The reward contract version of an Eureka reward; raises ConvertError naming what it cannot do.
    ``constants`` gives parameters that are settings rather than state (Isaac Gym's own settings of
    the task are known)."""
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:
        raise ConvertError([f"line {e.raw_line}: not valid Python: {e.message}"]) from None
    fn = _reward_function(module)
    params = [p.name.value for p in fn.params.params]
    inputs, missing = input_bindings(params, schema)
    consts, problems = _constant_bindings(missing, task, dict(constants or {}), schema.names)
    if problems:
        raise ConvertError(problems)
    inputs.update(consts)
    t = _Transformer(fn.name.value, inputs)
    new = MetadataWrapper(module).visit(t)
    if t.problems:
        raise ConvertError(list(dict.fromkeys(t.problems)))
    return Converted(source=new.code, inputs=inputs, changes=sorted(t.changes))


def header(src_path: str | Path, task: str, conv: Converted, schema: StateSchema) -> str:
    """What was changed and which conventions differ, as the converted file's docstring."""
    reads = ", ".join(f"{k} = {v}" for k, v in conv.inputs.items())
    notes = []
    for field in sorted({v.split(".")[1] for v in conv.inputs.values() if v.startswith(("state.", "next_state."))}):
        f = schema.field(field)
        notes.append(f"  - {field}: {f.doc}")
    lines = [
        f"Converted by rewardsmith-import from {Path(src_path).name} (an Eureka / Isaac Gym reward in PyTorch)",
        f"for task {task}.",
        "",
        "Changed: " + "; ".join(conv.changes) + ".",
        f"Inputs: {reads or 'none'}.",
        "",
        "Conventions that differ from Isaac Gym here:",
        "  - dt is this task's control step (next_state.dt), not Isaac Gym's 1/60 s: terms divided by dt",
        "    or summed over a fixed number of steps scale differently;",
        "  - episodes end by this task's own rules (its description gives the heights and the time limit);",
        "  - one environment per call: no batch axis.",
        *notes,
    ]
    return '"""' + "\n".join(lines).replace('"""', "'''") + '\n"""\n' + f"# task: {task}\n"
