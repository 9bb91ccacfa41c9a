"""The plan-shards component."""

from components.plan_shards.component import plan_shards

__all__ = ["plan_shards"]
