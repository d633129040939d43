from rewardsmith.evolve.loop import resume, run

__all__ = ["resume", "run"]
