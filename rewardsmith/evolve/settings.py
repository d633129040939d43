"""The run's settings, read and checked once: ``RunSettings.from_cfg(cfg)`` holds every default and
every check of the configuration (hydra's, a resumed run's config.json, or a dict in code), and the
search, the finals, the final evaluation and the executors take its fields, not the config.

A new training setting: a field of ``PPOConfig`` (train/ppo.py), set as ``train.<name>=``; a new run
setting: a field here, parsed in ``from_cfg``, defaulted in conf/config.yaml."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from rewardsmith.errors import UserError
from rewardsmith.evaluate.final import FinalSettings
from rewardsmith.evaluate.race import RaceSettings
from rewardsmith.evaluate.ranking import SELECTION_MODES
from rewardsmith.isolation.sandbox import MODES as SANDBOX_MODES, physical_memory_mb, probe as sandbox_probe
from rewardsmith.propose.base import Proposal
from rewardsmith.report.trackers import tracker_kind
from rewardsmith.rundir import user_cache_dir
from rewardsmith.tasks import Task, UnknownTaskError, get_task
from rewardsmith.tasks import own_env
from rewardsmith.tasks.registry import task_from_mapping
from rewardsmith.train.candidates import WorkerSettings
from rewardsmith.train.runner import StallLimits
from rewardsmith.validate.prefilter import PrefilterSettings
from rewardsmith.train.cluster import RaySettings, executor_settings
from rewardsmith.train.population import Halving
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.validate.isolate import CheckLimits

FEEDBACK_MODES = ("", "terminal", "web", "file")


@dataclasses.dataclass(frozen=True)
class FeedbackSettings:
    """``feedback=terminal|web|file`` between generations (mode "" for none) and the session's options."""

    mode: str = ""
    top: int = 4
    port: int = 8765
    file: str | None = None
    timeout_s: float | None = None

    def session_args(self) -> dict:
        args: dict[str, Any] = {"host": "127.0.0.1", "port": self.port}
        if self.file:
            args["file"] = self.file
        if self.timeout_s:
            args["timeout_s"] = self.timeout_s
        return args

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "FeedbackSettings":
        mode = feedback_mode(cfg)
        if mode not in FEEDBACK_MODES:
            raise UserError(f"feedback must be none, terminal, web or file, got {cfg.get('feedback')!r}")
        if mode == "terminal" and not sys.stdin.isatty():
            raise UserError("feedback=terminal needs an interactive terminal (stdin is not a TTY); use "
                            "feedback=web, or feedback=file feedback_file=FEEDBACK.yaml")
        return cls(mode=mode, top=int(cfg.get("feedback_top", 4)), port=int(cfg.get("feedback_port", 8765)),
                   file=str(cfg["feedback_file"]) if cfg.get("feedback_file") else None,
                   timeout_s=cfg.get("feedback_timeout_s") or None)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything a run is told, checked. ``cfg`` is the configuration as given (config.json records
    it; the LLM's and the trackers' own sections are read from it by their owners)."""

    cfg: dict
    task: Task
    ppo: PPOConfig
    seeds: list[int]  # the training seeds: base*1000 + i
    worker: WorkerSettings
    iterations: int
    samples: int
    base_seed: int
    max_retries: int  # a generation in which nothing trained is proposed again this often
    selection: str  # fitness, preference or both (the latest feedback's choice wins over it)
    baselines: bool  # train the human and sparse baselines (asked for, and the task has both)
    budget: str  # uniform or halving
    halving: Halving | None
    race: RaceSettings
    final: FinalSettings
    feedback: FeedbackSettings
    executor: RaySettings | None  # None: executor=local
    stop_at_target: bool
    reflection_max_chars: int
    llm: dict  # the proposer's settings (propose/__init__.make_proposer)
    seed_rewards: tuple[Proposal, ...]  # seed_rewards=[a.py,...]: read once, join generation 0
    prefilter: PrefilterSettings = PrefilterSettings()  # judge candidates on stored episodes first
    search: str = "greedy"  # greedy (parents from the best) or archive (MAP-Elites over behaviours)
    archive_fields: tuple = ()  # search=archive: the quantities its cells are keyed by (empty: from the description)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> "RunSettings":
        cfg = plain(cfg)
        task = resolve_task(cfg)
        iterations = _positive_int(cfg, "iterations", 3)
        samples = _positive_int(cfg, "samples", 6)
        n_seeds = _positive_int(cfg, "seeds", 2)
        race = RaceSettings.from_cfg(cfg)
        final = FinalSettings.from_cfg(cfg)
        with_baselines = baselines_on(cfg, task)
        worker = dataclasses.replace(_worker_settings(cfg),
                                     population_size=(samples + (2 if with_baselines else 0)) * n_seeds)
        retries = cfg.get("max_generation_retries", 2)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UserError(f"max_generation_retries must be a non-negative integer, got {retries!r}")
        ppo = ppo_config(task, cfg)
        seeded = tuple(seed_proposals(cfg))  # the files exist and can be read
        tracker_kind(cfg)
        executor = executor_settings(cfg)
        halving = budget_settings(cfg, ppo)
        if halving is not None and executor is not None:
            raise UserError("budget=halving runs on executor=local only (its rungs rank a whole generation at once)")
        if worker.sandbox == "strict":
            missing = sandbox_probe().get("missing", ["network", "filesystem"])
            if missing:
                raise UserError(f"sandbox=strict: this machine gives the training worker no {' and no '.join(missing)} "
                                "isolation (user namespaces, Landlock); use sandbox=auto to run without it")
        feedback = FeedbackSettings.from_cfg(cfg)
        selection = cfg.get("selection") or "fitness"
        if selection not in SELECTION_MODES:
            raise UserError(f"selection must be fitness, preference or both, got {selection!r}")
        base_seed = cfg.get("seed", 0)
        if isinstance(base_seed, bool) or not isinstance(base_seed, int):
            raise UserError(f"seed must be an integer, got {base_seed!r}")
        return cls(cfg=cfg, task=task, ppo=ppo, seeds=[base_seed * 1000 + s for s in range(n_seeds)], worker=worker,
                   iterations=iterations, samples=samples, base_seed=base_seed, max_retries=retries,
                   selection=selection, baselines=with_baselines, budget=cfg.get("budget") or "uniform",
                   halving=halving, race=race, final=final, feedback=feedback, executor=executor,
                   stop_at_target=bool(cfg.get("stop_at_target", False)),
                   reflection_max_chars=int(cfg.get("reflection_max_chars", 8000)),
                   llm=dict(cfg.get("llm") or {"provider": "offline"}), seed_rewards=seeded,
                   prefilter=_prefilter_settings(cfg), search=_search_mode(cfg),
                   archive_fields=_archive_fields(cfg, task))

    def with_task(self, task: Task) -> "RunSettings":
        return dataclasses.replace(self, task=task)

    def with_iterations(self, iterations: int) -> "RunSettings":
        """The settings of a resumed run that runs to generation ``iterations`` (config.json says so too)."""
        return dataclasses.replace(self, iterations=iterations, cfg={**self.cfg, "iterations": iterations})


def plain(cfg: Any) -> dict:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def resolve_task(cfg: Mapping[str, Any]) -> Task:
    tcfg = cfg.get("task") or {}
    if tcfg.get("env") == "???":
        raise UserError("task=own needs the environment: task.env=gymnax:<id>, brax:<name> or <module>:<factory>")
    try:
        if tcfg.get("env"):
            return task_from_mapping(own_env.task_mapping(tcfg), where="task.env")
        return get_task(tcfg.get("name", ""), tcfg.get("file")).with_env_overrides(env_overrides(cfg))
    except UnknownTaskError as e:
        raise UserError(str(e)) from None
    except (FileNotFoundError, ValueError, TypeError, ImportError, AttributeError) as e:
        raise UserError(f"cannot load task: {e}") from None


def seed_proposals(cfg: Mapping[str, Any]) -> list[Proposal]:
    """``seed_rewards=[a.py,b.py]``: rewards you already have (your own, or converted by
    rewardsmith-import) join the first generation as candidates beside the proposer's K; they pass
    the same gate and train alike, and the search builds on them if they do well."""
    seeds = cfg.get("seed_rewards") or []
    if isinstance(seeds, str) or not isinstance(seeds, (list, tuple)):
        raise UserError(f"seed_rewards must be a list of reward files, e.g. seed_rewards=[a.py,b.py]; got {seeds!r}")
    out = []
    for raw in seeds:
        path = Path(str(raw))
        if not path.is_file():
            raise UserError(f"seed_rewards: no such file: {path}")
        out.append(Proposal(source=path.read_text(encoding="utf-8"), note=f"seed reward {path.name}",
                            meta={"seed_file": str(path.absolute())}))
    return out


def baselines_on(cfg: Mapping[str, Any], task: Task) -> bool:
    """Train the human and sparse baselines: asked for, and the task has both (an own environment
    may have none)."""
    return bool(cfg.get("baselines", True)) and bool(task.human_reward) and bool(task.sparse_reward)


def env_overrides(cfg: Mapping[str, Any]) -> dict:
    tcfg = cfg.get("task") or {}
    return {"physics": tcfg["physics"]} if tcfg.get("physics") else {}


def ppo_config(task: Task, cfg: Mapping[str, Any]) -> PPOConfig:
    overrides = {k: v for k, v in (cfg.get("train") or {}).items() if v is not None and k != "preset"}
    preset = (cfg.get("train") or {}).get("preset")
    if preset and preset not in task.presets:
        raise UserError(f"task {task.name} has no training preset {preset!r}; "
                        f"presets: {', '.join(sorted(task.presets)) or 'none'}")
    base = {**task.ppo, **(task.presets.get(preset, {}) if preset else {})}
    try:
        return PPOConfig.from_dict({**base, **overrides})
    except (TypeError, ValueError) as e:
        raise UserError(f"bad training setting: {e}") from None


def _positive_int(cfg: Mapping[str, Any], key: str, default: int) -> int:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key} must be a positive integer, got {value!r}")
    return value


def _positive_number(cfg: Mapping[str, Any], key: str, default: float, *, zero: str | None = None) -> float:
    """``cfg[key]`` as a finite number above 0; with ``zero`` (what 0 means there) 0 is allowed too."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
            or (value == 0 and zero is None):
        raise UserError(f"{key} must be a positive number, got {value!r}" if zero is None else
                        f"{key} must be a non-negative number of seconds ({zero}), got {value!r}")
    return float(value)


