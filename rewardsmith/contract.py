"""The reward contract, in one place: what a candidate must define and what it may return.

A candidate is Python source defining ``compute_reward(state, action, next_state)`` that returns
``(total, components)``: a scalar for this one transition and a dict of at most ``MAX_COMPONENTS``
named scalars (the trainer gives every candidate the same fixed component slots, so a population of
different rewards is one program)."""

REWARD_FN = "compute_reward"
REWARD_PARAMS = ("state", "action", "next_state")
MAX_COMPONENTS = 8
