"""The offline proposer: a program search over reward terms derived from the state schema.

It is not an LLM. It writes real reward source code in the same contract, which goes through the
same validation and training as LLM code. Generation 0 samples random programs of 1-3 terms;
later generations mutate and recombine the fittest programs, steered by each term's component
statistics (terms whose component moves against fitness are dropped or damped first).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random

import numpy as np

from rewardsmith.propose.base import Proposal, ProposalContext, Proposer
from rewardsmith.propose.relevance import Relevance, relevance
from rewardsmith.records import Candidate
from rewardsmith.tasks.schema import Field, StateSchema

MAX_TERMS = 6
MAX_INDEXED = 4  # vector fields up to this size get terms on single components

@dataclasses.dataclass
class Term:
    kind: str
    field: str = ""
    weight: float = 1.0
    sign: float = 1.0
    temperature: float = 0.3
    # one component of a small vector field (torso_pos[2] is height, torso_ang_vel[2] the turn
    # rate); None: the term reads the whole field (its mean)
    index: int | None = None
    # "beyond": the level, as a fraction of the field's range from the side the sign points to
    level: float = 0.9
    # bounded bonuses rendered as "bonus - its maximum" (never positive): set where reaching the goal
    # ends the episode, so that ending sooner never costs the agent reward
    shifted: bool = False

    @property
    def name(self) -> str:
        if not self.field:
            return self.kind
        return f"{self.kind}_{self.field}" + ("" if self.index is None else str(self.index))

    def read(self, which: str = "next_state") -> str:
        return f"{which}.{self.field}" + ("" if self.index is None else f"[{self.index}]")


def _usable_fields(schema: StateSchema) -> list[Field]:
    return [f for f in schema.fields if f.rewardable]


_PRIOR = {"near_zero": 0.3, "sq_penalty": 0.2, "abs_penalty": 0.15, "value": 0.15, "magnitude": 0.1,
          "progress": 0.1, "rise": 0.05}
_SIGNED = ("value", "progress", "rise")  # kinds whose sign a mutation may flip


def _random_term(rng: random.Random, schema: StateSchema, field: Field | None = None,
                 rel: Relevance | None = None, index: int | None = None, goal: bool = False,
                 kind: str | None = None) -> Term:
    """A random term. ``rel`` weights fields and components by how much the description talks
    about them; ``goal`` (a term on what the description points at most) draws its kind among
    those that fit the goal's cue (more of it, reach it, hold it) and reads the given ``index``."""
    fields = _usable_fields(schema)
    roll = rng.random()
    if field is None and roll < 0.08:
        return Term("alive", weight=_rand_weight(rng))
    if field is None and roll < 0.14 and schema.action.kind == "continuous":
        return Term("action_cost", weight=_rand_weight(rng) * 0.1)
    top = rel.top if rel is not None and rel.top > 0 else 0.0
    # angles usually carry the goal (upright, heading): tried more often; so are the fields the
    # description names
    weights = [(3.0 if f.kind == "angle" else 1.0) * (1.0 + 3.0 * rel.field_weight(f.name) / top if top else 1.0)
               for f in fields]
    f = field or rng.choices(fields, weights)[0]
    # prior: shaping terms that are bounded and peak at a set point are tried most often
    prior = dict(_PRIOR)
    if f.kind == "angle":
        prior["upright"] = 0.25
    if f.low is not None and f.high is not None:
        prior["beyond"] = 0.15  # a bonus for being past a level of the field: a goal region
    if _is_vector(f):
        # the length of a vector (an offset's distance, a speed): a penalty whose pull does not
        # fade far from zero, unlike the per-component set-point terms
        prior["distance"] = 0.15
    if goal and rel is not None and set(rel.goal_kinds) & set(prior):
        prior = {k: p for k, p in prior.items() if k in rel.goal_kinds}
    drawn = rng.choices(list(prior), list(prior.values()))[0]
    kind = kind if kind in prior else drawn  # a kind asked for where the field allows it
    # a small vector (a position, a velocity) mixes axes that mean different things: most terms on
    # one read a single component of it, the ones the description names most often
    if not goal and kind != "distance" and _indexable(f) and rng.random() < 0.7:
        comp = rel.component_weights(f.name, f.shape[0]) if rel is not None else [0.0] * f.shape[0]
        index = rng.choices(range(f.shape[0]), [1.0 + 3.0 * c / max(max(comp), 1e-9) for c in comp])[0]
    return Term(kind, f.name, weight=_rand_weight(rng), sign=rng.choice([1.0, -1.0]),
                temperature=rng.choice([0.05, 0.1, 0.2, 0.3, 0.5, 1.0]), index=index,
                level=rng.choice([0.6, 0.75, 0.9]))


