"""Static gate: size cap, ``ast.parse``, then an allow-list over the libcst tree.

This is a quality filter that catches mistakes and the known escapes early, with a reason the
proposer can act on. It is not the security boundary: candidate code only ever runs in the keyless
worker process (see ``rewardsmith.train.worker``).
"""

from __future__ import annotations

import ast
import dataclasses

import libcst as cst
import libcst.matchers as m
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider, QualifiedNameProvider

from rewardsmith.validate import rules


@dataclasses.dataclass(frozen=True)
class Violation:
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.col}: {self.message}"


class StaticRejection(Exception):
    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__(str(violations[0]))


def check_source(source: str, field_names: tuple[str, ...]) -> list[Violation]:
    """Return every violation found (empty list when the source passes)."""
    if len(source) > rules.MAX_SOURCE_CHARS:
        return [Violation(1, 1, f"source is {len(source)} characters; the limit is {rules.MAX_SOURCE_CHARS}")]
    n_lines = source.count("\n") + 1
    if n_lines > rules.MAX_SOURCE_LINES:
        return [Violation(1, 1, f"source is {n_lines} lines; the limit is {rules.MAX_SOURCE_LINES}")]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation(e.lineno or 1, e.offset or 1, f"syntax error: {e.msg}")]
    except (RecursionError, MemoryError, ValueError) as e:
        return [Violation(1, 1, f"source cannot be parsed safely: {type(e).__name__}")]
    depth_violation = _check_depth(tree)
    if depth_violation:
        return [depth_violation]
    # ast.parse passed and nesting is bounded: libcst's native parser is now safe to call.
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:
        return [Violation(e.raw_line, e.raw_column + 1, f"syntax error: {e.message}")]
    wrapper = MetadataWrapper(module)
    checker = _Checker(field_names, _bound_names(tree))
    wrapper.visit(checker)
    violations = sorted(checker.violations, key=lambda v: (v.line, v.col))
    if not checker.found_reward_fn:
        violations.append(Violation(1, 1, f"no module-level `def {rules.REWARD_FN}{rules.REWARD_PARAMS}`"))
    return violations


def _check_depth(tree: ast.AST) -> Violation | None:
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > rules.MAX_NESTING:
            return Violation(getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1,
                             f"expression nesting deeper than {rules.MAX_NESTING}")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the module binds anywhere: imports, defs, params, assignment and loop targets."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound


_FORBIDDEN_NODES: dict[type, str] = {
    cst.While: "while loops are not allowed (use a bounded `for i in range(N)`)",
    cst.ClassDef: "class definitions are not allowed",
    cst.Global: "`global` is not allowed",
    cst.Nonlocal: "`nonlocal` is not allowed",
    cst.Yield: "generators (`yield`) are not allowed",
    cst.Await: "`await` is not allowed",
    cst.Lambda: "lambda is not allowed; define a helper function",
    cst.GeneratorExp: "generator expressions are not allowed; use a list comprehension",
    cst.Try: "try/except is not allowed",
    cst.TryStar: "try/except* is not allowed",
    cst.With: "`with` is not allowed",
    cst.Raise: "`raise` is not allowed",
    cst.Del: "`del` is not allowed",
    cst.Match: "`match` is not allowed",
    cst.NamedExpr: "assignment expressions (`:=`) are not allowed",
    cst.FormattedString: "f-strings are not allowed",
    cst.Decorator: "decorators are not allowed",
    cst.Assert: "`assert` is not allowed",
}


