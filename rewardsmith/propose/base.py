"""The proposer interface: K reward programs (source code) per generation, from task and history."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from rewardsmith.records import Candidate
from rewardsmith.tasks.base import Task


@dataclasses.dataclass
class Proposal:
    source: str
    note: str = ""
    parents: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ProposalContext:
    task: Task
    generation: int
    k: int
    history: list[Candidate]  # every candidate so far with its validation and results
    reflection: str = ""  # feedback text built from the previous generation
    human_feedback: str = ""  # a person's feedback on the previous generation, in plain words
    seed: int = 0
    # candidate ids, best first, as the run's selection mode ranks them (fitness, preference or both);
    # None means rank by fitness
    ranking: list[str] | None = None
    # term constraints read from human feedback (offline proposer): {"field", "direction", "sentence"}
    constraints: list[dict] = dataclasses.field(default_factory=list)


class Proposer(Protocol):
    #: shown in output and stored in summary.json: says plainly who wrote the code
    label: str
    #: stored as each candidate's origin
    origin: str

    def propose(self, ctx: ProposalContext) -> list[Proposal]: ...