def _is_vector(f: Field) -> bool:
    return len(f.shape) == 1 and f.shape[0] > 1


def _indexable(f: Field) -> bool:
    return _is_vector(f) and f.shape[0] <= MAX_INDEXED


def _rand_weight(rng: random.Random) -> float:
    return float(round(10 ** rng.uniform(-1, 1), 3))


def _expr(term: Term, schema: StateSchema) -> str:
    if term.kind == "alive":
        # where reaching the goal ends the episode a per-step bonus would pay for not reaching it:
        # there the same term is a per-step cost
        return f"jnp.float32({-term.weight if term.shifted else term.weight:.4g})"
    if term.kind == "action_cost":
        return f"-{term.weight:.4g} * jnp.sum(jnp.square(action))"
    f = schema.field(term.field)
    vec = bool(f.shape) and term.index is None
    scale = f.scale

    def agg(e: str) -> str:
        return f"jnp.mean({e})" if vec else e

    v = f"{term.read()} / {scale:.4g}"
    less = " - 1.0" if term.shifted else ""
    if term.kind == "near_zero":
        return f"{term.weight:.4g} * {agg(f'(jnp.exp(-jnp.abs({v}) / {term.temperature:.4g}){less})')}"
    if term.kind == "abs_penalty":
        return f"-{term.weight:.4g} * {agg(f'jnp.abs({v})')}"
    if term.kind == "sq_penalty":
        return f"-{term.weight:.4g} * {agg(f'jnp.square({v})')}"
    if term.kind == "distance":
        # Euclidean length (the absolute value where the term reads one component)
        return f"-{term.weight:.4g} * jnp.sqrt(jnp.sum(jnp.square({term.read()}))) / {scale:.4g}"
    if term.kind == "value":
        return f"{term.sign * term.weight:.4g} * {agg(f'({v})')}"
    if term.kind == "magnitude":
        return f"{term.weight:.4g} * {agg(f'jnp.abs({v})')}"
    # change per step: per second where the schema has the control step (a position's progress
    # is then its velocity, on the same scale as an alive bonus whatever the step length); else
    # per step, times 10
    per, gain = (" / next_state.dt", 1.0) if _has_dt(schema) else ("", 10.0)
    if term.kind == "progress":
        d = f"({term.read()} - {term.read('state')}){per} / {scale:.4g}"
        return f"{term.sign * term.weight * gain:.4g} * {agg(f'({d})')}"
    if term.kind == "rise":
        # rectified progress: paid for every increase (decrease, with the sign), never charged for
        # the way back (a jump's climb)
        up, down = (term.read(), term.read("state")) if term.sign > 0 else (term.read("state"), term.read())
        return f"{term.weight * gain:.4g} * {agg(f'jnp.maximum(({up} - {down}){per} / {scale:.4g}, 0.0)')}"
    if term.kind == "upright":
        return f"{term.weight:.4g} * {agg(f'(jnp.cos({term.read()}){less})')}"
    if term.kind == "beyond":
        lo, hi = float(f.low), float(f.high)  # type: ignore[arg-type]
        if term.sign > 0:
            cond = f"{term.read()} > {lo + term.level * (hi - lo):.4g}"
        else:
            cond = f"{term.read()} < {hi - term.level * (hi - lo):.4g}"
        inside, outside = ("0.0", "-1.0") if term.shifted else ("1.0", "0.0")
        return f"{term.weight:.4g} * {agg(f'jnp.where({cond}, {inside}, {outside})')}"
    raise ValueError(f"unknown term kind {term.kind}")


EFFORT = 0.5  # what a full-scale action costs per step in an effort probe, against a unit goal term


def effort_weight(schema: StateSchema) -> float:
    """The action-cost weight at which every action dimension at full scale costs ``EFFORT`` in all."""
    a = schema.action
    return float(round(EFFORT / (a.size * max(abs(a.low), abs(a.high)) ** 2), 4))


