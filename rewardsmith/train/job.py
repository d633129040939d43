"""What crosses the worker boundary: a ``TrainJob`` goes to the training worker (a local process or a
Ray shard) and a ``TrainResult`` comes back. Each is built and read through its own record; the JSON
they travel as (``to_json`` / ``from_json``) is the worker's job and result file, and the only place
where its keys are spelt."""

from __future__ import annotations

import dataclasses
from typing import Any

from rewardsmith.records import MemberResult, Trajectories, Validation
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.validate.isolate import CheckLimits
from rewardsmith.validate.prefilter import PrefilterSettings


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """Which task the worker builds: a registered name or a task file, with env overrides."""

    name: str
    file: str | None = None
    env: dict = dataclasses.field(default_factory=dict)

    def load(self):
        from rewardsmith.tasks import get_task

        return get_task(self.name, self.file).with_env_overrides(self.env or None)

    @classmethod
    def of(cls, task) -> "TaskRef":
        return cls(name=task.name, file=task.source_file or None, env=dict(task.env_config))

    @property
    def key(self) -> tuple:
        import json

        return (self.name, self.file, json.dumps(self.env, sort_keys=True))


@dataclasses.dataclass(frozen=True)
class JobCandidate:
    id: str
    source: str

    def to_json(self) -> dict:
        return {"id": self.id, "source": self.source}

    @classmethod
    def from_json(cls, d: dict) -> "JobCandidate":
        return cls(id=d["id"], source=d["source"])


@dataclasses.dataclass(frozen=True)
class HalvingBudget:
    """``budget=halving`` for one job: keep 1/eta of the open candidates at each of ``rungs`` rungs;
    ``protected`` ids (the baselines) always train on; ``sizes`` are the run's members per stage (one
    compiled trainer per stage)."""

    eta: int = 2
    rungs: int = 3
    sizes: tuple[int, ...] = ()
    protected: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"kind": "halving", "eta": self.eta, "rungs": self.rungs, "sizes": list(self.sizes),
                "protected": list(self.protected)}

    @classmethod
    def from_json(cls, d: dict | None) -> "HalvingBudget | None":
        if not d or d.get("kind") != "halving":
            return None
        return cls(eta=int(d.get("eta", 2)), rungs=int(d.get("rungs", 3)),
                   sizes=tuple(int(x) for x in d.get("sizes", [])), protected=tuple(d.get("protected", [])))


