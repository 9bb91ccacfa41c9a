"""merge-pages through kfp.local: two preprocess shards merge back into one page-record dataset."""

from pathlib import Path

import pytest

from tests import documents
from tests.loop import World

pytestmark = pytest.mark.local


def test_two_shards_merge_into_one_run(world: World) -> None:
    from kfp import dsl

    from components.merge_pages import merge_pages
    from components.preprocess import preprocess

    folder = world.root / "in"
    for index in range(3):
        pdf = documents.born_digital_pdf([[f"Referral letter {index}", "Patient: Jane Doe"]])
        documents.write(folder, f"letter{index}.pdf", pdf)
    documents.write(folder, "locked.pdf", documents.born_digital_pdf([["x"]], encrypt="pw"))

    @dsl.pipeline(name="sharded-preprocess")
    def sharded(input_uri: str) -> dsl.Dataset:
        with dsl.ParallelFor(items=[0, 1]) as shard:
            pages = preprocess(input_uri=input_uri, workers=1, shard_index=shard, num_shards=2)
        return merge_pages(shards=dsl.Collected(pages.outputs["pages"])).outputs["pages"]

    merged = sharded(input_uri=str(folder)).output

    assert merged.metadata["processed"] == 3 and merged.metadata["quarantined"] == 1
    assert len(list((Path(merged.path) / "pages").glob("*.parquet"))) == 3
