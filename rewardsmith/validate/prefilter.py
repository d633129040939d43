"""Judging a reward on stored trajectories before any training (``prefilter=``).

From generation 1 on the run holds earlier policies' evaluation episodes with their ground-truth
fitness (``records.Trajectories``). A new candidate's reward is evaluated on every stored transition
(milliseconds, no training):

- **rank**: Spearman's rank correlation between its per-episode return and the episodes' fitness. A
  reward whose returns order the stored episodes against the fitness (below ``min_rank``) is unlikely
  to teach what the fitness wants.
- **redundancy**: Pearson's correlation of its per-transition rewards with an earlier candidate's
  (the archive's, then this generation's before it). At ``redundant`` or above it is an affine copy
  with a positive scale (``2 r + 1`` of ``r``): PPO with normalised returns would learn the same thing
  twice. Where stored episodes end early, only a copy without an offset counts (``2 r``): an offset
  then pays for living or for ending, which changes what is learnt.

Modes: ``off``; ``rank`` (skip low rank); ``rank+dedupe`` (skip low rank and copies); ``measure``
(score and record everything, train everything: for measuring what the pre-filter would have
skipped). Protected candidates (the baselines) are scored but never skipped. This runs inside the
training worker: it executes candidate code."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

MODES = ("off", "rank", "rank+dedupe", "measure")


@dataclasses.dataclass(frozen=True)
class PrefilterSettings:
    mode: str = "off"
    min_rank: float = 0.0  # skip below this Spearman correlation of return with fitness
    redundant: float = 0.999  # skip at or above this Pearson correlation with an earlier candidate's rewards
    max_episodes: int = 64  # stored episodes judged on (spread over the fitness range)
    archive: int = 8  # earlier candidates (best first) a new one is compared with

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"prefilter must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not -1.0 <= float(self.min_rank) <= 1.0:
            raise ValueError(f"prefilter_min_rank must be in [-1, 1], got {self.min_rank!r}")
        if not 0.0 < float(self.redundant) <= 1.0:
            raise ValueError(f"prefilter_redundant must be in (0, 1], got {self.redundant!r}")

    @property
    def on(self) -> bool:
        return self.mode != "off"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "PrefilterSettings":
        return cls(**dict(d))


@dataclasses.dataclass
class Verdict:
    """What the pre-filter found for one candidate, and whether it was skipped."""

    rank: float | None  # Spearman(return per episode, fitness); None where it cannot be told
    redundant_of: str | None  # the earlier candidate whose rewards it copies (corr at the threshold or above)
    corr: float | None  # Pearson correlation with the closest earlier candidate's per-transition rewards
    skip: bool
    reason: str
    episodes: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def spearman(x, y) -> float | None:
    """Rank correlation with average ranks for ties; None where either side is constant or not finite."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    return pearson(_ranks(x), _ranks(y))


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=np.float64)
    for value in np.unique(v):  # ties share their mean rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def pearson(x, y) -> float | None:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return None
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt((dx * dx).sum())), float(np.sqrt((dy * dy).sum()))
    scale = max(1.0, float(np.abs(x).max()), float(np.abs(y).max()))
    if sx <= 1e-9 * scale * np.sqrt(x.size) or sy <= 1e-9 * scale * np.sqrt(y.size):
        return None
    return float((dx * dy).sum() / (sx * sy))


def copy_of(r: np.ndarray, earlier: Mapping[str, np.ndarray], threshold: float) -> tuple[str | None, float | None]:
    """The earlier reward vector most correlated with ``r`` (positive scale: an affine copy at 1.0),
    and the correlation, where it is at ``threshold`` or above; two constant rewards copy each other."""
    constant = _constant(r)
    best: tuple[str | None, float | None] = (None, None)
    for cid, other in earlier.items():
        c = 1.0 if constant and _constant(other) else pearson(r, other)
        if c is not None and c >= threshold and (best[1] is None or c > best[1]):
            best = (cid, c)
    return best


def _constant(v: np.ndarray) -> bool:
    return bool(np.ptp(v) <= 1e-9 * max(1.0, float(np.abs(v).max()))) if v.size else True


def scaled_copy(r: np.ndarray, other: np.ndarray, tol: float = 1e-3) -> bool:
    """``r`` = a * ``other`` with a > 0 and no offset (within ``tol`` of its size). Where episodes can
    end early an offset is not harmless (it pays for living or for ending): only such a copy is the
    same reward to PPO."""
    if r.size == 0 or other.size == 0:
        return False
    if _constant(other) or _constant(r):
        return bool(_constant(other) and _constant(r) and other.mean() != 0
                    and np.sign(r.mean()) == np.sign(other.mean()))
    a, b = np.polyfit(other, r, 1)
    return bool(a > 0 and abs(b) <= tol * float(np.abs(r).max()))


def rewards_on(branch: Callable, ref, schema) -> np.ndarray:
    """``branch``'s total reward on every stored transition, [steps, episodes] (NaN where not finite)."""
    import jax

    state = schema.make_state({k: ref.state[k] for k in schema.names})
    next_state = schema.make_state({k: ref.next_state[k] for k in schema.names})
    total, _ = jax.jit(jax.vmap(jax.vmap(branch)))(state, np.asarray(ref.action), next_state)
    total = np.asarray(total, np.float64)
    return np.where(np.isfinite(total), total, np.nan)


def judge(branches: Mapping[str, Callable], archive: Mapping[str, Callable], ref, schema,
          settings: PrefilterSettings, protected: set[str] = frozenset()) -> dict[str, Verdict]:
    """A verdict for each of ``branches`` (in order) on the stored episodes ``ref``."""
    live = np.asarray(ref.live, np.float64) > 0
    fitness = np.asarray(ref.fitness, np.float64)
    ended_early = bool((~live[-1]).any())  # some stored episode ended before the last step
    earlier: dict[str, np.ndarray] = {}
    for cid, fn in archive.items():
        try:
            earlier[cid] = rewards_on(fn, ref, schema)[live]
        except Exception:  # noqa: BLE001 - an archive reward that no longer runs is left out
            continue
    verdicts: dict[str, Verdict] = {}
    for cid, fn in branches.items():
        try:
            r = rewards_on(fn, ref, schema)
        except Exception as e:  # noqa: BLE001 - not judged: it trains as without the pre-filter
            verdicts[cid] = Verdict(None, None, None, False, f"not judged: {type(e).__name__}", int(fitness.size))
            continue
        flat = r[live]
        finite = bool(np.all(np.isfinite(flat)))
        returns = np.where(live, np.nan_to_num(r, nan=0.0), 0.0).sum(0)
        rank = spearman(returns, fitness) if finite else None
        closest, corr = copy_of(flat, earlier, -1.0) if finite else (None, None)
        of = closest if corr is not None and corr >= settings.redundant else None
        if of is not None and ended_early and not scaled_copy(flat, earlier[of]):
            of = None  # an affine copy whose offset pays for living or for ending: not the same reward
        reasons = []
        if rank is not None and rank < settings.min_rank:
            reasons.append(f"its returns order the {fitness.size} stored episodes against the fitness "
                           f"(rank correlation {rank:.2f} < prefilter_min_rank={settings.min_rank:g})")
        if of is not None and settings.mode in ("rank+dedupe", "measure"):
            reasons.append(f"an affine copy of {of}'s reward on every stored transition (correlation {corr:.4f})")
        skip = bool(reasons) and settings.mode in ("rank", "rank+dedupe") and cid not in protected
        verdicts[cid] = Verdict(rank, of, corr, skip, "; ".join(reasons), int(fitness.size))
        if finite:
            earlier[cid] = flat
    return verdicts
