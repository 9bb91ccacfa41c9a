"""merge-pages: the page records of sharded preprocess tasks -> one page-record dataset."""

from typing import List, NamedTuple  # noqa: UP035 (KFP reads typing.List)

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def merge_pages(
    shards: Input[List[Dataset]],  # noqa: UP006 (KFP needs typing.List)
    pages: Output[Dataset],
    quarantine: Output[Artifact],
) -> NamedTuple("MergeOutputs", [("processed", int), ("quarantined", int)]):
    """Merge the outputs of sharded preprocess tasks into one page-record dataset.

    Page records and per-document manifests are copied (page images stay where each shard wrote
    them); quarantine reports are concatenated and the counts added up. Fails when two shards
    hold the same document or were processed with different settings.

    Args:
        shards: The ``pages`` outputs of the preprocess tasks (``dsl.Collected``).
        pages: Output. The merged page records, same layout as one preprocess output.
        quarantine: Output. Every input set aside by any shard, one JSON object per line.

    Returns:
        processed: Documents turned into page records across the shards.
        quarantined: Inputs set aside across the shards.
    """
    from docloop.steps import merge_pages as step

    result = step.run([shard.path for shard in shards], pages.path, quarantine.path)
    pages.metadata.update(result.to_dict())
    outputs = NamedTuple("MergeOutputs", [("processed", int), ("quarantined", int)])  # noqa: UP014
    return outputs(result.processed, result.quarantined)
