"""Human feedback on a generation: the record, its validation, storage, Elo ratings and the text
the next generation's proposer receives.

``feedback.json`` in the run directory holds one record per generation, appended atomically. A
generation that already has feedback is never overwritten: a second submission is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from rewardsmith.errors import UserError
from rewardsmith.rundir import RunDir, atomic_write_json, read_json

from rewardsmith.evaluate.ranking import SELECTION_MODES  # noqa: F401 - the modes a person may pick
MAX_TEXT = 4000
MAX_PAIRS = 1000  # far more than any page shows (every pair of the candidates on it)
ELO_START = 1000.0
ELO_K = 32.0


class FeedbackError(UserError):
    """A submission that cannot be taken; the message says why and nothing was written."""


class AlreadySubmitted(FeedbackError):
    """The generation already has feedback; the stored record is kept as it is."""


@dataclasses.dataclass
class Pair:
    a: str
    b: str
    winner: str  # a or b (the candidate id), never anything else


@dataclasses.dataclass
class FeedbackRecord:
    generation: int
    shown: list[str]  # candidate ids the person was shown, in display order
    best: str | None = None  # ICPL: the best and the worst of those shown
    worst: str | None = None
    pairs: list[Pair] = dataclasses.field(default_factory=list)  # REvolve: choices between two
    comments: dict[str, str] = dataclasses.field(default_factory=dict)  # candidate id -> free text
    overall: str = ""
    selection: str = "both"  # how the search ranks candidates from now on
    source: str = "file"  # web | terminal | file
    submitted_at: float = 0.0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FeedbackRecord":
        d = dict(d)
        d["pairs"] = [p if isinstance(p, Pair) else Pair(**p) for p in d.get("pairs", [])]
        return cls(**d)

    def is_empty(self) -> bool:
        return not (self.best or self.worst or self.pairs or any(self.comments.values()) or self.overall.strip())


def parse_submission(data: Mapping[str, Any], generation: int, shown: list[str], source: str) -> FeedbackRecord:
    """Build a record from what a person submitted (web form, terminal answers or a file) and check it
    against the candidates that were shown. Every field is checked by type and size; raises FeedbackError
    with one line saying what is wrong."""
    if not isinstance(data, Mapping):
        raise FeedbackError(f"feedback must be a JSON object, got {_show(data)}")
    known = {"generation", "shown", "best", "worst", "pairs", "comments", "overall", "selection", "source",
             "submitted_at"}
    unknown = [k[:40] if isinstance(k, str) else _show(k) for k in data if k not in known]
    if unknown:
        if len(unknown) > 10:
            unknown = sorted(unknown[:10]) + ["..."]
        raise FeedbackError(f"unknown feedback keys: {sorted(unknown)}; known: "
                            f"{sorted(known - {'source', 'submitted_at'})}")
    given = data.get("generation")
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int):
            raise FeedbackError(f"generation must be a whole number, got {_show(given)}")
        if given != generation:
            raise FeedbackError(f"this feedback is for generation {_show(given)}, but the session is for "
                                f"generation {generation}")
    ids = set(shown)

    def check_id(value, what: str) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise FeedbackError(f"{what} must be a candidate id (text) or null, got {_show(value)}")
        if value not in ids:
            raise FeedbackError(f"{what} {_show(value)} is not one of the candidates shown: {', '.join(shown)}")
        return value

    best = check_id(data.get("best"), "best")
    worst = check_id(data.get("worst"), "worst")
    if best is not None and best == worst:
        raise FeedbackError(f"{best} cannot be both the best and the worst")
    raw_pairs = data.get("pairs")
    if raw_pairs is None:
        raw_pairs = []
    if not isinstance(raw_pairs, (list, tuple)):
        raise FeedbackError(f"pairs must be a list of {{a, b, winner}}, got {_show(raw_pairs)}")
    if len(raw_pairs) > MAX_PAIRS:
        raise FeedbackError(f"pairs has {len(raw_pairs)} entries; the limit is {MAX_PAIRS}")
    pairs = []
    for p in raw_pairs:
        if not isinstance(p, Mapping) or set(p) - {"a", "b", "winner"} or not {"a", "b"} <= set(p):
            raise FeedbackError(f"a pair must be {{a, b, winner}}, got {_show(p)}")
        a, b = check_id(p["a"], "pair candidate"), check_id(p["b"], "pair candidate")
        if a is None or b is None or a == b:
            raise FeedbackError(f"a pair needs two different candidates, got {_show(p)}")
        winner = p.get("winner")
        if winner is not None and not isinstance(winner, str):
            raise FeedbackError(f"the winner of pair {a} vs {b} must be a candidate id (text) or null, "
                                f"got {_show(winner)}")
        if winner in (None, "", "skip"):
            continue
        if winner not in (a, b):
            raise FeedbackError(f"the winner of pair {a} vs {b} must be one of them, got {_show(winner)}")
        pairs.append(Pair(a, b, winner))
    raw_comments = data.get("comments")
    if raw_comments is None:
        raw_comments = {}
    if not isinstance(raw_comments, Mapping):
        raise FeedbackError(f"comments must be an object of candidate id -> text, got {_show(raw_comments)}")
    comments = {}
    for cid, text in raw_comments.items():
        check_id(cid, "comment on")
        text = _text(text, f"comment on {cid}")
        if text:
            comments[cid] = text
    overall = data.get("overall")
    overall = "" if overall is None else _text(overall, "overall feedback")
    selection = data.get("selection")
    if selection is None or selection == "":
        selection = "both"
    if not isinstance(selection, str) or selection not in SELECTION_MODES:
        raise FeedbackError(f"selection must be one of {', '.join(SELECTION_MODES)}, got {_show(selection)}")
    rec = FeedbackRecord(generation=generation, shown=list(shown), best=best, worst=worst, pairs=pairs,
                         comments=comments, overall=overall, selection=selection, source=source,
                         submitted_at=time.time())
    if rec.is_empty():
        raise FeedbackError("the feedback is empty: pick a best or worst candidate, choose in a pair, or write "
                            "a comment")
    return rec


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise FeedbackError(f"{what} must be text, got {_show(value)}")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise FeedbackError(f"{what} is {len(value)} characters; the limit is {MAX_TEXT}")
    return value


def _show(value: Any) -> str:
    """A short, one-line description of a submitted value for error messages (never the whole of a large
    or deeply nested value)."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else "a very large number"
    if isinstance(value, str):
        return repr(value[:60]) + ("..." if len(value) > 60 else "")
    if isinstance(value, Mapping):
        keys = [k if isinstance(k, str) else type(k).__name__ for k in itertools.islice(value, 6)]
        shown = ", ".join(repr(k[:30]) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        return f"an object with keys [{shown}]" if keys else "an empty object"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items" if value else "an empty list"
    return f"a value of type {type(value).__name__}"


# -- storage ------------------------------------------------------------------------------------

def load_feedback(run_dir: str | Path) -> list[FeedbackRecord]:
    path = RunDir(run_dir, create=False).feedback_path
    if not path.is_file():
        return []
    data = read_json(path)
    return [FeedbackRecord.from_json(r) for r in data.get("records", [])]


def save_feedback(run_dir: str | Path, rec: FeedbackRecord) -> Path:
    """Append ``rec``; refuse a second record for the same generation (nothing is overwritten)."""
    path = RunDir(run_dir, create=False).feedback_path
    records = load_feedback(run_dir)
    for r in records:
        if r.generation == rec.generation:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_at))
            raise AlreadySubmitted(f"generation {rec.generation} already has feedback (submitted from {r.source} at "
                                f"{when}); it was kept and nothing was changed")
    records.append(rec)
    atomic_write_json(path, {"version": 1, "records": [r.to_json() for r in records]})
    return path


