"""rewardsmith: reward functions for RL, written as code, validated, trained together, selected by fitness."""

__version__ = "0.1.0"


def load_reward(path_or_run_dir, task=None, candidate=None, limits=None):
    """Load a designed reward (file, run directory, or a run's candidate id), validated as in the search:
    nothing from the file runs in this process before it passed the gate and a limited, separate check."""
    from rewardsmith.export.loaded import load_reward as _load

    return _load(path_or_run_dir, task=task, candidate=candidate, limits=limits)


__all__ = ["load_reward", "__version__"]
