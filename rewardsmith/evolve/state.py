"""What the search knows, and how it is rebuilt from the run directory alone when a run is resumed."""

from __future__ import annotations

import dataclasses

import yaml

from rewardsmith.evaluate.final import BASELINE_IDS
from rewardsmith.evaluate.race import apply_race
from rewardsmith.evaluate.ranking import rank_candidates
from rewardsmith.evolve.settings import RunSettings
from rewardsmith.records import Candidate, GenerationRecord
from rewardsmith.rundir import RunDir, atomic_write_text, read_json
from rewardsmith.tasks import Task


@dataclasses.dataclass
class SearchState:
    """Everything the loop knows; rebuilt from the run directory alone when a run is resumed."""

    settings: RunSettings
    history: list[Candidate] = dataclasses.field(default_factory=list)
    generations: list[GenerationRecord] = dataclasses.field(default_factory=list)
    baselines: dict[str, Candidate] = dataclasses.field(default_factory=dict)
    reflection: str = ""
    reflection_shorter: list[str] = dataclasses.field(default_factory=list)  # the same with less detail
    race: dict | None = None  # the latest finals (race.json); they order the top while no candidate is newer
    next_gen: int = 0
    wall_before_s: float = 0.0  # wall time of earlier sessions of this run
    sessions: int = 1
    _ranked: tuple | None = dataclasses.field(default=None, repr=False)  # (key, ranking) of the last ranking

    @property
    def task(self) -> Task:
        return self.settings.task

    def selection_mode(self, feedback: list) -> str:
        """The latest feedback's choice, else the configured one (default: fitness)."""
        return feedback[-1].selection if feedback else self.settings.selection

    def ranking(self, feedback: list) -> list[Candidate]:
        """The candidates best first; computed again only when the history, the finals or the
        feedback changed since the last call."""
        from rewardsmith.feedback.records import elo_ratings

        mode = self.selection_mode(feedback)
        key = (len(self.history), mode, self.race, [r.to_json() for r in feedback])
        if self._ranked is not None and self._ranked[0] == key:
            return list(self._ranked[1])
        ranked = rank_candidates(self.history, elo_ratings(feedback), mode)
        # with preference selection the person's choice stands; the finals only sharpen a fitness ranking
        ranked = apply_race(ranked, self.race, self.history) if mode == "fitness" else ranked
        self._ranked = (key, list(ranked))
        return ranked


def new_state(settings: RunSettings) -> SearchState:
    """A fresh run's state: no history, the baselines untrained."""
    state = SearchState(settings=settings)
    if settings.baselines:
        state.baselines = {kind: baseline(kind, settings.task) for kind in BASELINE_IDS}
    return state


def with_task_file(task: Task, rd: RunDir) -> Task:
    """An own-environment task from the command line is written into the run directory as a task
    file: the worker loads it from there, and it records what the run searched on."""
    if task.spec is None or task.source_file:
        return task
    path = rd.task_file_path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(dict(task.spec), sort_keys=False))
    return dataclasses.replace(task, source_file=str(path))


def baseline(kind: str, task: Task) -> Candidate:
    """The task's human or sparse baseline as an untrained candidate."""
    source = task.human_reward if kind == "human" else task.sparse_reward
    return Candidate(id=BASELINE_IDS[kind], generation=0, source=source, origin=f"baseline:{kind}",
                     note=f"{kind} baseline")


def load_state(state: SearchState, rd: RunDir) -> None:
    """Rebuild history, generation records, baselines and the last reflection from the run directory.
    A generation that was interrupted (candidates but no generation record) is moved to
    ``interrupted/``, not deleted."""
    records = [GenerationRecord(**r) for r in rd.generation_records()]
    done = sorted({r.index for r in records})
    # generations must be contiguous from 0; anything after a gap or without a record is incomplete
    complete = 0
    while complete in done:
        complete += 1
    for idx, d in rd.generation_dirs():
        if idx >= complete:
            rd.set_aside_generation(d)
    state.generations = [r for r in records if r.index < complete]
    ids = [cid for r in state.generations for cid in r.candidate_ids]
    by_id = {c.id: c for c in map(Candidate.from_json, rd.candidate_records())}
    seen: set[str] = set()
    state.history = []
    for cid in ids:
        if cid in by_id and cid not in seen:
            seen.add(cid)
            state.history.append(by_id[cid])
    for kind, bid in BASELINE_IDS.items():
        record = rd.baseline_record(bid)
        if record is not None:
            state.baselines[kind] = Candidate.from_json(record)
        elif state.settings.baselines:
            state.baselines[kind] = baseline(kind, state.task)
    state.reflection = state.generations[-1].reflection if state.generations else ""
    state.race = read_json(rd.race_path) if rd.race_path.is_file() else None
    state.next_gen = complete


def human_context(state: SearchState, feedback: list) -> tuple[str, list[dict]]:
    """The latest human feedback in words, and term constraints from every feedback's text."""
    if not feedback:
        return "", []
    from rewardsmith.feedback.constraints import text_constraints
    from rewardsmith.feedback.records import feedback_text

    fitness = {c.id: c.fitness for c in state.history}
    text = feedback_text(feedback[-1], fitness)
    constraints: dict[str, dict] = {}
    for rec in feedback:  # later feedback on the same field wins
        words = "\n".join(list(rec.comments.values()) + [rec.overall])
        for c in text_constraints(words, state.task.schema)[0]:
            constraints[c.field] = c.to_json()
    return text, list(constraints.values())
