"""The import structure of the rewardsmith package, counted: which package imports which (at module
level and inside functions), import circles between packages, and arrows that point up the floors of
the data path (a lower floor importing a higher one). Run from the repository root:

    python tools/imports.py            # circles, upward arrows, long functions in evolve/ and train/,
                                       # string-keyed reads of summary.json and the worker's job/result
    python tools/imports.py --check    # exit 1 where there is a circle, an upward arrow or such a read
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rewardsmith"
# the floors of what may import what, lowest first (a package imports its own floor and the ones
# below); the data path (tasks -> propose -> validate -> train -> reflect -> evolve) runs through them
FLOORS = [
    {"contract", "errors", "records", "rundir", "isolation", "util", "_version", "__init__"},
    {"tasks"},
    {"reflect"},  # statistics and text from records alone
    {"report"},  # drawings of records: the report, rollout viewers and GIFs, trackers
    {"validate"},
    {"propose"},
    {"train"},
    {"evaluate"},
    {"export"},
    {"feedback"},  # the human preference session, which runs inside the loop
    {"evolve"},
    {"convert", "wrappers"},
    {"cli"},  # and every module named cli.py: the command-line shells may import any floor
]


def floor(pkg: str) -> int:
    for i, names in enumerate(FLOORS):
        if pkg in names:
            return i
    return len(FLOORS)  # unknown: treat as the top


def package(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if path.name == "cli.py" or rel.parts == ("__init__.py",):  # a command's shell, the public API
        return "cli"
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def edges() -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(ROOT.rglob("*.py")):
        src = package(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "rewardsmith" and len(parts) > 1 and parts[1] != src:
                    out[(src, parts[1])].append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def long_functions(packages=("evolve", "train"), limit: int = 60) -> list[tuple[str, int]]:
    """Functions (methods included) longer than ``limit`` lines in ``packages``."""
    out = []
    for pkg in packages:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > limit:
                        out.append((f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}", n))
    return sorted(out, key=lambda x: -x[1])


# the records that cross the worker boundary and summary.json, and the only modules that spell their keys
RECORDS = {"summary": "Summary (records.py)", "job": "TrainJob (train/job.py)", "result": "TrainResult (train/job.py)"}
RECORD_HOMES = {"records.py", "train/job.py"}


def string_reads(root: Path = ROOT) -> list[str]:
    """Places outside the records' own modules that read a summary, a job or a result by a string key
    (``summary["x"]``, ``job.get("x")``): each should be a field of its record."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in RECORD_HOMES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = key = None
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                target, key = node.value.id, node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                  and isinstance(node.func.value, ast.Name) and node.args):
                target, key = node.func.value.id, node.args[0]
            if target in RECORDS and isinstance(key, ast.Constant) and isinstance(key.value, str):
                out.append(f"rewardsmith/{rel}:{node.lineno} {target}[{key.value!r}]")
    return out


def main() -> int:
    e = edges()
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in e:
        graph[a].add(b)
    up = {k: v for k, v in e.items() if floor(k[1]) > floor(k[0])}
    circ = circles(graph)
    print(f"{len(e)} package-to-package arrows among {len({p for k in e for p in k})} packages")
    print(f"circles: {len(circ)}" + "".join(f"\n  {' <-> '.join(c)}" for c in circ))
    print(f"upward arrows: {len(up)}")
    for (a, b), where in sorted(up.items()):
        print(f"  {a} -> {b}: {', '.join(where[:4])}{' ...' if len(where) > 4 else ''}")
    longs = long_functions()
    print(f"functions over 60 lines in evolve/ and train/: {len(longs)}")
    for where, n in longs:
        print(f"  {n:4d} {where}")
    reads = string_reads()
    print(f"string-keyed reads of a summary, job or result outside their records: {len(reads)}")
    for where in reads:
        print(f"  {where}")
    return 1 if "--check" in sys.argv and (circ or up or reads) else 0


if __name__ == "__main__":
    sys.exit(main())
