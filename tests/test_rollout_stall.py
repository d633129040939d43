"""A candidate that stalls the rollout check fails alone. Its code passes the isolated load, trace and
cost check (a ``while_loop`` that never ends costs one iteration to XLA's analysis; the static gate
would refuse it, which is why the gate is not the boundary): the rollout program of the whole
generation runs past ``check_rollout_s``, the worker is stopped, the candidates are checked again one
at a time, the staller is refused with the reason and the others train."""
from __future__ import annotations

import time

import pytest

from conftest import TINY_TRAIN
from rewardsmith.train.job import JobCandidate, TaskRef, TrainJob
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.runner import RolloutStalled, RolloutWatch, WarmWorker, run_checking_rollouts, run_worker
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
    assert not stalled.ok and f"did not finish in {LIMIT_S:g} s" in stalled.reason, stalled
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
        result = run_checking_rollouts(lambda job: w.run(job, tmp_path / "job", timeout_s=600, on_event=events.append,
                                                         rollout_timeout_s=LIMIT_S), _job())
        assert w.starts == 3  # the stalled together program, the staller alone, the rest
    _check(result, events)
    assert time.monotonic() - t0 < 150


def test_a_one_off_worker_stopped_at_the_rollout_limit_names_the_program(tmp_path):
    job = TrainJob(task=_job().task, schema=_job().schema, ppo=_job().ppo, seeds=(0,),
                   candidates=(JobCandidate("stall", STALL),))
    t0 = time.monotonic()
    with pytest.raises(RolloutStalled) as e:
        run_worker(job, tmp_path / "w", timeout_s=600, rollout_timeout_s=LIMIT_S)
    assert e.value.ids == ["stall"] and "did not finish in 10 s" in str(e.value)
    assert time.monotonic() - t0 < 90  # stopped at the rollout limit, not the worker's 600 s


def test_the_watch_times_each_announced_program_until_its_candidates_are_reported():
    w = RolloutWatch(5.0)
    assert w.left() == float("inf")
    w.feed({"event": "rollout_checking", "ids": ["a", "b"]})
    assert 4.0 < w.left() <= 5.0
    w.feed({"event": "rollout_checked", "id": "a", "ok": True})
    assert w.left() <= 5.0
    w.feed({"event": "rollout_checked", "id": "b", "ok": False})
    assert w.left() == float("inf")
    w.feed({"event": "rollout_checking", "ids": ["c"]})
    w.feed({"event": "training"})
    assert w.left() == float("inf")
    off = RolloutWatch(0)
    off.feed({"event": "rollout_checking", "ids": ["a"]})
    assert off.left() == float("inf")


def test_every_candidate_stalling_leaves_an_empty_generation_with_each_reason():
    calls = []

    def run_once(job):
        calls.append(job.ids)
        raise RolloutStalled(job.ids[:1] if job.rollout_apart else job.ids, 3.0, "log")

    result = run_checking_rollouts(run_once, _job())
    assert calls == [["good", "stall", "good2"], ["good", "stall", "good2"], ["stall", "good2"], ["good2"]]
    assert [o.validation.ok for o in result.candidates.values()] == [False, False, False]
    assert all("did not finish in 3 s" in o.validation.reason for o in result.candidates.values())
