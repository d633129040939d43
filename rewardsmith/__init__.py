"""rewardsmith: reward functions for RL, written as code, validated, trained together, selected by fitness."""

__version__ = "0.1.0"
