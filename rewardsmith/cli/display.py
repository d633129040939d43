"""Live view of a run: a rich table on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

from rewardsmith.feedback.terminal import sparkline
from rewardsmith.records import Summary, fmt

_STYLE = {"proposed": "white", "checking": "cyan", "training": "yellow", "trained": "green",
          "rejected": "red", "failed": "red", "no_code": "red",
          "provider_failed": "magenta", "skipped": "blue"}


class Display:
    def __init__(self, live: bool | None = None, stream=None):
        self.stream = stream or sys.stdout
        self.live_enabled = self.stream.isatty() if live is None else live
        self.t0 = time.time()
        self.rows: dict[str, Any] = {}
        self.header = ""
        self.best = None
        self.gen = 0
        self._live = None
        self._console = None
        self._last_status: dict[str, str] = {}
        self.training: dict[str, list] = {}  # candidate id -> training fitness after each chunk
        self.progress_done = (0, 0)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, task: str, proposer: str, run_dir: str) -> None:
        self.header = f"rewardsmith · task {task} · {proposer}"
        self._log(f"{self.header}\nrun directory: {run_dir}")
        if self.live_enabled:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            self._live = Live(self._render(), console=self._console, refresh_per_second=4, transient=False)
            self._live.start()

    def finish(self, summary: Summary) -> None:
        self._refresh()
        if self._live is not None:
            self._live.stop()
            self._live = None
        best = f"best candidate: {summary.best_candidate_id}  fitness {fmt(summary.best_fitness)}" \
               f" ± {fmt(summary.best_fitness_std)}" if summary.trained_any else _nothing_trained(summary.candidates)
        same = summary.identical_policies
        if same:
            gens = {g["generation"] for g in summary.per_generation_best}
            every = bool(gens) and gens <= set(same)
            best = (f"warning: every trained policy behaved the same in generation(s) {', '.join(map(str, same))} "
                    "(bit-identical evaluation curves)" + ("; there is no search result, the ranking is arbitrary: "
                                                           if every else "; ") + best)
        lines = [
            f"done in {summary.wall_time_s:.0f} s — proposer: {summary.proposer}",
            best,
            f"{summary.human_baseline_label or 'human baseline'}: {fmt(summary.human_baseline_fitness)}   "
            f"sparse baseline: {fmt(summary.sparse_baseline_fitness)}   "
            f"HNS: {fmt(summary.human_normalised_score)}",
        ]
        print("\n".join(lines), file=self.stream, flush=True)

    def pause(self) -> None:
        """Stop the live view (before asking the person anything: prompts inside Live garble the screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._paused = True

    def resume(self) -> None:
        if getattr(self, "_paused", False) and self.live_enabled:
            from rich.live import Live

            self._paused = False
            self._live = Live(self._render(), console=self._console, refresh_per_second=4, transient=False)
            self._live.start()

    # -- updates ------------------------------------------------------------------------------
    def generation(self, gen: int, attempt: int) -> None:
        self.gen = gen
        self.rows = {}
        self.training = {}
        self.progress_done = (0, 0)
        self._log(f"generation {gen}" + (f" (retry {attempt})" if attempt else ""))

    def candidates(self, cands) -> None:
        for c in cands:
            self.rows[c.id] = c
            # one line per sample that ended; a provider failure also above the live table (it is no
            # verdict on the code, and the table forgets it at the next generation)
            if (self._live is None or c.status == "provider_failed") and self._last_status.get(c.id) != c.status:
                self._last_status[c.id] = c.status
                if c.status in ("rejected", "trained", "failed", "no_code", "provider_failed", "skipped"):
                    self._log(f"  {c.id} {_describe(c)}")
        self._refresh()

    def progress(self, done: int, total: int, fitness: dict) -> None:
        """Training advanced to update ``done`` of ``total``; ``fitness``: each candidate's training fitness."""
        self.progress_done = (done, total)
        for cid, f in fitness.items():
            self.training.setdefault(cid, []).append(f)
        if self._live is None:
            known = [(f, cid) for cid, f in fitness.items() if f is not None]
            lead = f"; leading {max(known)[1]} at {fmt(max(known)[0])}" if known else ""
            self._log(f"  training {100 * done // max(total, 1)}% (update {done} of {total}){lead}")
        self._refresh()

    def generation_done(self, gen: int, gen_best, best) -> None:
        self.best = best
        self._log(f"generation {gen} best: {gen_best.id + ' ' + fmt(gen_best.fitness) if gen_best else 'none'}; "
                  f"best so far: {best.id + ' ' + fmt(best.fitness) if best else 'none'}")
        self._refresh()

    def message(self, text: str) -> None:
        self._log(text)

    # -- rendering ----------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        stamp = f"[{time.time() - self.t0:6.1f}s] "
        if self._live is not None:
            self._live.console.print(stamp + text, highlight=False, markup=False)
        else:
            print("\n".join(stamp + ln for ln in text.splitlines()), file=self.stream, flush=True)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self):
        from rich.table import Table

        t = Table(title=f"{self.header} · generation {self.gen} · {time.time() - self.t0:.0f} s elapsed",
                  title_justify="left", expand=False)
        t.add_column("candidate")
        t.add_column("origin")
        t.add_column("status")
        t.add_column("fitness", justify="right")
        on_cluster = any(getattr(c, "placement", None) for c in self.rows.values())
        if on_cluster:
            t.add_column("shard · node")
        t.add_column("note / reason", overflow="fold", max_width=70)
        for c in self.rows.values():
            style = _STYLE.get(c.status, "white")
            reason = c.validation.reason if (c.validation and not c.validation.ok) else c.note
            fit = fmt(c.fitness) + (f" ± {fmt(c.fitness_std)}" if c.fitness_std is not None else "")
            status = c.status
            curve = self.training.get(c.id)
            if c.status == "training" and curve:
                done, total = self.progress_done
                status = f"training {100 * done // max(total, 1)}%"
                fit = "≈ " + fmt(curve[-1]) if curve[-1] is not None else ""
                reason = sparkline(curve, 30)
            where = [_where(c.placement)] if on_cluster else []
            t.add_row(c.id, c.origin, f"[{style}]{status}[/]", fit if (c.fitness is not None or curve) else "",
                      *where, reason or "")
        if self.best is not None:
            t.caption = f"best so far: {self.best.id} fitness {fmt(self.best.fitness)}"
        return t