@dataclasses.dataclass(frozen=True)
class PrefilterJob:
    """``prefilter=``: the stored episodes the job's candidates are judged on before training, the
    earlier candidates they are compared with, and the ids never skipped (the baselines)."""

    settings: PrefilterSettings
    reference: Trajectories
    archive: tuple[JobCandidate, ...] = ()
    protected: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"settings": self.settings.to_json(), "reference": self.reference.to_json(),
                "archive": [c.to_json() for c in self.archive], "protected": list(self.protected)}

    @classmethod
    def from_json(cls, d: dict | None) -> "PrefilterJob | None":
        if not d:
            return None
        return cls(settings=PrefilterSettings.from_json(d["settings"]), reference=Trajectories.from_json(d["reference"]),
                   archive=tuple(JobCandidate.from_json(c) for c in d.get("archive", [])),
                   protected=tuple(d.get("protected", [])))


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One training job: check every candidate (isolated load and trace, cost, shape, rollout), then
    train the survivors x ``seeds`` in one program."""

    task: TaskRef
    ppo: PPOConfig
    seeds: tuple[int, ...]
    candidates: tuple[JobCandidate, ...]
    schema: dict | None = None  # the task's schema, so the checker starts before the task is built
    max_components: int | None = None
    check_limits: CheckLimits = dataclasses.field(default_factory=CheckLimits)
    compile_cache_dir: str | None = None
    check_seed: int = 0
    # the run's usual generation size: smaller generations are padded to it, so that every generation
    # of the run shares one compiled trainer
    population_size: int | None = None
    budget: HalvingBudget | None = None
    # one rollout-check program per candidate (after a program of several ran past its limit)
    rollout_apart: bool = False
    prefilter: PrefilterJob | None = None  # judge the candidates on stored episodes before training

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.candidates]

    def with_candidates(self, candidates, population_size: int | None) -> "TrainJob":
        return dataclasses.replace(self, candidates=tuple(candidates), population_size=population_size)

    def to_json(self) -> dict:
        d: dict[str, Any] = {
            "task": {"name": self.task.name, "file": self.task.file, "env": dict(self.task.env)},
            "schema": self.schema,
            "max_components": self.max_components,
            "check_limits": self.check_limits.to_json(),
            "compile_cache_dir": self.compile_cache_dir,
            "ppo": dataclasses.asdict(self.ppo),
            "seeds": list(self.seeds),
            "candidates": [c.to_json() for c in self.candidates],
            "check_seed": self.check_seed,
            "population_size": self.population_size,
            "budget": self.budget.to_json() if self.budget else None,
        }
        if self.rollout_apart:
            d["rollout_apart"] = True
        if self.prefilter is not None:
            d["prefilter"] = self.prefilter.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainJob":
        t = d["task"]
        return cls(task=TaskRef(name=t["name"], file=t.get("file"), env=dict(t.get("env") or {})),
                   ppo=PPOConfig.from_dict(d.get("ppo") or {}), seeds=tuple(int(s) for s in d.get("seeds", [0])),
                   candidates=tuple(JobCandidate.from_json(c) for c in d.get("candidates", [])),
                   schema=d.get("schema"), max_components=d.get("max_components"),
                   check_limits=CheckLimits.from_json(d.get("check_limits")),
                   compile_cache_dir=d.get("compile_cache_dir"), check_seed=int(d.get("check_seed", 0)),
                   population_size=d.get("population_size"), budget=HalvingBudget.from_json(d.get("budget")),
                   rollout_apart=bool(d.get("rollout_apart")), prefilter=PrefilterJob.from_json(d.get("prefilter")))


@dataclasses.dataclass
class CandidateOutcome:
    """What the worker made of one candidate: its admission, each seed's training, a rollout to view
    and its evaluation episodes (first usable seed) to judge later rewards on."""

    validation: Validation
    members: list[MemberResult] = dataclasses.field(default_factory=list)
    rollout: dict | None = None
    trajectories: Trajectories | None = None
    prefilter: dict | None = None  # the pre-filter's verdict (validate.prefilter.Verdict), where it judged

    def to_json(self) -> dict:
        d: dict[str, Any] = {"validation": dataclasses.asdict(self.validation),
                             "members": [dataclasses.asdict(m) for m in self.members]}
        if self.rollout:
            d["rollout"] = self.rollout
        if self.trajectories is not None:
            d["trajectories"] = self.trajectories.to_json()
        if self.prefilter is not None:
            d["prefilter"] = self.prefilter
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CandidateOutcome":
        return cls(validation=Validation(**d["validation"]), members=[MemberResult(**m) for m in d.get("members", [])],
                   rollout=d.get("rollout"),
                   trajectories=Trajectories.from_json(d["trajectories"]) if d.get("trajectories") else None,
                   prefilter=d.get("prefilter"))


@dataclasses.dataclass
class TrainResult:
    """A job's result. With ``executor=ray``: the shards merged, ``failed`` naming the candidates of a
    shard that failed (with its reason), ``placement`` where each candidate trained."""

    candidates: dict[str, CandidateOutcome] = dataclasses.field(default_factory=dict)
    timing: dict = dataclasses.field(default_factory=dict)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    placement: dict[str, dict] = dataclasses.field(default_factory=dict)
    shards: list[dict] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        d: dict[str, Any] = {"candidates": {cid: o.to_json() for cid, o in self.candidates.items()},
                             "timing": dict(self.timing)}
        for key in ("failed", "placement", "shards"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TrainResult":
        return cls(candidates={cid: CandidateOutcome.from_json(o) for cid, o in (d.get("candidates") or {}).items()},
                   timing=dict(d.get("timing") or {}),
                   failed=dict(d.get("failed") or {}), placement=dict(d.get("placement") or {}),
                   shards=list(d.get("shards") or []))
