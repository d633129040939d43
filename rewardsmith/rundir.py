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


class WorkerFiles:
    """The files of one training-worker folder (a one-off worker's attempt folder, or the run's warm
    worker folder): its job and result, its log, its own temporary folder, and the exchange folder a
    warm worker reads jobs from."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @property
    def job(self) -> Path:
        return self.folder / "job.json"

    @property
    def result(self) -> Path:
        return self.folder / "result.json"

    @property
    def log(self) -> Path:
        return self.folder / "worker.log"

    @property
    def tmp(self) -> Path:
        return self.folder / "tmp"

    def numbered_log(self, n: int) -> Path:
        return self.folder / f"worker-{n}.log"

    @property
    def shards(self) -> Path:
        """executor=ray: where each shard of the job ran (nodes, attempts, errors)."""
        return self.folder / "shards.json"

    def shard(self, i: int) -> "WorkerFiles":
        """executor=ray: shard ``i``'s job, result and worker log, copied back from its node."""
        return WorkerFiles(self.folder / f"shard_{i}")

    @property
    def exchange(self) -> "WorkerFiles":
        return WorkerFiles(self.folder / "io")


class RunDir:
    """The one owner of the run directory's layout; every other module reads and writes it through here.

    config.json                      resolved configuration
    summary.json                     best candidate, baselines, per-generation best, wall time
    best_reward.py                   the best reward, standalone and importable
    report.html                      the self-contained report
    feedback.json                    human feedback, one record per generation
    generations/gen_NN/generation.json (generation_retryK.json), proposer_input.json (_retryK)
    generations/gen_NN/candidates/<id>/reward.py, candidate.json and rollout.json
    generations/gen_NN/worker/attempt_K/   job, result and log of the training worker
    baselines/<id>/                  the same for the human and sparse baselines
    race/                            the finals: race.json, the finalists' rollouts/ and worker/
    final/                           the final evaluation: final.json, <key>.json, rollouts/, worker/
    worker/                          the run's warm worker (its io/ and temporary files)
    llm/                             LLM calls (calls.json, gen_NN/ requests and answers, litellm.log)
    interrupted/, final.before-resume-K/   set aside by a resume, never deleted
    """

    CONFIG, SUMMARY, BEST_REWARD, REPORT, FEEDBACK = (
        "config.json", "summary.json", "best_reward.py", "report.html", "feedback.json")

    def __init__(self, root: str | os.PathLike, create: bool = True):
        # absolute: the training worker runs in another working directory
        self.root = Path(root).absolute()
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    # -- top-level files ----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / self.CONFIG

    @property
    def summary_path(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def best_reward_path(self) -> Path:
        return self.root / self.BEST_REWARD

    @property
    def report_path(self) -> Path:
        return self.root / self.REPORT

    @property
    def feedback_path(self) -> Path:
        return self.root / self.FEEDBACK

    def has_summary(self) -> bool:
        return self.summary_path.is_file()

    def read_summary(self) -> "Summary":
        from rewardsmith.records import Summary

        return Summary.from_json(read_json(self.summary_path))

    def write_summary(self, summary: "Summary") -> None:
        atomic_write_json(self.summary_path, summary.to_json())

    def read_config(self) -> dict:
        return read_json(self.config_path)

    def write_config(self, cfg: dict) -> None:
        atomic_write_json(self.config_path, cfg)

    def summary_task(self) -> str | None:
        """The task named in summary.json, or None where there is none."""
        return (self.read_summary().task or None) if self.has_summary() else None

    # -- generations ----------------------------------------------------------------------------------
    def gen_dir(self, gen: int) -> Path:
        return self.root / "generations" / f"gen_{gen:02d}"

    def generation_dirs(self) -> list[tuple[int, Path]]:
        """(index, folder) of every generation folder, in order."""
        out = []
        for d in sorted((self.root / "generations").glob("gen_*")):
            try:
                out.append((int(d.name.split("_", 1)[1]), d))
            except ValueError:
                continue
        return out

    def generation_record_path(self, gen: int, attempt: int) -> Path:
        return self.gen_dir(gen) / _attempt_name("generation", attempt)

    def proposer_input_path(self, gen: int, attempt: int) -> Path:
        return self.gen_dir(gen) / _attempt_name("proposer_input", attempt)

    def worker_attempt_dir(self, gen: int, attempt: int) -> Path:
        return self.gen_dir(gen) / "worker" / f"attempt_{attempt}"

    def generation_records(self) -> list[dict]:
        """Every generation record (retries too), ordered by generation and attempt."""
        recs = [read_json(p) for p in (self.root / "generations").glob("gen_*/generation*.json")]
        return sorted(recs, key=lambda r: (r["index"], r["attempt"]))

    def set_aside_generation(self, folder: Path) -> Path:
        """An interrupted generation's folder, moved to interrupted/ (never deleted)."""
        return move_aside(folder, self.root / "interrupted" / folder.name)

    # -- candidates -------------------------------------------------------------------------------------
    def candidate_dir(self, gen: int, cid: str) -> Path:
        return self.gen_dir(gen) / "candidates" / cid

    def baseline_dir(self, cid: str) -> Path:
        return self.root / "baselines" / cid

    def record_dir(self, cand) -> Path:
        """Where a candidate's files live: baselines/<id>/ or generations/gen_NN/candidates/<id>/."""
        if cand.origin.startswith("baseline:"):
            return self.baseline_dir(cand.id)
        return self.candidate_dir(cand.generation, cand.id)

    def rollout_path(self, cand) -> Path:
        return self.record_dir(cand) / "rollout.json"

    def trajectories_path(self, cand) -> Path:
        return self.record_dir(cand) / "trajectories.npz"

    def read_trajectories(self, cand):
        """The candidate's stored evaluation episodes (``records.Trajectories``), or None."""
        from rewardsmith.records import Trajectories

        path = self.trajectories_path(cand)
        if not path.is_file():
            return None
        try:
            return Trajectories.load(path)
        except Exception:  # noqa: BLE001 - a damaged file reads as none (a zip error, a missing array)
            return None

    def write_candidate(self, cand) -> None:
        d = self.record_dir(cand)
        atomic_write_text(d / "reward.py", cand.source)
        atomic_write_json(d / "candidate.json", cand.to_json())

    def candidate_records(self) -> list[dict]:
        """Every generation's candidate records (not the baselines), in folder order."""
        return [read_json(p) for p in sorted((self.root / "generations").glob("gen_*/candidates/*/candidate.json"))]

    def baseline_records(self) -> list[dict]:
        return [read_json(p) for p in sorted((self.root / "baselines").glob("*/candidate.json"))]

    def baseline_record(self, cid: str) -> dict | None:
        path = self.baseline_dir(cid) / "candidate.json"
        return read_json(path) if path.is_file() else None

    def find_candidate(self, cid: str) -> dict | None:
        """The record of candidate or baseline ``cid`` (any generation), or None."""
        d = self._find_candidate_dir(cid)
        return read_json(d / "candidate.json") if d is not None and (d / "candidate.json").is_file() else None

    def find_reward_file(self, cid: str) -> Path | None:
        """The reward.py of candidate or baseline ``cid`` (any generation), or None."""
        d = self._find_candidate_dir(cid)
        return d / "reward.py" if d is not None and (d / "reward.py").is_file() else None

    def _find_candidate_dir(self, cid: str) -> Path | None:
        if any(c in cid for c in "/\\*?[") or cid in ("", ".", ".."):
            return None
        hits = list((self.root / "generations").glob(f"gen_*/candidates/{cid}")) + \
            [d for d in [self.baseline_dir(cid)] if d.is_dir()]
        return hits[0] if hits else None

    def load_candidate(self, gen: int, cid: str) -> dict | None:
        path = self.candidate_dir(gen, cid) / "candidate.json"
        return read_json(path) if path.is_file() else None

    def load_rollout(self, cand) -> dict | None:
        path = self.rollout_path(cand)
        return read_json(path) if path.is_file() else None

    # -- the final evaluation, the worker, the LLM log ------------------------------------------------------
    @property
    def final_dir(self) -> Path:
        return self.root / "final"

    def final_path(self, key: str) -> Path:
        return self.final_dir / f"{key}.json"

    @property
    def final_rollouts_dir(self) -> Path:
        return self.final_dir / "rollouts"

    @property
    def final_worker_dir(self) -> Path:
        return self.final_dir / "worker"

    def set_aside_final(self) -> Path | None:
        """An earlier session's final evaluation, kept beside the new one."""
        if self.final_dir.exists():
            return move_aside(self.final_dir, self.root / "final.before-resume")
        return None

    @property
    def race_dir(self) -> Path:
        """The finals: race.json, the finalists' rollouts/ and worker/."""
        return self.root / "race"

    @property
    def race_path(self) -> Path:
        return self.race_dir / "race.json"

    @property
    def race_rollouts_dir(self) -> Path:
        return self.race_dir / "rollouts"

    @property
    def race_worker_dir(self) -> Path:
        return self.race_dir / "worker"

    @property
    def worker_dir(self) -> Path:
        return self.root / "worker"

    @property
    def task_file_path(self) -> Path:
        """An own-environment task's task file (its folder is readable by the worker)."""
        return self.root / "task" / "task.yaml"

    @property
    def llm_dir(self) -> Path:
        return self.root / "llm"

    @property
    def llm_calls_path(self) -> Path:
        return self.llm_dir / "calls.json"

    @property
    def llm_server_log_path(self) -> Path:
        return self.llm_dir / "server.log"

    @property
    def llm_log_path(self) -> Path:
        return self.llm_dir / "litellm.log"

    def llm_generation_dir(self, gen: int) -> Path:
        return self.llm_dir / f"gen_{gen:02d}"


def _attempt_name(stem: str, attempt: int) -> str:
    return f"{stem}{'' if attempt == 0 else f'_retry{attempt}'}.json"
