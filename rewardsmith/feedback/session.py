"""A feedback session: the latest finished generation's top candidates, read from the run directory
alone, and the one way a submission is stored (validated, appended, never overwriting)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from rewardsmith.feedback.records import (AlreadySubmitted, FeedbackError, FeedbackRecord, load_feedback,
                                          parse_submission, save_feedback)
from rewardsmith.records import Candidate, GenerationRecord
from rewardsmith.reflect.text import mean_curves, trajectory_lines
from rewardsmith.rundir import RunDir


@dataclasses.dataclass
class SessionCandidate:
    candidate: Candidate
    rollout: dict | None  # the trained policy's first evaluation episode (see train/rollout.py)
    summary_lines: list[str]  # what the policy did, in words

    @property
    def id(self) -> str:
        return self.candidate.id


@dataclasses.dataclass
class Session:
    run_dir: Path
    task: str
    fitness_doc: str
    generation: int
    candidates: list[SessionCandidate]
    termination: str = "none"

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.candidates]

    def to_json(self) -> dict:
        """What the web page needs (no file paths)."""
        out = []
        for sc in self.candidates:
            c = sc.candidate
            curves = mean_curves(c)
            steps = next((m.checkpoints for m in c.members if m.ok), [])
            out.append({"id": c.id, "fitness": c.fitness, "fitness_std": c.fitness_std, "source": c.source,
                        "note": c.note, "summary": sc.summary_lines, "checkpoints": steps,
                        "fitness_curve": curves.get("task fitness", []), "rollout": sc.rollout})
        return {"task": self.task, "generation": self.generation, "fitness_doc": self.fitness_doc,
                "candidates": out}

    def submit(self, data: Mapping[str, Any], source: str) -> FeedbackRecord:
        """Validate and store a submission; raises FeedbackError (nothing written) when it cannot be taken."""
        rec = parse_submission(data, self.generation, self.ids, source)
        save_feedback(self.run_dir, rec)
        return rec


def open_session(run_dir: str | Path, top: int = 4, generation: int | None = None) -> Session:
    """The session for the latest finished generation (or ``generation``); a clear FeedbackError when
    there is nothing to look at or the generation already has feedback."""
    rd = RunDir(run_dir, create=False)
    root = rd.root
    if not rd.has_summary():
        raise FeedbackError(f"no rewardsmith run directory at {root} (no {rd.SUMMARY})")
    if top < 2:
        raise FeedbackError(f"top must be at least 2 to compare candidates, got {top}")
    summary = rd.read_summary()
    records = [GenerationRecord(**r) for r in rd.generation_records()]
    if not records:
        raise FeedbackError(f"{root} has no finished generation yet: nothing to look at")
    gens = sorted({r.index for r in records})
    gen = gens[-1] if generation is None else int(generation)
    if gen not in gens:
        raise FeedbackError(f"generation {gen} is not finished in {root}; finished: {gens}")
    for rec in load_feedback(root):
        if rec.generation == gen:
            raise AlreadySubmitted(f"generation {gen} already has feedback (from {rec.source}); continue the search "
                                f"with rewardsmith-resume run_dir={root} to get a new generation to look at")
    ids = [cid for r in records if r.index == gen for cid in r.candidate_ids]
    cands = []
    for cid in dict.fromkeys(ids):
        record = rd.load_candidate(gen, cid)
        if record is not None:
            c = Candidate.from_json(record)
            if c.fitness is not None:
                cands.append(c)
    if len(cands) < 1:
        raise FeedbackError(f"generation {gen} has no trained candidates to look at (every candidate was rejected "
                            f"or failed); continue the search with rewardsmith-resume run_dir={root}")
    cands.sort(key=lambda c: -(c.fitness or 0.0))
    termination = _termination(summary)
    shown = []
    for c in cands[:top]:
        rollout = rd.load_rollout(c)
        shown.append(SessionCandidate(c, rollout, trajectory_lines(c, termination, fields=False)))
    return Session(run_dir=root, task=summary.task, fitness_doc=summary.fitness_doc or "",
                   generation=gen, candidates=shown, termination=termination)


def _termination(summary) -> str:
    try:
        from rewardsmith.tasks import get_task

        return get_task(summary.task).termination
    except Exception:  # noqa: BLE001 - only used for wording
        return "none"