# -- preferences -------------------------------------------------------------------------------

def implied_pairs(rec: FeedbackRecord) -> list[Pair]:
    """Every comparison a record states: its pairs, plus best > each other shown and each other > worst."""
    out = list(rec.pairs)
    for cid in rec.shown:
        if rec.best and cid != rec.best:
            out.append(Pair(rec.best, cid, rec.best))
        if rec.worst and cid != rec.worst and cid != rec.best:
            out.append(Pair(cid, rec.worst, cid))
    return out


def elo_ratings(records: Iterable[FeedbackRecord], k: float = ELO_K) -> dict[str, float]:
    """Elo over every comparison in every record, in submission order (unrated ids are absent)."""
    ratings: dict[str, float] = {}
    for rec in records:
        for p in implied_pairs(rec):
            ra, rb = ratings.get(p.a, ELO_START), ratings.get(p.b, ELO_START)
            expected_a = 1.0 / (1.0 + 10 ** ((rb - ra) / 400.0))
            score_a = 1.0 if p.winner == p.a else 0.0
            ratings[p.a] = ra + k * (score_a - expected_a)
            ratings[p.b] = rb - k * (score_a - expected_a)
    return ratings


# -- what the proposer reads ----------------------------------------------------------------------

def feedback_text(rec: FeedbackRecord, fitness: Mapping[str, float | None] | None = None) -> str:
    """The person's feedback in plain words, for the human-feedback prompt."""
    fitness = fitness or {}

    def name(cid: str) -> str:
        f = fitness.get(cid)
        return f"{cid} (task fitness {f:.4g})" if isinstance(f, (int, float)) else cid

    lines = [f"They looked at the trained policies of generation {rec.generation}: {', '.join(rec.shown)}."]
    if rec.best:
        lines.append(f"Best behaviour: {name(rec.best)}.")
    if rec.worst:
        lines.append(f"Worst behaviour: {name(rec.worst)}.")
    for p in rec.pairs:
        loser = p.b if p.winner == p.a else p.a
        lines.append(f"Preferred {name(p.winner)} over {name(loser)}.")
    for cid, text in rec.comments.items():
        lines.append(f"About {cid}: {text}")
    if rec.overall:
        lines.append(f"Overall: {rec.overall}")
    return "\n".join(lines)
