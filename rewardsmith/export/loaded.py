"""``rewardsmith.load_reward``: use a designed reward in your own training code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

from rewardsmith.errors import UserError
from rewardsmith.rundir import RunDir
from rewardsmith.tasks import StateSchema
from rewardsmith.tasks.registry import task_named
from rewardsmith.contract import MAX_COMPONENTS
from rewardsmith.isolation.child import scrubbed_env
from rewardsmith.validate.isolate import CheckLimits, check_isolated
from rewardsmith.validate.static import check_source
from rewardsmith.validate.admit import admit

_TASK_LINE = re.compile(r"^# task: (\S+)", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class LoadedReward:
    """A validated reward: call it like ``compute_reward``; the schema and components come along."""

    fn: Callable
    task: str
    schema: StateSchema
    components: tuple[str, ...]
    source: str
    path: str

    def __call__(self, state: Any, action: Any, next_state: Any):
        return self.fn(state, action, next_state)

    def make_state(self, **fields: Any):
        """Build a ``state`` object from field values (e.g. from your own environment's state)."""
        return self.schema.make_state(fields)


def _resolve(path_or_run_dir: str | Path, candidate: str | None) -> tuple[Path, str | None]:
    p = Path(path_or_run_dir)
    if p.is_dir():
        rd = RunDir(p, create=False)
        if candidate:
            found = rd.find_reward_file(candidate)
            if found is None:
                raise UserError(f"no candidate {candidate!r} in run directory {p}")
            return found, None
        if not rd.best_reward_path.is_file():
            raise UserError(f"{p} has no {rd.BEST_REWARD} (is it a rewardsmith run directory?)")
        return rd.best_reward_path, rd.summary_task()
    if not p.is_file():
        raise UserError(f"no reward file or run directory at {p}")
    return p, None


def _task_of(path: Path, source: str, task: str | None) -> str:
    if task:
        return task
    m = _TASK_LINE.search(source)
    if m:
        return m.group(1)
    for parent in path.parents:
        task = RunDir(parent, create=False).summary_task()
        if task:
            return task
    raise UserError(f"cannot tell which task {path} is for: pass task=<name>")


def load_reward(path_or_run_dir: str | Path, task: str | None = None, candidate: str | None = None,
                limits: CheckLimits | None = None) -> LoadedReward:
    """Load a reward file, a run directory's best reward, or a run's candidate by id.

    Nothing from the file runs in this process before it passes the same checks as during the
    search: the static gate, then loading and tracing in a separate process without credentials,
    under CPU, memory and file-size limits (``limits``).
    """
    path, run_task = _resolve(path_or_run_dir, candidate)
    source = path.read_text(encoding="utf-8")
    task_obj = task_named(_task_of(path, source, task or run_task), near=path.parent)
    violations = check_source(source, task_obj.schema.names)
    if violations:
        raise UserError(f"{path}: rejected by the static gate: {violations[0]}")
    isolated = check_isolated([(path.stem, source)], task_obj.schema.to_json(), MAX_COMPONENTS, limits,
                              env=scrubbed_env())[path.stem]
    if not isolated.ok:
        raise UserError(f"{path}: rejected by the trace check: {isolated.reason}")
    admitted = admit([(path.stem, source)], task_obj, {path.stem: isolated}, max_components=MAX_COMPONENTS,
                     rollout_seed=None)
    validation = admitted.validations[path.stem]
    if not validation.ok:
        raise UserError(f"{path}: rejected by the trace check: {validation.reason}")
    from rewardsmith.validate.load import load_reward_fn

    fn = load_reward_fn(source, path.stem)
    return LoadedReward(fn=fn, task=task_obj.name, schema=task_obj.schema, components=tuple(validation.components),
                        source=source, path=str(path))
