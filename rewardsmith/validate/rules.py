"""The allow-list shared by the static gate and the worker's loader.

Every module attribute reward code may name is listed here by name; anything else is refused. The
lists hold what a reward needs (elementwise math, reductions, array construction and shaping,
comparisons, dtypes) and nothing that reads or writes files, takes callables, calls back into
Python, or hands out numpy's classes (their methods reach the file system)."""

from __future__ import annotations

MAX_SOURCE_CHARS = 20_000
MAX_SOURCE_LINES = 400
MAX_NESTING = 40
MAX_LOOP_ITERATIONS = 256
# Bounds on expressions the gate can evaluate before running anything.
MAX_INT_DIGITS = 40          # an integer literal longer than this is refused
MAX_CONST_INT = 2 ** 128     # a constant integer expression may not grow past this magnitude
MAX_EXPONENT = 64            # `x ** n` and `x << n` with a constant integer n
MAX_SEQUENCE_LEN = 10_000    # `'a' * n`, `[0] * n`: the length a repeated literal may reach
MAX_BOOL_OPERANDS = 64       # `a and b and ...`, `a < b < ...` (libcst nests what ast keeps flat)
MAX_ADJACENT_STRINGS = 64    # implicitly concatenated string literals, same reason
from rewardsmith.contract import REWARD_FN, REWARD_PARAMS  # noqa: E402,F401 - the contract, read here as rules.*

# Modules reward code may import, and the only ones the loader's __import__ hands out.
ALLOWED_MODULES = frozenset({"jax", "jax.numpy", "jax.nn", "jax.lax", "math", "typing"})

JNP_ALLOW = frozenset({
    # elementwise math
    "abs", "absolute", "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "negative",
    "positive", "power", "float_power", "square", "sqrt", "cbrt", "reciprocal", "exp", "exp2", "expm1", "log",
    "log2", "log10", "log1p", "logaddexp", "logaddexp2", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
    "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "asin", "acos", "atan", "atan2",
    "asinh", "acosh", "atanh", "hypot", "deg2rad", "rad2deg", "degrees", "radians", "sinc", "sign", "signbit",
    "copysign", "heaviside", "clip", "maximum", "minimum", "fmax", "fmin", "mod", "fmod", "remainder",
    "floor", "ceil", "round", "around", "rint", "trunc", "fix", "nan_to_num", "unwrap", "angle", "interp",
    "isfinite", "isinf", "isnan", "isclose", "allclose", "where", "select",
    # comparisons and logic
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and", "logical_or",
    "logical_not", "logical_xor", "array_equal",
    # reductions and statistics
    "sum", "prod", "mean", "average", "median", "std", "var", "min", "max", "amin", "amax", "argmin", "argmax",
    "all", "any", "cumsum", "cumprod", "diff", "count_nonzero", "nansum", "nanmean", "nanmax", "nanmin",
    "percentile", "quantile", "ptp", "argsort", "sort",
    # linear algebra
    "dot", "vdot", "inner", "outer", "matmul", "tensordot", "einsum", "cross", "trace", "linalg",
    # construction and shaping
    "array", "asarray", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "empty", "empty_like",
    "arange", "linspace", "eye", "identity", "diag", "tril", "triu", "concatenate", "stack", "hstack", "vstack",
    "dstack", "column_stack", "reshape", "ravel", "squeeze", "expand_dims", "transpose", "swapaxes", "moveaxis",
    "broadcast_to", "atleast_1d", "atleast_2d", "take", "take_along_axis", "flip", "roll", "tile", "repeat",
    "pad", "split", "searchsorted", "astype", "real", "imag", "conj", "conjugate",
    # constants
    "pi", "e", "inf", "nan", "euler_gamma", "newaxis",
    # dtypes (callable as conversions)
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "uint16",
    "uint32", "uint64", "bool_", "complex64", "finfo", "iinfo",
})
JNP_LINALG_ALLOW = frozenset({"norm", "vector_norm", "matrix_norm", "det", "inv", "pinv", "solve", "cross",
                              "outer", "trace", "eigh", "eigvalsh", "svd", "qr", "cholesky"})
