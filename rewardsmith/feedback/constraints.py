"""Human text feedback for the offline proposer, which cannot read prose: a keyword reading that turns
sentences naming a schema field (or the action) and a direction into term constraints.

"the pole wobbles too much" names no field; "theta_dot is too large" or "less x drift" do. Sentences
that yield no constraint are kept as a note in the candidate records, never silently dropped. This is
deliberately a narrow, predictable reading, not language understanding.
"""

from __future__ import annotations

import dataclasses
import re

from rewardsmith.tasks.schema import StateSchema

_TOO_MUCH = ("too much", "too high", "too large", "too big", "too fast", "too far", "too often")
_TOO_LITTLE = ("too low", "too slow", "too small", "too little", "not enough")
_LESS = ("less", "lower",
         "reduce", "decrease", "penalize", "penalise", "avoid", "minimize", "minimise", "smaller", "slower",
         "wobble", "shake", "jitter", "jerky", "drift", "oscillat", "keep", "near zero", "centre", "center",
         "stable", "steady", "smooth")
_MORE = ("more", "higher", "larger", "bigger", "faster", "increase", "maximize", "maximise", "encourage",
         "further")
_ACTION_WORDS = ("action", "torque", "force", "energy", "effort", "control")


@dataclasses.dataclass(frozen=True)
class TermConstraint:
    """A term every child program must contain: ``penalize`` adds a squared penalty on the field (or
    an action cost), ``encourage`` a positive linear term."""

    field: str  # schema field name, or "action"
    direction: str  # "penalize" | "encourage"
    sentence: str  # the words it came from

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _sentences(text: str) -> list[str]:
    """Sentences, then clauses ("less torque, and the swing is too slow" is two requests)."""
    out = []
    for sentence in re.split(r"(?<=[.!?;\n])\s+|\n", text or ""):
        out += [c.strip() for c in re.split(r",|;|\bbut\b|\band\b", sentence) if c.strip()]
    return out


def _mentions(sentence: str, name: str) -> bool:
    s = sentence.lower()
    variants = {name.lower(), name.lower().replace("_", " ")}
    return any(re.search(rf"(?<![a-z0-9_]){re.escape(v)}s?(?![a-z0-9_])", s) for v in variants)


def _direction(sentence: str) -> str | None:
    s = sentence.lower()
    if any(w in s for w in _TOO_MUCH):
        return "penalize"
    if any(w in s for w in _TOO_LITTLE):
        return "encourage"
    less = min((s.find(w) for w in _LESS if w in s), default=-1)
    more = min((s.find(w) for w in _MORE if w in s), default=-1)
    if less < 0 and more < 0:
        return None
    if less >= 0 and (more < 0 or less <= more):
        return "penalize"
    return "encourage"


def text_constraints(text: str, schema: StateSchema) -> tuple[list[TermConstraint], list[str]]:
    """(constraints, sentences that gave none)."""
    fields = [f.name for f in schema.fields if f.rewardable]
    out: list[TermConstraint] = []
    unused: list[str] = []
    for sentence in _sentences(text):
        direction = _direction(sentence)
        named = [f for f in fields if _mentions(sentence, f)]
        if not named and any(_mentions(sentence, w) for w in _ACTION_WORDS):
            named = ["action"]
        if direction is None or not named:
            unused.append(sentence)
            continue
        for f in named:
            if f == "action" and direction != "penalize":
                unused.append(sentence)
                continue
            c = TermConstraint(f, direction, sentence)
            if all((o.field, o.direction) != (c.field, c.direction) for o in out):
                out.append(c)
    return out, unused
