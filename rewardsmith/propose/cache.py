"""A content-addressed response cache for LLM calls (litellm's own cache is not used).

Key: model, api_base, messages, sampling parameters, the sample index and where in the run the
request was made (generation, the generation's retry, the run's seed), so a retry or a later
generation with the same prompt draws new samples while replaying a finished run answers every
request from the cache. Modes:
``readwrite`` reads hits and stores misses; ``replay`` only reads (a miss is an error, no call is
made); ``off`` neither reads nor writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from rewardsmith.rundir import atomic_write_json, user_cache_dir

MODES = ("readwrite", "replay", "off")


def default_cache_dir() -> Path:
    return user_cache_dir("llm")


def cache_key(model: str, api_base: str | None, messages: list[dict], params: dict, sample: int,
              draw: dict | None = None) -> str:
    """``draw``: {"generation", "retry", "seed"} of the request (see the module docstring)."""
    blob = json.dumps({"model": model, "api_base": api_base, "messages": messages, "params": params,
                       "sample": sample, "draw": draw or {}}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | os.PathLike | None, mode: str = "readwrite"):
        if mode not in MODES:
            raise ValueError(f"llm.cache must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.dir = Path(directory) if directory else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.mode == "off":
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is a miss

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.mode != "readwrite":
            return
        atomic_write_json(self._path(key), value)
