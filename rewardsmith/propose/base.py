"""The proposer interface: K reward programs (source code) per generation, from task and history."""

from __future__ import annotations

import dataclasses
from typing import Any

from rewardsmith.records import Candidate
from rewardsmith.tasks.base import Task


@dataclasses.dataclass
class Proposal:
    source: str
    note: str = ""
    parents: list[str] = dataclasses.field(default_factory=list)
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    # a sample that produced no code at all: why (recorded as a candidate with status no_code)
    error: str = ""
    # the provider gave no answer for this sample (timed out or failed after its retries, refused, budget
    # reached): the error line (recorded as a candidate with status provider_failed, never trained)
    provider_error: str = ""


@dataclasses.dataclass
class ProposalContext:
    task: Task
    generation: int
    k: int
    history: list[Candidate]  # every candidate so far with its validation and results
    reflection: str = ""  # feedback text built from the previous generation
    # the same feedback with less detail, most detailed first: for a model whose context window cannot
    # hold ``reflection`` with the rest of the prompt (empty: only ``reflection`` is known, e.g. resumed)
    reflection_shorter: list[str] = dataclasses.field(default_factory=list)
    human_feedback: str = ""  # a person's feedback on the previous generation, in plain words
    seed: int = 0
    # candidate ids, best first, as the run's selection mode ranks them (fitness, preference or both);
    # None means rank by fitness
    ranking: list[str] | None = None
    # term constraints read from human feedback (offline proposer): {"field", "direction", "sentence"}
    constraints: list[dict] = dataclasses.field(default_factory=list)
    attempt: int = 0  # retry of this generation (0: first try): a retry must draw new samples
    # search=archive: a few elites of other behaviours than the best ({id, fitness, behaviour, source})
    elites: list[dict] = dataclasses.field(default_factory=list)


class Proposer:
    """What the loop needs of a proposer. Subclasses set ``label`` and ``origin`` and implement
    ``propose``; the rest has defaults that fit a proposer without a model, usage or budget."""

    #: shown in output and stored in summary.json: says plainly who wrote the code
    label: str = ""
    #: stored as each candidate's origin
    origin: str = ""
    #: the model behind it (None for a program search)
    model: str | None = None
    #: why proposing stopped for good (a spent budget), '' while it can go on
    exhausted: str = ""

    def propose(self, ctx: ProposalContext) -> list[Proposal]:
        raise NotImplementedError

    def restore(self) -> None:
        """A resumed run: reload what earlier sessions spent (calls, tokens) from the run directory."""

    def usage(self) -> dict | None:
        """Calls, tokens and cost so far (None: nothing to count)."""
        return None
