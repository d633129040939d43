"""Experiment trackers: ``logger=tensorboard`` writes a run's curves where TensorBoard reads them,
``logger=wandb`` to a Weights & Biases run (offline by default: ``wandb sync`` uploads it later).

Tags use the run directory's ids, so a curve leads back to its record:
  * ``<candidate id>/fitness/seed<s>`` and ``<candidate id>/episode_length/seed<s>`` against env steps,
    ``<candidate id>/reward/seed<s>`` and ``<candidate id>/component/<name>/seed<s>`` (per-step means);
  * ``search/generation_best`` and ``search/best_so_far`` against the generation index;
  * ``evaluation/<best|human|sparse>`` and ``evaluation/hns`` (the final evaluation), and its table as text.
Event files go to ``<run_dir>/tensorboard/``: ``tensorboard --logdir outputs/`` shows every run.
W&B runs go to ``<run_dir>/wandb/``; each candidate's curves are plotted against its own
``<candidate id>/env_steps`` (W&B's custom x-axis), the search's against ``search/generation``.
A tracker problem is reported and never stops the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from rewardsmith.errors import UserError
from rewardsmith.records import Summary

LOGGERS = ("none", "tensorboard", "wandb")
_NEEDS = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


def tracker_kind(cfg) -> str:
    kind = str(cfg.get("logger") or "none")
    if kind not in LOGGERS:
        raise UserError(f"logger must be none, tensorboard or wandb, got {kind!r}")
    if kind in _NEEDS:
        module, extra = _NEEDS[kind]
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"logger={kind} needs {module}: pip install 'rewardsmith[{extra}]'") from None
    if kind == "wandb":
        mode = (cfg.get("wandb") or {}).get("mode", "offline")
        if mode not in ("offline", "online", "disabled"):
            raise UserError(f"wandb.mode must be offline, online or disabled, got {mode!r}")
    return kind


def make_tracker(cfg, run_dir: Path):
    """The run's tracker, or None for ``logger=none``."""
    kind = tracker_kind(cfg)
    if kind == "tensorboard":
        return TensorBoardTracker(Path(run_dir) / "tensorboard")
    if kind == "wandb":
        return WandbTracker(Path(run_dir), dict(cfg.get("wandb") or {}), cfg)
    return None


def candidate_points(c) -> dict[int, dict[str, float]]:
    """A trained candidate's curves as {env steps: {tag: value}} (fitness, episode length, reward and
    each component, per seed)."""
    out: dict[int, dict[str, float]] = {}
    for m in c.members:
        curves = {"fitness": m.fitness_curve, "episode_length": m.length_curve, "reward": m.reward_curve}
        curves.update({f"component/{k}": v for k, v in (m.component_curves or {}).items()})
        for name, values in curves.items():
            for step, v in zip(list(m.checkpoints), values or []):
                if v is not None:
                    out.setdefault(int(step), {})[f"{c.id}/{name}/seed{m.seed}"] = float(v)
    return out


def final_rows(summary: Summary) -> list[tuple[str, str, float]]:
    """(policy, id, fitness) of the final evaluation's entries that have a fitness."""
    final = summary.final_evaluation or {}
    return [(key, str((final.get(key) or {}).get("id")), float(final[key]["fitness_mean"]))
            for key in ("best", "human", "sparse") if (final.get(key) or {}).get("fitness_mean") is not None]


class _Once:
    """Each trained candidate goes to a tracker once, however often the loop hands it over."""

    def __init__(self) -> None:
        self.logged: set[str] = set()

    def fresh(self, cands: Iterable) -> list:
        out = [c for c in cands if c.id not in self.logged and c.members]
        self.logged.update(c.id for c in out)
        return out


class TensorBoardTracker(_Once):
    def __init__(self, logdir: Path):
        super().__init__()
        from tensorboardX import SummaryWriter

        self.logdir = Path(logdir)
        self.writer = SummaryWriter(logdir=str(self.logdir), flush_secs=5)

    def candidates(self, cands: Iterable) -> None:
        """Each trained candidate's curves, once."""
        for c in self.fresh(cands):
            for step, values in candidate_points(c).items():
                for tag, v in values.items():
                    self.writer.add_scalar(tag, v, step)

    def generation(self, gen: int, gen_best, best) -> None:
        if gen_best is not None and gen_best.fitness is not None:
            self.writer.add_scalar("search/generation_best", float(gen_best.fitness), gen)
        if best is not None and best.fitness is not None:
            self.writer.add_scalar("search/best_so_far", float(best.fitness), gen)
        self.writer.flush()

    def finish(self, summary: Summary) -> None:
        final = summary.final_evaluation or {}
        rows = ["| policy | id | fitness (mean over fresh seeds) |", "|---|---|---|"]
        for key, cid, fitness in final_rows(summary):
            self.writer.add_scalar(f"evaluation/{key}", fitness, 0)
            rows.append(f"| {key} | {cid} | {fitness:.4g} |")
        if final.get("hns") is not None:
            self.writer.add_scalar("evaluation/hns", float(final["hns"]), 0)
        self.writer.add_text("evaluation", "\n".join(rows) + f"\n\nbest candidate: {summary.best_candidate_id}, "
                             f"status: {summary.status}", 0)
        self.close()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


class WandbTracker(_Once):
    """One W&B run per rewardsmith run, in ``<run_dir>/wandb`` (``wandb.mode``: offline by default;
    online needs WANDB_API_KEY in the orchestrator's environment, never the worker's)."""

    def __init__(self, run_dir: Path, settings: dict, cfg) -> None:
        import wandb

        super().__init__()
        self.wandb = wandb
        self.run = wandb.init(project=settings.get("project") or "rewardsmith", entity=settings.get("entity"),
                              mode=settings.get("mode") or "offline", dir=str(run_dir), name=Path(run_dir).name,
                              config={k: v for k, v in dict(cfg).items() if k not in ("hydra",)},
                              settings=wandb.Settings(silent=True), reinit="finish_previous")
        self.run.define_metric("search/generation")
        self.run.define_metric("search/*", step_metric="search/generation")

    def candidates(self, cands: Iterable) -> None:
        for c in self.fresh(cands):
            x = f"{c.id}/env_steps"
            self.run.define_metric(x)
            self.run.define_metric(f"{c.id}/*", step_metric=x)
            for step, values in sorted(candidate_points(c).items()):
                self.run.log({**values, x: step})

    def generation(self, gen: int, gen_best, best) -> None:
        row: dict = {"search/generation": gen}
        if gen_best is not None and gen_best.fitness is not None:
            row["search/generation_best"] = float(gen_best.fitness)
        if best is not None and best.fitness is not None:
            row["search/best_so_far"] = float(best.fitness)
        self.run.log(row)

    def finish(self, summary: Summary) -> None:
        final = summary.final_evaluation or {}
        rows = final_rows(summary)
        for key, _, fitness in rows:
            self.run.summary[f"evaluation/{key}"] = fitness
        if final.get("hns") is not None:
            self.run.summary["evaluation/hns"] = float(final["hns"])
        self.run.summary["best_candidate_id"] = summary.best_candidate_id
        if rows:
            self.run.log({"evaluation/table": self.wandb.Table(columns=["policy", "id", "fitness"],
                                                               data=[list(r) for r in rows])})
        self.close()

    def close(self) -> None:
        self.run.finish()
