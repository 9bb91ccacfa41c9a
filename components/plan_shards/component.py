"""plan-shards: the shard indices a sharded preprocess fans out over."""

from typing import List  # noqa: UP035 (KFP reads typing.List)

from kfp import dsl

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def plan_shards(num_shards: int) -> List[int]:  # noqa: UP006 (KFP needs typing.List)
    """List the shard indices ``0 .. num_shards - 1`` for ``dsl.ParallelFor``.

    Pair it with preprocess (``shard_index`` from the loop, the same ``num_shards``) and
    merge-pages (``dsl.Collected`` of the shards' ``pages``).

    Args:
        num_shards: How many preprocess tasks to run in parallel (1 to 256).

    Returns:
        The shard indices.
    """
    from docloop.steps import plan_shards as step

    return step.run(num_shards)
