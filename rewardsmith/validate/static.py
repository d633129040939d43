"""Static gate: size cap, ``ast.parse`` with bounded nesting, then an allow-list over the libcst tree.

This is a quality filter that catches mistakes and the known escapes early, with a reason the
proposer can act on. It is not the security boundary: candidate code only ever runs in the keyless
worker process, each candidate's load and trace under its own CPU and memory limits (see
``rewardsmith.validate.isolate``). The checker never raises: a source it cannot analyse (a parser or
recursion failure, anything unexpected) is rejected with the reason.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize

import libcst as cst
from libcst.metadata import MetadataWrapper, ParentNodeProvider, PositionProvider, QualifiedNameProvider

from rewardsmith.validate import rules


@dataclasses.dataclass(frozen=True)
class Violation:
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.col}: {self.message}"


def check_source(source: str, field_names: tuple[str, ...]) -> list[Violation]:
    """Return every violation found (empty list when the source passes). Never raises."""
    try:
        return _check(source, tuple(field_names))
    except (RecursionError, MemoryError, OverflowError) as e:
        return [Violation(1, 1, f"source cannot be checked safely ({type(e).__name__}); simplify the code")]
    except Exception as e:  # noqa: BLE001 - a checker failure rejects the candidate, never the generation
        return [Violation(1, 1, f"source cannot be checked: {type(e).__name__}: {str(e)[:200]}")]


def _check(source: str, field_names: tuple[str, ...]) -> list[Violation]:
    if not isinstance(source, str):
        return [Violation(1, 1, "source must be text")]
    if len(source) > rules.MAX_SOURCE_CHARS:
        return [Violation(1, 1, f"source is {len(source)} characters; the limit is {rules.MAX_SOURCE_CHARS}")]
    n_lines = source.count("\n") + 1
    if n_lines > rules.MAX_SOURCE_LINES:
        return [Violation(1, 1, f"source is {n_lines} lines; the limit is {rules.MAX_SOURCE_LINES}")]
    if "\x00" in source:
        return [Violation(1, 1, "source contains a NUL character")]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation(e.lineno or 1, e.offset or 1, f"syntax error: {e.msg}")]
    except (RecursionError, MemoryError, ValueError, OverflowError) as e:
        return [Violation(1, 1, f"source cannot be parsed safely: {type(e).__name__}")]
    shape_violation = _check_depth(tree) or _check_adjacent_strings(source)
    if shape_violation:
        return [shape_violation]
    # ast.parse passed and nesting is bounded: libcst's native parser is now safe to call.
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as e:
        return [Violation(e.raw_line, e.raw_column + 1, f"syntax error: {e.message}")]
    wrapper = MetadataWrapper(module)
    checker = _Checker(field_names, _bound_names(tree), _module_constants(module))
    wrapper.visit(checker)
    violations = sorted(checker.violations, key=lambda v: (v.line, v.col))
    if not checker.found_reward_fn:
        violations.append(Violation(1, 1, f"no module-level `def {rules.REWARD_FN}{rules.REWARD_PARAMS}`"))
    return violations


def _check_depth(tree: ast.AST) -> Violation | None:
    """Bound nesting, and the flat chains (``a or b or ...``, ``a < b < ...``) that libcst nests."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        where = (getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1)
        if depth > rules.MAX_NESTING:
            return Violation(*where, f"expression nesting deeper than {rules.MAX_NESTING}")
        width = len(node.values) if isinstance(node, ast.BoolOp) else \
            len(node.ops) + 1 if isinstance(node, ast.Compare) else 0
        if width > rules.MAX_BOOL_OPERANDS:
            return Violation(*where, f"a chain of {width} operands; the limit is {rules.MAX_BOOL_OPERANDS}")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


def _check_adjacent_strings(source: str) -> Violation | None:
    """Implicitly concatenated string literals: ast joins them into one, libcst nests them."""
    run, start, in_fstring = 0, (1, 1), 0
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    fstart = getattr(tokenize, "FSTRING_START", None)
    fend = getattr(tokenize, "FSTRING_END", None)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if fstart is not None and tok.type == fstart:
            in_fstring += 1
            continue
        if in_fstring:
            if tok.type == fend:
                in_fstring -= 1
                if not in_fstring:
                    run += 1
            continue
        if tok.type == tokenize.STRING:
            if run == 0:
                start = tok.start
            run += 1
        elif tok.type not in skip:
            run = 0
        if run > rules.MAX_ADJACENT_STRINGS:
            return Violation(start[0], start[1] + 1,
                             f"more than {rules.MAX_ADJACENT_STRINGS} adjacent string literals")
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