def _has_dt(schema: StateSchema) -> bool:
    return "dt" in schema.names and schema.field("dt").kind == "constant"


def render(terms: list[Term], schema: StateSchema, header: str) -> str:
    names: list[str] = []
    lines = []
    for t in terms:
        name = t.name
        while name in names:
            name += "_b"
        names.append(name)
        lines.append(f"    {name} = {_expr(t, schema)}")
    total = " + ".join(names)
    comps = ", ".join(f'"{n}": {n}' for n in names)
    body = "\n".join(lines)
    doc = "\n".join(header.strip().splitlines())
    return (f'"""{doc}"""\nimport jax.numpy as jnp\n\n\ndef compute_reward(state, action, next_state):\n'
            f"{body}\n    total = {total}\n    return total, {{{comps}}}\n")


def _dedupe(terms: list[Term]) -> list[Term]:
    """One term per (kind, field): a repeated term is dropped (the first one is kept)."""
    out: dict[str, Term] = {}
    for t in terms:
        out.setdefault(t.name, t)
    return list(out.values())


def _signature(terms: list[Term]) -> str:
    return json.dumps([dataclasses.asdict(t) for t in terms], sort_keys=True)


class OfflineProposer(Proposer):
    label = "offline proposer (program search over state-schema terms; no LLM)"
    origin = "offline"

    def __init__(self, fresh_fraction: float = 0.25):
        self.fresh_fraction = fresh_fraction

    def propose(self, ctx: ProposalContext) -> list[Proposal]:
        rng = random.Random(f"{ctx.seed}-{ctx.generation}-{len(ctx.history)}")
        schema = ctx.task.schema
        rel = relevance(ctx.task.description, schema)
        seen = {c.meta.get("signature") for c in ctx.history if c.meta.get("signature")}
        parents = _rank_parents(ctx.history, ranking=ctx.ranking)
        out: list[Proposal] = []
        n_fresh = ctx.k if not parents else max(1, round(ctx.k * self.fresh_fraction))
        # part of the first generation probes what the description points at most, one term
        # alone per program, rewarded in the goal's direction (Relevance.probes)
        leads = rel.probes(ctx.k) if not parents else []
        attempts = 0
        n_started, offset = 0, rng.randrange(len(_usable_fields(schema)))
        while len(out) < ctx.k and attempts < 50 * ctx.k:
            attempts += 1
            if len(out) < ctx.k - n_fresh and parents:
                proposal = self._child(rng, ctx, parents, rel)
            elif n_started < len(leads) and len(out) < len(leads):
                (name, index), kind = leads[n_started]
                if kind is None and index is None and "distance" in rel.goal_kinds and _is_vector(schema.field(name)):
                    kind = "distance"  # to hold or reach a vector's set point is to shrink its length
                goal = _random_term(rng, schema, schema.field(name), rel, index=index, goal=True, kind=kind)
                # unit weight: as large as the alive bonus falling adds; in the direction the goal names
                goal.sign, goal.weight = rel.sign(name), 1.0
                n_started += 1
                what = f"{goal.name}: the component the description names most, alone"
                terms = [goal]  # a clean probe of what the description asks for (later generations add to it)
                if rel.goal == "hold" and rel.effort and schema.action.kind == "continuous":
                    # holding a set point "with little effort" pays that effort on every step held:
                    # the probe carries the action cost the goal sentence asks for
                    terms.append(Term("action_cost", weight=effort_weight(schema)))
                    what = f"{goal.name}: the component the description names most, with the action cost its goal asks for"
                proposal = (terms, [], what)
            else:
                # fresh programs cover the schema: each starts from the next field in turn
                fields = _usable_fields(schema)
                primary = fields[(n_started + offset) % len(fields)]
                n_started += 1
                terms = _dedupe([_random_term(rng, schema, primary, rel)]
                                + [_random_term(rng, schema, rel=rel) for _ in range(rng.randint(0, 2))])
                proposal = (terms, [], "random program from schema terms")
            terms, parent_ids, what = proposal
            if ctx.constraints:
                terms, applied = apply_constraints(terms, ctx.constraints, schema)
                if applied:
                    what += "; human feedback: " + ", ".join(applied)
            terms = respect_termination(terms, ctx.task.termination)
            sig = _signature(terms)
            if sig in seen or not terms:
                continue
            seen.add(sig)
            header = (f"Reward written by rewardsmith's offline proposer (a program search over state-schema\n"
                      f"terms), not by an LLM. Generation {ctx.generation}: {what}.")
            meta = {"terms": [dataclasses.asdict(t) for t in terms], "signature": sig}
            if ctx.constraints:
                meta["constraints"] = list(ctx.constraints)
            if ctx.human_feedback:
                meta["human_feedback"] = ctx.human_feedback
            out.append(Proposal(source=render(terms, schema, header), note=what, parents=parent_ids, meta=meta))
        return out

    def _child(self, rng: random.Random, ctx: ProposalContext, parents: list[Candidate], rel: Relevance):
        # tournament among the fittest: rank-weighted choice
        weights = [1.0 / (i + 1) for i in range(len(parents))]
        p = rng.choices(parents, weights)[0]
        terms = [Term(**t) for t in p.meta["terms"]]
        influence = _term_influence(p)
        op = rng.choices(["weight", "temperature", "add", "remove", "crossover", "sign", "component"],
                         [0.3, 0.15, 0.2, 0.15, 0.12, 0.08, 0.08])[0]
        vector_terms = [t for t in terms if t.field and _indexable(ctx.task.schema.field(t.field))]
        parent_ids = [p.id]
        if op == "remove" and len(terms) > 1:
            # drop the term that works against fitness most (lowest influence), with some noise
            order = sorted(range(len(terms)), key=lambda i: influence.get(terms[i].name, 0.0) + rng.gauss(0, 0.2))
            gone = terms.pop(order[0])
            what = f"removed {gone.name} from {p.id}"
        elif op == "add" and len(terms) < MAX_TERMS:
            t = _random_term(rng, ctx.task.schema, rel=rel)
            terms = _dedupe(terms + [t])
            what = f"added {t.name} to {p.id}"
        elif op == "crossover" and len(parents) > 1:
            q = rng.choice([c for c in parents if c.id != p.id])
            extra = [Term(**t) for t in q.meta["terms"]]
            pool = terms + [t for t in extra if t.name not in {x.name for x in terms}]
            rng.shuffle(pool)
            terms = pool[: rng.randint(1, min(MAX_TERMS, len(pool)))]
            parent_ids.append(q.id)
            what = f"recombined {p.id} and {q.id}"
        elif op == "temperature" and any(t.kind == "near_zero" for t in terms):
            t = rng.choice([t for t in terms if t.kind == "near_zero"])
            t.temperature = float(round(min(2.0, max(0.02, t.temperature * math.exp(rng.gauss(0, 0.6)))), 3))
            what = f"set temperature of {t.name} to {t.temperature:g} in {p.id}"
        elif op == "sign" and any(t.kind in _SIGNED for t in terms):
            t = rng.choice([t for t in terms if t.kind in _SIGNED])
            t.sign = -t.sign
            what = f"flipped the sign of {t.name} in {p.id}"
        elif op == "component" and vector_terms:
            t = rng.choice(vector_terms)
            size = ctx.task.schema.field(t.field).shape[0]
            t.index = rng.choice([i for i in [None, *range(size)] if i != t.index])
            what = f"moved {t.kind} on {t.field} to " + ("the whole field" if t.index is None
                                                         else f"component {t.index}") + f" in {p.id}"
            terms = _dedupe(terms)
        else:
            # damp terms that move against fitness, boost those that move with it
            i = rng.randrange(len(terms))
            t = terms[i]
            infl = influence.get(t.name, 0.0)
            factor = math.exp(rng.gauss(0.3 * np.sign(infl), 0.5))
            t.weight = float(round(min(100.0, max(0.001, t.weight * factor)), 4))
            what = f"scaled {t.name} by {factor:.2f} in {p.id}"
        return copy.deepcopy(terms), parent_ids, what


