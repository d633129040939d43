"""The run directory has one owner: RunDir knows its layout, every other module asks it."""

import ast
from pathlib import Path

from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir

PACKAGE = Path(__file__).resolve().parents[1] / "rewardsmith"
# names of the run directory's folders and files (RunDir's docstring lists the layout)
LAYOUT = {"generations", "candidates", "baselines", "final", "interrupted", "llm", "worker", "config.json",
          "summary.json", "best_reward.py", "report.html", "feedback.json", "candidate.json", "rollout.json",
          "generation.json", "proposer_input.json", "final.json", "calls.json", "litellm.log",
          # a worker folder's own files (WorkerFiles)
          "job.json", "result.json", "worker.log", "tmp", "io"}


def _literal_parts(node: ast.AST) -> list[ast.Constant]:
    """The literal text of a string or an f-string (not the expressions inside it)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node]
    if isinstance(node, ast.JoinedStr):
        return [v for v in node.values if isinstance(v, ast.Constant)]
    return []


def _names_layout(text: str) -> bool:
    return any(part in LAYOUT or part.startswith("gen_") for part in text.replace("*", "").split("/"))


def _layout_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Literal text that names the layout where it is a path: a segment joined with `/`, a glob
    pattern, or any string with a `/` in it."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = _literal_parts(node.left) + _literal_parts(node.right)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("glob", "rglob"):
            parts = [p for a in node.args for p in _literal_parts(a)]
        else:
            parts = [p for p in _literal_parts(node) if "/" in p.value] if isinstance(node, ast.JoinedStr) else []
        hits += [(p.lineno, p.value) for p in parts if _names_layout(p.value)]
    return hits


def test_no_module_but_rundir_spells_the_layout():
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "rundir.py":
            continue
        hits = _layout_literals(ast.parse(path.read_text()))
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    assert found == {}


def test_the_scan_finds_a_hand_written_path():
    """The check above can fail: a module that builds a run-directory path by hand is found."""
    src = ('def f(root, gen):\n    return root / "generations" / f"gen_{gen:02d}"\n'
           'def g(root):\n    return list(root.glob("baselines/*/candidate.json"))\n')
    assert sorted(v for _, v in _layout_literals(ast.parse(src))) == ["baselines/*/candidate.json", "gen_",
                                                                       "generations"]
    # messages and dict keys are not paths
    assert _layout_literals(ast.parse('m = f"{n} candidates trained"\nk = d["baselines"]\n')) == []


def test_records_round_trip_and_lookups(tmp_path):
    rd = RunDir(tmp_path / "run")
    c0 = Candidate(id="g0-aaaa", generation=0, source="# a\n", origin="offline")
    c1 = Candidate(id="g1-bbbb", generation=1, source="# b\n", origin="offline")
    base = Candidate(id="baseline-human", generation=0, source="# h\n", origin="baseline:human")
    for c in (c1, c0, base):
        rd.write_candidate(c)
    assert [r["id"] for r in rd.candidate_records()] == ["g0-aaaa", "g1-bbbb"]
    assert [r["id"] for r in rd.baseline_records()] == ["baseline-human"]
    assert rd.baseline_record("baseline-human")["source"] == "# h\n" and rd.baseline_record("nope") is None
    assert rd.find_candidate("g1-bbbb")["generation"] == 1
    assert rd.find_reward_file("baseline-human").read_text() == "# h\n"
    assert rd.load_candidate(0, "g0-aaaa")["id"] == "g0-aaaa" and rd.load_candidate(1, "g0-aaaa") is None
    # ids are never patterns or paths
    for bad in ("*", "g0-*", "../g0-aaaa", "", ".."):
        assert rd.find_candidate(bad) is None and rd.find_reward_file(bad) is None
    assert [i for i, _ in rd.generation_dirs()] == [0, 1]
    moved = rd.set_aside_generation(rd.gen_dir(1))
    assert moved.parent == rd.root / "interrupted" and [i for i, _ in rd.generation_dirs()] == [0]
    assert rd.set_aside_final() is None
    rd.final_dir.mkdir()
    assert rd.set_aside_final().name == "final.before-resume-1" and not rd.final_dir.exists()


def test_generation_records_are_ordered_by_index_and_attempt(tmp_path):
    from rewardsmith.rundir import atomic_write_json

    rd = RunDir(tmp_path)
    for gen, attempt in ((1, 0), (0, 1), (0, 0), (10, 0), (2, 2)):
        atomic_write_json(rd.generation_record_path(gen, attempt), {"index": gen, "attempt": attempt})
    assert [(r["index"], r["attempt"]) for r in rd.generation_records()] == [(0, 0), (0, 1), (1, 0), (2, 2), (10, 0)]
    assert rd.generation_record_path(0, 1).name == "generation_retry1.json"
    assert rd.proposer_input_path(3, 0).name == "proposer_input.json"
    assert not RunDir(tmp_path / "absent", create=False).root.exists()


def test_a_relative_run_dir_is_held_absolute(tmp_path, monkeypatch):
    """The training worker runs in another working directory: every path it is sent must be absolute."""
    monkeypatch.chdir(tmp_path)
    rd = RunDir("runs/x")
    assert rd.root.is_absolute() and rd.root == tmp_path / "runs" / "x"
    assert rd.worker_dir.is_absolute()