def _nothing_trained(counts: dict) -> str:
    if counts and set(counts) == {"provider_failed"}:
        return "no candidate trained: every LLM sample failed at the provider (no answer; reasons in the run directory)"
    return "no candidate trained: every candidate was rejected or failed (reasons in the run directory)"


def _where(place: dict | None) -> str:
    """executor=ray: the candidate's shard and node (and how many attempts it took)."""
    if not place:
        return ""
    tries = len(place.get("attempts") or [])
    return (f"{place.get('shard')} · {place.get('node_ip')} {str(place.get('node_id') or '')[:8]}"
            + (f" ({tries} attempts)" if tries > 1 else ""))


def _describe(c) -> str:
    if c.status == "provider_failed" and c.validation:
        return f"provider failed: {c.validation.reason}"
    if c.status == "no_code" and c.validation:
        return f"no code: {c.validation.reason}"
    if c.status == "rejected" and c.validation:
        return f"rejected ({c.validation.stage}): {c.validation.reason}"
    if c.status == "skipped" and c.prefilter:
        return f"not trained (prefilter): {c.prefilter.get('reason')}"
    if c.status == "failed":
        reasons = sorted({m.reason for m in c.members if m.reason}) or [c.note]
        return f"failed: {'; '.join(reasons)}"
    early = f" (stopped early at rung {c.rung} of {c.rungs})" if getattr(c, "stopped_early", False) else ""
    return f"fitness {fmt(c.fitness)} ± {fmt(c.fitness_std)}{early}"