_BOUNDED_BONUSES = ("alive", "near_zero", "upright", "beyond")
_PENALTY_KINDS = ("sq_penalty", "abs_penalty", "action_cost", "distance")
# kinds never below zero where falling ends the episode (no shift): increases, magnitudes, bonuses
_NEVER_NEGATIVE = ("rise", "magnitude", "near_zero", "beyond", "alive")


def respect_termination(terms: list[Term], termination: str) -> list[Term]:
    """What the environment's own termination means decides the sign of the per-step reward.

    * ``success`` (reaching the goal ends the episode): bounded bonuses become "bonus - its
      maximum", so every step before the goal costs something and ending sooner is never worse.
    * ``failure`` (falling ends it): a program that can pay less than nothing on a step would teach
      the agent to fall early; such a program keeps an alive bonus at least as large as its penalty
      weights. A program of terms that never go below zero (an increase, a bonus) gets none: every
      step already pays, and a bonus for merely staying up would outweigh the goal (measured on
      hopper_jump: upward speed alone jumps to 1.84 m, with a unit alive bonus 1.36 m, the hopper
      standing still is 1.25 m).
    """
    terms = copy.deepcopy(terms)
    for t in terms:
        t.shifted = termination == "success" and t.kind in _BOUNDED_BONUSES
    if (termination == "failure" and not any(t.kind == "alive" for t in terms)
            and any(t.kind not in _NEVER_NEGATIVE for t in terms)):
        penalty = sum(t.weight for t in terms if t.kind in _PENALTY_KINDS)
        terms.append(Term("alive", weight=float(round(max(1.0, penalty), 3))))
    return terms