def _archive_fields(cfg: Mapping[str, Any], task: Task) -> tuple:
    from rewardsmith.evolve.archive import parse_fields

    names = cfg.get("archive_fields") or []
    if isinstance(names, str):
        names = [names]
    try:
        return tuple(parse_fields(list(names), task))
    except ValueError as e:
        raise UserError(str(e)) from None


def _search_mode(cfg: Mapping[str, Any]) -> str:
    mode = cfg.get("search") or "greedy"
    if mode not in ("greedy", "archive"):
        raise UserError(f"search must be greedy or archive, got {mode!r}")
    return mode


def _prefilter_settings(cfg: Mapping[str, Any]) -> PrefilterSettings:
    mode = cfg.get("prefilter") or "off"
    try:
        return PrefilterSettings(mode=str(mode), min_rank=float(cfg.get("prefilter_min_rank", PrefilterSettings.min_rank)),
                                 redundant=float(cfg.get("prefilter_redundant", PrefilterSettings.redundant)))
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def _worker_settings(cfg: Mapping[str, Any]) -> WorkerSettings:
    try:
        limits = CheckLimits(cpu_s=_positive_number(cfg, "check_cpu_s", CheckLimits.cpu_s),
                             memory_mb=cfg.get("check_memory_mb", CheckLimits.memory_mb),
                             max_flops=cfg.get("check_max_flops", CheckLimits.max_flops),
                             max_mb=cfg.get("check_max_mb", CheckLimits.max_mb),
                             relative_cost=cfg.get("check_relative_cost", CheckLimits.relative_cost))
    except ValueError as e:
        raise UserError(str(e)) from None
    cache = cfg.get("compile_cache", True)
    if cache not in (True, False, None):
        raise UserError(f"compile_cache must be true or false, got {cache!r}")
    cache_dir = str(cfg.get("compile_cache_dir") or user_cache_dir("jax")) if cache else None
    mode = cfg.get("sandbox") or "auto"
    if mode not in SANDBOX_MODES:
        raise UserError(f"sandbox must be auto, strict or off, got {mode!r}")
    memory = cfg.get("sandbox_memory_mb")
    memory = physical_memory_mb() if memory is None else memory
    file_mb = cfg.get("sandbox_file_mb", 4096)
    folder_mb = cfg.get("sandbox_folder_mb", 2048)
    for key, value in (("sandbox_memory_mb", memory), ("sandbox_file_mb", file_mb), ("sandbox_folder_mb", folder_mb)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"{key} must be a non-negative integer (0: no cap), got {value!r}")
    stalls = StallLimits(
        rollout_s=_positive_number(cfg, "check_rollout_s", WorkerSettings.stalls.rollout_s, zero="0: not watched"),
        training_s=_positive_number(cfg, "train_stall_s", WorkerSettings.stalls.training_s, zero="0: not watched"))
    return WorkerSettings(timeout_s=_positive_number(cfg, "worker_timeout_s", 1800), limits=limits,
                          compile_cache_dir=cache_dir, sandbox=mode, sandbox_memory_mb=memory,
                          sandbox_file_mb=file_mb, sandbox_folder_mb=folder_mb, stalls=stalls)


