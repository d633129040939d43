"""A factory that returns a gymnax Environment alone, without its params (a test input)."""
from envs.examples.point_mass import PointMass


def make():
    return PointMass()
