"""The plan-shards component's step: the shard indices for ``dsl.ParallelFor``."""

from __future__ import annotations

from docloop.errors import InvalidInput

MAX_SHARDS = 256


def run(num_shards: int) -> list[int]:
    """``[0, .., num_shards - 1]``.

    Raises:
        InvalidInput: ``num_shards`` is outside 1..256.
    """
    if not 1 <= num_shards <= MAX_SHARDS:
        raise InvalidInput(f"num_shards must be between 1 and {MAX_SHARDS}, not {num_shards}")
    return list(range(num_shards))
