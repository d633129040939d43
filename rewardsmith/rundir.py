"""The run directory is the source of truth; every file is written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def user_cache_dir(kind: str) -> Path:
    """``$XDG_CACHE_HOME/rewardsmith/<kind>`` (default ``~/.cache/rewardsmith/<kind>``): caches shared by runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rewardsmith" / kind


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def move_aside(path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<dest>-1`` (or the first free ``-K``): set aside, never deleted or overwritten."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    k = 1
    while dest.with_name(f"{dest.name}-{k}").exists():
        k += 1
    target = dest.with_name(f"{dest.name}-{k}")
    Path(path).rename(target)
    return target


class RunDir:
    """Layout:

    config.json                      resolved configuration
    summary.json                     best candidate, baselines, per-generation best, wall time
    best_reward.py                   the best reward, standalone and importable
    generations/gen_NN/generation.json
    generations/gen_NN/candidates/<id>/reward.py, candidate.json and rollout.json
    baselines/<id>/                  the same for the human and sparse baselines
    generations/gen_NN/worker/       job, result and log of the training worker
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def gen_dir(self, gen: int) -> Path:
        return self.root / "generations" / f"gen_{gen:02d}"

    def candidate_dir(self, gen: int, cid: str) -> Path:
        return self.gen_dir(gen) / "candidates" / cid

    def record_dir(self, cand) -> Path:
        """Where a candidate's files live: baselines/<id>/ or generations/gen_NN/candidates/<id>/."""
        if cand.origin.startswith("baseline:"):
            return self.root / "baselines" / cand.id
        return self.candidate_dir(cand.generation, cand.id)

    def write_candidate(self, cand) -> None:
        d = self.record_dir(cand)
        atomic_write_text(d / "reward.py", cand.source)
        atomic_write_json(d / "candidate.json", cand.to_json())
