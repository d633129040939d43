"""Experiment trackers: ``logger=tensorboard`` writes a run's curves where TensorBoard reads them.

Tags use the run directory's ids, so a curve leads back to its record:
  * ``<candidate id>/fitness/seed<s>`` and ``<candidate id>/episode_length/seed<s>`` against env steps,
    ``<candidate id>/reward/seed<s>`` and ``<candidate id>/component/<name>/seed<s>`` (per-step means);
  * ``search/generation_best`` and ``search/best_so_far`` against the generation index;
  * ``evaluation/<best|human|sparse>`` and ``evaluation/hns`` (the final evaluation), and its table as text.
Event files go to ``<run_dir>/tensorboard/``: ``tensorboard --logdir outputs/`` shows every run.
A tracker problem is reported and never stops the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rewardsmith.errors import UserError

LOGGERS = ("none", "tensorboard")


def tracker_kind(cfg) -> str:
    kind = str(cfg.get("logger") or "none")
    if kind == "wandb":
        raise UserError("logger=wandb is not available yet; use logger=tensorboard")
    if kind not in LOGGERS:
        raise UserError(f"logger must be none or tensorboard, got {kind!r}")
    if kind == "tensorboard":
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise UserError("logger=tensorboard needs tensorboardX: pip install 'rewardsmith[tensorboard]'") from None
    return kind


def make_tracker(cfg, run_dir: Path):
    """The run's tracker, or None for ``logger=none``."""
    if tracker_kind(cfg) == "tensorboard":
        return TensorBoardTracker(Path(run_dir) / "tensorboard")
    return None


class TensorBoardTracker:
    def __init__(self, logdir: Path):
        from tensorboardX import SummaryWriter

        self.logdir = Path(logdir)
        self.writer = SummaryWriter(logdir=str(self.logdir), flush_secs=5)
        self.logged: set[str] = set()

    def candidates(self, cands: Iterable) -> None:
        """Each trained candidate's curves, once."""
        w = self.writer
        for c in cands:
            if c.id in self.logged or not c.members:
                continue
            self.logged.add(c.id)
            for m in c.members:
                steps = list(m.checkpoints)
                curves = {"fitness": m.fitness_curve, "episode_length": m.length_curve, "reward": m.reward_curve}
                curves.update({f"component/{k}": v for k, v in (m.component_curves or {}).items()})
                for name, values in curves.items():
                    for step, v in zip(steps, values or []):
                        if v is not None:
                            w.add_scalar(f"{c.id}/{name}/seed{m.seed}", float(v), int(step))

    def generation(self, gen: int, gen_best, best) -> None:
        if gen_best is not None and gen_best.fitness is not None:
            self.writer.add_scalar("search/generation_best", float(gen_best.fitness), gen)
        if best is not None and best.fitness is not None:
            self.writer.add_scalar("search/best_so_far", float(best.fitness), gen)
        self.writer.flush()

    def finish(self, summary: dict) -> None:
        final = summary.get("final_evaluation") or {}
        rows = ["| policy | id | fitness (mean over fresh seeds) |", "|---|---|---|"]
        for key in ("best", "human", "sparse"):
            entry = final.get(key) or {}
            if entry.get("fitness_mean") is not None:
                self.writer.add_scalar(f"evaluation/{key}", float(entry["fitness_mean"]), 0)
                rows.append(f"| {key} | {entry.get('id')} | {entry['fitness_mean']:.4g} |")
        if final.get("hns") is not None:
            self.writer.add_scalar("evaluation/hns", float(final["hns"]), 0)
        self.writer.add_text("evaluation", "\n".join(rows) + f"\n\nbest candidate: {summary.get('best_candidate_id')}, "
                             f"status: {summary.get('status')}", 0)
        self.close()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
