"""Typed state schemas: what a reward function may read, with shape, unit and meaning.

The schema is the proposer's whole view of a task (the way Eureka shows environment source):
field names, shapes, units and one-line meanings. The same schema builds the ``State`` object
that reward code receives, so a field that is not in the schema cannot be read.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class Field:
    """One named quantity of the state."""

    name: str
    shape: tuple[int, ...]
    unit: str
    doc: str
    # Typical range of the value, when known. Shown to the proposer and used by the offline
    # proposer to scale its terms. Not a hard bound.
    low: float | None = None
    high: float | None = None
    # "float", "angle" (radians, wrapped to [-pi, pi]), "count" (steps) or "constant" (same every
    # step, e.g. dt: read it, never reward it).
    kind: str = "float"

    @property
    def rewardable(self) -> bool:
        """Whether a reward term may be built on this field (not a step count or a constant)."""
        return self.kind not in ("count", "constant")

    @property
    def scale(self) -> float:
        if self.low is None or self.high is None:
            return 1.0
        return max(abs(self.low), abs(self.high), 1e-6)

    def describe(self) -> str:
        shape = "scalar" if not self.shape else "[" + ", ".join(str(d) for d in self.shape) + "]"
        rng = ""
        if self.low is not None and self.high is not None:
            rng = f", typical range [{self.low:g}, {self.high:g}]"
        unit = f", {self.unit}" if self.unit else ""
        return f"{self.name}: {shape}{unit}{rng}. {self.doc}"


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """The action the policy emits, as the reward function receives it."""

    kind: str  # "discrete" or "continuous"
    doc: str
    n: int = 0  # number of discrete actions
    shape: tuple[int, ...] = ()  # continuous action shape
    low: float = -1.0
    high: float = 1.0

    @property
    def size(self) -> int:
        """Policy output size: logits for discrete, mean vector for continuous."""
        if self.kind == "discrete":
            return self.n
        out = 1
        for d in self.shape:
            out *= d
        return out

    def describe(self) -> str:
        if self.kind == "discrete":
            return f"action: int32 scalar in {{0, ..., {self.n - 1}}}. {self.doc}"
        shape = "[" + ", ".join(str(d) for d in self.shape) + "]"
        return f"action: float32 {shape} in [{self.low:g}, {self.high:g}]. {self.doc}"


@dataclasses.dataclass(frozen=True)
class StateSchema:
    fields: tuple[Field, ...]
    action: ActionSpec

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in schema: {names}")
        for n in names:
            if not n.isidentifier() or n.startswith("_"):
                raise ValueError(f"schema field {n!r} must be a public Python identifier")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def state_type(self) -> type:
        """The namedtuple class reward code receives (a JAX pytree, fields as attributes)."""
        return _state_type(self.names)

    def make_state(self, values: Mapping[str, Any]) -> Any:
        missing = set(self.names) - set(values)
        if missing:
            raise KeyError(f"state view is missing schema fields: {sorted(missing)}")
        return self.state_type()(**{n: values[n] for n in self.names})

    def describe(self) -> str:
        lines = ["state and next_state have these attributes (float32 unless stated):"]
        lines += [f"  - {f.describe()}" for f in self.fields]
        lines.append(self.action.describe())
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "fields": [dataclasses.asdict(f) for f in self.fields],
            "action": dataclasses.asdict(self.action),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "StateSchema":
        fields = []
        for raw in data["fields"]:
            raw = dict(raw)
            if "range" in raw:
                raw["low"], raw["high"] = raw.pop("range")
            raw["shape"] = tuple(raw.get("shape", ()))
            raw.setdefault("unit", "")
            raw.setdefault("doc", "")
            fields.append(Field(**raw))
        action = dict(data["action"])
        action["shape"] = tuple(action.get("shape", ()))
        return cls(fields=tuple(fields), action=ActionSpec(**action))


_STATE_TYPES: dict[tuple[str, ...], type] = {}


def _state_type(names: Sequence[str]) -> type:
    key = tuple(names)
    if key not in _STATE_TYPES:
        _STATE_TYPES[key] = collections.namedtuple("State", key)
    return _STATE_TYPES[key]
