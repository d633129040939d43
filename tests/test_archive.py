"""search=archive: a MAP-Elites archive over what the trained policies did."""
from __future__ import annotations

import json

import numpy as np

from conftest import tiny_cfg
from rewardsmith.evolve import run
from rewardsmith.evolve.archive import archive_examples, build_archive, descriptor_fields
from rewardsmith.records import Candidate, Trajectories
from rewardsmith.rundir import RunDir, read_json
from rewardsmith.tasks import get_task


def _episodes(task, x: float, theta: float) -> Trajectories:
    steps, eps = 6, 2
    state = {n: np.zeros((steps, eps), np.float32) for n in task.schema.names}
    nxt = dict(state, x=np.full((steps, eps), x, np.float32), theta=np.full((steps, eps), theta, np.float32))
    return Trajectories(state=state, next_state=nxt, action=np.zeros((steps, eps), np.int32),
                        live=np.ones((steps, eps), np.float32), fitness_step=np.ones((steps, eps), np.float32),
                        fitness=np.full(eps, 6.0, np.float32))


def test_the_archive_keeps_distinct_niches_and_the_fittest_of_each(tmp_path):
    task = get_task("cartpole")
    rd = RunDir(tmp_path)
    behaviours = {  # id: (x, theta, fitness): a and b behave alike, c, d and e differently
        "a": (-1.0, -0.1, 100.0), "b": (-1.0, -0.1, 300.0), "c": (1.0, -0.1, 50.0), "d": (-1.0, 0.1, 20.0),
        "e": (1.0, 0.1, 10.0), "f": (0.9, 0.09, 5.0)}
    cands = []
    for cid, (x, th, fit) in behaviours.items():
        c = Candidate(id=cid, generation=0, source="", origin="offline", status="trained", fitness=fit)
        rd.record_dir(c).mkdir(parents=True)
        _episodes(task, x, th).save(rd.trajectories_path(c))
        cands.append(c)
    cands.append(Candidate(id="z", generation=0, source="", origin="offline", status="rejected"))
    names = [f for f, _ in descriptor_fields(task)]
    assert len(names) == 2 and len(set(names)) == 2
    archive = build_archive(rd, cands, task, bins=2)
    assert archive is not None and "z" not in archive.descriptors
    elites = archive.elites
    assert "b" in elites and "a" not in elites  # the same behaviour: the fitter one is kept
    assert len(elites) >= 3 and len(set(archive.cells)) == len(archive.cells)
    assert elites == sorted(elites, key=lambda cid: -behaviours[cid][2])
    order = archive.ranking(["b", "a", "c", "d", "e", "f"])
    assert order[:len(elites)] == elites and sorted(order) == sorted("abcdef")
    shown = archive_examples(archive, cands)
    assert [e["id"] for e in shown] == elites[1:3] and set(shown[0]["behaviour"]) == set(archive.fields)


def test_a_run_with_search_archive_draws_parents_across_niches(tmp_path):
    run(tiny_cfg(iterations=2, samples=3, seeds=1, search="archive"), tmp_path / "run")
    root = tmp_path / "run"
    archive = json.loads((root / "archive.json").read_text())
    assert archive["elites"] and set(archive["elites"]) <= set(archive["descriptors"])
    given = read_json(RunDir(root).proposer_input_path(1, 0))
    assert given["search"] == "archive" and given["parents"][:len(archive["elites"])] == archive["elites"][:10]
    assert "Archive (search=archive)" in (root / "report.html").read_text()


def test_the_llm_is_shown_the_other_elites_with_what_their_policies_did():
    from rewardsmith.propose.llm import _elites_text

    assert _elites_text([]) == ""
    text = _elites_text([{"id": "g01-aa", "fitness": 42.0, "behaviour": {"x": 0.5, "theta": -0.01},
                          "source": "def compute_reward(state, action, next_state):\n    return 1.0, {}\n"}])
    assert "g01-aa (task fitness 42; x 0.5, theta -0.01)" in text and "```python\ndef compute_reward" in text


def test_a_run_may_name_the_archives_quantities_and_a_wrong_one_is_one_clear_error(tmp_path):
    import pytest

    from rewardsmith.errors import UserError
    from rewardsmith.evolve.settings import RunSettings

    s = RunSettings.from_cfg(tiny_cfg(search="archive", archive_fields=["theta", "x_dot"]))
    assert s.archive_fields == (("theta", None), ("x_dot", None))
    with pytest.raises(UserError, match="archive_fields: 'height' is not a field of cartpole"):
        RunSettings.from_cfg(tiny_cfg(search="archive", archive_fields=["height"]))
    with pytest.raises(UserError, match="search must be greedy or archive"):
        RunSettings.from_cfg(tiny_cfg(search="novelty"))