def _module_constants(module: cst.Module) -> dict[str, cst.BaseExpression]:
    """``NAME = expr`` at module level, for folding constant expressions that use them."""
    out: dict[str, cst.BaseExpression] = {}
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            value = getattr(small, "value", None)
            if isinstance(small, cst.Assign) and value is not None:
                for t in small.targets:
                    if isinstance(t.target, cst.Name):
                        out[t.target.value] = value
            elif isinstance(small, cst.AnnAssign) and value is not None and isinstance(small.target, cst.Name):
                out[small.target.value] = value
    return out


_FORBIDDEN_NODES: dict[type, str] = {
    cst.While: "while loops are not allowed (use a bounded `for i in range(N)`)",
    cst.ClassDef: "class definitions are not allowed",
    cst.Global: "`global` is not allowed",
    cst.Nonlocal: "`nonlocal` is not allowed",
    cst.Yield: "generators (`yield`) are not allowed",
    cst.Await: "`await` is not allowed",
    cst.Lambda: "lambda is not allowed; define a helper function",
    cst.Try: "try/except is not allowed",
    cst.TryStar: "try/except* is not allowed",
    cst.With: "`with` is not allowed",
    cst.Raise: "`raise` is not allowed",
    cst.Del: "`del` is not allowed",
    cst.Match: "`match` is not allowed",
    cst.NamedExpr: "assignment expressions (`:=`) are not allowed",
    cst.Assert: "`assert` is not allowed",
}
# what an f-string's format spec may say: alignment, sign, width and precision of at most 3 digits, a type
_SAFE_FORMAT_SPEC = re.compile(r"^(.?[<>^=])?[+\- ]?#?0?\d{0,3}[,_]?(\.\d{1,3})?[bcdeEfFgGnosxX%]?$")
# range() arguments that are bounded by an array's shape or a container's size at run time
_SHAPE_ATTRS = {"size", "ndim"}