def _rank_parents(history: list[Candidate], top: int = 6, ranking: list[str] | None = None) -> list[Candidate]:
    """The fittest programs, or, when the run ranks by human preference too, in that order."""
    pool = [c for c in history if c.fitness is not None and "terms" in c.meta]
    pool.sort(key=lambda c: c.fitness, reverse=True)
    if ranking:
        pos = {cid: i for i, cid in enumerate(ranking)}
        pool.sort(key=lambda c: pos.get(c.id, len(pos)))
    return pool[:top]


_PENALTIES = ("sq_penalty", "abs_penalty", "near_zero")


def apply_constraints(terms: list[Term], constraints: list[dict], schema: StateSchema) -> tuple[list[Term], list[str]]:
    """Make ``terms`` obey term constraints from human feedback; returns (terms, what was changed)."""
    terms = copy.deepcopy(terms)
    applied: list[str] = []
    fields = {f.name for f in schema.fields}
    for c in constraints:
        field, direction = c.get("field"), c.get("direction")
        if field == "action":
            if schema.action.kind == "continuous" and not any(t.kind == "action_cost" for t in terms):
                terms.append(Term("action_cost", weight=0.1))
                applied.append("added an action cost")
            continue
        if field not in fields:
            continue
        on_field = [t for t in terms if t.field == field]
        if direction == "penalize":
            # a bonus for magnitude or high values of the field works against the request
            dropped = [t for t in on_field if t.kind == "magnitude" or (t.kind == "value" and t.sign > 0)]
            terms = [t for t in terms if t not in dropped]
            if not any(t.kind in _PENALTIES for t in on_field):
                terms.append(Term("sq_penalty", field, weight=1.0))
                applied.append(f"penalised {field}")
            applied += [f"dropped {t.name}" for t in dropped]
        elif direction == "encourage":
            dropped = [t for t in on_field if t.kind in _PENALTIES]
            terms = [t for t in terms if t not in dropped]
            flipped = [t for t in on_field if t.kind == "value" and t.sign < 0]
            for t in flipped:
                t.sign = 1.0
            if not any(t.kind in ("value", "magnitude") for t in terms if t.field == field):
                terms.append(Term("value", field, weight=1.0, sign=1.0))
                applied.append(f"rewarded {field}")
            applied += [f"dropped {t.name}" for t in dropped] + [f"flipped {t.name} to reward it" for t in flipped]
    return _dedupe(terms)[: MAX_TERMS + len(constraints)], applied


def _term_influence(c: Candidate) -> dict[str, float]:
    """Correlation of each component with fitness across the checkpoints, averaged over seeds."""
    acc: dict[str, list[float]] = {}
    for m in c.members:
        fit = np.array([np.nan if v is None else v for v in m.fitness_curve], float)
        for name, curve in m.component_curves.items():
            comp = np.array([np.nan if v is None else v for v in curve], float)
            ok = np.isfinite(fit) & np.isfinite(comp)
            if ok.sum() >= 3 and np.std(fit[ok]) > 0 and np.std(comp[ok]) > 0:
                acc.setdefault(name, []).append(float(np.corrcoef(fit[ok], comp[ok])[0, 1]))
    return {k: float(np.mean(v)) for k, v in acc.items()}
