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
