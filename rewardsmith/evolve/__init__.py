from rewardsmith.evolve.loop import run

__all__ = ["run"]
