"""The allow-list shared by the static gate and the worker's loader."""

from __future__ import annotations

MAX_SOURCE_CHARS = 20_000
MAX_SOURCE_LINES = 400
MAX_NESTING = 40
MAX_LOOP_ITERATIONS = 256
REWARD_FN = "compute_reward"
REWARD_PARAMS = ("state", "action", "next_state")

# Modules reward code may import, and the only ones the loader's __import__ hands out.
ALLOWED_MODULES = frozenset({"jax", "jax.numpy", "jax.nn", "jax.lax", "math"})

# jax.numpy and jax.nn are allowed wholesale (public names), minus anything that touches files,
# buffers or foreign memory.
JNP_DENY = frozenset({
    "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "frombuffer", "fromstring",
    "genfromtxt", "loadtxt", "savetxt", "memmap", "from_dlpack", "fromiter", "fromfunction",
    "vectorize", "frompyfunc", "piecewise", "apply_along_axis", "apply_over_axes", "set_printoptions",
    "printoptions", "get_printoptions",
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
    "pi", "e", "tau", "inf", "sqrt", "exp", "log", "log2", "log10", "cos", "sin", "tan", "acos",
    "asin", "atan", "atan2", "cosh", "sinh", "tanh", "hypot", "radians", "degrees", "fabs", "floor",
    "ceil", "pow", "copysign", "isfinite",
})
JAX_TOP_ALLOW = frozenset({"Array"})

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

# Attributes allowed on values (arrays, dicts) that are not modules or schema fields.
ARRAY_ATTRS = frozenset({
    "shape", "ndim", "dtype", "size", "T", "sum", "mean", "max", "min", "prod", "std", "var", "any",
    "all", "argmax", "argmin", "astype", "reshape", "squeeze", "clip", "dot", "ravel", "flatten",
    "at", "set", "add", "multiply", "get", "round", "cumsum", "transpose", "real", "imag", "conj",
})


def qualified_allowed(qname: str) -> bool:
    """Is a fully qualified name (``jax.numpy.abs``) something reward code may use?"""
    parts = qname.split(".")
    if any(p.startswith("_") for p in parts):
        return False
    if qname in ALLOWED_MODULES:
        return True
    if parts[0] == "math":
        return len(parts) == 2 and parts[1] in MATH_ALLOW
    if parts[0] != "jax":
        return False
    if len(parts) == 2:
        return parts[1] in JAX_TOP_ALLOW
    if parts[1] == "numpy":
        return not (set(parts[2:]) & JNP_DENY)
    if parts[1] == "nn":
        return True
    if parts[1] == "lax":
        return len(parts) == 3 and parts[2] in LAX_ALLOW
    return False
