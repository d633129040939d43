"""JAX reward source -> NumPy reward source, by a libcst transform.

``jnp.*`` becomes ``np.*``; ``jax.nn``/``jax.lax`` calls become small NumPy helpers emitted with the
module; anything without a faithful NumPy counterpart (``.at[...]`` updates, unknown ``jax.lax``
functions) is refused with a clear message rather than translated approximately.
"""

from __future__ import annotations

import libcst as cst

# helpers the exported module defines when used: name -> source
NP_HELPERS = {
    "relu": "def _nn_relu(x):\n    return np.maximum(x, 0.0)\n",
    "sigmoid": "def _nn_sigmoid(x):\n    return 1.0 / (1.0 + np.exp(-x))\n",
    "softplus": "def _nn_softplus(x):\n    return np.logaddexp(x, 0.0)\n",
    "tanh": "def _nn_tanh(x):\n    return np.tanh(x)\n",
    "elu": "def _nn_elu(x):\n    return np.where(x > 0, x, np.expm1(x))\n",
    "clamp": "def _lax_clamp(lo, x, hi):\n    return np.clip(x, lo, hi)\n",
    "select": "def _lax_select(pred, on_true, on_false):\n    return np.where(pred, on_true, on_false)\n",
    "stop_gradient": "def _lax_stop_gradient(x):\n    return x\n",
    "logistic": "def _lax_logistic(x):\n    return 1.0 / (1.0 + np.exp(-x))\n",
}
_NN = {"relu", "sigmoid", "softplus", "tanh", "elu"}
_LAX_SAME = {"abs", "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sign", "floor", "ceil", "square",
             "atan2", "expm1", "log1p", "sinh", "cosh", "arctan2"}
_LAX = {"clamp", "select", "stop_gradient", "logistic"}


class NumpyExportError(ValueError):
    pass


def _dotted(node) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


class _ToNumpy(cst.CSTTransformer):
    def __init__(self):
        self.aliases: dict[str, str] = {}  # local name -> module ("jax", "jax.numpy", "jax.nn", "jax.lax")
        self.helpers: set[str] = set()

    def leave_Import(self, original, updated):
        names = []
        for a in updated.names:
            mod = _dotted(a.name)
            local = a.asname.name.value if a.asname else mod.split(".")[0]
            if mod and mod.startswith("jax"):
                self.aliases[local] = mod if a.asname else "jax"
                continue
            names.append(a)
        if not names:
            return cst.RemoveFromParent()
        return updated.with_changes(names=names)

    def visit_Decorator(self, node):
        return False  # the gate lets only @jax.jit through, and NumPy code has nothing to compile

    def leave_Decorator(self, original, updated):
        return cst.RemoveFromParent()

    def leave_ImportFrom(self, original, updated):
        mod = _dotted(updated.module) if updated.module else ""
        if mod and mod.startswith("jax"):
            for a in updated.names:
                local = a.asname.name.value if a.asname else a.name.value
                self.aliases[local] = f"{mod}.{a.name.value}"
            return cst.RemoveFromParent()
        return updated

    def leave_Attribute(self, original, updated):
        dotted = _dotted(updated)
        if not dotted:
            if updated.attr.value == "at":
                raise NumpyExportError("`.at[...]` array updates have no NumPy equivalent; export format=jax")
            return updated
        root, _, rest = dotted.partition(".")
        if root not in self.aliases or not rest:
            if updated.attr.value == "at":
                raise NumpyExportError("`.at[...]` array updates have no NumPy equivalent; export format=jax")
            return updated
        full = f"{self.aliases[root]}.{rest}" if self.aliases[root] != "jax" else f"jax.{rest}"
        if full in ("jax.numpy", "jax.nn", "jax.lax"):
            return updated  # a module prefix: translated as part of the enclosing attribute
        return self._translate(full)

    def leave_Name(self, original, updated):
        mod = self.aliases.get(updated.value)
        if mod is None or mod in ("jax", "jax.numpy", "jax.nn", "jax.lax"):
            return updated
        return self._translate(mod)  # a function imported by name (from jax.numpy import exp)

    def _translate(self, full: str):
        parts = full.split(".")
        if parts[:2] == ["jax", "numpy"] and len(parts) >= 3:
            return cst.parse_expression("np." + ".".join(parts[2:]))
        if parts[:2] == ["jax", "numpy"]:
            return cst.Name("np")
        if parts[:2] == ["jax", "nn"] and len(parts) == 3 and parts[2] in _NN:
            self.helpers.add(parts[2])
            return cst.Name(f"_nn_{parts[2]}")
        if parts[:2] == ["jax", "lax"] and len(parts) == 3 and parts[2] in _LAX_SAME:
            return cst.parse_expression(f"np.{parts[2]}")
        if parts[:2] == ["jax", "lax"] and len(parts) == 3 and parts[2] in _LAX:
            self.helpers.add(parts[2])
            return cst.Name(f"_lax_{parts[2]}")
        if full in ("jax.Array",):
            return cst.parse_expression("np.ndarray")
        raise NumpyExportError(f"{full} has no NumPy translation; export format=jax")


def to_numpy(source: str) -> str:
    module = cst.parse_module(source)
    t = _ToNumpy()
    new = module.visit(t)
    helpers = "".join("\n\n" + NP_HELPERS[h] for h in sorted(t.helpers))
    body = new.code
    return "import numpy as np\n" + helpers + ("\n\n" if helpers else "") + body
