"""prefilter=: new rewards judged on a run's stored evaluation episodes before any training."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_cfg
from rewardsmith.evolve import run
from rewardsmith.evolve.reference import merge_episodes, prefilter_job
from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir, read_json
from rewardsmith.tasks import get_task
from rewardsmith.train.job import JobCandidate, TaskRef, TrainJob
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.train.runner import run_worker
from rewardsmith.validate.prefilter import PrefilterSettings, copy_of, judge, pearson, spearman

HEAD = "import jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n"
ALIVE = HEAD + "    r = 1.0 + 0.0 * next_state.x\n    return r, {\"alive\": r}\n"
UPRIGHT = HEAD + "    r = 1.0 - jnp.abs(next_state.theta) / 0.21\n    return r, {\"upright\": r}\n"
UPRIGHT_COPY = HEAD + "    r = 2.0 * (1.0 - jnp.abs(next_state.theta) / 0.21)\n    return r, {\"twice\": r}\n"
# where episodes end early an offset pays for living: not the same reward
UPRIGHT_OFFSET = HEAD + "    r = 2.0 * (1.0 - jnp.abs(next_state.theta) / 0.21) + 1.0\n    return r, {\"plus\": r}\n"
FALL = HEAD + "    r = -1.0 + 0.0 * next_state.x\n    return r, {\"hurry\": r}\n"  # pays for ending soon


def test_an_affine_copy_is_caught_where_no_stored_episode_ends_early():
    from rewardsmith.records import Trajectories
    from rewardsmith.validate.prefilter import judge as judge_

    rng = np.random.default_rng(1)
    steps, eps = 20, 6
    theta = rng.normal(size=(steps, eps)).astype(np.float32)
    state = {"x": np.zeros((steps, eps), np.float32), "theta": theta}
    ref = Trajectories(state=state, next_state=state, action=np.zeros((steps, eps), np.int32),
                       live=np.ones((steps, eps), np.float32), fitness_step=-np.abs(theta),
                       fitness=-np.abs(theta).sum(0), stride=1)

    class Schema:
        names = ("x", "theta")

        @staticmethod
        def make_state(values):
            from collections import namedtuple
            return namedtuple("S", "x theta")(**values)

    import jax.numpy as jnp

    def r(s, a, ns):
        return -jnp.abs(ns.theta), jnp.zeros(1)

    def r2(s, a, ns):
        return 2 * (-jnp.abs(ns.theta)) + 1, jnp.zeros(1)
    v = judge_({"r": r, "r2": r2}, {}, ref, Schema, PrefilterSettings(mode="rank+dedupe"))
    assert v["r"].rank == pytest.approx(1.0) and not v["r"].skip
    assert v["r2"].redundant_of == "r" and v["r2"].skip and "affine copy of r" in v["r2"].reason
    ref.live[-1, 0] = 0.0  # one episode ended early: the offset now pays for living
    v = judge_({"r": r, "r2": r2}, {}, ref, Schema, PrefilterSettings(mode="rank+dedupe"))
    assert v["r2"].redundant_of is None and not v["r2"].skip


def test_rank_and_copy_statistics():
    rng = np.random.default_rng(0)
    r = rng.normal(size=500)
    assert copy_of(2 * r + 1, {"r": r}, 0.99) == ("r", pytest.approx(1.0))
    assert copy_of(-r, {"r": r}, 0.99) == (None, None)  # the opposite reward is not a copy
    assert copy_of(r + rng.normal(size=500), {"r": r}, 0.99) == (None, None)
    assert copy_of(np.full(9, 3.0), {"c": np.full(9, -1.0)}, 0.99)[0] == "c"  # two constants teach the same
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(pearson([0.5, 0.5, 2.5, 2.5], [0, 1, 2, 3]))
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2, np.nan], [1, 2, 3]) is None
    with pytest.raises(ValueError, match="prefilter must be one of"):
        PrefilterSettings(mode="sometimes")


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    """A tiny CartPole run whose trained candidates' episodes are stored."""
    root = tmp_path_factory.mktemp("stored") / "run"
    run(tiny_cfg(iterations=1, samples=3, seeds=1), root)
    rd = RunDir(root)
    cands = [Candidate.from_json(read_json(p)) for p in root.rglob("candidate.json")]
    return rd, cands


