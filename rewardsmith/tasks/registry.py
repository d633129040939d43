"""Task registry: built-in tasks ship as ``envs/<name>/task.yaml``; users add their own.

Three ways to add a task:
  * a YAML file in the same format as ``envs/cartpole/task.yaml`` (``rewardsmith task.file=my.yaml``),
  * ``register_task(task)`` from Python with a ``Task`` you built yourself,
  * a directory of task folders named by ``REWARDSMITH_TASK_PATH`` (``os.pathsep``-separated).
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from rewardsmith.tasks.base import Task, TaskHooks
from rewardsmith.tasks.schema import StateSchema

_REGISTERED: dict[str, Task] = {}


class UnknownTaskError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_task(task: Task, *, overwrite: bool = False) -> None:
    if task.name in _REGISTERED and not overwrite:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTERED[task.name] = task


def _search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("REWARDSMITH_TASK_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(str(importlib.resources.files("rewardsmith.envs"))))
    return dirs


def list_tasks() -> list[str]:
    names = set(_REGISTERED)
    for d in _search_dirs():
        if d.is_dir():
            names.update(p.parent.name for p in d.glob("*/task.yaml"))
    return sorted(names)


def get_task(name: str, file: str | os.PathLike | None = None) -> Task:
    """Return the task called ``name``; ``file`` points at a task YAML outside the registry."""
    if file:
        task = load_task_file(file)
        if name and task.name != name:
            raise ValueError(f"task file {file} defines task {task.name!r}, not {name!r}")
        return task
    if name in _REGISTERED:
        return _REGISTERED[name]
    for d in _search_dirs():
        path = d / name / "task.yaml"
        if path.is_file():
            return load_task_file(path)
    raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}")


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not attr:
        raise ValueError(f"expected 'module:attribute', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _fitness_reduce(value: Any, path: Path) -> str:
    if value not in ("sum", "max"):
        raise ValueError(f"task file {path}: fitness.reduce must be 'sum' or 'max', got {value!r}")
    return str(value)


def load_task_file(path: str | os.PathLike) -> Task:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    data: Mapping[str, Any] = yaml.safe_load(path.read_text())
    missing = {"name", "description", "env", "hooks", "schema", "fitness", "baselines"} - set(data)
    if missing:
        raise ValueError(f"task file {path} lacks keys: {sorted(missing)}")
    hooks = _resolve(data["hooks"])
    if not isinstance(hooks, TaskHooks):
        raise TypeError(f"{data['hooks']} is a {type(hooks).__name__}, expected TaskHooks")
    base = path.parent
    baselines = data["baselines"]
    # new behaviours name a hand-written reference reward instead of the environment's own
    human_key = "reference" if "reference" in baselines and "human" not in baselines else "human"
    if human_key not in baselines or "sparse" not in baselines:
        raise ValueError(f"task file {path}: baselines need 'human' (or 'reference') and 'sparse'")
    return Task(
        name=str(data["name"]),
        description=" ".join(str(data["description"]).split()),
        schema=StateSchema.from_json(data["schema"]),
        hooks=hooks,
        env_config=dict(data["env"]),
        fitness_doc=str(data["fitness"].get("doc", "")),
        fitness_target=data["fitness"].get("target"),
        termination=str(data["fitness"].get("termination", "none")),
        fitness_reduce=_fitness_reduce(data["fitness"].get("reduce", "sum"), path),
        human_reward=(base / baselines[human_key]).read_text(),
        human_label="human baseline" if human_key == "human" else "reference reward",
        sparse_reward=(base / baselines["sparse"]).read_text(),
        ppo=dict(data.get("ppo", {})),
        presets={k: dict(v) for k, v in (data.get("presets") or {}).items()},
        source_file=str(path),
    )
