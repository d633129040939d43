"""Diagnostics over one candidate's training statistics: flat components, a dominating component,
each component's correlation with fitness across checkpoints, and a reward-hacking flag."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

FLAT_REL_TOL = 0.05  # a component whose range is under 5% of its typical magnitude is flat
DOMINANCE_SHARE = 0.8  # a component carrying over 80% of the total magnitude dominates
REWARD_RISE = 0.1  # relative rise of the total reward that counts as "rising"
FITNESS_FLAT = 0.02  # relative change of fitness at or below which it counts as flat


@dataclasses.dataclass
class Diagnostics:
    flat: list[str]
    dominant: str | None
    shares: dict[str, float]
    correlations: dict[str, float | None]
    hacking: bool
    hacking_reason: str = ""

    def lines(self) -> list[str]:
        out = []
        if self.flat:
            out.append(f"flat components (the policy does not change them): {', '.join(self.flat)}")
        if self.dominant:
            out.append(f"component {self.dominant} dominates: {self.shares[self.dominant]:.0%} of the total magnitude")
        corr = [f"{k} {v:+.2f}" for k, v in self.correlations.items() if v is not None]
        if corr:
            out.append("correlation with fitness across checkpoints: " + ", ".join(corr))
        if self.hacking:
            out.append(f"REWARD HACKING SUSPECTED: {self.hacking_reason}")
        return out


def _arr(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], float)


def _trend(xs: np.ndarray) -> float | None:
    """Relative change from the first to the last third of the finite checkpoints."""
    xs = xs[np.isfinite(xs)]
    if xs.size < 3:
        return None
    k = max(1, xs.size // 3)
    first, last = xs[:k].mean(), xs[-k:].mean()
    scale = max(abs(first), abs(last), float(np.std(xs)), 1e-8)
    return float((last - first) / scale)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-12 or np.std(b[ok]) < 1e-12:
        return None
    c = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return c if math.isfinite(c) else None


def diagnose(component_curves: dict[str, Sequence[float | None]], reward_curve: Sequence[float | None],
             fitness_curve: Sequence[float | None]) -> Diagnostics:
    comps = {k: _arr(v) for k, v in component_curves.items()}
    fit = _arr(fitness_curve)
    flat = []
    mags = {}
    for name, c in comps.items():
        finite = c[np.isfinite(c)]
        if finite.size == 0:
            continue
        mag = float(np.mean(np.abs(finite)))
        mags[name] = mag
        if float(finite.max() - finite.min()) <= FLAT_REL_TOL * max(mag, 1e-8):
            flat.append(name)
    total_mag = sum(mags.values())
    shares = {k: (v / total_mag if total_mag > 0 else 0.0) for k, v in mags.items()}
    dominant = None
    if len(shares) >= 2:
        top = max(shares, key=shares.get)  # type: ignore[arg-type]
        if shares[top] > DOMINANCE_SHARE:
            dominant = top
    correlations = {k: _corr(c, fit) for k, c in comps.items()}
    r_trend, f_trend = _trend(_arr(reward_curve)), _trend(fit)
    hacking, why = False, ""
    if r_trend is not None and f_trend is not None and r_trend > REWARD_RISE and f_trend <= FITNESS_FLAT:
        hacking = True
        how = "falls" if f_trend < -FITNESS_FLAT else "stays flat"
        why = (f"total reward rises ({r_trend:+.0%} first to last third of training) while task fitness "
               f"{how} ({f_trend:+.0%})")
    return Diagnostics(flat=flat, dominant=dominant, shares=shares, correlations=correlations,
                       hacking=hacking, hacking_reason=why)
