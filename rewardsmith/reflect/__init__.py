"""Reflection: what the next generation is told about the last one (Eureka-style component tables)."""

from rewardsmith.reflect.text import candidate_table, generation_reflection, reflection_levels

__all__ = ["candidate_table", "generation_reflection", "reflection_levels"]
