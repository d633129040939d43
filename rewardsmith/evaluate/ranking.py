"""How a run orders its candidates: by the task's fitness, by a person's preferences, or both; ties
go to the reward that taught sooner. Used by the search, the finals and the feedback session."""

from __future__ import annotations

import math
from typing import Mapping

SELECTION_MODES = ("fitness", "preference", "both")


def learning_area(c) -> float:
    """Mean fitness over a candidate's training checkpoints, averaged over its seeds: how soon and
    how steadily its reward taught the task (-inf without a curve)."""
    areas = []
    for m in c.members:
        points = [v for v in m.fitness_curve if v is not None and math.isfinite(v)]
        if m.ok and points:
            areas.append(sum(points) / len(points))
    return sum(areas) / len(areas) if areas else -math.inf


def rank_candidates(cands: list, ratings: Mapping[str, float], mode: str) -> list:
    """Candidates with a fitness, best first, by ``mode``:

    * ``fitness``: the task's ground-truth fitness alone (a tie goes to the higher ``learning_area``);
    * ``preference``: Elo rating for the candidates the person rated (best first), then the unrated
      ones by fitness;
    * ``both``: the mean of the fitness percentile and the preference percentile (unrated = 0.5).
    """
    scored = [c for c in cands if c.fitness is not None]
    # equal fitness (several candidates at a task's ceiling) goes to the one that got there sooner
    by_fit = sorted(scored, key=lambda c: (-c.fitness, -learning_area(c)))
    if mode == "fitness" or not ratings:
        return by_fit
    if mode == "preference":
        rated = sorted([c for c in by_fit if c.id in ratings], key=lambda c: -ratings[c.id])
        return rated + [c for c in by_fit if c.id not in ratings]
    n = len(by_fit)
    fit_pct = {c.id: 1.0 - i / max(1, n - 1) for i, c in enumerate(by_fit)}
    rated = sorted([c.id for c in by_fit if c.id in ratings], key=lambda i: ratings[i])
    pref_pct = {cid: (i / max(1, len(rated) - 1) if len(rated) > 1 else 0.5) for i, cid in enumerate(rated)}
    return sorted(by_fit, key=lambda c: -(0.5 * fit_pct[c.id] + 0.5 * pref_pct.get(c.id, 0.5)))
