"""task=own task.env=... on every environment gymnax registers, and on Brax envs: schema inferred,
the action spec equal to the environment's own space, the action reaches the env, two PPO updates,
a finite fitness, the written task file reloads (rewardsmith/evaluate/conformance.py; all Brax envs
in benchmarks/conformance.py, table in BENCHMARKS.md)."""
from __future__ import annotations

import multiprocessing as mp

import pytest

from rewardsmith.evaluate.conformance import Row, check_env, gymnax_ids, summary, table

# gymnax registers it, but it downloads MNIST when it is made: impossible offline, reported as such
NEEDS_DATA = {"gymnax:MNISTBandit-bsuite"}


def _check_all(sources: list[str]) -> list[dict]:
    return [check_env(s).__dict__ for s in sources]


def test_every_registered_gymnax_env_conforms():
    ids = gymnax_ids()
    assert len(ids) >= 26
    halves = [ids[0::2], ids[1::2]]  # two processes: one per core
    with mp.get_context("spawn").Pool(2) as pool:
        rows = [Row(**r) for part in pool.map(_check_all, halves) for r in part]
    print(table(rows))
    s = summary(rows, "gymnax:")
    assert set(s["needs_data"]) == NEEDS_DATA and s["failed"] == [], table(rows)
    assert s["passed"] == len(ids) - len(NEEDS_DATA)
    box = {r.env: r.action for r in rows if "float32" in r.action}
    assert set(box) == {"gymnax:Pendulum-v1", "gymnax:MountainCarContinuous-v0", "gymnax:PointRobot-misc",
                        "gymnax:Reacher-misc", "gymnax:Swimmer-misc"}


@pytest.mark.parametrize("source", ["brax:inverted_pendulum"])
def test_a_brax_env_conforms(source):
    row = check_env(source)
    assert row.ok, (row.stage, row.reason)
    assert row.action.startswith("action: float32 [1]") and row.fields >= 8
