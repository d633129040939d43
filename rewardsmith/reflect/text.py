"""Feedback text built from a generation's records: Eureka-style component tables, diagnostics and
trajectory analysis, fitted into a character budget by summarising rather than cutting."""

from __future__ import annotations

import warnings

import numpy as np

from rewardsmith.records import Candidate
from rewardsmith.reflect.diagnostics import diagnose

DEFAULT_MAX_CHARS = 8000  # ~2000 tokens


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


def _thin(curve: list, points: int) -> list:
    if len(curve) <= points:
        return curve
    idx = np.linspace(0, len(curve) - 1, points).round().astype(int)
    return [curve[i] for i in idx]


def mean_curves(c: Candidate) -> dict[str, list[float | None]]:
    ok = [m for m in c.members if m.ok]
    if not ok:
        return {}
    rows = {f"component {n}": _mean_curve([m.component_curves[n] for m in ok]) for n in ok[0].component_curves}
    rows["total reward"] = _mean_curve([m.reward_curve for m in ok])
    rows["task fitness"] = _mean_curve([m.fitness_curve for m in ok])
    rows["episode length"] = _mean_curve([m.length_curve for m in ok])
    return rows


def candidate_diagnostics(c: Candidate):
    rows = mean_curves(c)
    if not rows:
        return None
    comps = {k[len("component "):]: v for k, v in rows.items() if k.startswith("component ")}
    return diagnose(comps, rows["total reward"], rows["task fitness"])


def candidate_table(c: Candidate, points: int = 10, termination: str = "none", fields: bool = True) -> str:
    """Component values at the checkpoints with max/mean/min, fitness and episode length alongside,
    then diagnostics and what the trained policy's evaluation episodes looked like."""
    ok = [m for m in c.members if m.ok]
    if not ok:
        reasons = sorted({m.reason for m in c.members if m.reason})
        return f"candidate {c.id}: no usable training run ({'; '.join(reasons) or c.note or 'failed'})"
    lines = [f"candidate {c.id}: task fitness {_fmt(c.fitness)} ± {_fmt(c.fitness_std)} over {len(ok)} seed(s)"]
    if c.stopped_early:
        per_seed = max((m.env_steps or 0 for m in c.members), default=0)
        lines.append(f"  stopped early by successive halving at rung {c.rung} of {c.rungs}, after {per_seed:,} "
                     "env steps per seed: its fitness is from that point, not from a full training run")
    for name, curve in mean_curves(c).items():
        vals = [v for v in curve if v is not None]
        if not vals:
            lines.append(f"  {name}: no data")
            continue
        lines.append(f"  {name}: [{', '.join(_fmt(v) for v in _thin(curve, points))}], "
                     f"max {_fmt(max(vals))}, mean {_fmt(float(np.mean(vals)))}, min {_fmt(min(vals))}")
    diag = candidate_diagnostics(c)
    if diag is not None:
        lines += [f"  {ln}" for ln in diag.lines()]
    lines += [f"  {ln}" for ln in trajectory_lines(c, termination, fields)]
    return "\n".join(lines)


