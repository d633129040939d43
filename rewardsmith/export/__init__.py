"""Writing rewards out of a run: ``best_reward.py`` is standalone (imports only jax.numpy)."""

from rewardsmith.export.module import render_standalone, write_best_reward

__all__ = ["render_standalone", "write_best_reward"]