class _Checker(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ParentNodeProvider)

    def __init__(self, field_names: tuple[str, ...], bound: set[str]):
        super().__init__()
        self.fields = set(field_names)
        self.field_list = ", ".join(field_names)
        self.bound = bound
        self.violations: list[Violation] = []
        self.found_reward_fn = False
        self.skip: set[int] = set()  # Name nodes that are not loads (attr names, keywords, ...)
        self.module_aliases: set[str] = set()
        self.function_depth = 0

    # -- helpers ----------------------------------------------------------------------------------
    def _add(self, node: cst.CSTNode, message: str) -> None:
        pos = self.get_metadata(PositionProvider, node).start
        self.violations.append(Violation(pos.line, pos.column + 1, message))

    def _qualified(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self.get_metadata(QualifiedNameProvider, node, set())}

    # -- generic forbidden constructs -----------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        for kind, message in _FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                self._add(node, message)
                return False
        return super().on_visit(node)

    # -- module structure ---------------------------------------------------------------------------
    def visit_Module(self, node: cst.Module) -> None:
        for stmt in node.body:
            if isinstance(stmt, cst.FunctionDef):
                continue
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom)):
                        continue
                    if isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString)):
                        continue  # docstring
                    if isinstance(small, cst.Assign) and _is_constant(small.value):
                        continue
                    self._add(small, "module level may only hold imports, constants and function definitions")
            else:
                self._add(stmt, "module level may only hold imports, constants and function definitions")

    def visit_Import(self, node: cst.Import) -> bool:
        if self.function_depth:
            self._add(node, "imports are only allowed at module level")
        for alias in node.names:
            name = _dotted(alias.name)
            if name not in rules.ALLOWED_MODULES:
                self._add(alias, f"import of {name!r} is not allowed (allowed: {', '.join(sorted(rules.ALLOWED_MODULES))})")
            if alias.asname is not None:
                self.module_aliases.add(alias.asname.name.value)  # type: ignore[union-attr]
            else:
                self.module_aliases.add(name.split(".")[0])
        return False  # the dotted names inside an import are not attribute loads

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if self.function_depth:
            self._add(node, "imports are only allowed at module level")
        if node.relative:
            self._add(node, "relative imports are not allowed")
            return False
        module = _dotted(node.module) if node.module is not None else ""
        if isinstance(node.names, cst.ImportStar):
            self._add(node, f"`from {module} import *` is not allowed")
            return False
        for alias in node.names:
            name = _dotted(alias.name)
            qname = f"{module}.{name}"
            if not (qname in rules.ALLOWED_MODULES or rules.qualified_allowed(qname)):
                self._add(alias, f"import of {qname!r} is not allowed")
            if qname in rules.ALLOWED_MODULES:
                self.module_aliases.add(alias.asname.name.value if alias.asname else name)  # type: ignore[union-attr]
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.skip.add(id(node.name))
        if node.asynchronous is not None:
            self._add(node, "async functions are not allowed")
        params = node.params
        if params.star_arg is not cst.MaybeSentinel.DEFAULT or params.star_kwarg is not None or params.kwonly_params or params.posonly_params:
            self._add(node, f"function {node.name.value!r} may only take plain positional parameters")
        for p in params.params:
            self.skip.add(id(p.name))
            if p.default is not None:
                self._add(p, f"default argument for {p.name.value!r} is not allowed")
        if node.name.value == rules.REWARD_FN and self.function_depth == 0:
            names = tuple(p.name.value for p in params.params)
            if names != rules.REWARD_PARAMS:
                self._add(node, f"{rules.REWARD_FN} must take exactly {rules.REWARD_PARAMS}, got {names}")
            else:
                self.found_reward_fn = True
        self.function_depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_depth -= 1

    # -- loops ----------------------------------------------------------------------------------------
    def visit_For(self, node: cst.For) -> None:
        if node.asynchronous is not None:
            self._add(node, "async for is not allowed")
        self._check_iter(node.iter)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._check_iter(node.iter)

    def _check_iter(self, it: cst.BaseExpression) -> None:
        if isinstance(it, (cst.Tuple, cst.List)):
            if len(it.elements) > rules.MAX_LOOP_ITERATIONS:
                self._add(it, f"loops may run at most {rules.MAX_LOOP_ITERATIONS} iterations")
            return
        if m.matches(it, m.Call(func=m.Name("range"))):
            args = it.args  # type: ignore[attr-defined]
            values = [_int_literal(a.value) for a in args]
            if args and all(v is not None for v in values) and len(values) <= 3 and not any(a.keyword for a in args):
                try:
                    n = len(range(*values))  # type: ignore[arg-type]
                except (ValueError, TypeError):
                    n = None
                if n is not None and n <= rules.MAX_LOOP_ITERATIONS:
                    return
                self._add(it, f"loops may run at most {rules.MAX_LOOP_ITERATIONS} iterations")
                return
        self._add(it, "loops must iterate over range(<int literals>) or a literal tuple/list")

    # -- names, attributes, calls ---------------------------------------------------------------------
    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.skip.add(id(node.keyword))

    def visit_Name(self, node: cst.Name) -> None:
        if id(node) in self.skip:
            return
        name = node.value
        if not name.isascii():
            self._add(node, f"identifier {name!r} must be ASCII")
        elif name.startswith("__") or name.endswith("__"):
            self._add(node, f"dunder name {name!r} is not allowed")
        elif name in rules.REFLECTION_BUILTINS:
            self._add(node, f"{name!r} is not allowed")
        elif name not in self.bound and name not in rules.ALLOWED_BUILTINS:
            self._add(node, f"unknown name {name!r}")

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.skip.add(id(node.attr))
        attr = node.attr.value
        if not attr.isascii():
            self._add(node.attr, f"identifier {attr!r} must be ASCII")
            return
        if attr.startswith("_"):
            self._add(node.attr, f"private or dunder attribute {attr!r} is not allowed")
            return
        parent = self.get_metadata(ParentNodeProvider, node, None)
        if isinstance(parent, cst.Attribute) and parent.value is node:
            return  # the outermost attribute of a chain is checked once, as a whole
        chain = _attribute_chain(node)
        root = chain[0] if chain else None
        if root is not None and root in self.module_aliases:
            qnames = self._qualified(node)
            if not qnames:
                qnames = {".".join(chain)}
            for q in qnames:
                if not rules.qualified_allowed(q):
                    self._add(node, f"{q} is not allowed")
            return
        segments = chain[1:] if chain else [attr]
        if root in rules.REWARD_PARAMS and root != "action" and chain:
            first = segments[0]
            if first not in self.fields:
                self._add(node, f"{root} has no field {first!r}; fields: {self.field_list}")
                return
            segments = segments[1:]
        elif chain is None:
            segments = [attr]
        for s in segments:
            if s not in rules.ARRAY_ATTRS and s not in self.fields:
                self._add(node, f"attribute {s!r} is not allowed")
                return

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, (cst.Name, cst.Attribute)):
            return  # names and attributes carry their own checks
        if isinstance(func, cst.Subscript) and isinstance(func.value, cst.Attribute) and func.value.attr.value == "at":
            self._add(node, "call the `.at[...]` update methods (set/add/...), not the index itself")
            return
        self._add(node, "calls must name a function directly")


def _is_constant(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString)):
        return True
    if isinstance(expr, cst.UnaryOperation):
        return _is_constant(expr.expression)
    if isinstance(expr, cst.BinaryOperation):
        return _is_constant(expr.left) and _is_constant(expr.right)
    if isinstance(expr, (cst.Tuple, cst.List)):
        return all(_is_constant(e.value) for e in expr.elements)
    return False


def _int_literal(expr: cst.BaseExpression) -> int | None:
    if isinstance(expr, cst.Integer):
        return int(expr.evaluated_value)
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus) and isinstance(expr.expression, cst.Integer):
        return -int(expr.expression.evaluated_value)
    return None


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return "?"


def _attribute_chain(node: cst.Attribute) -> list[str] | None:
    """``a.b.c`` -> ['a', 'b', 'c']; None when the chain does not start at a plain name."""
    parts = [node.attr.value]
    cur: cst.BaseExpression = node.value
    while isinstance(cur, cst.Attribute):
        parts.append(cur.attr.value)
        cur = cur.value
    if not isinstance(cur, cst.Name):
        return None
    parts.append(cur.value)
    return parts[::-1]
