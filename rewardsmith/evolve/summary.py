"""The run's summary (``records.Summary``), built from the search's state after every generation."""

from __future__ import annotations

import time

from rewardsmith.evaluate.final import HNS_FORMULA, hns
from rewardsmith.evaluate.race import is_current
from rewardsmith.evolve.state import SearchState
from rewardsmith.records import Candidate, Summary


def build_summary(state: SearchState, proposer, best: Candidate | None, t_start: float, status: str,
                  final=None, feedback: list | None = None) -> Summary:
    from rewardsmith.feedback.records import elo_ratings

    settings, task, history = state.settings, state.task, state.history
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
        seeds=list(settings.seeds),
        env_steps_per_member=settings.ppo.env_steps,
        budget=settings.budget,
        # training env steps actually spent (successive halving stops candidates early)
        env_steps={"candidates": sum(c.env_steps or 0 for c in history),
                   "baselines": sum(b.env_steps or 0 for b in state.baselines.values()),
                   "stopped_early": sum(1 for c in history if c.stopped_early)},
        iterations=settings.iterations,
        samples=settings.samples,
        human_feedback={"generations": [r.generation for r in feedback],
                        "preference_ratings": {k: round(v, 1) for k, v in elo_ratings(feedback).items()}}
        if feedback else None,
        sessions=state.sessions,
        wall_time_s=round(state.wall_before_s + time.time() - t_start, 2),
        llm=proposer.usage(),
        stopped_by_budget=proposer.exhausted or None,
        prefilter=_prefilter_summary(settings, history),
    )


def _prefilter_summary(settings, history: list[Candidate]) -> dict | None:
    """What the pre-filter did: candidates judged, skipped (and why), and the env steps not spent on
    them (each would have trained ``len(seeds)`` members at the full budget)."""
    if not settings.prefilter.on:
        return None
    judged = [c for c in history if c.prefilter]
    skipped = [c for c in judged if c.prefilter.get("skip")]
    would = [c.id for c in judged if c.prefilter.get("reason") and not c.prefilter.get("skip")]
    return {"mode": settings.prefilter.mode, "min_rank": settings.prefilter.min_rank,
            "redundant": settings.prefilter.redundant, "judged": len(judged), "skipped": [c.id for c in skipped],
            "flagged_but_trained": would,
            "env_steps_saved": len(skipped) * len(settings.seeds) * settings.ppo.env_steps}
