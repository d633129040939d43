"""The search loop: propose -> validate -> train (one program) -> evaluate -> reflect, N times.

``run(cfg, run_dir)`` is a plain function (the hydra entry point is a thin shell over it). The run
directory is the source of truth: every candidate, every generation and the summary are written
atomically as soon as they are known.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

from rewardsmith.errors import UserError
from rewardsmith.evaluate.final import final_evaluation
from rewardsmith.evaluate.race import is_current, run_finals
from rewardsmith.evaluate.sanity import identical_message, identical_policies
from rewardsmith.evolve.observers import GenerationDone, observers
from rewardsmith.evolve.archive import Archive, archive_examples, build_archive
from rewardsmith.evolve.reference import prefilter_job
from rewardsmith.evolve.settings import FeedbackSettings, RunSettings, check_task_action
from rewardsmith.evolve.state import SearchState, human_context, load_state, new_state, with_task_file
from rewardsmith.evolve.summary import build_summary
from rewardsmith.export import write_best_reward
from rewardsmith.feedback.records import load_feedback
from rewardsmith.isolation.sandbox import sandbox_policy
from rewardsmith.propose import make_proposer
from rewardsmith.propose.base import ProposalContext
from rewardsmith.records import Candidate, GenerationRecord, Summary, Validation, candidate_id
from rewardsmith.reflect import reflection_levels
from rewardsmith.report.trackers import make_tracker
from rewardsmith.rundir import RunDir, atomic_write_json
from rewardsmith.train.candidates import Training, train_candidates
from rewardsmith.train.cluster import make_executor
from rewardsmith.train.job import HalvingBudget
from rewardsmith.train.population import halving_sizes
from rewardsmith.train.runner import WarmWorker
from rewardsmith.validate.static import check_source


def run(cfg: Any, run_dir: str | Path, display: Any = None) -> dict:
    """Run a whole search; returns the summary's JSON (also written to run_dir/summary.json)."""
    settings = RunSettings.from_cfg(cfg)
    if RunDir(run_dir, create=False).has_summary():
        raise UserError(f"{run_dir} already holds a run; continue it with rewardsmith-resume run_dir={run_dir}")
    check_task_action(settings.task)
    proposer = make_proposer(settings.llm, run_dir=Path(run_dir))
    rd = RunDir(run_dir)
    rd.write_config(settings.cfg)
    state = new_state(settings.with_task(with_task_file(settings.task, rd)))
    return _search(state, rd, proposer, display or _NullDisplay(), settings.iterations)


def resume(run_dir: str | Path, iterations: int | None = None, overrides: Mapping[str, Any] | None = None,
           display: Any = None) -> dict:
    """Continue a run from its run directory alone: an interrupted run finishes its configured
    generations; a finished one gets ``iterations`` more (default 1). Human feedback in
    ``feedback.json`` reaches the next generation's proposer, and its selection mode ranks candidates."""
    rd = RunDir(run_dir, create=False)
    if not rd.config_path.is_file() or not rd.has_summary():
        raise UserError(f"{run_dir} is not a rewardsmith run directory (no {rd.CONFIG}/{rd.SUMMARY})")
    settings = RunSettings.from_cfg({**rd.read_config(), **(overrides or {})})
    settings = settings.with_task(with_task_file(settings.task, rd))
    summary = rd.read_summary()
    state = SearchState(settings=settings, wall_before_s=float(summary.wall_time_s or 0.0),
                        sessions=int(summary.sessions or 1) + 1)
    load_state(state, rd)
    if iterations is None:
        left = settings.iterations - state.next_gen
        iterations = left if summary.status == "running" and left > 0 else 1
    if iterations < 1:
        raise UserError(f"iterations must be a positive integer, got {iterations!r}")
    state.settings = settings.with_iterations(state.next_gen + iterations)
    rd.write_config(state.settings.cfg)
    proposer = make_proposer(settings.llm, run_dir=rd.root)
    proposer.restore()
    return _search(state, rd, proposer, display or _NullDisplay(), iterations)


