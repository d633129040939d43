"""Admission: the stages a candidate passes, in order, before any training.

    static gate (``static.check_source``, in the orchestrator, with repairs and feedback to the LLM)
    -> isolated load and trace (``isolate.Checker`` / ``check_isolated``: a limited process of its own)
    -> cost relative to one environment step (``trace.relative_cost_check``)
    -> shape check in this process (``trace.shape_check``: only code the isolated check passed)
    -> one short rollout of all survivors together (``trace.rollout_check``), or of each alone
       (``rollout_apart``: after a program of several ran past the orchestrator's limit)

``admit`` runs the stages after the isolated check; the training worker and ``export.load_reward``
both call it, so a reward imported into the user's code passed what a searched one passed."""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from rewardsmith.records import Validation
from rewardsmith.tasks.base import Task

# (stage, candidate id, ok, reason): "shape_checked" or "rollout_checked", for a live view
StageCallback = Callable[[str, str, bool, str], None]
# the ids of the rollout program compiled and about to run (the orchestrator times each such run)
RolloutCallback = Callable[[list], None]


@dataclasses.dataclass
class Admitted:
    validations: dict[str, Validation]  # every candidate's, in the order given
    branches: dict[str, Callable]  # the loaded reward functions of those admitted, in the order given


def admit(candidates: Sequence[tuple[str, str]], task: Task, checked: Mapping[str, Validation], *,
          max_components: int, step_flops: float = 0.0, relative_cost: float = 0.0, rollout_seed: int | None = 0,
          on_stage: StageCallback | None = None, on_rollout: RolloutCallback | None = None,
          rollout_apart: bool = False) -> Admitted:
    """``candidates`` are (id, source) pairs whose isolated check is ``checked[id]``; a candidate
    reaches a stage only if it passed every stage before it. ``rollout_seed=None``: no rollout;
    ``rollout_apart``: one rollout program per candidate, each announced to ``on_rollout``."""
    from rewardsmith.validate.trace import relative_cost_check, shape_check

    out = Admitted(validations={}, branches={})
    for cid, source in candidates:
        v = relative_cost_check(checked[cid], step_flops, relative_cost)
        branch = None
        if v.ok:  # only code that loaded and traced within its limits executes in this process
            cost = v.cost
            v, branch = shape_check(source, cid, task, max_components)
            v.cost = cost  # the checker's figures stay with the candidate
        out.validations[cid] = v
        if branch is not None:
            out.branches[cid] = branch
        if on_stage is not None:
            on_stage("shape_checked", cid, v.ok, v.reason)
    if rollout_seed is None:
        return out
    reasons = _rollout_reasons(task, out.branches, rollout_seed, on_rollout or (lambda ids: None), rollout_apart)
    for cid, reason in zip(list(out.branches), reasons):
        if reason is not None:
            out.validations[cid] = Validation(ok=False, stage="trace", reason=reason)
            del out.branches[cid]
        if on_stage is not None:
            on_stage("rollout_checked", cid, reason is None, reason or "")
    return out


def _rollout_reasons(task: Task, branches: Mapping[str, Callable], seed: int, announce: RolloutCallback,
                     apart: bool) -> list[str | None]:
    """All branches on one random-policy rollout; if that program fails (or ``apart``), one by one to
    find the culprit. Each program's ids go to ``announce`` once it is compiled, before it runs (the
    orchestrator times the run: compiling is bounded by the isolated check of each candidate)."""
    from rewardsmith.validate.load import describe_exception
    from rewardsmith.validate.trace import rollout_check

    ids = list(branches)
    if ids and not apart:
        try:
            return rollout_check(task, [branches[i] for i in ids], seed=seed, before_run=lambda: announce(ids))
        except Exception:  # noqa: BLE001 - fall back to checking one by one
            pass
    reasons: list[str | None] = []
    for i in ids:
        try:
            reasons.append(rollout_check(task, [branches[i]], seed=seed if apart else 0,
                                         before_run=lambda i=i: announce([i]))[0])
        except Exception as e:  # noqa: BLE001
            reasons.append(f"rollout failed: {describe_exception(e, i)}")
    return reasons
