"""The search loop: propose -> validate -> train (one program) -> evaluate -> reflect, N times.

``run(cfg, run_dir)`` is a plain function (the hydra entry point is a thin shell over it). The run
directory is the source of truth: every candidate, every generation and the summary are written
atomically as soon as they are known.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from rewardsmith.errors import UserError
from rewardsmith.evaluate.final import BASELINE_IDS, HNS_FORMULA, final_evaluation, hns
from rewardsmith.evaluate.race import apply_race, is_current, race_settings, run_finals
from rewardsmith.evaluate.sanity import identical_message, identical_policies
from rewardsmith.export import write_best_reward
from rewardsmith.evaluate.ranking import SELECTION_MODES, rank_candidates
from rewardsmith.feedback.records import load_feedback
from rewardsmith.propose import make_proposer
from rewardsmith.propose.base import Proposal, ProposalContext
from rewardsmith.records import Candidate, GenerationRecord, Summary, Validation, candidate_id
from rewardsmith.reflect import reflection_levels
from rewardsmith.rundir import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    read_json,
    user_cache_dir,
)
from rewardsmith.tasks import Task, UnknownTaskError, get_task
from rewardsmith.tasks import own_env
from rewardsmith.tasks.registry import task_from_mapping
from rewardsmith.train.candidates import WorkerSettings, train_candidates
from rewardsmith.train.job import HalvingBudget
from rewardsmith.train.population import Halving, halving_sizes
from rewardsmith.train.ppo import PPOConfig
from rewardsmith.report.trackers import make_tracker, tracker_kind
from rewardsmith.train.cluster import executor_settings, make_executor
from rewardsmith.isolation.sandbox import MODES as SANDBOX_MODES, physical_memory_mb, probe as sandbox_probe, sandbox_policy
from rewardsmith.train.runner import WarmWorker
from rewardsmith.validate.isolate import CheckLimits
from rewardsmith.validate.static import check_source


def _plain(cfg: Any) -> dict:
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


def with_task_file(task: Task, rd: RunDir) -> Task:
    """An own-environment task from the command line is written into the run directory as a task
    file: the worker loads it from there, and it records what the run searched on."""
    if task.spec is None or task.source_file:
        return task
    path = rd.task_file_path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(dict(task.spec), sort_keys=False))
    return dataclasses.replace(task, source_file=str(path))


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


@dataclasses.dataclass
class SearchState:
    """Everything the loop knows; rebuilt from the run directory alone when a run is resumed."""

    cfg: dict
    task: Task
    ppo: PPOConfig
    seeds: list[int]
    worker: WorkerSettings
    history: list[Candidate] = dataclasses.field(default_factory=list)
    generations: list[GenerationRecord] = dataclasses.field(default_factory=list)
    baselines: dict[str, Candidate] = dataclasses.field(default_factory=dict)
    reflection: str = ""
    reflection_shorter: list[str] = dataclasses.field(default_factory=list)  # the same with less detail
    race: dict | None = None  # the latest finals (race.json); they order the top while no candidate is newer
    next_gen: int = 0
    wall_before_s: float = 0.0  # wall time of earlier sessions of this run
    sessions: int = 1

    def selection_mode(self, feedback: list) -> str:
        """The latest feedback's choice, else the configured one (default: fitness)."""
        return feedback[-1].selection if feedback else str(self.cfg.get("selection") or "fitness")

    def ranking(self, feedback: list) -> list[Candidate]:
        from rewardsmith.feedback.records import elo_ratings

        mode = self.selection_mode(feedback)
        ranked = rank_candidates(self.history, elo_ratings(feedback), mode)
        # with preference selection the person's choice stands; the finals only sharpen a fitness ranking
        return apply_race(ranked, self.race, self.history) if mode == "fitness" else ranked


def _positive_number(cfg: Mapping[str, Any], key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key} must be a positive number, got {value!r}")
    return float(value)


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
    return WorkerSettings(timeout_s=_positive_number(cfg, "worker_timeout_s", 1800), limits=limits,
                          compile_cache_dir=cache_dir, sandbox=mode, sandbox_memory_mb=memory,
                          sandbox_file_mb=file_mb, sandbox_folder_mb=folder_mb)


def check_task_action(task: Task) -> None:
    """Before any work: the policy's action must reach the environment (tasks/action_check.py)."""
    from rewardsmith.tasks.action_check import require_action

    try:
        require_action(task)
    except ValueError as e:
        raise UserError(str(e)) from None


