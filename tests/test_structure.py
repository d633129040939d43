"""The package's import structure (tools/imports.py): no circle between packages, and no package
importing a higher floor than its own (the command-line shells excepted)."""

import importlib.util
from pathlib import Path


def _tool():
    spec = importlib.util.spec_from_file_location("imports_tool", Path(__file__).parents[1] / "tools" / "imports.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_import_circle_and_no_new_upward_arrow():
    tool = _tool()
    e = tool.edges()
    graph = {}
    for a, b in e:
        graph.setdefault(a, set()).add(b)
    assert tool.circles(graph) == []
    up = {k for k in e if tool.floor(k[1]) > tool.floor(k[0])}
    assert up == set(), up
    # the tool itself sees a circle where there is one
    assert tool.circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_records_are_read_through_their_fields_and_the_loop_and_trainer_stay_short(tmp_path):
    tool = _tool()
    assert tool.string_reads() == []  # summary.json, the worker's job and result: fields of their records
    assert tool.long_functions() == []  # no function in evolve/ or train/ over 60 lines
    # the tool sees such reads where there are some, and not in the records' own modules
    (tmp_path / "train").mkdir()
    (tmp_path / "report.py").write_text('x = summary["best_fitness"]\ny = job.get("seeds")\nz = other["a"]\n')
    (tmp_path / "train" / "job.py").write_text('x = job["seeds"]\n')
    assert tool.string_reads(tmp_path) == ["rewardsmith/report.py:1 summary['best_fitness']",
                                           "rewardsmith/report.py:2 job['seeds']"]
