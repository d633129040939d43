"""Plain-text feedback built from a generation's records."""

from __future__ import annotations

import warnings

import numpy as np

from rewardsmith.records import Candidate


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}"


def _mean_curve(curves: list[list]) -> list[float | None]:
    if not curves:
        return []
    arr = np.array([[np.nan if v is None else v for v in c] for c in curves], float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no episode ended there
        m = np.nanmean(arr, 0)
    return [None if not np.isfinite(v) else float(v) for v in m]


def candidate_table(c: Candidate) -> str:
    """Component values at the checkpoints with max/mean/min, plus fitness and episode length."""
    ok = [m for m in c.members if m.ok]
    if not ok:
        reasons = "; ".join(sorted({m.reason for m in c.members if m.reason})) or c.validation.reason if c.validation else ""
        return f"candidate {c.id}: no usable training run ({reasons})"
    lines = [f"candidate {c.id}: fitness {_fmt(c.fitness)} ± {_fmt(c.fitness_std)} over {len(ok)} seed(s)"]
    rows = {f"component {n}": _mean_curve([m.component_curves[n] for m in ok]) for n in ok[0].component_curves}
    rows["task fitness"] = _mean_curve([m.fitness_curve for m in ok])
    rows["episode length"] = _mean_curve([m.length_curve for m in ok])
    for name, curve in rows.items():
        vals = [v for v in curve if v is not None]
        if not vals:
            lines.append(f"  {name}: no data")
            continue
        lines.append(f"  {name}: [{', '.join(_fmt(v) for v in curve)}], "
                     f"max {_fmt(max(vals))}, mean {_fmt(float(np.mean(vals)))}, min {_fmt(min(vals))}")
    return "\n".join(lines)


def generation_reflection(candidates: list[Candidate], best_so_far: Candidate | None) -> str:
    parts = []
    for c in candidates:
        if c.validation is not None and not c.validation.ok:
            parts.append(f"candidate {c.id}: rejected at {c.validation.stage}: {c.validation.reason}")
        else:
            parts.append(candidate_table(c))
    if best_so_far is not None:
        parts.append(f"best so far: {best_so_far.id} with fitness {_fmt(best_so_far.fitness)}")
    return "\n\n".join(parts)