def _ask_feedback(rd: RunDir, feedback: FeedbackSettings, display) -> None:
    """``feedback=terminal|web|file``: ask a person about the generation just finished, with the live
    view paused. A session that cannot start (nothing trained, no terminal) is reported, never fatal."""
    from rewardsmith.feedback.records import FeedbackError
    from rewardsmith.feedback.frontends import collect
    from rewardsmith.feedback.session import open_session

    display.pause()
    try:
        session = open_session(rd.root, top=feedback.top)
        collect(session, feedback.mode, feedback.session_args(), out=display.message)
    except (FeedbackError, UserError) as e:
        display.message(f"no human feedback for this generation: {e}")
    finally:
        display.resume()


def _search(state: SearchState, rd: RunDir, proposer, display, iterations: int) -> dict:
    """The generations and the final evaluation, all trained by one warm worker process (or, with
    ``executor=ray``, as shards on a Ray cluster)."""
    policy = sandbox_policy(state.settings.worker, rd.worker_dir, state.task.source_file)
    try:
        with make_executor(state.settings.executor, rd.worker_dir, policy, display) as process:
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
        self.settings = settings = state.settings
        self.samples = settings.samples
        self.base_seed = settings.base_seed
        self.max_retries = settings.max_retries
        self.t_start = time.time()
        self.pending_baselines = [b for b in state.baselines.values() if b.status not in ("trained", "failed")]
        self.sandbox_warned = False
        self.baselines_trained: list[Candidate] = []  # the baselines the latest generation trained
        self.observers = observers(rd.root, display, make_tracker(settings.cfg, rd.root))
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
            if self.settings.feedback.mode and gen < last_gen:
                _ask_feedback(self.rd, self.settings.feedback, self.display)
            if self.target_reached():
                break
        return self.finish()

    # -- one generation ---------------------------------------------------------------------------
    def generation(self, gen: int) -> None:
        feedback = load_feedback(self.rd.root)
        human_text, constraints = human_context(self.state, feedback)
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
            elif any(c.status == "skipped" for c in cands):
                self.display.message(f"generation {gen}: nothing trained: every candidate was rejected, failed or "
                                     f"not trained by the pre-filter{then}")
            else:
                self.display.message(f"generation {gen}: every candidate failed{then}")

    def propose(self, gen: int, attempt: int, feedback: list, human_text: str, constraints: list) -> list | None:
        """K proposals for this attempt ([] when the proposer failed); None once its budget is spent."""
        state = self.state
        ranking = [c.id for c in state.ranking(feedback)]
        archive = self.archive()
        parents = archive.ranking(ranking) if archive else (ranking if feedback else None)
        ctx = ProposalContext(task=state.task, generation=gen, k=self.samples, history=list(state.history),
                              reflection=state.reflection, reflection_shorter=list(state.reflection_shorter),
                              seed=self.base_seed, human_feedback=human_text,
                              ranking=parents, constraints=constraints, attempt=attempt,
                              elites=archive_examples(archive, state.history) if archive else [])
        atomic_write_json(self.rd.proposer_input_path(gen, attempt),
                          {"proposer": self.proposer.label, "reflection": ctx.reflection,
                           "human_feedback": ctx.human_feedback, "constraints": ctx.constraints,
                           "selection": state.selection_mode(feedback), "ranking": ranking[:10],
                           **({"search": "archive", "parents": (parents or [])[:10]} if archive else {})})
        try:
            proposals = self.proposer.propose(ctx)
        except Exception as e:  # noqa: BLE001 - a proposer failure ends proposing, not the run
            self.display.message(f"proposer failed: {type(e).__name__}: {e}")
            proposals = []
        if not proposals and self.proposer.exhausted:
            self.display.message(f"LLM budget reached ({self.proposer.exhausted}): no more proposals")
            return None
        if gen == 0 and attempt == 0:
            proposals = list(self.settings.seed_rewards) + proposals
        return proposals

    def archive(self) -> Archive | None:
        """search=archive: the run's MAP-Elites archive so far (written to archive.json); else None."""
        if self.settings.search != "archive":
            return None
        archive = build_archive(self.rd, self.state.history, self.state.task,
                                fields=list(self.settings.archive_fields) or None)
        if archive is not None:
            atomic_write_json(self.rd.root / "archive.json", archive.to_json())
        return archive

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
            s = self.settings
            training = Training(state.task, s.ppo, tuple(s.seeds), s.worker, self.process, self.budget_job(),
                                prefilter_job(self.rd, state.history + list(state.baselines.values()), s.prefilter,
                                              protected=tuple(b.id for b in self.pending_baselines)))
            worker_error = train_candidates(self.rd, training, to_train, self.display,
                                            workdir=self.rd.worker_attempt_dir(gen, attempt), check_seed=gen)
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
        halving = self.settings.halving
        if halving is None:
            return None
        n_base = len(self.state.baselines)
        sizes = halving_sizes(self.samples, n_base, len(self.settings.seeds), halving, self.settings.ppo.num_updates)
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
        """The generation added to the state and the run directory, then published to the observers."""
        rec, gen_best, best = self.add(gen, attempt, cands, worker_error, human_text, feedback, wall_s)
        self.publish("generation_done", GenerationDone(gen, cands + list(self.state.baselines.values()), gen_best, best))
        return rec

    def add(self, gen: int, attempt: int, cands: list[Candidate], worker_error: str, human_text: str,
            feedback: list, wall_s: float) -> tuple[GenerationRecord, Candidate | None, Candidate | None]:
        """History, reflection for the next generation, the generation record, summary and best reward."""
        state = self.state
        state.history.extend(cands)
        trained = [c for c in cands if c.fitness is not None]
        ranked = state.ranking(feedback)
        best = ranked[0] if ranked else None
        gen_best = max(trained, key=lambda c: c.fitness) if trained else None
        levels = reflection_levels(cands, best, termination=state.task.termination,
                                   max_chars=self.settings.reflection_max_chars)
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
        return rec, gen_best, best

    def publish(self, event: str, *args) -> None:
        for observer in self.observers:
            getattr(observer, event)(*args)

    # -- between generations and at the end -----------------------------------------------------------
    def budget_spent(self) -> bool:
        return bool(self.proposer.exhausted)

    def target_reached(self) -> bool:
        task = self.state.task
        ranked = self.state.ranking(load_feedback(self.rd.root))
        if not (self.settings.stop_at_target and ranked and task.fitness_target is not None):
            return False
        if max(c.fitness for c in ranked) < task.fitness_target:  # type: ignore[operator]
            return False
        self.display.message(f"fitness target {task.fitness_target} reached: stopping early")
        return True

    def finish(self) -> Summary:
        state = self.state
        feedback = load_feedback(self.rd.root)
        if self.settings.final.on:
            self.finals(feedback)
        ranked = state.ranking(feedback)
        best = ranked[0] if ranked else None
        final = None
        if self.settings.final.on and best is not None:
            s = self.settings
            final = final_evaluation(self.rd, state.task, s.ppo, s.final, best, state.baselines, self.base_seed,
                                     s.worker, self.display, self.process)
        s = self.write_summary("complete" if best is not None else "no_candidate_trained", final)
        self.publish("finished", s)
        return s

    def finals(self, feedback: list) -> None:
        """Before the final evaluation: the top few by fitness train on more seeds and the best of
        them over all its seeds goes on (not with preference selection: a person's choice stands)."""
        state = self.state
        if state.selection_mode(feedback) != "fitness" or is_current(state.race, state.history):
            return
        ranked = state.ranking(feedback)
        race = run_finals(self.rd, state.task, self.settings.ppo, self.settings.race, ranked, self.base_seed,
                          state.next_gen - 1, self.settings.worker, self.display, self.process)
        if race is not None:
            state.race = race

    def write_summary(self, status: str, final=None) -> Summary:
        """summary.json, and best_reward.py for the best candidate so far."""
        feedback = load_feedback(self.rd.root)
        ranked = self.state.ranking(feedback)
        best = ranked[0] if ranked else None
        s = build_summary(self.state, self.proposer, best, self.t_start, status, final, feedback)
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


class _NullDisplay:
    def __getattr__(self, name):
        return lambda *a, **k: None