def _check_cfg(cfg: Mapping[str, Any]) -> tuple[Task, PPOConfig, list[int], WorkerSettings]:
    task = resolve_task(cfg)
    _positive_int(cfg, "iterations", 3)
    _positive_int(cfg, "samples", 6)
    n_seeds = _positive_int(cfg, "seeds", 2)
    _positive_int(cfg, "eval_seeds", 5)
    race_settings(cfg)
    worker = dataclasses.replace(_worker_settings(cfg), population_size=(
        _positive_int(cfg, "samples", 6) + (2 if baselines_on(cfg, task) else 0)) * n_seeds)
    retries = cfg.get("max_generation_retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UserError(f"max_generation_retries must be a non-negative integer, got {retries!r}")
    ppo = ppo_config(task, cfg)
    seed_proposals(cfg)  # the files exist and can be read
    tracker_kind(cfg)
    on_ray = executor_settings(cfg) is not None
    if budget_settings(cfg, ppo) is not None and on_ray:
        raise UserError("budget=halving runs on executor=local only (its rungs rank a whole generation at once)")
    if worker.sandbox == "strict":
        missing = sandbox_probe().get("missing", ["network", "filesystem"])
        if missing:
            raise UserError(f"sandbox=strict: this machine gives the training worker no {' and no '.join(missing)} "
                            "isolation (user namespaces, Landlock); use sandbox=auto to run without it")
    if _feedback_mode(cfg) not in ("", "terminal", "web", "file"):
        raise UserError(f"feedback must be none, terminal, web or file, got {cfg.get('feedback')!r}")
    if _feedback_mode(cfg) == "terminal" and not sys.stdin.isatty():
        raise UserError("feedback=terminal needs an interactive terminal (stdin is not a TTY); use "
                        "feedback=web, or feedback=file feedback_file=FEEDBACK.yaml")
    selection = cfg.get("selection") or "fitness"
    if selection not in SELECTION_MODES:
        raise UserError(f"selection must be fitness, preference or both, got {selection!r}")
    base_seed = cfg.get("seed", 0)
    if isinstance(base_seed, bool) or not isinstance(base_seed, int):
        raise UserError(f"seed must be an integer, got {base_seed!r}")
    return task, ppo, [base_seed * 1000 + s for s in range(n_seeds)], worker


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


def run(cfg: Any, run_dir: str | Path, display: Any = None) -> dict:
    """Run a whole search; returns the summary (also written to run_dir/summary.json)."""
    cfg = _plain(cfg)
    task, ppo, seeds, worker = _check_cfg(cfg)
    if RunDir(run_dir, create=False).has_summary():
        raise UserError(f"{run_dir} already holds a run; continue it with rewardsmith-resume run_dir={run_dir}")
    check_task_action(task)
    proposer = make_proposer(cfg.get("llm") or {"provider": "offline"}, run_dir=Path(run_dir))
    rd = RunDir(run_dir)
    rd.write_config(cfg)
    task = with_task_file(task, rd)
    state = SearchState(cfg=cfg, task=task, ppo=ppo, seeds=seeds, worker=worker)
    if baselines_on(cfg, task):
        state.baselines = {kind: _baseline(kind, task) for kind in BASELINE_IDS}
    return _search(state, rd, proposer, display or _NullDisplay(), int(cfg.get("iterations", 3)))


def _baseline(kind: str, task: Task) -> Candidate:
    """The task's human or sparse baseline as an untrained candidate."""
    source = task.human_reward if kind == "human" else task.sparse_reward
    return Candidate(id=BASELINE_IDS[kind], generation=0, source=source, origin=f"baseline:{kind}",
                     note=f"{kind} baseline")


def resume(run_dir: str | Path, iterations: int | None = None, overrides: Mapping[str, Any] | None = None,
           display: Any = None) -> dict:
    """Continue a run from its run directory alone: an interrupted run finishes its configured
    generations; a finished one gets ``iterations`` more (default 1). Human feedback in
    ``feedback.json`` reaches the next generation's proposer, and its selection mode ranks candidates."""
    rd = RunDir(run_dir, create=False)
    if not rd.config_path.is_file() or not rd.has_summary():
        raise UserError(f"{run_dir} is not a rewardsmith run directory (no {rd.CONFIG}/{rd.SUMMARY})")
    cfg = rd.read_config()
    for k, v in (overrides or {}).items():
        cfg[k] = v
    task, ppo, seeds, worker = _check_cfg(cfg)
    task = with_task_file(task, rd)
    summary = rd.read_summary()
    state = SearchState(cfg=cfg, task=task, ppo=ppo, seeds=seeds, worker=worker,
                        wall_before_s=float(summary.wall_time_s or 0.0), sessions=int(summary.sessions or 1) + 1)
    _load_state(state, rd)
    if iterations is None:
        left = int(cfg.get("iterations", 3)) - state.next_gen
        iterations = left if summary.status == "running" and left > 0 else 1
    if iterations < 1:
        raise UserError(f"iterations must be a positive integer, got {iterations!r}")
    cfg["iterations"] = state.next_gen + iterations
    rd.write_config(cfg)
    proposer = make_proposer(cfg.get("llm") or {"provider": "offline"}, run_dir=rd.root)
    proposer.restore()
    return _search(state, rd, proposer, display or _NullDisplay(), iterations)


def _load_state(state: SearchState, rd: RunDir) -> None:
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
        elif baselines_on(state.cfg, state.task):
            state.baselines[kind] = _baseline(kind, state.task)
    state.reflection = state.generations[-1].reflection if state.generations else ""
    state.race = read_json(rd.race_path) if rd.race_path.is_file() else None
    state.next_gen = complete


def _human_context(state: SearchState, feedback: list) -> tuple[str, list[dict]]:
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


def _feedback_mode(cfg: Mapping[str, Any]) -> str:
    mode = cfg.get("feedback")
    return "" if mode in (None, False, "", "none") else str(mode)


def _ask_feedback(rd: RunDir, cfg: Mapping[str, Any], display) -> None:
    """``feedback=terminal|web|file``: ask a person about the generation just finished, with the live
    view paused. A session that cannot start (nothing trained, no terminal) is reported, never fatal."""
    from rewardsmith.feedback.records import FeedbackError
    from rewardsmith.feedback.frontends import collect
    from rewardsmith.feedback.session import open_session

    mode = _feedback_mode(cfg)
    display.pause()
    try:
        session = open_session(rd.root, top=int(cfg.get("feedback_top", 4)))
        args = {"host": "127.0.0.1", "port": int(cfg.get("feedback_port", 8765))}
        if cfg.get("feedback_file"):
            args["file"] = str(cfg["feedback_file"])
        if cfg.get("feedback_timeout_s"):
            args["timeout_s"] = cfg["feedback_timeout_s"]
        collect(session, mode, args, out=display.message)
    except (FeedbackError, UserError) as e:
        display.message(f"no human feedback for this generation: {e}")
    finally:
        display.resume()


def _search(state: SearchState, rd: RunDir, proposer, display, iterations: int) -> dict:
    """The generations and the final evaluation, all trained by one warm worker process (or, with
    ``executor=ray``, as shards on a Ray cluster)."""
    policy = sandbox_policy(state.worker, rd.worker_dir, state.task.source_file)
    try:
        with make_executor(state.cfg, rd.worker_dir, policy, display) as process:
            return Search(state, rd, proposer, display, process).run(iterations).to_json()
    finally:
        close = getattr(proposer, "close", None)  # what the proposer started (llm=local's server) ends here
        if close is not None:
            close()


class Search:
    """The loop as named steps: each generation proposes, gates, trains and records; a generation in
    which nothing trained is proposed again; between generations a person may give feedback; at the
    end the best candidate is evaluated afresh and the summary written."""

    def __init__(self, state: SearchState, rd: RunDir, proposer, display, process: WarmWorker):
        self.state, self.rd, self.proposer, self.display, self.process = state, rd, proposer, display, process
        cfg = state.cfg
        self.samples = int(cfg.get("samples", 6))
        self.base_seed = int(cfg.get("seed", 0))
        self.max_retries = int(cfg.get("max_generation_retries", 2))
        self.t_start = time.time()
        self.pending_baselines = [b for b in state.baselines.values() if b.status not in ("trained", "failed")]
        self.sandbox_warned = False
        self.baselines_trained: list[Candidate] = []  # the baselines the latest generation trained
        self.tracker = make_tracker(cfg, rd.root)
        self.timing: tuple[float | None, float | None] = (None, None)  # this attempt's (propose_s, train_s)

    def run(self, iterations: int) -> Summary:
        state = self.state
        self.write_summary("running")
        self.display.start(task=state.task.name, proposer=self.proposer.label, run_dir=str(self.rd.root))
        last_gen = state.next_gen + iterations - 1
        for gen in range(state.next_gen, last_gen + 1):
            self.generation(gen)
            state.next_gen = gen + 1
            if self.budget_spent():
                break
            if _feedback_mode(state.cfg) and gen < last_gen:
                _ask_feedback(self.rd, state.cfg, self.display)
            if self.target_reached():
                break
        return self.finish()

    # -- one generation ---------------------------------------------------------------------------
    def generation(self, gen: int) -> None:
        feedback = load_feedback(self.rd.root)
        human_text, constraints = _human_context(self.state, feedback)
        for attempt in range(self.max_retries + 1):
            t_gen = time.time()
            self.display.generation(gen, attempt)
            proposals = self.propose(gen, attempt, feedback, human_text, constraints)
            if proposals is None:
                return  # the proposer's budget is spent
            propose_s = time.time() - t_gen
            cands = self.new_candidates(gen, proposals)
            self.gate(cands)
            t_train = time.time()
            worker_error = self.train(gen, attempt, cands)
            self.timing = (round(propose_s, 2), round(time.time() - t_train, 2))
            rec = self.record(gen, attempt, cands, worker_error, human_text, feedback, time.time() - t_gen)
            if rec.best_id is not None:
                return
            then = " - retrying" if attempt < self.max_retries else " - giving up on this generation"
            samples = [c for c in cands if c.origin == self.proposer.origin]
            if samples and all(c.status == "provider_failed" for c in samples):
                why = samples[0].validation.reason if samples[0].validation else ""
                self.display.message(f"generation {gen}: every sample failed at the LLM provider ({why}){then}")
            else:
                self.display.message(f"generation {gen}: every candidate failed{then}")

    def propose(self, gen: int, attempt: int, feedback: list, human_text: str, constraints: list) -> list | None:
        """K proposals for this attempt ([] when the proposer failed); None once its budget is spent."""
        state = self.state
        ranking = [c.id for c in state.ranking(feedback)]
        ctx = ProposalContext(task=state.task, generation=gen, k=self.samples, history=list(state.history),
                              reflection=state.reflection, reflection_shorter=list(state.reflection_shorter),
                              seed=self.base_seed, human_feedback=human_text,
                              ranking=ranking if feedback else None, constraints=constraints, attempt=attempt)
        atomic_write_json(self.rd.proposer_input_path(gen, attempt),
                          {"proposer": self.proposer.label, "reflection": ctx.reflection,
                           "human_feedback": ctx.human_feedback, "constraints": ctx.constraints,
                           "selection": state.selection_mode(feedback), "ranking": ranking[:10]})
        try:
            proposals = self.proposer.propose(ctx)
        except Exception as e:  # noqa: BLE001 - a proposer failure ends proposing, not the run
            self.display.message(f"proposer failed: {type(e).__name__}: {e}")
            proposals = []
        if not proposals and self.proposer.exhausted:
            self.display.message(f"LLM budget reached ({self.proposer.exhausted}): no more proposals")
            return None
        if gen == 0 and attempt == 0:
            proposals = seed_proposals(state.cfg) + proposals
        return proposals

    def new_candidates(self, gen: int, proposals: list) -> list[Candidate]:
        """One candidate per proposal whose code was not trained before."""
        known = {c.id for c in self.state.history}
        by_code = {c.source: c for c in self.state.history if c.source and c.generation != gen}
        cands: list[Candidate] = []
        for p in proposals:
            if p.provider_error:  # the provider gave no answer: recorded with the last answer's code, never trained
                cid = candidate_id(gen, f"provider failed: {p.meta.get('slot')} {p.note} {len(cands)}")
                cands.append(Candidate(id=cid, generation=gen, source=p.source, origin=self.proposer.origin,
                                       note=p.note, meta=p.meta, status="provider_failed",
                                       validation=Validation(ok=False, stage="provider", reason=p.provider_error,
                                                             details=_attempt_lines(p.meta))))
                continue
            if p.error:  # a sample without code: recorded, never trained
                cid = candidate_id(gen, f"no code: {p.meta.get('slot')} {p.note} {len(cands)}")
                cands.append(Candidate(id=cid, generation=gen, source="", origin=self.proposer.origin, note=p.note,
                                       meta=p.meta, status="no_code",
                                       validation=Validation(ok=False, stage="proposal", reason=p.error,
                                                             details=_attempt_lines(p.meta))))
                continue
            cid = candidate_id(gen, p.source)
            if cid in known or any(c.id == cid for c in cands):
                if p.meta.get("slot") is not None and cid not in known:  # two samples, one code: the repeat recorded
                    cands.append(_duplicate(gen, p, self.proposer.origin, next(c for c in cands if c.id == cid), cands))
                continue  # identical code was already trained (a retried generation proposes it again)
            earlier = by_code.get(p.source)
            if earlier is not None:  # the code of an earlier generation's candidate: recorded, not trained again
                cands.append(_duplicate(gen, p, self.proposer.origin, earlier, cands))
                continue
            cands.append(Candidate(id=cid, generation=gen, source=p.source,
                                   origin="seed" if p.meta.get("seed_file") else self.proposer.origin,
                                   parents=p.parents, note=p.note, meta=p.meta))
        return cands

    def gate(self, cands: list[Candidate]) -> None:
        """The static gate; every candidate is recorded, rejected or not."""
        for c in cands:
            if c.status != "proposed":
                self.rd.write_candidate(c)
                continue
            violations = check_source(c.source, self.state.task.schema.names)
            if violations:
                # an LLM sample regenerated in vain: every attempt's error after the last code's violations
                earlier = _attempt_lines(c.meta) if len(c.meta.get("attempts") or []) > 1 else []
                c.validation = Validation(ok=False, stage="static", reason=str(violations[0]),
                                          details=[str(v) for v in violations[:10]] + earlier)
                c.status = "rejected"
            self.rd.write_candidate(c)
        self.display.candidates(cands + self.pending_baselines)

    def train(self, gen: int, attempt: int, cands: list[Candidate]) -> str:
        """Train what passed the gate, with any baselines not trained yet; '' or the worker's failure."""
        state = self.state
        to_train = [c for c in cands if c.status == "proposed"] + self.pending_baselines
        self.baselines_trained = list(self.pending_baselines)
        worker_error = ""
        if to_train:
            worker_error = train_candidates(self.rd, gen, attempt, state.task, state.ppo, state.seeds, to_train,
                                            state.worker, self.display, self.process, budget=self.budget_job())
        for c in cands + self.pending_baselines:
            self.rd.write_candidate(c)
        self.warn_sandbox()
        if self.pending_baselines and not worker_error \
                and all(b.status in ("trained", "failed") for b in self.pending_baselines):
            self.pending_baselines = []
        return worker_error

    def budget_job(self) -> HalvingBudget | None:
        """How the worker spends this generation's budget: None (uniform) or successive halving with
        the baselines protected and the run's stage sizes (one compiled trainer per stage)."""
        halving = budget_settings(self.state.cfg, self.state.ppo)
        if halving is None:
            return None
        n_base = len(self.state.baselines)
        sizes = halving_sizes(self.samples, n_base, len(self.state.seeds), halving, self.state.ppo.num_updates)
        return HalvingBudget(eta=halving.eta, rungs=halving.rungs, sizes=tuple(sizes),
                             protected=tuple(b.id for b in self.state.baselines.values()))

    def warn_sandbox(self) -> None:
        """Once per run: say what isolation the worker lacks on this machine."""
        sb = self.process.sandbox or {}
        if sb.get("missing") and not self.sandbox_warned:
            self.sandbox_warned = True
            self.display.message(f"warning: the training worker runs candidate code without "
                                 f"{' and '.join(sb['missing'])} isolation here (no user namespaces or Landlock); "
                                 "the static gate and the keyless worker still apply")
        elif sb.get("partial") and not self.sandbox_warned:
            self.sandbox_warned = True
            self.display.message(f"warning: the training worker's sandbox is partial here: {'; '.join(sb['partial'])}")

    def record(self, gen: int, attempt: int, cands: list[Candidate], worker_error: str, human_text: str,
               feedback: list, wall_s: float) -> GenerationRecord:
        """History, reflection for the next generation, the generation record, summary, best reward, report."""
        state = self.state
        state.history.extend(cands)
        trained = [c for c in cands if c.fitness is not None]
        ranked = state.ranking(feedback)
        best = ranked[0] if ranked else None
        gen_best = max(trained, key=lambda c: c.fitness) if trained else None
        levels = reflection_levels(cands, best, termination=state.task.termination,
                                   max_chars=int(state.cfg.get("reflection_max_chars", 8000)))
        state.reflection, state.reflection_shorter = levels[0], levels[1:]
        trained_now = cands + self.baselines_trained
        same = identical_policies(trained_now)
        if same:
            self.display.message(identical_message(gen, trained_now))
        rec = GenerationRecord(index=gen, attempt=attempt, candidate_ids=[c.id for c in cands],
                               best_id=gen_best.id if gen_best else None,
                               best_fitness=gen_best.fitness if gen_best else None,
                               wall_s=wall_s, worker_error=worker_error,
                               reflection=state.reflection, human_feedback=human_text, identical_policies=same,
                               propose_s=self.timing[0], train_s=self.timing[1])
        self.display.message(_timing_line(gen, rec, self.proposer.usage()))
        state.generations.append(rec)
        atomic_write_json(self.rd.generation_record_path(gen, attempt), dataclasses.asdict(rec))
        self.write_summary("running")
        write_report_safely(self.rd.root, self.display)
        self.display.generation_done(gen, gen_best, best)
        self.track(lambda t: (t.candidates(cands + list(state.baselines.values())), t.generation(gen, gen_best, best)))
        return rec

    def track(self, step) -> None:
        """Hand records to the tracker (logger=...); a tracker problem is reported, never fatal."""
        if self.tracker is None:
            return
        try:
            step(self.tracker)
        except Exception as e:  # noqa: BLE001
            self.display.message(f"logger: {type(e).__name__}: {e}; no more tracking this run")
            self.tracker = None

    # -- between generations and at the end -----------------------------------------------------------
    def budget_spent(self) -> bool:
        return bool(self.proposer.exhausted)

    def target_reached(self) -> bool:
        task = self.state.task
        ranked = self.state.ranking(load_feedback(self.rd.root))
        if not (self.state.cfg.get("stop_at_target", False) and ranked and task.fitness_target is not None):
            return False
        if max(c.fitness for c in ranked) < task.fitness_target:  # type: ignore[operator]
            return False
        self.display.message(f"fitness target {task.fitness_target} reached: stopping early")
        return True

    def finish(self) -> Summary:
        state = self.state
        feedback = load_feedback(self.rd.root)
        if state.cfg.get("final_eval", True):
            self.finals(feedback)
        ranked = state.ranking(feedback)
        best = ranked[0] if ranked else None
        final = None
        if state.cfg.get("final_eval", True) and best is not None:
            final = final_evaluation(self.rd, state.task, state.ppo, state.cfg, best, state.baselines, self.base_seed,
                                     state.worker, self.display, self.process)
        s = self.write_summary("complete" if best is not None else "no_candidate_trained", final)
        write_report_safely(self.rd.root, self.display)
        self.track(lambda t: t.finish(s))
        self.display.finish(s)
        return s

    def finals(self, feedback: list) -> None:
        """Before the final evaluation: the top few by fitness train on more seeds and the best of
        them over all its seeds goes on (not with preference selection: a person's choice stands)."""
        state = self.state
        if state.selection_mode(feedback) != "fitness" or is_current(state.race, state.history):
            return
        ranked = state.ranking(feedback)
        race = run_finals(self.rd, state.task, state.ppo, state.cfg, ranked, self.base_seed, state.next_gen - 1,
                          state.worker, self.display, self.process)
        if race is not None:
            state.race = race

    def write_summary(self, status: str, final=None) -> Summary:
        """summary.json, and best_reward.py for the best candidate so far."""
        feedback = load_feedback(self.rd.root)
        ranked = self.state.ranking(feedback)
        best = ranked[0] if ranked else None
        s = _summary(self.state, self.proposer, best, self.t_start, status, final, feedback)
        s.sandbox = self.process.sandbox
        self.rd.write_summary(s)
        if best is not None:
            write_best_reward(self.rd.best_reward_path, best, self.state.task, s)
        return s


def _timing_line(gen: int, rec: GenerationRecord, usage: dict | None) -> str:
    """Where a generation's time went: proposing (an LLM's seconds and tokens/s) and training."""
    llm = ((usage or {}).get("per_generation") or {}).get(gen) or {}
    said = f"LLM {llm['seconds']:.0f} s" + (f", {llm['tokens_per_s']:g} tokens/s" if llm.get("tokens_per_s") else "") \
        if llm.get("seconds") else ""
    return f"generation {gen}: proposing {rec.propose_s:.0f} s" + (f" ({said})" if said else "") + \
        f", training {rec.train_s:.0f} s"


def _duplicate(gen: int, p, origin: str, earlier: Candidate, cands: list[Candidate]) -> Candidate:
    """A sample whose code is an earlier candidate's: a record of it (rejected, the earlier one named),
    never trained again."""
    fit = f", task fitness {earlier.fitness:.4g}" if earlier.fitness is not None else ""
    return Candidate(id=candidate_id(gen, f"duplicate: {p.meta.get('slot')} {len(cands)} {p.source}"), generation=gen,
                     source=p.source, origin=origin, note=p.note, meta=p.meta, status="rejected",
                     validation=Validation(ok=False, stage="duplicate", details=_attempt_lines(p.meta),
                                           reason=f"the same code as {earlier.id} (generation {earlier.generation}"
                                                  f"{fit}): not trained again"))


def _attempt_lines(meta: dict) -> list[str]:
    """An LLM sample's attempts, one line each: what was wrong with its answer, or why none came."""
    return [f"attempt {a['attempt'] + 1}: " + ("no answer: " if a.get("provider_failed") else "") + a["error"]
            for a in meta.get("attempts", [])]


def write_report_safely(root: Path, display) -> None:
    try:
        from rewardsmith.report import write_report

        write_report(root)
    except Exception as e:  # noqa: BLE001 - a report problem never loses the run
        display.message(f"report.html could not be written: {type(e).__name__}: {e}")


def _summary(state: SearchState, proposer, best: Candidate | None, t_start: float, status: str,
             final=None, feedback: list | None = None) -> Summary:
    from rewardsmith.feedback.records import elo_ratings

    task, cfg, history = state.task, state.cfg, state.history
    human = state.baselines.get("human")
    sparse = state.baselines.get("sparse")
    f_h = human.fitness if human else None
    f_s = sparse.fitness if sparse else None
    search_hns = hns(best.fitness if best else None, f_h, f_s)
    per_gen: dict[int, dict] = {}
    for g in state.generations:
        if g.best_fitness is not None or g.index not in per_gen:
            per_gen[g.index] = {"generation": g.index, "attempts": g.attempt + 1, "best_id": g.best_id,
                                "best_fitness": g.best_fitness, "propose_s": g.propose_s, "train_s": g.train_s}
    counts: dict[str, int] = {}
    for c in history:
        counts[c.status] = counts.get(c.status, 0) + 1
    feedback = feedback or []
    return Summary(
        status=status,
        task=task.name,
        proposer=proposer.label,
        proposer_kind=proposer.origin.split(":")[0],
        model=proposer.model,
        best_candidate_id=best.id if best else None,
        best_fitness=best.fitness if best else None,
        best_fitness_std=best.fitness_std if best else None,
        selection=state.selection_mode(feedback),
        human_baseline_fitness=f_h,
        human_baseline_label=task.human_label,
        sparse_baseline_fitness=f_s,
        human_normalised_score=final["hns"] if final else search_hns,
        hns_formula=HNS_FORMULA,
        search_hns=search_hns,
        finals=state.race if is_current(state.race, history) else None,
        final_evaluation=final,
        fitness_doc=task.fitness_doc,
        per_generation_best=[per_gen[k] for k in sorted(per_gen)],
        candidates=counts,
        # generations whose trained policies all behaved the same (evaluate/sanity.py): their ranking means nothing
        identical_policies=sorted({g.index for g in state.generations if g.identical_policies}),
        seeds=state.seeds,
        env_steps_per_member=state.ppo.env_steps,
        budget=cfg.get("budget") or "uniform",
        # training env steps actually spent (successive halving stops candidates early)
        env_steps={"candidates": sum(c.env_steps or 0 for c in history),
                   "baselines": sum(b.env_steps or 0 for b in state.baselines.values()),
                   "stopped_early": sum(1 for c in history if c.stopped_early)},
        iterations=cfg.get("iterations"),
        samples=cfg.get("samples"),
        human_feedback={"generations": [r.generation for r in feedback],
                        "preference_ratings": {k: round(v, 1) for k, v in elo_ratings(feedback).items()}}
        if feedback else None,
        sessions=state.sessions,
        wall_time_s=round(state.wall_before_s + time.time() - t_start, 2),
        llm=proposer.usage(),
        stopped_by_budget=proposer.exhausted or None,
    )


class _NullDisplay:
    def __getattr__(self, name):
        return lambda *a, **k: None
