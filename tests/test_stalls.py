"""A candidate that stalls a program fails alone. Its code passes the isolated load, trace and cost
check (a ``while_loop`` that never ends costs one iteration to XLA's analysis; the static gate would
refuse it, so these tests go around the gate, as hostile code that got past it would):
- it stalls the rollout check: the generation's rollout program runs past ``check_rollout_s``, the
  worker is stopped, the candidates are checked again one at a time, the staller is refused;
- it stalls only on states a short random rollout never reaches: training stops making progress,
  the worker is stopped, the candidates train again in halves until the staller trains alone and
  stalls; it is refused, the others train."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from conftest import TINY_TRAIN
from rewardsmith.train.job import JobCandidate, TaskRef, TrainJob
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.runner import StallLimits, Stalled, StallWatch, WarmWorker, run_isolating_stalls, run_worker
from rewardsmith.isolation.sandbox import Policy, writable_dirs
from rewardsmith.tasks import get_task

HEAD = "import jax\nimport jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n"
GOOD = HEAD + "    r = jnp.exp(-jnp.abs(next_state.theta) / 0.1)\n    return r, {\"upright\": r}\n"
GOOD2 = HEAD + "    r = 1.0 - jnp.abs(next_state.x) / 2.4\n    return r, {\"centred\": r}\n"
STALL = HEAD + ("    n = jax.lax.while_loop(lambda c: c == c, lambda c: c + 1.0, next_state.x)\n"
                "    r = jnp.exp(-jnp.abs(next_state.theta)) + 0.0 * n\n    return r, {\"r\": r}\n")
LIMIT_S = 10.0


def _job() -> TrainJob:
    task = get_task("cartpole")
    return TrainJob(task=TaskRef.of(task), schema=task.schema.to_json(), ppo=PPOConfig.from_dict(dict(TINY_TRAIN)),
                    seeds=(0,), candidates=(JobCandidate("good", GOOD), JobCandidate("stall", STALL),
                                            JobCandidate("good2", GOOD2)))


def _check(result, events) -> None:
    assert list(result.candidates) == ["good", "stall", "good2"]  # the job's order
    stalled = result.candidates["stall"].validation
    assert not stalled.ok and "stalls the rollout check program, run alone" in stalled.reason, stalled
    for cid in ("good", "good2"):
        out = result.candidates[cid]
        assert out.validation.ok and out.members and all(m.ok for m in out.members), (cid, out.validation)
    announced = [e["ids"] for e in events if e.get("event") == "rollout_checking"]
    # together first, then one by one: the first good passes, the staller stalls, then the others alone
    assert announced[0] == ["good", "stall", "good2"] and ["stall"] in announced and announced[-1] == ["good2"], announced


def test_a_warm_worker_refuses_the_staller_and_trains_the_others(tmp_path):
    events: list[dict] = []
    t0 = time.monotonic()
    with WarmWorker(tmp_path / "logs", Policy(mode="auto", write=writable_dirs(tmp_path / "logs", None))) as w:
        result = run_isolating_stalls(lambda job: w.run(job, tmp_path / "job", timeout_s=600, on_event=events.append,
                                                        stalls=StallLimits(rollout_s=LIMIT_S)), _job())
        assert w.starts == 3  # the stalled together program, the staller alone, the rest
    _check(result, events)
    assert time.monotonic() - t0 < 150


def test_a_one_off_worker_stopped_at_the_rollout_limit_names_the_program(tmp_path):
    job = TrainJob(task=_job().task, schema=_job().schema, ppo=_job().ppo, seeds=(0,),
                   candidates=(JobCandidate("stall", STALL),))
    t0 = time.monotonic()
    with pytest.raises(Stalled) as e:
        run_worker(job, tmp_path / "w", timeout_s=600, stalls=StallLimits(rollout_s=LIMIT_S))
    assert e.value.kind == "rollout" and e.value.ids == ["stall"]
    assert "the rollout check of stall made no progress for 10 s" in str(e.value)
    assert time.monotonic() - t0 < 90  # stopped at the rollout limit, not the worker's 600 s


def test_the_watch_times_each_announced_rollout_program_until_its_candidates_are_reported():
    w = StallWatch(StallLimits(rollout_s=5.0))
    assert w.left() == float("inf")
    w.feed({"event": "rollout_checking", "ids": ["a", "b"]})
    assert 4.0 < w.left() <= 5.0 and w.kind == "rollout" and w.ids == ["a", "b"]
    w.feed({"event": "rollout_checked", "id": "a", "ok": True})
    assert w.left() <= 5.0
    w.feed({"event": "rollout_checked", "id": "b", "ok": False})
    assert w.left() == float("inf")
    w.feed({"event": "rollout_checking", "ids": ["c"]})
    w.feed({"event": "training", "candidates": ["c"]})
    assert w.left() == float("inf")
    off = StallWatch(StallLimits())
    off.feed({"event": "rollout_checking", "ids": ["a"]})
    assert off.left() == float("inf")


def test_training_chunks_are_timed_against_the_slowest_after_the_compiling_one(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("rewardsmith.train.runner.time.monotonic", lambda: clock[0])
    w = StallWatch(StallLimits(training_s=30.0))

    def at(t, **event):
        clock[0] = t
        w.feed(event)
    at(0, event="training", candidates=["a", "b"])
    assert w.left() == float("inf")  # the first chunk compiles: not timed
    at(100, event="progress")  # it took 100 s: the second may take 10 x that
    assert w.left() == 1000 and w.kind == "training" and w.ids == ["a", "b"]
    at(102, event="progress")  # 2 s: from now on 10 x 2 s, at least 30 s
    assert w.left() == 30
    at(110, event="progress")  # 8 s
    assert w.left() == 80
    at(111, event="rung")  # a new stage may compile
    assert w.left() == float("inf")
    at(150, event="progress")
    assert w.left() == 390
    at(151, event="trained")
    assert w.left() == float("inf")


def test_a_rollout_stall_of_every_candidate_leaves_an_empty_generation_with_each_reason():
    calls = []

    def run_once(job):
        calls.append(job.ids)
        raise Stalled("rollout", job.ids[:1] if job.rollout_apart else job.ids, 3.0, "log")

    result = run_isolating_stalls(run_once, _job())
    assert calls == [["good", "stall", "good2"], ["good", "stall", "good2"], ["stall", "good2"], ["good2"]]
    assert [o.validation.ok for o in result.candidates.values()] == [False, False, False]
    assert all("no progress for 3 s" in o.validation.reason for o in result.candidates.values())


def test_a_training_stall_is_bisected_to_the_candidate_that_stalls_alone():
    from rewardsmith.records import Validation
    from rewardsmith.train.job import CandidateOutcome, TrainResult

    job = dataclasses.replace(_job(), candidates=tuple(JobCandidate(i, GOOD) for i in "abcde"))
    calls = []

    def run_once(job):
        calls.append(job.ids)
        if "d" in job.ids:
            raise Stalled("training", job.ids, 40.0, "log")
        return TrainResult(candidates={i: CandidateOutcome(validation=Validation(ok=True, stage="passed"))
                                       for i in job.ids})

    result = run_isolating_stalls(run_once, job)
    assert calls == [list("abcde"), list("ab"), list("cde"), ["c"], list("de"), ["d"], ["e"]]
    assert list(result.candidates) == list("abcde")
    assert [i for i, o in result.candidates.items() if not o.validation.ok] == ["d"]
    assert "stalls the training program, run alone: no progress for 40 s" in result.candidates["d"].validation.reason


TRAIN_STALL = HEAD + ("    n = jax.lax.while_loop(lambda c: (next_state.step > 100) & (c == c), lambda c: c + 1.0, 0.0)\n"
                      "    r = -jnp.abs(next_state.pos) + 0.0 * n\n    return r, {\"near\": r}\n")
NEAR = HEAD + "    r = -jnp.abs(next_state.pos)\n    return r, {\"near\": r}\n"
STILL = HEAD + "    r = -jnp.abs(next_state.vel) - jnp.abs(next_state.pos)\n    return r, {\"still\": r}\n"


def test_a_reward_that_stalls_only_in_training_fails_alone_and_the_others_train(tmp_path, monkeypatch):
    """Episodes of 1000 steps that never end early: the rollout check (64 random steps) never sees
    step > 100, training does at its 7th update."""
    from conftest import tiny_cfg
    from rewardsmith.evolve import run
    from rewardsmith.rundir import read_json

    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.syspath_prepend(tests)
    monkeypatch.setattr("rewardsmith.evolve.loop.check_source", lambda source, names: [])  # the gate, bypassed
    files = []
    for name, src in (("near", NEAR), ("stall", TRAIN_STALL), ("still", STILL)):
        (tmp_path / f"{name}.py").write_text(src)
        files.append(str(tmp_path / f"{name}.py"))
    cfg = tiny_cfg(task={"name": None, "file": None, "env": "own_env_fixture:make_endless_point_mass",
                         "fitness": {"expression": "-jnp.abs(next_state.pos)"}, "schema": {},
                         "description": "Bring the mass to rest at the origin."},
                   iterations=1, samples=1, baselines=False, seed_rewards=files, max_generation_retries=0,
                   train_stall_s=15, check_rollout_s=10)
    cfg["train"] = {**cfg["train"], "chunk_updates": 1}
    t0 = time.monotonic()
    summary = run(cfg, tmp_path / "run")
    cands = {c["meta"].get("seed_file", "").rsplit("/", 1)[-1]: c
             for c in (read_json(p) for p in (tmp_path / "run" / "generations").rglob("candidate.json"))}
    assert summary["status"] == "complete"
    assert cands["stall.py"]["status"] == "rejected", cands["stall.py"]
    assert "stalls the training program, run alone" in cands["stall.py"]["validation"]["reason"]
    for name in ("near.py", "still.py"):
        assert cands[name]["status"] == "trained" and cands[name]["fitness"] is not None, cands[name]
    assert time.monotonic() - t0 < 400
