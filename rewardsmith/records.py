"""Typed records passed between stages and stored in the run directory as JSON."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any


def fmt(x: float | None) -> str:
    """A fitness (or any figure) for people: 4 significant digits, n/a when unknown."""
    return "n/a" if x is None else f"{x:.4g}"


# A candidate's status, in the order it can pass through them: proposed (passed nothing yet), checking
# (in the worker's checks), training, then one that it ends in: trained, rejected (by the gate, a
# check, or as a duplicate), failed (its worker or every seed failed), no_code (an LLM sample without
# code), provider_failed (an LLM sample the provider gave no answer for: timed out, refused, budget).
# skipped: judged on stored episodes before training (prefilter=) and not trained.
STATUSES = ("proposed", "checking", "training", "trained", "rejected", "failed", "no_code", "provider_failed",
            "skipped")


def candidate_id(generation: int, source: str) -> str:
    """Stable id: generation plus a content hash of the source (never a list position)."""
    return f"g{generation:02d}-{hashlib.sha256(source.encode()).hexdigest()[:8]}"


@dataclasses.dataclass
class Validation:
    ok: bool
    stage: str  # "static", "trace" or "passed"
    reason: str = ""  # one line, "line:col: message" for static rejections
    details: list[str] = dataclasses.field(default_factory=list)
    components: list[str] = dataclasses.field(default_factory=list)
    cost: dict = dataclasses.field(default_factory=dict)  # per transition, compiled: flops, bytes, temp_bytes


@dataclasses.dataclass
class MemberResult:
    """One (candidate, seed) member of a generation's population."""

    seed: int
    ok: bool
    fitness: float | None
    reason: str = ""
    # ~10 checkpoints over training
    checkpoints: list[int] = dataclasses.field(default_factory=list)  # env steps at each checkpoint
    fitness_curve: list[float | None] = dataclasses.field(default_factory=list)
    length_curve: list[float | None] = dataclasses.field(default_factory=list)
    reward_curve: list[float] = dataclasses.field(default_factory=list)
    component_curves: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    env_steps: int | None = None  # training env steps this member got
    rung: int | None = None  # budget=halving: the rung it reached (of ``rungs``); None with a uniform budget
    rungs: int | None = None


@dataclasses.dataclass
class Candidate:
    id: str
    generation: int
    source: str
    origin: str  # "offline", "llm:<model>", "baseline:human", "baseline:sparse"
    parents: list[str] = dataclasses.field(default_factory=list)
    note: str = ""  # what the proposer says it did
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # proposer's own data (e.g. genome)
    status: str = "proposed"  # one of STATUSES
    validation: Validation | None = None
    members: list[MemberResult] = dataclasses.field(default_factory=list)
    fitness: float | None = None  # mean over ok members
    fitness_std: float | None = None
    env_steps: int | None = None  # training env steps over all its seeds
    rung: int | None = None  # budget=halving: the last rung it reached (of ``rungs``)
    rungs: int | None = None
    # executor=ray: where it trained (shard, node id and address, every attempt's node); {} on this machine
    placement: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the finals (evaluate/race.py): its fitness on more seeds, trained again as one of the top few
    race: dict[str, Any] | None = None
    # prefilter=: its verdict on the stored episodes (rank, the candidate it copies, skipped and why)
    prefilter: dict[str, Any] | None = None

    @property
    def stopped_early(self) -> bool:
        """Stopped by successive halving before the full budget."""
        return self.rung is not None and self.rungs is not None and self.rung < self.rungs

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Candidate":
        d = dict(d)
        if d.get("validation") is not None:
            d["validation"] = Validation(**d["validation"])
        d["members"] = [MemberResult(**m) for m in d.get("members", [])]
        return cls(**d)


@dataclasses.dataclass
class GenerationRecord:
    index: int
    attempt: int
    candidate_ids: list[str]
    best_id: str | None
    best_fitness: float | None
    wall_s: float
    worker_error: str = ""
    reflection: str = ""  # the feedback text built from this generation for the next one
    human_feedback: str = ""  # a person's feedback this generation's proposer was given
    # every trained member's evaluation curves bit-identical (evaluate/sanity.py): no search result
    identical_policies: bool = False
    # seconds this attempt spent proposing (an LLM's calls, repairs and checks) and training
    propose_s: float | None = None
    train_s: float | None = None