def test_the_rank_orders_a_known_good_and_a_known_bad_reward_on_a_stored_cartpole_run(stored_run):
    from rewardsmith.contract import MAX_COMPONENTS
    from rewardsmith.validate.trace import shape_check

    rd, cands = stored_run
    job = prefilter_job(rd, cands, PrefilterSettings(mode="rank+dedupe"))
    ref = job.reference
    assert ref.episodes >= 8 and len(np.unique(ref.fitness)) >= 3  # several policies' episodes
    task = get_task("cartpole")
    branches = {cid: shape_check(src, cid, task, MAX_COMPONENTS)[1]
                for cid, src in (("alive", ALIVE), ("fall", FALL), ("upright", UPRIGHT), ("copy", UPRIGHT_COPY),
                                 ("offset", UPRIGHT_OFFSET))}
    verdicts = judge(branches, {}, ref, task.schema, job.settings)
    assert verdicts["alive"].rank > 0.9 and not verdicts["alive"].skip  # CartPole's fitness is its length
    assert verdicts["fall"].rank < -0.9 and verdicts["fall"].skip and "against the fitness" in verdicts["fall"].reason
    assert verdicts["copy"].redundant_of == "upright" and verdicts["copy"].skip
    assert not verdicts["upright"].skip
    assert (~(ref.live[-1] > 0)).any()  # some stored CartPole episodes fell before the end
    assert verdicts["offset"].corr > 0.999 and verdicts["offset"].redundant_of is None and not verdicts["offset"].skip
    # measure: the same verdicts, nothing skipped
    measured = judge(branches, {}, ref, task.schema, PrefilterSettings(mode="measure"))
    assert measured["fall"].reason and measured["copy"].redundant_of == "upright"
    assert not any(v.skip for v in measured.values())
    # at most max_episodes, spread over the fitness range (the worst and the best kept)
    few = merge_episodes([ref], 5)
    assert few.episodes == 5 and few.fitness.min() == ref.fitness.min() and few.fitness.max() == ref.fitness.max()


def test_the_worker_skips_what_the_prefilter_refuses_and_trains_the_rest(stored_run, tmp_path):
    rd, cands = stored_run
    task = get_task("cartpole")
    from conftest import TINY_TRAIN

    pf = prefilter_job(rd, cands, PrefilterSettings(mode="rank+dedupe"), protected=("fall",))
    job = TrainJob(task=TaskRef.of(task), schema=task.schema.to_json(), ppo=PPOConfig.from_dict(dict(TINY_TRAIN)),
                   seeds=(0,), candidates=(JobCandidate("upright", UPRIGHT), JobCandidate("copy", UPRIGHT_COPY),
                                           JobCandidate("bad", FALL), JobCandidate("fall", FALL)),
                   prefilter=pf)
    events = []
    result = run_worker(job, tmp_path / "w", timeout_s=600, on_event=events.append)
    got = {cid: o.prefilter for cid, o in result.candidates.items()}
    assert got["copy"]["skip"] and got["copy"]["redundant_of"] == "upright"
    assert got["bad"]["skip"] and got["bad"]["rank"] < 0
    assert not got["fall"]["skip"] and got["fall"]["reason"]  # protected: judged, trained anyway
    assert not result.candidates["copy"].members and not result.candidates["bad"].members
    assert result.candidates["upright"].members and result.candidates["fall"].members
    trained = next(e for e in events if e["event"] == "training")["candidates"]
    assert trained == ["upright", "fall"]


def test_a_run_with_the_prefilter_records_its_verdicts_and_the_steps_it_saved(tmp_path):
    summary = run(tiny_cfg(iterations=2, samples=3, seeds=1, prefilter="measure"), tmp_path / "run")
    rd = RunDir(tmp_path / "run")
    gen1 = [Candidate.from_json(read_json(p)) for p in (rd.gen_dir(1) / "candidates").glob("*/candidate.json")]
    gen0 = [Candidate.from_json(read_json(p)) for p in (rd.gen_dir(0) / "candidates").glob("*/candidate.json")]
    assert gen1 and all(c.prefilter is not None for c in gen1 if c.status == "trained")
    assert all(c.prefilter is None for c in gen0)  # nothing was stored before generation 0
    pf = summary["prefilter"]
    assert pf["mode"] == "measure" and pf["judged"] >= 1 and pf["skipped"] == [] and pf["env_steps_saved"] == 0
