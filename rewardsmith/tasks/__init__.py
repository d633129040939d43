"""Tasks: environment + description + typed state schema + ground-truth fitness + baselines."""

from rewardsmith.tasks.base import EnvAdapter, Task, TaskHooks
from rewardsmith.tasks.registry import (UnknownTaskError, get_task, list_tasks, load_task_file,
                                        register_task)
from rewardsmith.tasks.schema import ActionSpec, Field, StateSchema

__all__ = ["ActionSpec", "EnvAdapter", "Field", "StateSchema", "Task", "TaskHooks",
           "UnknownTaskError", "get_task", "list_tasks", "load_task_file", "register_task"]
