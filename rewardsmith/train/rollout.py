"""A trained policy's rollout, for people to watch: the first deterministic evaluation episode that the
training program already runs, recorded step by step (no extra compile or rollout).

The record holds, thinned to at most ``MAX_FRAMES`` frames: each schema field (vector fields as
their norm), the reward and each component per step, and, where the task can draw itself, the world
positions of its bodies with the parent of each (a stick figure).
"""

from __future__ import annotations

import math

import numpy as np

MAX_FRAMES = 250


def _clean(a: np.ndarray) -> list:
    a = np.where(np.isfinite(a), a, 0.0)
    return np.round(a.astype(np.float64), 4).tolist()


def rollout_from_trace(trace: dict, *, field_names: list[str], component_names: list[str],
                       parents: list[int] | None, dt: float, seed: int) -> dict:
    """Turn one member's evaluation trace (arrays with a leading time axis) into a JSON-able record."""
    alive = np.asarray(trace["alive"], bool)
    n = len(alive) if alive.all() else int(np.argmin(alive))  # steps while the episode ran
    n = max(n, 1)
    stride = max(1, math.ceil(n / MAX_FRAMES))
    idx = np.arange(0, n, stride)
    fields = np.asarray(trace["fields"])
    comps = np.asarray(trace["components"])
    rec = {
        "seed": int(seed),
        "episode_steps": n,
        "stride": stride,
        "dt": float(dt) * stride,
        "fields": {name: _clean(fields[idx, j]) for j, name in enumerate(field_names)},
        "reward": _clean(np.asarray(trace["reward"])[idx]),
        "components": {name: _clean(comps[idx, j]) for j, name in enumerate(component_names)},
        "parents": None,
        "frames": None,
    }
    if parents is not None and "bodies" in trace:
        bodies = np.asarray(trace["bodies"])
        first = np.asarray(trace.get("first_bodies", bodies[0]))
        # frame k shows the state before step k*stride: the initial state, then the states reached
        frames = np.concatenate([first[None], bodies[: n]], 0)[np.append(idx, n)]
        rec["parents"] = [int(p) for p in parents]
        rec["frames"] = _clean(frames)
    return rec
