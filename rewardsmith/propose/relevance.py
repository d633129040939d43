"""What the offline proposer reads of the task's words: which state components the description
talks about, and whether its goal asks for more of something or for holding something near a
set point.

This is lexical matching, not language understanding: the task description (the same text an LLM
gets) and every schema field's name and doc are cut into words, folded through a small stemmer and
a thesaurus of control vocabulary ("high"/"height", "spin"/"turn"/"rotation", "fast"/"speed"/
"velocity"), and each field, and each component a doc names ("[2] is the turn rate ...",
"z is height"), is scored by the rarer words it shares with the description (inverse document
frequency over the fields). A description that names no field leaves every score at zero, and the
search falls back to covering the schema evenly.
"""

from __future__ import annotations

import dataclasses
import math
import re

from rewardsmith.tasks.schema import Field, StateSchema

_STOP = frozenset("""
a about above after again against all along also an and any are around as at be because been
before being below between both but by can cannot do does each either every for from has have how
if in into is it its itself just least less may more most much must no nor not of off on once only
or other otherwise out over own per same should so some such than that the their them then there
these they this those through to too under until up very was what when where which while who will
with within would you your agent episode episodes step steps ends end every m s rad one two
""".split())

# Words that mean the same thing for the purpose of matching a goal to a state field.
_SYNONYMS = {
    "height": "high", "highest": "high", "tall": "high", "altitude": "high", "jump": "high",
    "spin": "turn", "rotate": "turn", "rotation": "turn", "rotating": "turn", "turning": "turn",
    "flip": "turn", "yaw": "turn",
    "fast": "speed", "velocity": "speed", "quickly": "speed", "quick": "speed",
    "forward": "forward", "ahead": "forward",
    "fingertip": "tip", "finger": "tip",
    "near": "close", "onto": "close", "distance": "close", "reach": "close",
    "vertical": "vertical", "upward": "up", "upwards": "up",
    "torque": "effort", "force": "effort", "energy": "effort",
    "still": "still", "stationary": "still",
}

# Goal cues, first match wins: the goal asks for as much of something as possible (a superlative;
# "as long as possible" is about time, which an alive bonus covers), to reach a region, or to hold
# something at a set point (on a target, upright, still). Each names the term kinds that fit it.
_CUES = (
    ("more", re.compile(r"\bas (?!long\b)\w+ as possible|\bmaximi[sz]e|\bas many\b"),
     ("value", "progress", "rise", "magnitude", "beyond")),
    ("reach", re.compile(r"\breach"), ("beyond", "progress", "value", "distance")),
    ("hold", re.compile(r"\b(keep|hold|balance|upright|stay|still|onto|near)\b"),
     ("near_zero", "sq_penalty", "abs_penalty", "upright", "distance")),
)

# "negative is backward rotation", "positive is towards the flag": the word that names a sign's direction
_DIRECTION = re.compile(r"\b(positive|negative)\b(?:\s+is)?(?:\s+(?:to|towards|toward|the|a))*\s+([a-z][a-z-]*)")

_AXIS = {"x": 0, "y": 1, "z": 2}
_COMPONENT = re.compile(r"^\s*(?:\[(\d+)\]|\+?([xyz]))\s+(?:is|are)\b")


def _stem(word: str) -> str:
    if word in _SYNONYMS:
        return _SYNONYMS[word]
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return _SYNONYMS.get(word, word)


def words(text: str) -> set[str]:
    """Content words of ``text``, stemmed and folded through the thesaurus."""
    out = set()
    for w in re.findall(r"[a-z]+", text.lower().replace("_", " ")):
        if len(w) > 1 and w not in _STOP or w in _AXIS:
            out.add(_stem(w))
    return out


def _field_words(f: Field) -> tuple[set[str], set[str], dict[int, set[str]]]:
    """Words of a field's name, of its doc as a whole, and those its doc says of single components
    ("[2] is the turn rate", "z is height"; a parenthesis there belongs to the whole field)."""
    general: set[str] = set()
    parts: dict[int, set[str]] = {}
    for clause in re.split(r"[;,]", f.doc):
        m = _COMPONENT.match(clause)
        if m and len(f.shape) == 1:
            i = int(m.group(1)) if m.group(1) is not None else _AXIS[m.group(2)]
            if i < f.shape[0]:
                said = clause[m.end():]
                general |= words(" ".join(re.findall(r"\(([^)]*)\)", said)))
                parts.setdefault(i, set()).update(words(re.sub(r"\([^)]*\)", " ", said)))
                continue
        general |= words(clause)
    return words(f.name), general, parts


