"""Mechanical repairs of near-miss reward code, applied before the gate.

Small code models get the reward contract nearly right and fail on the same few slips: ``import jnp``,
``import jax.numpy as jp`` and then ``np.``, ``np.``/``math.`` without an import, ``pi`` undefined,
PyTorch-style annotations, ``state["theta"]`` or ``x, x_dot = state`` for the schema's attributes, and
Python control flow on arrays (``if``, ``and``/``or``, ``a < b < c``, ``min(a, b)``, ``float(x)``).
Each has one meaning, so it is rewritten rather than sent back to the model.

Two sets, so code that already works is never touched:

* ``repair_source(src, fields)`` (names and syntax): applied only when the static gate rejects the code;
* ``repair_source(src, fields, arrays=True)`` (Python on arrays, too): applied only when the code passes
  the gate and fails the trace check.

Every repair that changed something is named in the result; the caller keeps the names and the unified
diff on the candidate. A repair never raises: source it cannot parse comes back unchanged.
"""

from __future__ import annotations

import ast
import difflib

import libcst as cst

from rewardsmith.validate import rules
from rewardsmith.validate.static import dotted_name as _dotted

# names a model uses for jax.numpy (or numpy, which here is jax.numpy)
NUMPY_ALIASES = ("np", "numpy", "jp", "jnp", "onp")
# math.<f> -> jnp.<g>: the jnp spelling where it differs; math's scalars and functions fail on tracers
MATH_TO_JNP = {"fabs": "abs", "pow": "power", "tau": None, "erf": None}
BARE_CONSTANTS = {"pi": "pi", "inf": "inf"}


def repair_source(source: str, field_names: tuple[str, ...] | list[str] = (), *,
                  arrays: bool = False) -> tuple[str, list[str], str]:
    """Return (repaired source, names of the repairs that changed it, unified diff)."""
    try:
        ast.parse(source)
        module = cst.parse_module(source)
    except Exception:  # noqa: BLE001 - unparseable or too deep: nothing to repair mechanically
        return source, [], ""
    done: list[str] = []
    try:
        bound = _bound_names(source)
        t = _Names(set(field_names), bound, arrays)
        module = module.visit(t)
        done += t.done
        if arrays:
            a = _Arrays(bound)
            module = module.visit(a)
            done += a.done
        new = module.code
        if "annotations removed" in done:
            new = _drop_unused_imports(new, ("torch",))
        if _uses(new, "jnp") and "jnp" not in _bound_names(new):
            new = "import jax.numpy as jnp\n" + new
            if "import jax.numpy as jnp" not in done:
                done.append("import jax.numpy as jnp added")
        ast.parse(new)
    except Exception:  # noqa: BLE001 - a repair that fails is no repair
        return source, [], ""
    if new == source:
        return source, [], ""
    names = list(dict.fromkeys(done))
    diff = "".join(difflib.unified_diff(source.splitlines(True), new.splitlines(True), "answer", "repaired"))
    return new, names, diff


# -- helpers ------------------------------------------------------------------------------------------