NN_ALLOW = frozenset({
    "relu", "relu6", "sigmoid", "softplus", "soft_sign", "silu", "swish", "gelu", "elu", "celu", "selu",
    "leaky_relu", "log_sigmoid", "softmax", "log_softmax", "logsumexp", "one_hot", "hard_tanh", "hard_sigmoid",
    "tanh", "squareplus", "sparse_plus", "mish", "standardize", "identity",
})
# jax.lax: pure elementwise and selection primitives only (no control flow taking callables,
# no callbacks, no collectives).
LAX_ALLOW = frozenset({
    "abs", "acos", "asin", "atan", "atan2", "clamp", "cos", "cosh", "erf", "exp", "expm1", "floor",
    "ceil", "integer_pow", "log", "log1p", "logistic", "max", "min", "neg", "pow", "round", "rsqrt",
    "select", "sign", "sin", "sinh", "sqrt", "square", "stop_gradient", "tan", "tanh", "rem", "div",
    "add", "sub", "mul",
})
MATH_ALLOW = frozenset({
    "pi", "e", "tau", "inf", "nan", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "cos", "sin",
    "tan", "acos", "asin", "atan", "atan2", "cosh", "sinh", "tanh", "hypot", "radians", "degrees", "fabs",
    "floor", "ceil", "trunc", "pow", "copysign", "isfinite", "isnan", "isinf", "erf",
})
# typing names only ever appear in annotations, which the loader strips before running anything.
TYPING_ALLOW = frozenset({"Any", "Dict", "List", "Tuple", "Optional", "Union", "Mapping", "Sequence"})
JAX_TOP_ALLOW = frozenset({"Array"})
# The one decorator reward code may carry; a reward is traced inside jit anyway.
ALLOWED_DECORATORS = frozenset({"jax.jit"})

# Builtins reward code may call or name; the loader's __builtins__ holds exactly these.
ALLOWED_BUILTINS = frozenset({
    "abs", "min", "max", "float", "int", "bool", "len", "range", "sum", "round", "tuple", "list",
    "dict", "zip", "enumerate", "True", "False", "None",
})
# Named in rejection messages so the proposer learns why.
REFLECTION_BUILTINS = frozenset({
    "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "hasattr", "globals",
    "locals", "vars", "dir", "__import__", "input", "breakpoint", "help", "type", "object", "super",
    "memoryview", "bytearray", "bytes", "format", "classmethod", "staticmethod", "property", "iter",
    "next", "id", "hash", "print", "exit", "quit", "isinstance", "issubclass", "callable", "repr",
    "ascii", "chr", "ord", "map", "filter", "reversed", "sorted", "slice", "frozenset", "set", "str",
})

# Attributes allowed on values (arrays, dicts, finfo) that are not modules or schema fields.
ARRAY_ATTRS = frozenset({
    "shape", "ndim", "dtype", "size", "T", "sum", "mean", "max", "min", "prod", "std", "var", "any",
    "all", "argmax", "argmin", "astype", "reshape", "squeeze", "clip", "dot", "ravel", "flatten",
    "at", "set", "add", "multiply", "get", "round", "cumsum", "transpose", "real", "imag", "conj",
    "copy", "items", "values", "keys", "eps", "tiny",
})

_SUBMODULES = {"numpy": JNP_ALLOW, "nn": NN_ALLOW, "lax": LAX_ALLOW}


def qualified_allowed(qname: str) -> bool:
    """Is a fully qualified name (``jax.numpy.abs``) something reward code may use?"""
    parts = qname.split(".")
    if any(p.startswith("_") for p in parts):
        return False
    if qname in ALLOWED_MODULES:
        return True
    if parts[0] == "math":
        return len(parts) == 2 and parts[1] in MATH_ALLOW
    if parts[0] == "typing":
        return len(parts) == 2 and parts[1] in TYPING_ALLOW
    if parts[0] != "jax" or len(parts) < 2:
        return False
    if len(parts) == 2:
        return parts[1] in JAX_TOP_ALLOW
    names = _SUBMODULES.get(parts[1])
    if names is None:
        return False
    if len(parts) == 3:
        return parts[2] in names
    return len(parts) == 4 and parts[1:3] == ["numpy", "linalg"] and parts[3] in JNP_LINALG_ALLOW


