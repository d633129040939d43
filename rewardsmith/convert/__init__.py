"""Bring rewards written elsewhere into the reward contract (``rewardsmith-import``)."""

from rewardsmith.convert.eureka import ConvertError, convert

__all__ = ["ConvertError", "convert"]
