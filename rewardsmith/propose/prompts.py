"""Prompt templates live in files (``prompts/``); users can point ``llm.prompts_dir`` at copies."""

from __future__ import annotations

import importlib.resources
import string
from pathlib import Path

TEMPLATES = ("system", "task", "reflection", "code_error", "human_feedback")


class PromptSet:
    def __init__(self, directory: str | Path | None = None):
        base = Path(directory) if directory else Path(str(importlib.resources.files("rewardsmith.prompts")))
        self.dir = base
        self.templates: dict[str, string.Template] = {}
        for name in TEMPLATES:
            path = base / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"prompt template missing: {path}")
            self.templates[name] = string.Template(path.read_text(encoding="utf-8"))

    def render(self, name: str, **values) -> str:
        return self.templates[name].safe_substitute(**{k: str(v) for k, v in values.items()}).strip()