def check_task_action(task: Task) -> None:
    """Before any work: the policy's action must reach the environment (tasks/action_check.py)."""
    from rewardsmith.tasks.action_check import require_action

    try:
        require_action(task)
    except ValueError as e:
        raise UserError(str(e)) from None


def budget_settings(cfg: Mapping[str, Any], ppo: PPOConfig) -> Halving | None:
    """``budget=uniform`` (every candidate trains the whole budget) or ``budget=halving``
    (successive halving, settings under ``halving``); None for uniform."""
    kind = cfg.get("budget") or "uniform"
    if kind not in ("uniform", "halving"):
        raise UserError(f"budget must be uniform or halving, got {kind!r}")
    if kind == "uniform":
        return None
    if ppo.program != "split":
        raise UserError("budget=halving needs train.program=split")
    h = cfg.get("halving") or {}
    if not isinstance(h, Mapping) or set(h) - {"eta", "rungs"}:
        raise UserError(f"halving takes eta and rungs, got {h!r}")
    try:
        return Halving(eta=h.get("eta", 2), rungs=h.get("rungs", 3))
    except ValueError as e:
        raise UserError(str(e)) from None


def feedback_mode(cfg: Mapping[str, Any]) -> str:
    mode = cfg.get("feedback")
    return "" if mode in (None, False, "", "none") else str(mode)
