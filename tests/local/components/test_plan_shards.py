"""plan-shards through kfp.local: the indices a ``dsl.ParallelFor`` over preprocess shards takes."""

import pytest

from tests.loop import World

pytestmark = pytest.mark.local


def test_plan_shards_lists_every_index(world: World) -> None:
    from components.plan_shards import plan_shards

    assert plan_shards(num_shards=3).output == [0, 1, 2]


def test_plan_shards_refuses_zero_shards(world: World) -> None:
    from components.plan_shards import plan_shards

    with pytest.raises(RuntimeError, match="FAILURE"):
        plan_shards(num_shards=0)