# -- hints: what to write instead, for code written against PyTorch or Isaac Gym ----------------------
# Array methods PyTorch has and JAX arrays do not (or spell differently).
TORCH_METHOD_HINTS = {
    "clamp": "use jnp.clip(x, low, high)",
    "clamp_min": "use jnp.maximum(x, low)",
    "clamp_max": "use jnp.minimum(x, high)",
    "norm": "use jnp.linalg.norm(x, axis=...)",
    "unsqueeze": "use x[..., None] or jnp.expand_dims(x, axis)",
    "view": "use x.reshape(...)",
    "pow": "use x ** n",
    "float": "use x.astype(jnp.float32)",
    "masked_fill": "use jnp.where(mask, value, x)",
    "item": "not needed: return the array",
    "detach": "not needed in JAX: remove it",
    "cpu": "not needed in JAX: remove it",
    "cuda": "not needed in JAX: remove it",
    "to": "not needed in JAX: remove it",
    "numel": "use x.size",
    "dim": "use x.ndim",
}
# torch functions whose JAX name differs; any other torch.<f> maps to jnp.<f> where that exists.
TORCH_FUNCTION_HINTS = {
    "clamp": "jnp.clip", "norm": "jnp.linalg.norm", "cat": "jnp.concatenate",
    "unsqueeze": "jnp.expand_dims", "Tensor": "jax.Array", "tensor": "jnp.array", "pow": "jnp.power",
    "atan2": "jnp.arctan2", "acos": "jnp.arccos", "asin": "jnp.arcsin", "atan": "jnp.arctan",
    "sigmoid": "jax.nn.sigmoid",
}
# keyword arguments PyTorch spells differently
TORCH_KEYWORD_HINTS = {"dim": "axis=", "keepdim": "keepdims="}
TORCH_DECORATOR_HINT = ("@torch.jit.script is not needed: the reward is traced and compiled with jax.jit "
                        "already; remove the decorator")
TORCH_MODULE_HINT = "PyTorch is not available here: write JAX (`import jax.numpy as jnp`; torch.X is mostly jnp.X)"

# Isaac Gym / Eureka names that are not fields of a schema: the field to read instead (offered only where
# the task's schema has that field).
ISAAC_FIELD_HINTS = {
    "prev_potentials": ("potentials", "use state.potentials (before the step) and next_state.potentials (after)"),
    "up_proj": ("up_vec", "use next_state.up_vec[2] (the torso's up axis projected on world z)"),
    "heading_proj": ("heading_vec", "use next_state.heading_vec[0] (the facing direction projected on +x)"),
    "velocity": ("torso_vel", "use next_state.torso_vel (world frame)"),
    "ang_velocity": ("torso_ang_vel", "use next_state.torso_ang_vel (world frame)"),
    "torso_position": ("torso_pos", "use next_state.torso_pos"),
    "torso_rotation": ("torso_rot", "use next_state.torso_rot (w, x, y, z)"),
    "progress_buf": ("step", "use next_state.step"),
    "actions": (None, "the action is the `action` argument"),
    "obs_buf": (None, "read the named fields instead of the observation buffer"),
}
# Eureka's reward signature names its inputs; here they are fields of `state` / `next_state`.
EUREKA_PARAMS = frozenset({"root_states", "dof_pos", "dof_vel", "actions", "targets", "potentials",
                           "prev_potentials", "up_vec", "heading_vec", "dt", "obs_buf", "progress_buf",
                           "object_rot", "goal_rot", "object_pos", "goal_pos", "torso_position"})


def is_torch(dotted: str) -> bool:
    """Does a dotted name (``torch.jit.script``, ``torch``) come from PyTorch?"""
    return dotted.split(".")[0] == "torch"


def torch_function_hint(name: str) -> str:
    """``torch.<name>`` -> what to write in JAX."""
    if name in TORCH_FUNCTION_HINTS:
        return f"use {TORCH_FUNCTION_HINTS[name]}"
    if name in JNP_ALLOW:
        return f"use jnp.{name}"
    if name in ("jit", "no_grad"):
        return "not needed in JAX: remove it"
    return "PyTorch is not available here; write it with jnp"
