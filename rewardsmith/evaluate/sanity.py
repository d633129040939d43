"""Figures that cannot be right: a generation whose trained policies all behave the same.

Different rewards and different seeds give different policies, and different policies give
different evaluation curves. Where every trained member's fitness and episode-length curves agree
to the last bit, the policies do not depend on what they were taught (an action that does not
reach the environment, a fitness that ignores the policy): the ranking of that generation means
nothing, and the run says so instead of naming a winner.
"""

from __future__ import annotations

from rewardsmith.records import Candidate


def identical_policies(cands: list[Candidate]) -> bool:
    """True when at least two members trained and every one's evaluation curves are bit-identical."""
    curves = {(tuple(m.fitness_curve), tuple(m.length_curve))
              for c in cands if c.status == "trained" for m in c.members if m.ok}
    members = sum(1 for c in cands if c.status == "trained" for m in c.members if m.ok)
    return members >= 2 and len(curves) == 1


def identical_message(gen: int, cands: list[Candidate]) -> str:
    n = sum(1 for c in cands if c.status == "trained")
    return (f"warning: generation {gen}: every trained member ({n} rewards) has bit-identical evaluation curves: "
            "the policies do not depend on their rewards (does the action reach the environment? see the task's "
            "schema.action); this generation's ranking is not a search result")
