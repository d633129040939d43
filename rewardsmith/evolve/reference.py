"""What the pre-filter judges new candidates on: the run's stored evaluation episodes and its best
earlier candidates (``prefilter=``, ``validate/prefilter.py``)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from rewardsmith.records import Candidate, Trajectories
from rewardsmith.rundir import RunDir
from rewardsmith.train.job import JobCandidate, PrefilterJob
from rewardsmith.validate.prefilter import PrefilterSettings


def prefilter_job(rd: RunDir, earlier: list[Candidate], settings: PrefilterSettings,
                  protected: tuple[str, ...] = ()) -> PrefilterJob | None:
    """The stored episodes of the ``earlier`` trained candidates (at most ``settings.max_episodes``,
    spread over their fitness range) and the best ``settings.archive`` of them to compare with;
    None where the mode is off or nothing is stored yet."""
    if not settings.on:
        return None
    trained = sorted((c for c in earlier if c.status == "trained" and c.fitness is not None),
                     key=lambda c: -float(c.fitness))
    stored = [(c, t) for c in trained if (t := rd.read_trajectories(c)) is not None]
    if not stored:
        return None
    shape = Counter((t.live.shape[0], t.stride) for _, t in stored).most_common(1)[0][0]
    stored = [(c, t) for c, t in stored if (t.live.shape[0], t.stride) == shape]
    reference = merge_episodes([t for _, t in stored], settings.max_episodes)
    archive = tuple(JobCandidate(id=c.id, source=c.source) for c, _ in stored[:settings.archive])
    return PrefilterJob(settings=settings, reference=reference, archive=archive, protected=tuple(protected))


def merge_episodes(parts: list[Trajectories], max_episodes: int) -> Trajectories:
    """The episodes of ``parts`` as one set; where there are more than ``max_episodes``, an evenly
    spaced choice over their fitness order (the worst, the best and between)."""
    fitness = np.concatenate([np.asarray(t.fitness) for t in parts])
    order = np.argsort(fitness, kind="mergesort")
    if len(order) > max_episodes:
        order = order[np.unique(np.linspace(0, len(order) - 1, max_episodes).round().astype(int))]
    keep = np.sort(order)

    def cat(get, axis: int):
        return np.concatenate([np.asarray(get(t)) for t in parts], axis=axis).take(keep, axis=axis)
    names = parts[0].state.keys()
    return Trajectories(state={k: cat(lambda t, k=k: t.state[k], 1) for k in names},
                        next_state={k: cat(lambda t, k=k: t.next_state[k], 1) for k in names},
                        action=cat(lambda t: t.action, 1), live=cat(lambda t: t.live, 1),
                        fitness_step=cat(lambda t: t.fitness_step, 1), fitness=cat(lambda t: t.fitness, 0),
                        stride=parts[0].stride)
