"""``search=archive``: a MAP-Elites archive of the run's trained candidates, keyed by what their
policies did (behaviour descriptors from the stored evaluation episodes), so that parents and the
examples a proposer is shown come from different behaviours, not only from around the best.

Descriptors, task-agnostic by default: the mean over each stored episode's running steps of the two
schema quantities the task's description names most (``propose.relevance``; the first two fields
where it names fewer), averaged over the candidate's episodes. A run may name its own
(``archive_fields=[field, field[k]]``). Each dimension is cut into ``bins`` cells at the quantiles of the run's
descriptors so far; each cell keeps its fittest candidate (its elite). ``ranking`` puts the elites
first (fittest first), then everyone else in the run's own order: the offline proposer mutates and
recombines its top parents from that order and the LLM is shown the first few elites."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from rewardsmith.records import Candidate
from rewardsmith.rundir import RunDir
from rewardsmith.tasks import Task

SEARCH_MODES = ("greedy", "archive")


@dataclasses.dataclass
class Archive:
    fields: list[str]  # "name" or "name[k]" per dimension
    edges: list[list[float]]  # per dimension, the inner bin edges
    descriptors: dict[str, list[float]]  # candidate id -> its descriptor
    fitness: dict[str, float]
    cells: dict[str, str] = dataclasses.field(default_factory=dict)  # "i,j" -> elite id

    @property
    def elites(self) -> list[str]:
        """The cells' elites, fittest first."""
        return sorted(set(self.cells.values()), key=lambda cid: -self.fitness[cid])

    def ranking(self, order: Sequence[str]) -> list[str]:
        """The elites first (fittest first), then the rest of ``order`` as it was."""
        elites = self.elites
        return elites + [cid for cid in order if cid not in set(elites)]

    def to_json(self) -> dict:
        return {"fields": self.fields, "edges": self.edges, "cells": self.cells, "elites": self.elites,
                "descriptors": self.descriptors, "fitness": self.fitness}


def parse_fields(names: Sequence[str], task: Task) -> list[tuple[str, int | None]]:
    """``archive_fields``: "name" (a vector field: its norm) or "name[k]" (its component k)."""
    import re

    out = []
    for text in names:
        m = re.fullmatch(r"\s*(\w+)\s*(?:\[\s*(\d+)\s*\])?\s*", str(text))
        if not m or m.group(1) not in task.schema.names:
            raise ValueError(f"archive_fields: {text!r} is not a field of {task.name} ({', '.join(task.schema.names)}), "
                             "nor field[k]")
        out.append((m.group(1), int(m.group(2)) if m.group(2) is not None else None))
    return out


def descriptor_fields(task: Task, n: int = 2) -> list[tuple[str, int | None]]:
    """The quantities the description names most (a field, or one component of a vector field)."""
    from rewardsmith.propose.relevance import relevance

    named = relevance(task.description, task.schema).leads(n)
    for name in task.schema.names:
        if len(named) >= n:
            break
        if all(f != name for f, _ in named):
            named.append((name, None))  # a vector field: its norm
    return named[:n]


def descriptor(traj, fields: list[tuple[str, int | None]]) -> list[float] | None:
    live = np.asarray(traj.live, np.float64) > 0
    if not live.any():
        return None
    out = []
    for name, k in fields:
        v = np.asarray(traj.next_state[name], np.float64)
        if v.ndim == 3:  # a vector field: its component k (or its norm)
            v = v[..., k] if k is not None else np.linalg.norm(v, axis=-1)
        per_episode = [float(v[live[:, e], e].mean()) for e in range(live.shape[1]) if live[:, e].any()]
        out.append(float(np.mean(per_episode)))
    return out if all(np.isfinite(out)) else None


def build_archive(rd: RunDir, candidates: list[Candidate], task: Task, bins: int = 4,
                  fields: list[tuple[str, int | None]] | None = None) -> Archive | None:
    """The archive of the trained ``candidates`` whose episodes are stored; None before any are."""
    fields = fields or descriptor_fields(task)
    desc, fit = {}, {}
    for c in candidates:
        if c.status != "trained" or c.fitness is None:
            continue
        t = rd.read_trajectories(c)
        d = descriptor(t, fields) if t is not None else None
        if d is not None:
            desc[c.id], fit[c.id] = d, float(c.fitness)
    if not desc:
        return None
    values = np.array(list(desc.values()))
    edges = [sorted(set(np.quantile(values[:, j], np.linspace(0, 1, bins + 1)[1:-1]).tolist()))
             for j in range(values.shape[1])]
    archive = Archive(fields=[name if k is None else f"{name}[{k}]" for name, k in fields], edges=edges,
                      descriptors=desc, fitness=fit)
    for cid, d in desc.items():
        cell = ",".join(str(int(np.searchsorted(edges[j], d[j], side="right"))) for j in range(len(d)))
        if cell not in archive.cells or fit[cid] > fit[archive.cells[cell]]:
            archive.cells[cell] = cid
    return archive


def archive_examples(archive: Archive, history: list[Candidate], n: int = 2) -> list[dict]:
    """The elites after the first (which a proposer is shown as the one to improve on): up to ``n``
    from other cells, with what their policies did, for the LLM's prompt."""
    by_id = {c.id: c for c in history}
    out = []
    for cid in archive.elites[1:]:
        c = by_id.get(cid)
        if c is None:
            continue
        out.append({"id": cid, "fitness": archive.fitness[cid], "source": c.source,
                    "behaviour": dict(zip(archive.fields, (round(v, 4) for v in archive.descriptors[cid])))})
        if len(out) == n:
            break
    return out
