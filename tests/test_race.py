"""The finals: the search's top few train on more seeds before the final evaluation."""

import json

import pytest

from rewardsmith.errors import UserError
from rewardsmith.evaluate.race import apply_race, is_current, pooled, race_order, race_settings
from rewardsmith.evolve import resume, run
from rewardsmith.evaluate.ranking import rank_candidates
from rewardsmith.records import Candidate, MemberResult

from conftest import tiny_cfg


def _cand(cid, search, race=None, gen=0, curve=None):
    return Candidate(id=cid, generation=gen, source="", origin="offline",
                     fitness=sum(search) / len(search),
                     members=[MemberResult(seed=i, ok=True, fitness=f, fitness_curve=curve or [f])
                              for i, f in enumerate(search)],
                     race=None if race is None else {"seeds": list(range(200, 200 + len(race))), "per_seed": race})


def test_finals_order_by_fitness_over_all_seeds_and_fail_a_failed_seed():
    lucky = _cand("lucky", [1000, 1000], [100, 1000, 120])  # top on its two training seeds only
    steady = _cand("steady", [900, 950], [920, 940, 930])
    crash = _cand("crash", [1000, 1000], [1000, None, 1000])  # a seed that did not train ranks it last
    assert pooled(lucky) == (pytest.approx(3220 / 5), 5, 0)
    assert pooled(crash) == (pytest.approx(1000.0), 5, 1)
    assert [c.id for c in race_order([lucky, crash, steady])] == ["steady", "lucky", "crash"]
    # equal pooled fitness: the reward that taught sooner
    slow = _cand("slow", [1000, 1000], [1000], curve=[0, 500, 1000])
    fast = _cand("fast", [1000, 1000], [1000], curve=[500, 1000, 1000])
    assert [c.id for c in race_order([slow, fast])] == ["fast", "slow"]


def test_finals_order_the_top_until_a_newer_candidate_arrives():
    a, b, c = _cand("a", [10, 10], gen=0), _cand("b", [9, 9], gen=0), _cand("c", [5, 5], gen=1)
    race = {"after_generation": 1, "finalists": [{"id": "b"}, {"id": "a"}]}
    ranked = rank_candidates([a, b, c], {}, "fitness")
    assert [x.id for x in apply_race(ranked, race, [a, b, c])] == ["b", "a", "c"]
    newer = _cand("d", [1, 1], gen=2)  # a later generation (a resumed run) makes the finals stale
    assert not is_current(race, [a, b, c, newer])
    assert [x.id for x in apply_race(rank_candidates([a, b, c, newer], {}, "fitness"), race, [a, b, c, newer])] \
        == ["a", "b", "c", "d"]
    assert not is_current(None, [a])


@pytest.mark.parametrize("over", [{"finalists": -1}, {"finalists": "3"}, {"finalist_seeds": 0},
                                  {"finalist_seeds": True}, {"finalist_seeds": 500}])
def test_bad_finals_settings_are_refused_before_anything_runs(over, tmp_path):
    with pytest.raises(UserError, match="finalist"):
        race_settings(over)
    with pytest.raises(UserError, match="finalist"):
        run(tiny_cfg(**over), tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.fixture(scope="module")
def raced_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("raced")
    summary = run(tiny_cfg(iterations=1, samples=4, eval_seeds=2, final_eval=True, finalists=3, finalist_seeds=3),
                  root)
    return root, summary


def _records(root):
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text())
            for p in root.glob("generations/*/candidates/*/candidate.json")}


def test_the_finals_choose_what_the_final_evaluation_and_export_see(raced_run):
    root, summary = raced_run
    race = summary["finals"]
    assert race == json.loads((root / "race" / "race.json").read_text())
    recs = _records(root)
    by_search = sorted((r for r in recs.values() if r["fitness"] is not None), key=lambda r: -r["fitness"])
    ids = [r["id"] for r in race["finalists"]]
    assert len(ids) == 3 and set(ids) <= {r["id"] for r in by_search[:4]}
    assert {r["fitness"] for r in by_search[:3]} == {r["search_fitness"] for r in race["finalists"]}
    # fresh seeds, apart from the training seeds and the final evaluation's
    final_seeds = summary["final_evaluation"]["eval_seeds"]
    assert len(race["seeds"]) == 3 and not set(race["seeds"]) & (set(summary["seeds"]) | set(final_seeds))
    for row in race["finalists"]:
        rec = recs[row["id"]]
        per_seed = rec["race"]["per_seed"]
        assert rec["race"]["seeds"] == race["seeds"] and len(per_seed) == 3
        fits = [m["fitness"] for m in rec["members"]] + per_seed
        assert row["pooled_fitness"] == pytest.approx(sum(fits) / len(fits)) and row["seeds"] == 4
    pooled_fits = [r["pooled_fitness"] for r in race["finalists"]]
    assert pooled_fits == sorted(pooled_fits, reverse=True)
    # the winner is what the final evaluation trained and what the export holds
    assert race["winner"] == ids[0] == summary["best_candidate_id"] == summary["final_evaluation"]["best"]["id"]
    assert recs[ids[0]]["source"] in (root / "best_reward.py").read_text()
    assert "finals" in (root / "report.html").read_text()
    assert sorted(p.stem for p in (root / "race" / "rollouts").glob("*.json")) == sorted(ids)


def test_resumed_run_races_again_and_keeps_what_it_raced(raced_run):
    root, first = raced_run
    before = {r["id"]: r["race"] for r in _records(root).values() if r.get("race")}
    job_before = (root / "race" / "worker" / "job.json").read_text()
    summary = resume(root, iterations=1)
    race = summary["finals"]
    assert race["after_generation"] == 1
    recs = _records(root)
    ranked = sorted((r for r in recs.values() if r["fitness"] is not None), key=lambda r: -r["fitness"])
    assert {r["search_fitness"] for r in race["finalists"]} == {r["fitness"] for r in ranked[:3]}
    job = (root / "race" / "worker" / "job.json").read_text()
    finalists = {r["id"] for r in race["finalists"]}
    # a finalist of the first finals keeps its results and is not trained again
    if finalists - set(before):
        assert {c["id"] for c in json.loads(job)["candidates"]} == finalists - set(before)
    else:
        assert job == job_before  # nothing new reached the finals: no training job at all
    for cid in finalists & set(before):
        assert recs[cid]["race"] == before[cid]
    assert summary["best_candidate_id"] == race["winner"] == summary["final_evaluation"]["best"]["id"]


def test_a_persons_choice_stands_over_the_finals():
    from rewardsmith.evolve.settings import RunSettings
    from rewardsmith.evolve.state import SearchState

    a, b = _cand("a", [10, 10]), _cand("b", [9, 9])
    race = {"after_generation": 0, "finalists": [{"id": "b"}, {"id": "a"}]}

    def state(selection):
        return SearchState(settings=RunSettings.from_cfg({"task": {"name": "cartpole"}, "selection": selection}),
                           history=[a, b], race=race)

    assert [c.id for c in state("fitness").ranking([])] == ["b", "a"]
    assert [c.id for c in state("preference").ranking([])] == ["a", "b"]  # no finals order: fitness breaks ties