class _TooBig(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class _Seq:
    """A literal sequence (str, bytes, list, tuple) of known length."""
    n: int


class _Folder:
    """Evaluates constant expressions (literals, module constants, arithmetic) within the bounds of
    ``rules``; raises ``_TooBig`` with the reason where evaluating would exceed them. Unknown values
    (anything that depends on a call or on the reward's inputs) fold to None."""

    def __init__(self, constants: dict[str, cst.BaseExpression]):
        self.constants = constants
        self.memo: dict[int, object] = {}
        self.resolving: set[str] = set()

    def fold(self, node: cst.BaseExpression):
        key = id(node)
        if key not in self.memo:
            self.memo[key] = self._fold(node)
        return self.memo[key]

    def _fold(self, node):
        if isinstance(node, cst.Integer):
            digits = node.value.replace("_", "")
            if len(digits) > rules.MAX_INT_DIGITS:
                raise _TooBig(f"integer literal of {len(digits)} digits; the limit is {rules.MAX_INT_DIGITS}")
            return self._bound(int(node.evaluated_value))
        if isinstance(node, cst.Float):
            return float(node.evaluated_value)
        if isinstance(node, cst.Imaginary):
            return None
        if isinstance(node, cst.SimpleString):
            return _Seq(len(node.evaluated_value))
        if isinstance(node, cst.ConcatenatedString):
            left, right = self.fold(node.left), self.fold(node.right)
            return _Seq(left.n + right.n) if isinstance(left, _Seq) and isinstance(right, _Seq) else None
        if isinstance(node, (cst.List, cst.Tuple)):
            for el in node.elements:
                self.fold(el.value)
            return _Seq(len(node.elements))
        if isinstance(node, cst.Name):
            if node.value in ("True", "False"):
                return int(node.value == "True")
            if node.value in self.constants and node.value not in self.resolving:
                self.resolving.add(node.value)
                try:
                    return self.fold(self.constants[node.value])
                finally:
                    self.resolving.discard(node.value)
            return None
        if isinstance(node, cst.UnaryOperation):
            v = self.fold(node.expression)
            if not isinstance(v, (int, float)):
                return None
            if isinstance(node.operator, cst.Minus):
                return -v
            if isinstance(node.operator, cst.Plus):
                return v
            if isinstance(node.operator, cst.BitInvert) and isinstance(v, int):
                return self._bound(~v)
            return None
        if isinstance(node, cst.BinaryOperation):
            return self._binary(node.operator, self.fold(node.left), self.fold(node.right))
        return None

    def _bound(self, v):
        if isinstance(v, int) and abs(v) > rules.MAX_CONST_INT:
            raise _TooBig("constant expression grows past 2**128")
        return v

    def _binary(self, op, a, b):
        num = (int, float)
        if isinstance(op, cst.Power):
            if isinstance(b, int) and abs(b) > rules.MAX_EXPONENT and not (isinstance(a, num) and abs(a) <= 1):
                raise _TooBig(f"exponent {b} is larger than {rules.MAX_EXPONENT}")
            if isinstance(a, num) and isinstance(b, num):
                try:
                    return self._bound(a ** b)
                except (OverflowError, ZeroDivisionError, ValueError, TypeError):
                    return None
            return None
        if isinstance(op, cst.LeftShift) and isinstance(b, int):
            if b > rules.MAX_EXPONENT:
                raise _TooBig(f"shift by {b} is larger than {rules.MAX_EXPONENT}")
            return self._bound(a << b) if isinstance(a, int) and b >= 0 else None
        if isinstance(op, cst.Multiply):
            for seq, k in ((a, b), (b, a)):
                if isinstance(seq, _Seq) and isinstance(k, int):
                    if seq.n * k > rules.MAX_SEQUENCE_LEN:
                        raise _TooBig(f"repeating a sequence to {seq.n * k} items; the limit is "
                                      f"{rules.MAX_SEQUENCE_LEN}")
                    return _Seq(max(0, seq.n * k))
        if isinstance(op, cst.Add) and isinstance(a, _Seq) and isinstance(b, _Seq):
            if a.n + b.n > rules.MAX_SEQUENCE_LEN:
                raise _TooBig(f"a sequence of {a.n + b.n} items; the limit is {rules.MAX_SEQUENCE_LEN}")
            return _Seq(a.n + b.n)
        if not (isinstance(a, num) and isinstance(b, num)):
            return None
        try:
            if isinstance(op, cst.Add):
                return self._bound(a + b)
            if isinstance(op, cst.Subtract):
                return self._bound(a - b)
            if isinstance(op, cst.Multiply):
                return self._bound(a * b)
            if isinstance(op, cst.Divide):
                return a / b
            if isinstance(op, cst.FloorDivide):
                return a // b
            if isinstance(op, cst.Modulo):
                return a % b
        except (ZeroDivisionError, OverflowError, ValueError, TypeError):
            return None
        return None


class _Checker(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ParentNodeProvider)

    def __init__(self, field_names: tuple[str, ...], bound: set[str], constants: dict[str, cst.BaseExpression]):
        super().__init__()
        self.fields = set(field_names)
        self.field_list = ", ".join(field_names)
        self.bound = bound
        self.folder = _Folder(constants)
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

    def _fold(self, node: cst.BaseExpression):
        """The constant value of ``node`` (None when unknown); a violation when it is too big."""
        try:
            return self.folder.fold(node)
        except _TooBig as e:
            self._add(node, str(e))
            raise

    # -- generic forbidden constructs -----------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        for kind, message in _FORBIDDEN_NODES.items():
            if isinstance(node, kind):
                self._add(node, message)
                return False
        return super().on_visit(node)

    def visit_Annotation(self, node: cst.Annotation) -> bool:
        return False  # annotations are stripped before anything runs (validate.load)

    def visit_Decorator(self, node: cst.Decorator) -> bool:
        names = self._qualified(node.decorator) if isinstance(node.decorator, (cst.Name, cst.Attribute)) else set()
        if rules.is_torch(_dotted(node.decorator)):
            self._add(node, rules.TORCH_DECORATOR_HINT)
        elif not names & rules.ALLOWED_DECORATORS:
            self._add(node, f"decorators are not allowed (only {', '.join(sorted(rules.ALLOWED_DECORATORS))})")
        return False

    # -- module structure ---------------------------------------------------------------------------
    def visit_Module(self, node: cst.Module) -> None:
        for stmt in node.body:
            if isinstance(stmt, cst.FunctionDef):
                continue
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Import, cst.ImportFrom, cst.Assign)):
                        continue
                    if isinstance(small, cst.AnnAssign) and small.value is not None:
                        continue
                    if isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString)):
                        continue  # docstring
                    self._add(small, "module level may only hold imports, constants and function definitions")
            else:
                self._add(stmt, "module level may only hold imports, constants and function definitions")

    def visit_Import(self, node: cst.Import) -> bool:
        if self.function_depth:
            self._add(node, "imports are only allowed at module level")
        for alias in node.names:
            name = _dotted(alias.name)
            if rules.is_torch(name):
                self._add(alias, f"import of {name!r} is not allowed: {rules.TORCH_MODULE_HINT}")
            elif name not in rules.ALLOWED_MODULES:
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
            if module == "__future__" and name == "annotations" and alias.asname is None:
                continue
            qname = f"{module}.{name}"
            if rules.is_torch(module):
                self._add(alias, f"import of {qname!r} is not allowed: {rules.TORCH_MODULE_HINT}")
            elif not (qname in rules.ALLOWED_MODULES or rules.qualified_allowed(qname)):
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
            if p.default is not None and not _is_literal(p.default):
                self._add(p, f"default argument for {p.name.value!r} must be a literal (a number, string, "
                             f"True/False/None or a tuple of those)")
        if node.name.value == rules.REWARD_FN and self.function_depth == 0:
            names = tuple(p.name.value for p in params.params)
            if names != rules.REWARD_PARAMS:
                hint = ""
                if set(names) & rules.EUREKA_PARAMS:
                    hint = (" (an Eureka-style signature: read those as fields, e.g. next_state.root_states; "
                            "the action is `action`)")
                self._add(node, f"{rules.REWARD_FN} must take exactly {rules.REWARD_PARAMS}, got {names}{hint}")
            else:
                self.found_reward_fn = True
        self.function_depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self.function_depth -= 1

    # -- constant expressions -------------------------------------------------------------------------
    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> bool:
        try:
            self._fold(node)
        except _TooBig:
            return False
        return True

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        try:
            value = self._fold(node.value)
        except _TooBig:
            return False
        if isinstance(node.operator, (cst.PowerAssign, cst.LeftShiftAssign)) and isinstance(value, int) \
                and value > rules.MAX_EXPONENT:
            self._add(node, f"exponent or shift {value} is larger than {rules.MAX_EXPONENT}")
            return False
        if isinstance(node.operator, cst.MultiplyAssign) and isinstance(value, int) and value > rules.MAX_SEQUENCE_LEN:
            self._add(node, f"`*= {value}` may repeat a sequence past {rules.MAX_SEQUENCE_LEN} items; "
                            f"write the factor as a float")
            return False
        return True

    def visit_Integer(self, node: cst.Integer) -> None:
        try:
            self._fold(node)
        except _TooBig:
            pass

    def visit_FormattedStringExpression(self, node: cst.FormattedStringExpression) -> None:
        spec = node.format_spec
        if spec is None:
            return
        text = "".join(p.value if isinstance(p, cst.FormattedStringText) else "\x00" for p in spec)
        if not _SAFE_FORMAT_SPEC.match(text):
            self._add(node, "f-string format specs may only give alignment, sign, a width and a precision "
                            "of at most 3 digits, and a type")

    # -- loops ----------------------------------------------------------------------------------------
    def visit_For(self, node: cst.For) -> None:
        if node.asynchronous is not None:
            self._add(node, "async for is not allowed")
        self._check_iter(node.iter)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        if node.asynchronous is not None:
            self._add(node, "async comprehensions are not allowed")
        self._check_iter(node.iter)

    def _check_iter(self, it: cst.BaseExpression) -> None:
        if not self._iterable_ok(it):
            self._add(it, "loops must iterate over range(<ints or len(...)>), a literal tuple/list, a name, a "
                          "state field, a dict's items()/values()/keys(), or enumerate/zip of those")

    def _iterable_ok(self, it: cst.BaseExpression) -> bool:
        if isinstance(it, (cst.Tuple, cst.List)):
            if len(it.elements) > rules.MAX_LOOP_ITERATIONS:
                self._add(it, f"loops may run at most {rules.MAX_LOOP_ITERATIONS} iterations")
            return True
        if isinstance(it, (cst.Name, cst.Attribute)):
            return True
        if not isinstance(it, cst.Call):
            return False
        fn = it.func
        if isinstance(fn, cst.Name) and fn.value == "range":
            return 1 <= len(it.args) <= 3 and all(a.keyword is None and a.star == "" and self._range_arg_ok(a.value)
                                                  for a in it.args)
        if isinstance(fn, cst.Name) and fn.value in ("enumerate", "zip"):
            return bool(it.args) and all(a.keyword is None and a.star == "" and self._iterable_ok(a.value)
                                         for a in it.args)
        return isinstance(fn, cst.Attribute) and fn.attr.value in ("items", "values", "keys") and not it.args

    def _range_arg_ok(self, arg: cst.BaseExpression) -> bool:
        try:
            if isinstance(self.folder.fold(arg), int):
                return True
        except _TooBig:
            return True  # reported where the expression is visited
        if isinstance(arg, cst.Call) and isinstance(arg.func, cst.Name) and arg.func.value == "len":
            return True
        if isinstance(arg, cst.Attribute) and arg.attr.value in _SHAPE_ATTRS:
            return True
        if isinstance(arg, cst.Subscript) and isinstance(arg.value, cst.Attribute) and arg.value.attr.value == "shape":
            return True
        if isinstance(arg, cst.UnaryOperation) and isinstance(arg.operator, cst.Minus):
            return self._range_arg_ok(arg.expression)
        if isinstance(arg, cst.BinaryOperation) and isinstance(arg.operator, (cst.Add, cst.Subtract)):
            return self._range_arg_ok(arg.left) and self._range_arg_ok(arg.right)
        return False

    def _check_range_size(self, node: cst.Call) -> None:
        try:
            values = [self.folder.fold(a.value) for a in node.args]
        except _TooBig:
            return  # reported where the argument is visited
        if not values or len(values) > 3 or not all(isinstance(v, int) for v in values):
            return
        start, stop, step = (0, values[0], 1) if len(values) == 1 else (values[0], values[1], values[2] if len(values) == 3 else 1)
        if step == 0:
            self._add(node, "range() step must not be zero")
            return
        n = max(0, -((start - stop) // step))
        if n > rules.MAX_LOOP_ITERATIONS:
            self._add(node, f"range() of {n} values; loops may run at most {rules.MAX_LOOP_ITERATIONS} iterations")

    # -- names, attributes, calls ---------------------------------------------------------------------
    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.skip.add(id(node.keyword))
            if node.keyword.value in rules.TORCH_KEYWORD_HINTS:
                self._add(node.keyword, f"keyword {node.keyword.value}= is PyTorch's; JAX uses "
                                        f"{rules.TORCH_KEYWORD_HINTS[node.keyword.value]}")

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
            hint = ""
            if rules.is_torch(name):
                hint = f": {rules.TORCH_MODULE_HINT}"
            elif name in self.fields or name in rules.EUREKA_PARAMS:
                hint = self._field_hint(name) or (f": read it as a field, e.g. next_state.{name}"
                                                  if name in self.fields else "")
            self._add(node, f"unknown name {name!r}{hint}")

    def _field_hint(self, name: str) -> str:
        """What to read instead of an Isaac Gym / Eureka name, where this schema has it ('' if nothing)."""
        field, text = rules.ISAAC_FIELD_HINTS.get(name, ("", ""))
        return f": {text}" if text and (field is None or field in self.fields) else ""

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
                if rules.is_torch(q) and len(chain) > 1:
                    self._add(node, f"{q} is not allowed: {rules.torch_function_hint(chain[1])}")
                elif not rules.qualified_allowed(q):
                    self._add(node, f"{q} is not allowed")
            return
        segments = chain[1:] if chain else [attr]
        if root in rules.REWARD_PARAMS and root != "action" and chain:
            first = segments[0]
            if first not in self.fields:
                hint = self._field_hint(first)
                self._add(node, f"{root} has no field {first!r}{hint or '; fields: ' + self.field_list}")
                return
            segments = segments[1:]
        elif chain is None:
            segments = [attr]
        for s in segments:
            if s not in rules.ARRAY_ATTRS and s not in self.fields:
                hint = rules.TORCH_METHOD_HINTS.get(s)
                self._add(node, f"attribute {s!r} is not allowed" + (f": {hint}" if hint else ""))
                return

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Name) and func.value == "range":
            self._check_range_size(node)
        if isinstance(func, (cst.Name, cst.Attribute)):
            return  # names and attributes carry their own checks
        if isinstance(func, cst.Subscript) and isinstance(func.value, cst.Attribute) and func.value.attr.value == "at":
            self._add(node, "call the `.at[...]` update methods (set/add/...), not the index itself")
            return
        self._add(node, "calls must name a function directly")


def _is_literal(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, (cst.Integer, cst.Float, cst.SimpleString)):
        return len(getattr(expr, "value", "")) <= rules.MAX_INT_DIGITS or isinstance(expr, cst.SimpleString)
    if isinstance(expr, cst.Name):
        return expr.value in ("True", "False", "None")
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        return _is_literal(expr.expression)
    if isinstance(expr, cst.Tuple):
        return len(expr.elements) <= 64 and all(_is_literal(e.value) for e in expr.elements)
    return False


def dotted_name(node: cst.BaseExpression) -> str:
    """``a.b.c`` as text; '' where the chain does not start at a plain name (``f().x``)."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        left = dotted_name(node.value)
        return f"{left}.{node.attr.value}" if left else ""
    return ""


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