@dataclasses.dataclass(frozen=True)
class Relevance:
    """Scores of (field, component) against the task text; component None is the whole field."""

    scores: dict[tuple[str, int | None], float]
    # the goal's cue ("more", "reach", "hold"; "" when the text has none) and the term kinds that fit it
    goal: str = ""
    goal_kinds: tuple[str, ...] = ()
    # the goal sentence asks for little effort (force, torque, energy)
    effort: bool = False
    # fields whose doc names the direction of their negative values with a word of the goal sentence
    # ("negative is backward rotation" and a goal of turning backwards): more of them is less
    negative: frozenset[str] = frozenset()

    def sign(self, name: str) -> float:
        """The direction in which the goal wants a field: -1 where the goal names its negative side."""
        return -1.0 if name in self.negative else 1.0

    def field_weight(self, name: str) -> float:
        """How strongly the description points at this field (its best component), 0 when not."""
        return max((s for (f, _), s in self.scores.items() if f == name), default=0.0)

    def component_weights(self, name: str, size: int) -> list[float]:
        return [self.scores.get((name, i), 0.0) for i in range(size)]

    def leads(self, n: int) -> list[tuple[str, int | None]]:
        """The n (field, component) pairs the description points at most (score > 0)."""
        ranked = sorted(((s, key) for key, s in self.scores.items() if s > 0),
                        key=lambda x: (-x[0], x[1][0], -1 if x[1][1] is None else x[1][1]))
        out: list[tuple[str, int | None]] = []
        for _, key in ranked:
            # a component scored above its whole field stands for that field
            if key[1] is None and any(k[0] == key[0] for k in out):
                continue
            out.append(key)
            if len(out) == n:
                break
        return out

    def probes(self, k: int) -> list[tuple[tuple[str, int | None], str | None]]:
        """First-generation probes for a generation of k: ((field, component), term kind, or None
        for any kind that fits the goal).

        Where the goal asks for more of something, the named quantity is clear and how to reward it
        is not (its level, its change, only its increase): half the generation probes the top
        component with each fitting kind. Where it asks to reach or hold something, the set-point
        kinds are much alike and which quantity is the question: a third probes the top
        components, one each."""
        if self.goal == "more":
            leads = self.leads(1)
            return [(leads[0], kind) for kind in self.goal_kinds[:max(1, k // 2)]] if leads else []
        return [(lead, None) for lead in self.leads(max(1, k // 3))]

    @property
    def top(self) -> float:
        return max(self.scores.values(), default=0.0)


def relevance(description: str, schema: StateSchema) -> Relevance:
    """Score every rewardable field and named component against ``description``.

    A shared word counts by its rarity among the fields (idf), twice where it is in the goal
    sentence ("Goal: ..."), twice where it is in the field's name (the name is what identifies a
    field) and twice where the doc says it of one component (the more specific match).
    """
    fields = [f for f in schema.fields if f.rewardable]
    lowered = description.lower()
    goal_text = lowered.split("goal:", 1)[1] if "goal:" in lowered else lowered
    text, goal = words(description), words(goal_text)
    parsed = {f.name: _field_words(f) for f in fields}
    df: dict[str, int] = {}
    for name_w, general, parts in parsed.values():
        for w in name_w.union(general, *parts.values()):
            df[w] = df.get(w, 0) + 1
    idf = {w: math.log(1.0 + len(fields) / n) for w, n in df.items()}

    def score(ws: set[str], factor: float) -> float:
        return factor * sum(idf[w] * (2.0 if w in goal else 1.0) for w in text & ws)

    scores: dict[tuple[str, int | None], float] = {}
    for f in fields:
        name_w, general, parts = parsed[f.name]
        base = score(name_w, 2.0) + score(general - name_w, 1.0)
        scores[(f.name, None)] = base
        for i, ws in parts.items():
            scores[(f.name, i)] = base + score(ws, 2.0)
    negative = frozenset(f.name for f in fields if _goal_side(f.doc, goal) < 0)
    for cue, pattern, kinds in _CUES:
        if pattern.search(goal_text):
            return Relevance(scores, goal=cue, goal_kinds=kinds, effort="effort" in goal, negative=negative)
    return Relevance(scores, effort="effort" in goal, negative=negative)


def _goal_side(doc: str, goal: set[str]) -> int:
    """-1 where the doc's word for the negative side is in the goal and its word for the positive
    side is not, else +1 (a field rewarded as it grows)."""
    sides = {"positive": False, "negative": False}
    for side, word in _DIRECTION.findall(doc.lower()):
        sides[side] |= bool(words(word) & goal)
    return -1 if sides["negative"] and not sides["positive"] else 1
