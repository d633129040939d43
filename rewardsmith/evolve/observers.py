"""Who hears of the search's progress. After each generation and at the end the loop publishes to a
list of observers: the report, the live view and the tracker (``logger=``). An observer that fails
is reported on the live view and never stops the search; the run directory is written before any
observer hears of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rewardsmith.records import Candidate, Summary


@dataclasses.dataclass(frozen=True)
class GenerationDone:
    gen: int
    candidates: list[Candidate]  # this generation's and the baselines
    gen_best: Candidate | None
    best: Candidate | None  # the run's best so far


class ReportObserver:
    """report.html, written again after every generation and at the end."""

    def __init__(self, root: Path, display):
        self.root, self.display = root, display

    def generation_done(self, ev: GenerationDone) -> None:
        write_report_safely(self.root, self.display)

    def finished(self, summary: Summary) -> None:
        write_report_safely(self.root, self.display)


class DisplayObserver:
    """The live view's generation line and its closing lines."""

    def __init__(self, display):
        self.display = display

    def generation_done(self, ev: GenerationDone) -> None:
        self.display.generation_done(ev.gen, ev.gen_best, ev.best)

    def finished(self, summary: Summary) -> None:
        self.display.finish(summary)


class TrackerObserver:
    """TensorBoard or W&B; after its first failure (reported once) it is no longer called."""

    def __init__(self, tracker, display):
        self.tracker, self.display = tracker, display

    def _call(self, step) -> None:
        if self.tracker is None:
            return
        try:
            step(self.tracker)
        except Exception as e:  # noqa: BLE001 - a tracker problem is reported, never fatal
            self.display.message(f"logger: {type(e).__name__}: {e}; no more tracking this run")
            self.tracker = None

    def generation_done(self, ev: GenerationDone) -> None:
        self._call(lambda t: (t.candidates(ev.candidates), t.generation(ev.gen, ev.gen_best, ev.best)))

    def finished(self, summary: Summary) -> None:
        self._call(lambda t: t.finish(summary))


def observers(root: Path, display, tracker) -> list:
    """In the order they hear: the report, then the tracker, then the live view."""
    return [ReportObserver(root, display), TrackerObserver(tracker, display), DisplayObserver(display)]


def write_report_safely(root: Path, display) -> None:
    try:
        from rewardsmith.report import write_report

        write_report(root)
    except Exception as e:  # noqa: BLE001 - a report problem never loses the run
        display.message(f"report.html could not be written: {type(e).__name__}: {e}")
