"""Task registry: built-in tasks ship as ``envs/<name>/task.yaml``; users add their own.

Three ways to add a task:
  * a YAML file in the same format as ``envs/cartpole/task.yaml`` (``rewardsmith task.file=my.yaml``),
  * ``register_task(task)`` from Python with a ``Task`` you built yourself,
  * a directory of task folders named by ``REWARDSMITH_TASK_PATH`` (``os.pathsep``-separated).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from rewardsmith.tasks.base import Task, TaskHooks, shared_env
from rewardsmith.tasks.own_env import default_name, resolve
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


def _fitness_reduce(value: Any, where: str) -> str:
    if value not in ("sum", "max"):
        raise ValueError(f"{where}: fitness.reduce must be 'sum' or 'max', got {value!r}")
    return str(value)


def load_task_file(path: str | os.PathLike) -> Task:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    data: Mapping[str, Any] = yaml.safe_load(path.read_text())
    if not isinstance(data, Mapping):
        raise ValueError(f"task file {path} is not a mapping")
    return task_from_mapping(data, path.parent, where=f"task file {path}", source_file=str(path))


def task_from_mapping(data: Mapping[str, Any], base: Path | None = None, *, where: str = "task",
                      source_file: str = "") -> Task:
    """A task from its task-file mapping. ``hooks`` names trusted task code; without it,
    ``env.source`` names your own environment (``gymnax:<id>``, ``brax:<name>`` or
    ``<module>:<factory>``) and the schema is inferred from its state (see tasks/own_env.py)."""
    env = dict(data.get("env") or {})
    own = "hooks" not in data and bool(env.get("source"))
    required = {"description", "env", "fitness"} if own else {"name", "description", "env", "hooks", "schema",
                                                                 "fitness", "baselines"}
    missing = required - set(data)
    if missing:
        raise ValueError(f"{where} lacks keys: {sorted(missing)}"
                         + ("" if own else " (or give env.source for your own environment)"))
    fitness = dict(data["fitness"] or {})
    excerpt = ""
    if own:
        from rewardsmith.tasks import own_env

        hooks = own_env.hooks(fitness)
        adapter = shared_env(hooks.make_env, env)  # the same adapter the task's make_env returns
        given = dict(data.get("schema") or {})
        schema = StateSchema.from_json({"fields": own_env.merge_fields(own_env.infer_fields(adapter), given.get("fields")),
                                        "action": own_env.infer_action(adapter, given.get("action"))})
        excerpt = own_env.source_excerpt(adapter, int(data.get("source_chars", own_env.SOURCE_CHARS)))
    else:
        hooks = resolve(data["hooks"])
        if not isinstance(hooks, TaskHooks):
            raise TypeError(f"{data['hooks']} is a {type(hooks).__name__}, expected TaskHooks")
        schema = StateSchema.from_json(data["schema"])
    baselines = dict(data.get("baselines") or {})
    # new behaviours name a hand-written reference reward instead of the environment's own
    human_key = "reference" if "reference" in baselines and "human" not in baselines else "human"
    if (baselines or not own) and (human_key not in baselines or "sparse" not in baselines):
        raise ValueError(f"{where}: baselines need 'human' (or 'reference') and 'sparse'")

    def read(key: str) -> str:
        if key not in baselines:
            return ""  # an own environment with no baselines given
        return (Path(base or ".") / baselines[key]).read_text()

    return Task(
        name=str(data.get("name") or default_name(env["source"])),
        description=" ".join(str(data["description"]).split()),
        schema=schema,
        hooks=hooks,
        env_config=env,
        fitness_doc=str(fitness.get("doc", "") or (f"per episode: {fitness.get('expression') or 'env_reward'}"
                                                    if own and not fitness.get("function") else "")),
        fitness_target=fitness.get("target"),
        termination=str(fitness.get("termination", "none")),
        fitness_reduce=_fitness_reduce(fitness.get("reduce", "sum"), where),
        human_reward=read(human_key),
        human_label="human baseline" if human_key == "human" else "reference reward",
        sparse_reward=read("sparse"),
        ppo=dict(data.get("ppo", {})),
        presets={k: dict(v) for k, v in (data.get("presets") or {}).items()},
        source_file=source_file,
        source_excerpt=excerpt,
        spec=dict(data) if own else None,
    )


def task_named(name: str, near: str | os.PathLike | None = None) -> Task:
    """The task called ``name``; a run directory at or above ``near`` that searched on your own
    environment holds its task file (``task/task.yaml``), which is used when the name is not known."""
    if near is not None and name not in list_tasks():
        from rewardsmith.rundir import RunDir

        for parent in [Path(near), *Path(near).parents]:
            rd = RunDir(parent, create=False)
            if rd.task_file_path.is_file() and rd.has_summary():
                return load_task_file(rd.task_file_path)
    return get_task(name)
