"""Figures that cannot be right: a generation whose trained policies all behave the same.

Different rewards and different seeds give different policies, and different policies visit
different states. Where every trained member's fitness and episode-length curves and the ranges of
every state field in its evaluation episodes (a seed's members start from the same states)
agree to the last bit, the policies do not depend on what they were taught (an action that does not
reach the environment, a fitness that ignores the policy): the ranking of that generation means
nothing, and the run says so instead of naming a winner.
"""

from __future__ import annotations

from rewardsmith.records import Candidate


def identical_policies(cands: list[Candidate]) -> bool:
    """True when at least two rewards trained and, seed by seed, every member's evaluation is
    bit-identical (members of one seed share their random streams: with policies that do not
    matter, they see the same episodes)."""
    by_seed: dict[int, set] = {}
    rewards = 0
    for c in cands:
        members = [m for m in c.members if m.ok] if c.status == "trained" else []
        rewards += bool(members)
        for m in members:
            by_seed.setdefault(m.seed, set()).add(
                (tuple(m.fitness_curve), tuple(m.length_curve), repr(m.eval.get("fields"))))
    return rewards >= 2 and bool(by_seed) and all(len(v) == 1 for v in by_seed.values())


def identical_message(gen: int, cands: list[Candidate]) -> str:
    n = sum(1 for c in cands if c.status == "trained")
    return (f"warning: generation {gen}: every trained member ({n} rewards) has bit-identical evaluation curves: "
            "the policies do not depend on their rewards (does the action reach the environment? see the task's "
            "schema.action); this generation's ranking is not a search result")