def trajectory_lines(c: Candidate, termination: str = "none", fields: bool = True) -> list[str]:
    """Why evaluation episodes ended, time to success, ranges of state fields, action magnitudes."""
    evals = [m.eval for m in c.members if m.ok and m.eval]
    if not evals:
        return []
    n = sum(e.get("episodes", 0) for e in evals)
    term = sum((e.get("terminated_frac") or 0) * e.get("episodes", 0) for e in evals)
    length = float(np.mean([e["length_mean"] for e in evals if e.get("length_mean") is not None] or [np.nan]))
    out = []
    if termination == "failure":
        out.append(f"evaluation episodes: {n}, ended by failure {term:.0f}, reached the time limit {n - term:.0f}; "
                   f"mean length {length:.1f}")
    elif termination == "success":
        ttl = [e["length_terminated_mean"] for e in evals if e.get("length_terminated_mean") is not None]
        out.append(f"evaluation episodes: {n}, reached the goal {term:.0f}, ran out of time {n - term:.0f}"
                   + (f"; mean time to success {np.mean(ttl):.1f} steps" if ttl else ""))
    else:
        out.append(f"evaluation episodes: {n}, all run to the time limit; mean length {length:.1f}")
    if fields:
        parts = []
        for name in evals[0].get("fields", {}):
            lo = min(e["fields"][name]["min"] for e in evals if e["fields"][name]["min"] is not None)
            hi = max(e["fields"][name]["max"] for e in evals if e["fields"][name]["max"] is not None)
            mean = float(np.mean([e["fields"][name]["mean"] for e in evals]))
            parts.append(f"{name} [{_fmt(lo)}, {_fmt(hi)}] mean {_fmt(mean)}")
        out.append("state during evaluation (min, max, mean): " + "; ".join(parts))
    acts = [e["action_abs_mean"] for e in evals if e.get("action_abs_mean") is not None]
    if acts:
        out.append(f"mean |action| {np.mean(acts):.3g}")
    return out


def generation_reflection(candidates: list[Candidate], best_so_far: Candidate | None, *,
                          termination: str = "none", max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The whole feedback text; detail is reduced step by step until it fits ``max_chars``."""
    return reflection_levels(candidates, best_so_far, termination=termination, max_chars=max_chars)[0]


def reflection_levels(candidates: list[Candidate], best_so_far: Candidate | None, *,
                      termination: str = "none", max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """The feedback text at every level of detail that fits ``max_chars``, most detailed first (the
    first is what :func:`generation_reflection` gives; a proposer whose model has a small context
    window takes the first whose whole prompt fits it). Never empty: when no level fits, the least
    detailed one cut to ``max_chars``."""
    # samples the provider gave no answer for say nothing about reward design: counted, not listed
    lost = [c for c in candidates if c.status == "provider_failed"]
    candidates = [c for c in candidates if c.status != "provider_failed"]
    ranked = sorted(candidates, key=lambda c: (c.fitness is None, -(c.fitness or 0.0)))
    levels = [(len(ranked), 10, True), (len(ranked), 5, True), (3, 5, True), (3, 5, False), (1, 4, False),
              (0, 0, False)]
    text = ""
    out: list[str] = []
    for full, points, fields in levels:
        parts = []
        for i, c in enumerate(ranked):
            if c.validation is not None and not c.validation.ok:
                parts.append(f"candidate {c.id}: rejected at {c.validation.stage}: {c.validation.reason}")
            elif c.status == "skipped" and c.prefilter:
                parts.append(f"candidate {c.id}: not trained, judged on earlier policies' episodes: "
                             f"{c.prefilter.get('reason')}")
            elif i < full:
                parts.append(candidate_table(c, points, termination, fields))
            else:
                diag = candidate_diagnostics(c)
                flag = " (reward hacking suspected)" if diag is not None and diag.hacking else ""
                early = f" (stopped early at rung {c.rung} of {c.rungs})" if c.stopped_early else ""
                parts.append(f"candidate {c.id}: task fitness {_fmt(c.fitness)}{flag}{early}")
        if lost:
            parts.append(f"{len(lost)} of {len(lost) + len(candidates)} sample(s) got no answer from the LLM "
                         "provider (the request timed out or failed); they were not judged")
        if best_so_far is not None:
            parts.append(f"best so far: {best_so_far.id} with task fitness {_fmt(best_so_far.fitness)}")
        text = "\n\n".join(parts)
        if len(text) <= max_chars and (not out or text != out[-1]):
            out.append(text)
    return out or [cut_text(text, max_chars)]


def cut_text(text: str, max_chars: int) -> str:
    """``text`` cut at a line end to at most ``max_chars``, saying that it was."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 40)].rsplit("\n", 1)[0] + "\n[further candidates omitted for length]"