@dataclasses.dataclass
class Summary:
    """A run's summary (``summary.json``): written by the loop after every generation and read by
    the report, the live view, the command lines, the feedback session, resume and the trackers.
    ``from_json`` reads what any earlier version wrote (a key it lacks takes the default here)."""

    status: str  # running, complete, no_candidate_trained
    task: str
    proposer: str = ""  # the proposer's label, in words (LLM or offline program search)
    proposer_kind: str = ""  # llm or offline
    model: str | None = None
    best_candidate_id: str | None = None
    best_fitness: float | None = None
    best_fitness_std: float | None = None
    selection: str = "fitness"
    human_baseline_fitness: float | None = None
    human_baseline_label: str = "human baseline"
    sparse_baseline_fitness: float | None = None
    human_normalised_score: float | None = None  # the final evaluation's where there is one, else the search's
    hns_formula: str = ""
    search_hns: float | None = None
    finals: dict | None = None  # race/race.json of the current finals
    final_evaluation: dict | None = None
    fitness_doc: str = ""
    per_generation_best: list[dict] = dataclasses.field(default_factory=list)
    candidates: dict[str, int] = dataclasses.field(default_factory=dict)  # how many ended in each status
    # generations whose trained policies all behaved the same (evaluate/sanity.py): their ranking means nothing
    identical_policies: list[int] = dataclasses.field(default_factory=list)
    seeds: list[int] = dataclasses.field(default_factory=list)
    env_steps_per_member: int | None = None
    budget: str = "uniform"
    # training env steps actually spent (successive halving stops candidates early)
    env_steps: dict[str, int] = dataclasses.field(default_factory=dict)
    iterations: int | None = None
    samples: int | None = None
    human_feedback: dict | None = None
    sessions: int = 1
    wall_time_s: float = 0.0
    llm: dict | None = None  # the LLM's usage; None for the offline proposer
    stopped_by_budget: str | None = None
    sandbox: dict | None = None  # what the worker's sandbox applied, as it reported
    # prefilter=: its mode, the candidates it judged and skipped, and the env steps that saved
    prefilter: dict | None = None

    @property
    def trained_any(self) -> bool:
        return self.best_candidate_id is not None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Summary":
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in d.items() if k in names}
        known.setdefault("status", "running")
        known.setdefault("task", "")
        for k in ("human_baseline_label", "selection", "budget"):  # written as null by some versions
            if known.get(k) is None:
                known.pop(k, None)
        return cls(**known)


@dataclasses.dataclass
class Trajectories:
    """A trained policy's evaluation episodes, sampled: every ``stride``-th step of its first few
    deterministic episodes, with the schema's fields before (``state``) and after (``next_state``)
    each step, the action, whether the episode still ran (``live``), the task's fitness per step, and
    each whole episode's fitness. Arrays have leading axes [steps, episodes]; stored beside the
    candidate's record as ``trajectories.npz`` (a few hundred kilobytes at most)."""

    state: dict
    next_state: dict
    action: Any
    live: Any
    fitness_step: Any
    fitness: Any  # [episodes]
    stride: int = 1

    @property
    def episodes(self) -> int:
        return int(len(self.fitness))

    def arrays(self) -> dict:
        out = {"action": self.action, "live": self.live, "fitness_step": self.fitness_step, "fitness": self.fitness}
        out.update({f"state.{k}": v for k, v in self.state.items()})
        out.update({f"next_state.{k}": v for k, v in self.next_state.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, stride: int) -> "Trajectories":
        import numpy as np

        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        return cls(state={k[6:]: v for k, v in arrays.items() if k.startswith("state.")},
                   next_state={k[11:]: v for k, v in arrays.items() if k.startswith("next_state.")},
                   action=arrays["action"], live=arrays["live"], fitness_step=arrays["fitness_step"],
                   fitness=arrays["fitness"], stride=int(stride))

    def to_json(self) -> dict:
        """Exact and compact: each array as its dtype, shape and base64 bytes."""
        import base64

        import numpy as np

        def enc(a) -> dict:
            a = np.ascontiguousarray(a)
            return {"dtype": str(a.dtype), "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode()}
        return {"stride": self.stride, "arrays": {k: enc(v) for k, v in self.arrays().items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Trajectories":
        import base64

        import numpy as np

        arrays = {k: np.frombuffer(base64.b64decode(v["b64"]), dtype=v["dtype"]).reshape(v["shape"])
                  for k, v in d["arrays"].items()}
        return cls.from_arrays(arrays, int(d.get("stride", 1)))

    def save(self, path) -> None:
        """``path`` (.npz) written atomically."""
        import os

        import numpy as np

        tmp = f"{path}.tmp.npz"
        np.savez_compressed(tmp, stride=np.int64(self.stride), **self.arrays())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> "Trajectories":
        import numpy as np

        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k != "stride"}
            return cls.from_arrays(arrays, int(z["stride"]))