def _bound_names(source: str) -> set[str]:
    """Every name the code binds anywhere (imports, assignments, functions, parameters, loop targets)."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                out.add(a.asname or a.name.split(".")[0])
    return out


def _drop_unused_imports(source: str, modules: tuple[str, ...]) -> str:
    """``import torch`` left over once its annotations are gone."""
    tree = ast.parse(source)
    drop = set()
    for node in tree.body:
        if isinstance(node, ast.Import) and len(node.names) == 1 and node.names[0].name in modules \
                and not _uses(source, node.names[0].asname or node.names[0].name):
            drop.add(node.lineno)
    lines = source.splitlines(True)
    return "".join(ln for i, ln in enumerate(lines, 1) if i not in drop)


def _uses(source: str, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(ast.parse(source)))


def _jnp(attr: str) -> cst.Attribute:
    return cst.Attribute(value=cst.Name("jnp"), attr=cst.Name(attr))


def _call(func: str, *args: cst.BaseExpression) -> cst.Call:
    return cst.Call(func=_jnp(func), args=[cst.Arg(a) for a in args])


_JNP_IMPORT = cst.Import(names=[cst.ImportAlias(name=cst.Attribute(cst.Name("jax"), cst.Name("numpy")),
                                                asname=cst.AsName(name=cst.Name("jnp")))])


class _Names(cst.CSTTransformer):
    """Imports and aliases of jax.numpy, math, undefined constants, annotations, field access."""

    def __init__(self, fields: set[str], bound: set[str], arrays: bool):
        self.fields, self.bound, self.arrays = fields, bound, arrays
        self.alias: dict[str, str] = {}  # a name the code uses for jax.numpy -> why
        self.math_names: dict[str, str] = {}  # `from math import sqrt` -> jnp name
        self.done: list[str] = []
        self.jnp_imported = False
        for name in NUMPY_ALIASES:  # used as a module but never imported: jax.numpy
            if name not in bound and name != "jnp":
                self.alias[name] = f"{name}. without an import -> jnp."
        self.math_bound = "math" in bound
        self.not_refs: set[int] = set()  # Name nodes that are not references (attribute names, keywords)

    def visit_Attribute(self, node: cst.Attribute):
        self.not_refs.add(id(node.attr))
        return True

    def visit_Arg(self, node: cst.Arg):
        if node.keyword is not None:
            self.not_refs.add(id(node.keyword))
        return True

    # imports
    def leave_Import(self, original: cst.Import, updated: cst.Import):
        keep, fixed = [], False
        for a in updated.names:
            name = _dotted(a.name)
            asname = a.asname.name.value if a.asname and isinstance(a.asname.name, cst.Name) else None
            if name in ("jnp", "numpy", "jax.numpy") or name.startswith("numpy."):
                if name.startswith("numpy."):
                    keep.append(a)
                    continue
                local = asname or ("jax" if name == "jax.numpy" else name)
                if name == "jax.numpy" and local in ("jnp", "jax"):
                    keep.append(a)
                    self.jnp_imported = self.jnp_imported or local == "jnp"
                    continue
                why = {"jnp": "import jnp -> import jax.numpy as jnp",
                       "numpy": "import numpy -> import jax.numpy as jnp"}.get(name,
                                                                              f"import jax.numpy as {local} -> as jnp")
                self.alias[local] = why
                self.done.append(why)
                fixed = True
            else:
                keep.append(a)
        if not fixed:
            return updated
        if self.jnp_imported:
            if not keep:
                return cst.RemoveFromParent()
            return updated.with_changes(names=_fix_commas(keep))
        self.jnp_imported = True
        if not keep:
            return _JNP_IMPORT
        return updated.with_changes(names=_fix_commas(keep + [_JNP_IMPORT.names[0]]))

    def leave_ImportFrom(self, original: cst.ImportFrom, updated: cst.ImportFrom):
        module = _dotted(updated.module) if updated.module else ""
        if isinstance(updated.names, cst.ImportStar):
            return updated
        if module == "jax" and any(_dotted(a.name) == "numpy" for a in updated.names):
            rest = [a for a in updated.names if _dotted(a.name) != "numpy"]
            for a in updated.names:
                if _dotted(a.name) == "numpy":
                    local = a.asname.name.value if a.asname else "numpy"
                    if local != "jnp":
                        self.alias[local] = f"from jax import numpy as {local} -> import jax.numpy as jnp"
                    self.done.append("from jax import numpy -> import jax.numpy as jnp")
            self.jnp_imported = True
            return _JNP_IMPORT if not rest else cst.FlattenSentinel(
                [updated.with_changes(names=_fix_commas(rest)), _JNP_IMPORT])
        if module == "math" and self.arrays:
            for a in updated.names:
                n = _dotted(a.name)
                local = a.asname.name.value if a.asname else n
                target = MATH_TO_JNP.get(n, n)
                if target is None or target not in rules.JNP_ALLOW:
                    return updated
                self.math_names[local] = target
            self.done.append("from math import ... -> jnp")
            return cst.RemoveFromParent()
        return updated

    # names
    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute):
        base = updated.value
        if isinstance(base, cst.Name):
            if base.value in self.alias:
                if "without an import" in self.alias[base.value]:
                    self.done.append(self.alias[base.value])
                return updated.with_changes(value=cst.Name("jnp"))
            if base.value == "math" and (self.arrays or not self.math_bound):
                target = MATH_TO_JNP.get(updated.attr.value, updated.attr.value)
                if target is not None and target in rules.JNP_ALLOW:
                    self.done.append("math." + ("" if self.math_bound else " without an import") + " -> jnp.")
                    return _jnp(target)
        return updated

    def leave_Name(self, original: cst.Name, updated: cst.Name):
        v = updated.value
        if id(original) in self.not_refs:
            return updated
        if v in BARE_CONSTANTS and v not in self.bound:
            self.done.append(f"undefined {v} -> jnp.{BARE_CONSTANTS[v]}")
            return _jnp(BARE_CONSTANTS[v])
        if v in self.math_names:
            return _jnp(self.math_names[v])
        if v in self.fields and v not in self.bound:
            self.done.append("a field read as a bare name -> next_state.field")
            return cst.Attribute(value=cst.Name("next_state"), attr=cst.Name(v))
        return updated

    # names that are not references: leave them alone
    def visit_ImportAlias(self, node):
        return False

    def visit_Param(self, node: cst.Param):
        return True

    def leave_Param(self, original: cst.Param, updated: cst.Param):
        if updated.annotation is not None:
            self.done.append("annotations removed")
            return updated.with_changes(annotation=None)
        return updated

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        if updated.returns is not None:
            self.done.append("annotations removed")
            return updated.with_changes(returns=None)
        return updated

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign):
        return updated  # replaced at the statement level (below)

    def leave_SimpleStatementLine(self, original, updated: cst.SimpleStatementLine):
        body, changed = [], False
        for stmt in updated.body:
            if isinstance(stmt, cst.AnnAssign):
                changed = True
                self.done.append("annotations removed")
                if stmt.value is not None:
                    body.append(cst.Assign(targets=[cst.AssignTarget(stmt.target)], value=stmt.value))
                continue
            unpacked = self._unpack(stmt)
            if unpacked is not None:
                changed = True
                body += unpacked
                continue
            body.append(stmt)
        if not changed:
            return updated
        if not body:
            return cst.RemoveFromParent()
        return cst.FlattenSentinel([cst.SimpleStatementLine(body=[s]) for s in body])

    def _unpack(self, stmt) -> list | None:
        """``x, theta = state`` where every name is a field: one attribute read each."""
        if not (isinstance(stmt, cst.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.value, cst.Name) and stmt.value.value in ("state", "next_state")):
            return None
        target = stmt.targets[0].target
        if not isinstance(target, (cst.Tuple, cst.List)):
            return None
        names = [e.value.value if isinstance(e.value, cst.Name) else None for e in target.elements]
        if not names or any(n is None or n not in self.fields for n in names):
            return None
        self.done.append(f"{', '.join(names)} = {stmt.value.value} -> attributes")  # type: ignore[arg-type]
        return [cst.Assign(targets=[cst.AssignTarget(cst.Name(n))],
                           value=cst.Attribute(value=stmt.value, attr=cst.Name(n))) for n in names]  # type: ignore[arg-type]

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript):
        """``state["theta"]`` -> ``state.theta`` where "theta" is a field."""
        if not (isinstance(updated.value, cst.Name) and updated.value.value in ("state", "next_state")
                and len(updated.slice) == 1 and isinstance(updated.slice[0].slice, cst.Index)):
            return updated
        key = updated.slice[0].slice.value
        if isinstance(key, cst.SimpleString):
            try:
                name = ast.literal_eval(key.value)
            except Exception:  # noqa: BLE001
                return updated
            if isinstance(name, str) and name in self.fields:
                self.done.append(f'{updated.value.value}["field"] -> {updated.value.value}.field')
                return cst.Attribute(value=updated.value, attr=cst.Name(name))
        return updated


def _fix_commas(names: list[cst.ImportAlias]) -> list[cst.ImportAlias]:
    return [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in names]


# -- Python on arrays ---------------------------------------------------------------------------------

_COND = "cond_"  # the names of conditions computed once (numbered; never one the code uses)
_CLIP_LOW = ("a_min", "min_val", "min", "lower", "low", "min_value")
_CLIP_HIGH = ("a_max", "max_val", "max", "upper", "high", "max_value")
# jnp functions that refuse a Python list where numpy took one (the values stacked as an array)
_LIST_REFUSED = {"min", "max", "amin", "amax", "nanmin", "nanmax", "sum", "mean", "prod", "argmin", "argmax",
                 "median", "std", "var", "any", "all", "linalg.norm", "abs", "exp", "square", "sqrt"}
_CMP_OPS = (cst.LessThan, cst.LessThanEqual, cst.GreaterThan, cst.GreaterThanEqual, cst.Equal, cst.NotEqual)


class _Arrays(cst.CSTTransformer):
    """Python control flow and conversions that cannot run on traced arrays, as jnp calls."""

    def __init__(self, taken: set[str]):
        self.done: list[str] = []
        self.elifs: set[int] = set()
        self.assigned: set[str] = set()  # names bound so far, in the order the code is read
        self.before: dict[int, set[str]] = {}  # an if statement -> the names bound before it
        self.taken = set(taken)
        self.counter = [0]

    def visit_If(self, node: cst.If):
        if isinstance(node.orelse, cst.If):
            self.elifs.add(id(node.orelse))
        self.before[id(node)] = set(self.assigned)
        return True

    def visit_Param(self, node: cst.Param):
        self.assigned.add(node.name.value)

    def visit_Assign(self, node: cst.Assign):
        for t in node.targets:
            self.assigned |= _target_names(t.target)

    def visit_AugAssign(self, node: cst.AugAssign):
        self.assigned |= _target_names(node.target)

    def visit_For(self, node: cst.For):
        self.assigned |= _target_names(node.target)

    def leave_Comparison(self, original: cst.Comparison, updated: cst.Comparison):
        if len(updated.comparisons) < 2 or not all(isinstance(c.operator, _CMP_OPS) for c in updated.comparisons):
            return updated
        parts, left = [], updated.left
        for c in updated.comparisons:
            parts.append(cst.Comparison(left=left, comparisons=[c.with_changes(
                operator=type(c.operator)())]))
            left = c.comparator
        self.done.append("a < b < c -> jnp.logical_and")
        out = parts[0]
        for p in parts[1:]:
            out = _call("logical_and", out, p)
        return out

    def leave_BooleanOperation(self, original: cst.BooleanOperation, updated: cst.BooleanOperation):
        op = "logical_and" if isinstance(updated.operator, cst.And) else "logical_or"
        self.done.append("and/or -> jnp.logical_and/or")
        return _call(op, _unparen(updated.left), _unparen(updated.right))

    def leave_UnaryOperation(self, original: cst.UnaryOperation, updated: cst.UnaryOperation):
        if isinstance(updated.operator, cst.Not):
            self.done.append("not -> jnp.logical_not")
            return _call("logical_not", _unparen(updated.expression))
        return updated

    def leave_IfExp(self, original: cst.IfExp, updated: cst.IfExp):
        self.done.append("a if c else b -> jnp.where")
        return _call("where", _unparen(updated.test), _unparen(updated.body), _unparen(updated.orelse))

    def leave_Call(self, original: cst.Call, updated: cst.Call):
        f = updated.func
        positional = [a for a in updated.args if a.keyword is None and not a.star]
        if isinstance(f, cst.Name) and f.value in ("min", "max") and len(positional) >= 2 \
                and len(positional) == len(updated.args):
            fn = "minimum" if f.value == "min" else "maximum"
            self.done.append(f"{f.value}(a, b) -> jnp.{fn}")
            out = _call(fn, positional[0].value, positional[1].value)
            for a in positional[2:]:
                out = _call(fn, out, a.value)
            return out
        if isinstance(f, cst.Name) and f.value in ("float", "int") and len(updated.args) == 1 \
                and not isinstance(updated.args[0].value, (cst.SimpleString, cst.Integer, cst.Float)):
            self.done.append(f"{f.value}(x) -> jnp.{'float32' if f.value == 'float' else 'int32'}(x)")
            return updated.with_changes(func=_jnp("float32" if f.value == "float" else "int32"))
        if _dotted(f) == "jnp.clip" and any(a.keyword is not None and a.keyword.value in _CLIP_LOW + _CLIP_HIGH
                                            for a in updated.args):
            args = {a.keyword.value if a.keyword else i: a.value for i, a in enumerate(updated.args)}
            low = next((args[k] for k in _CLIP_LOW if k in args), args.get(1, cst.Name("None")))
            high = next((args[k] for k in _CLIP_HIGH if k in args), args.get(2, cst.Name("None")))
            if 0 in args:
                self.done.append("jnp.clip keywords -> positional")
                return _call("clip", args[0], low, high)
        name = _dotted(f)
        if name.startswith("jnp.") and name[4:] in _LIST_REFUSED and positional \
                and isinstance(positional[0].value, (cst.List, cst.Tuple)) and positional[0].value.elements:
            # jnp refuses Python lists (numpy took them): the same values as one array
            self.done.append(f"{name}([a, b]) -> {name}(jnp.array([a, b]))")
            arg = updated.args[0].with_changes(value=_call("array", updated.args[0].value))
            return updated.with_changes(args=[arg, *updated.args[1:]])
        if isinstance(f, cst.Attribute) and f.attr.value == "item" and not updated.args:
            self.done.append(".item() removed")
            return f.value
        return updated

    def leave_If(self, original: cst.If, updated: cst.If):
        """``if c: v = a`` [``else: v = b``] -> ``v = jnp.where(c, a, b)`` (one assignment per branch)."""
        if id(original) in self.elifs:
            return updated  # an elif: its `if` turns the whole chain into one jnp.where
        before = self.before.get(id(original), set())
        got = _if_value(updated)
        if got is not None and (updated.orelse is not None or got[0] in before):
            name, value = got
            self.done.append("if on an array -> jnp.where")
            return cst.SimpleStatementLine(body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(name))], value=value)])
        pairs = _if_pairs(updated, before, self._cond_name)
        if pairs is None:
            return updated
        self.done.append("if on an array -> jnp.where")
        return cst.FlattenSentinel([cst.SimpleStatementLine(body=[cst.Assign(
            targets=[cst.AssignTarget(cst.Name(v))], value=e)]) for v, e in pairs])

    def _cond_name(self) -> str:
        while True:
            self.counter[0] += 1
            name = f"{_COND}{self.counter[0]}"
            if name not in self.taken:
                return name


def _unparen(e: cst.BaseExpression) -> cst.BaseExpression:
    return e.with_changes(lpar=[], rpar=[]) if getattr(e, "lpar", None) else e


_AUG = {cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
        cst.DivideAssign: cst.Divide}


def _branch_assignment(block) -> tuple[str, cst.BaseExpression] | None:
    """A branch that is one ``v = expr`` or ``v op= expr``: (v, the value it gives v)."""
    if isinstance(block, cst.If):
        return _if_value(block)
    if isinstance(block, cst.Else):
        block = block.body
    stmts = block.body if isinstance(block, cst.IndentedBlock) else [block]
    if len(stmts) != 1:
        return None
    s = stmts[0]
    if isinstance(s, cst.If):
        return _if_value(s)
    if not isinstance(s, cst.SimpleStatementLine) or len(s.body) != 1:
        return None
    a = s.body[0]
    if isinstance(a, cst.Assign) and len(a.targets) == 1 and isinstance(a.targets[0].target, cst.Name):
        return a.targets[0].target.value, a.value
    if isinstance(a, cst.AugAssign) and isinstance(a.target, cst.Name) and type(a.operator) in _AUG:
        op = _AUG[type(a.operator)]()
        return a.target.value, cst.BinaryOperation(left=cst.Name(a.target.value), operator=op,
                                                   right=_paren(a.value))
    return None


def _paren(e: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(e, (cst.Name, cst.Integer, cst.Float, cst.Call, cst.Attribute, cst.Subscript)):
        return e
    return e.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _if_value(node: cst.If) -> tuple[str, cst.BaseExpression] | None:
    then = _branch_assignment(node.body)
    if then is None:
        return None
    if node.orelse is None:
        other = (then[0], cst.Name(then[0]))  # the value it had before
    else:
        other = _branch_assignment(node.orelse)
    if other is None or other[0] != then[0]:
        return None
    return then[0], _call("where", _unparen(node.test), then[1], other[1])


def _target_names(t) -> set[str]:
    if isinstance(t, cst.Name):
        return {t.value}
    if isinstance(t, (cst.Tuple, cst.List)):
        return set().union(*(_target_names(e.value) for e in t.elements)) if t.elements else set()
    return set()


def _block_pairs(block, bound: set[str], new_cond) -> list | None:
    """A block of plain assignments (and ifs of them) as (name, value) pairs, in order; None otherwise."""
    stmts = block.body if isinstance(block, cst.IndentedBlock) else [block]
    pairs: list = []
    for st in stmts:
        if isinstance(st, cst.If):
            sub = _if_pairs(st, bound | {v for v, _ in pairs}, new_cond)
            if sub is None:
                return None
            pairs += sub
            continue
        if not isinstance(st, cst.SimpleStatementLine):
            return None
        for a in st.body:
            if isinstance(a, cst.Pass):
                continue
            if isinstance(a, cst.Assign) and len(a.targets) == 1 and isinstance(a.targets[0].target, cst.Name):
                pairs.append((a.targets[0].target.value, a.value))
            elif isinstance(a, cst.AugAssign) and isinstance(a.target, cst.Name) and type(a.operator) in _AUG:
                pairs.append((a.target.value, cst.BinaryOperation(left=cst.Name(a.target.value),
                                                                  operator=_AUG[type(a.operator)](),
                                                                  right=_paren(a.value))))
            else:
                return None
    return pairs


def _if_pairs(node: cst.If, bound: set[str], new_cond) -> list | None:
    """``if c: <assignments> else: <assignments>`` as assignments that each pick their value with
    ``jnp.where`` on the condition, computed once first. A name first bound inside a branch is 0 where
    that branch did not run (Python would have had no value for it: a bonus or penalty that is absent)."""
    c = new_cond()
    pairs = [(c, _unparen(node.test))]
    b = set(bound) | {c}

    def pick(v, e, taken: bool):
        if v.startswith(_COND):  # a nested if's condition: computed on every path
            return e
        if v in b:
            return _call("where", cst.Name(c), e, cst.Name(v)) if taken else _call("where", cst.Name(c), cst.Name(v), e)
        zero = cst.Float("0.0")
        return _call("where", cst.Name(c), e, zero) if taken else _call("where", cst.Name(c), zero, e)

    then = _block_pairs(node.body, b, new_cond)
    if then is None:
        return None
    for v, e in then:
        pairs.append((v, pick(v, e, True)))
        b.add(v)
    if node.orelse is not None:
        other = _if_pairs(node.orelse, b, new_cond) if isinstance(node.orelse, cst.If) \
            else _block_pairs(node.orelse.body, b, new_cond)
        if other is None:
            return None
        for v, e in other:
            pairs.append((v, pick(v, e, False)))
            b.add(v)
    return pairs


def _if_to_where(node: cst.If):
    got = _if_value(node)
    if got is None:
        return None
    name, value = got
    return cst.SimpleStatementLine(body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(name))], value=value)])
