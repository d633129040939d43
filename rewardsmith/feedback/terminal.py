"""The feedback session in a terminal, for machines without a browser: rich tables and prompts.

Anything live on the screen must be stopped before this runs (rich prompts inside a Live display
garble the screen); the search loop pauses its display around it.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

from rewardsmith.evaluate.ranking import SELECTION_MODES
from rewardsmith.feedback.records import AlreadySubmitted, FeedbackError, FeedbackRecord
from rewardsmith.feedback.session import Session
from rewardsmith.rundir import RunDir


def sparkline(values: list, width: int = 24) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return ""
    blocks = "▁▂▃▄▅▆▇█"
    lo, hi = min(vals), max(vals)
    step = max(1, len(values) // width)
    out = []
    for v in values[::step][:width]:
        out.append(" " if v is None else blocks[0 if hi == lo else int((v - lo) / (hi - lo) * (len(blocks) - 1))])
    return "".join(out)


def show(session: Session, console) -> None:
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table

    console.print(f"[bold]rewardsmith · {session.task} · generation {session.generation}[/]: the top "
                  f"{len(session.candidates)} trained candidates. Task fitness: {session.fitness_doc}")
    t = Table(show_lines=False)
    for col in ("#", "candidate", "fitness", "fitness during training", "what the policy did"):
        t.add_column(col, overflow="fold")
    for i, sc in enumerate(session.candidates, 1):
        c = sc.candidate
        curve = next((m.fitness_curve for m in c.members if m.ok), [])
        t.add_row(str(i), c.id, f"{c.fitness:.4g} ± {c.fitness_std or 0:.2g}", sparkline(curve),
                  "\n".join(sc.summary_lines))
    console.print(t)
    for i, sc in enumerate(session.candidates, 1):
        r = sc.rollout or {}
        lines = []
        for name, vals in list((r.get("fields") or {}).items())[:6]:
            lines.append(f"{name:>14} {sparkline(vals, 40)}  [{min(vals):.3g}, {max(vals):.3g}]" if vals else name)
        if r.get("reward"):
            lines.append(f"{'reward':>14} {sparkline(r['reward'], 40)}")
        body = Syntax(sc.candidate.source.strip(), "python", theme="ansi_light", line_numbers=False)
        console.print(Panel(body, title=f"{i}. {sc.id}", subtitle="reward code", expand=False))
        if lines:
            console.print("  first evaluation episode, step by step:\n" + "\n".join("  " + ln for ln in lines))


def ask(session: Session, console, read=None) -> dict[str, Any]:
    """Ask for best, worst, pairs, comments, overall and selection; returns the submission dict."""
    from rich.prompt import Confirm, Prompt

    ids = session.ids
    names = {str(i): cid for i, cid in enumerate(ids, 1)}

    def pick(question: str) -> str | None:
        while True:
            answer = Prompt.ask(f"{question} (number 1-{len(ids)} or id, Enter to skip)", console=console,
                                default="", show_default=False, stream=read).strip()
            if not answer:
                return None
            if answer in names:
                return names[answer]
            if answer in ids:
                return answer
            console.print(f"[red]{answer!r} is not one of 1-{len(ids)} or {', '.join(ids)}[/]")

    best = pick("Which policy behaves best?")
    worst = None
    while True:
        worst = pick("Which policy behaves worst?")
        if worst is None or worst != best:
            break
        console.print("[red]the worst cannot be the best as well[/]")
    pairs = []
    for a, b in itertools.combinations(ids, 2):
        ia, ib = ids.index(a) + 1, ids.index(b) + 1
        answer = Prompt.ask(f"Which is better: {ia}. {a} or {ib}. {b}?", choices=[str(ia), str(ib), "skip"],
                            default="skip", console=console, stream=read)
        if answer != "skip":
            pairs.append({"a": a, "b": b, "winner": a if answer == str(ia) else b})
    comments = {}
    for i, cid in enumerate(ids, 1):
        text = Prompt.ask(f"What is right or wrong with {i}. {cid}? (Enter to skip)", default="",
                          show_default=False, console=console, stream=read)
        if text.strip():
            comments[cid] = text.strip()
    overall = Prompt.ask("Overall, what should the next rewards do differently? (Enter to skip)", default="",
                         show_default=False, console=console, stream=read)
    selection = Prompt.ask("Rank candidates from now on by", choices=list(SELECTION_MODES), default="both",
                           console=console, stream=read)
    return {"best": best, "worst": worst, "pairs": pairs, "comments": comments, "overall": overall,
            "selection": selection, "_confirm": Confirm.ask("Submit this feedback?", default=True, console=console,
                                                             stream=read)}


def run_terminal(session: Session, console=None, require_tty: bool = True) -> FeedbackRecord | None:
    """Show the candidates, ask, and store the answers; None when the person declines to submit."""
    from rich.console import Console

    if require_tty and not sys.stdin.isatty():
        raise FeedbackError("the terminal session needs an interactive terminal (stdin is not a TTY); "
                            "use mode=web, or mode=file file=FEEDBACK.json for scripts")
    console = console or Console()
    show(session, console)
    while True:
        answers = ask(session, console)
        if not answers.pop("_confirm"):
            console.print("nothing was submitted")
            return None
        try:
            rec = session.submit(answers, source="terminal")
        except AlreadySubmitted:
            raise
        except FeedbackError as e:
            console.print(f"[red]{e}[/] - please answer again")
            continue
        console.print(f"[green]feedback for generation {session.generation} saved to "
                      f"{RunDir(session.run_dir, create=False).feedback_path}[/]")
        return rec
