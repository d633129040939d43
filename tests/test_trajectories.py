"""Stored evaluation trajectories: each trained candidate's sampled evaluation episodes, beside its
record, readable by the loop and the report."""
from __future__ import annotations

import numpy as np

from conftest import tiny_cfg
from rewardsmith.evolve import run
from rewardsmith.records import Candidate, Trajectories
from rewardsmith.rundir import RunDir, read_json
from rewardsmith.tasks import get_task


def _example() -> Trajectories:
    rng = np.random.default_rng(0)
    return Trajectories(state={"x": rng.normal(size=(5, 3)).astype(np.float32),
                               "q": rng.normal(size=(5, 3, 2)).astype(np.float32)},
                        next_state={"x": rng.normal(size=(5, 3)).astype(np.float32),
                                    "q": rng.normal(size=(5, 3, 2)).astype(np.float32)},
                        action=rng.integers(0, 2, size=(5, 3)).astype(np.int32),
                        live=np.ones((5, 3), np.float32), fitness_step=rng.normal(size=(5, 3)).astype(np.float32),
                        fitness=np.array([1.0, 2.0, 3.0], np.float32), stride=4)


def _same(a: Trajectories, b: Trajectories) -> None:
    assert a.stride == b.stride and set(a.arrays()) == set(b.arrays())
    for k, v in a.arrays().items():
        w = b.arrays()[k]
        assert v.dtype == w.dtype and v.shape == w.shape and np.array_equal(v, w), k


def test_trajectories_round_trip_through_json_and_npz(tmp_path):
    t = _example()
    _same(t, Trajectories.from_json(t.to_json()))
    t.save(tmp_path / "t.npz")
    _same(t, Trajectories.load(tmp_path / "t.npz"))
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically


def test_a_run_stores_each_trained_candidates_evaluation_episodes(tmp_path):
    run(tiny_cfg(iterations=1, samples=2, seeds=2), tmp_path / "run")
    rd = RunDir(tmp_path / "run")
    task = get_task("cartpole")
    records = [Candidate.from_json(read_json(p)) for p in (tmp_path / "run").rglob("candidate.json")]
    trained = [c for c in records if c.status == "trained"]
    assert len(trained) >= 3  # the proposals and both baselines
    for c in trained:
        t = rd.read_trajectories(c)
        assert t is not None, c.id
        assert set(t.state) == set(task.schema.names) == set(t.next_state)
        steps, episodes = t.live.shape
        assert episodes == 4 and steps * t.stride >= 500 and steps <= 128  # 4 eval episodes of CartPole's 500 steps
        assert t.fitness.shape == (4,) and t.action.shape == (steps, episodes)
        first_ok = next(m for m in c.members if m.ok)
        assert np.isclose(float(np.mean(t.fitness)), first_ok.fitness, rtol=1e-5)  # all 4 episodes are kept
        # CartPole's fitness is one per step while the episode runs: the sample sees that
        assert set(np.unique(t.fitness_step[t.live > 0])) <= {1.0}
        assert np.all(np.diff(t.live, axis=0) <= 0)  # an episode, once over, stays over
    # a candidate that did not train has none
    assert all(rd.read_trajectories(c) is None for c in records if c.status != "trained")
