"""Sharded preprocess: shards never overlap, cover every input, and merge back into one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docloop.documents.preprocess import (
    PreprocessResult,
    Shard,
    merge_page_shards,
    preprocess,
    read_page_records,
)
from docloop.errors import InvalidInput
from docloop.storage import Storage
from tests.unit.test_preprocess import CONFIG, EXPECTED_QUARANTINE, GOOD, make_batch

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PreprocessResult]]:
    root = tmp_path_factory.mktemp("sharded")
    make_batch(root / "in")
    results = [
        preprocess(
            str(root / "in"),
            str(root / f"shard{i}"),
            CONFIG,
            Storage(),
            workers=1,
            shard=Shard(i, 3),
        )
        for i in range(3)
    ]
    return root, results


def test_shards_partition_the_inputs(sharded: tuple[Path, list[PreprocessResult]]) -> None:
    root, results = sharded
    inputs = len(list((root / "in").iterdir()))
    for result in results:
        assert result.other_shards + result.processed + result.quarantined + result.ignored == (
            inputs
        )
    assert sum(r.processed for r in results) == len(GOOD)
    assert sum(r.quarantined for r in results) == len(EXPECTED_QUARANTINE)
    assert sum(r.ignored for r in results) == 1
    assert sum(1 for r in results if r.processed) >= 2  # the work really is spread


def test_merge_equals_one_unsharded_run(
    sharded: tuple[Path, list[PreprocessResult]], tmp_path: Path
) -> None:
    root, _ = sharded
    storage = Storage()
    merged = merge_page_shards([str(root / f"shard{i}") for i in range(3)], str(tmp_path / "m"))
    whole = preprocess(str(root / "in"), str(tmp_path / "whole"), CONFIG, storage, workers=1)
    assert (merged.processed, merged.quarantined, merged.quarantined_pages) == (
        whole.processed,
        whole.quarantined,
        whole.quarantined_pages,
    )
    merged_records = read_page_records(storage, str(tmp_path / "m"))
    whole_records = read_page_records(storage, str(tmp_path / "whole"))
    assert [(r.doc_id, r.page, r.words) for r in merged_records] == [
        (r.doc_id, r.page, r.words) for r in whole_records
    ]
    for record in merged_records:  # images stay in the shard that rendered them
        assert Path(record.image_uri.removeprefix("file://")).is_file()
    codes = [json.loads(line)["code"] for line in (tmp_path / "m/quarantine.jsonl").open()]
    assert sorted(codes) == sorted(
        json.loads(line)["code"] for line in (tmp_path / "whole/quarantine.jsonl").open()
    )
    assert json.loads((tmp_path / "m/summary.json").read_text())["processed"] == len(GOOD)


def test_rerunning_a_shard_keeps_its_assignment(
    sharded: tuple[Path, list[PreprocessResult]],
) -> None:
    root, results = sharded
    again = preprocess(
        str(root / "in"), str(root / "shard1"), CONFIG, Storage(), workers=1, shard=Shard(1, 3)
    )
    assert again.processed == 0
    assert again.skipped == results[1].processed
    assert again.other_shards == results[1].other_shards


def test_an_empty_shard_is_not_an_error(tmp_path: Path) -> None:
    from tests import documents

    documents.write(tmp_path / "in", "one.pdf", documents.born_digital_pdf([["only document"]]))
    outcomes = [
        preprocess(
            str(tmp_path / "in"), str(tmp_path / f"s{i}"), CONFIG, Storage(), shard=Shard(i, 2)
        )
        for i in range(2)
    ]
    assert sorted(o.processed for o in outcomes) == [0, 1]


def test_overlapping_shards_are_refused(
    sharded: tuple[Path, list[PreprocessResult]], tmp_path: Path
) -> None:
    root, _ = sharded
    with pytest.raises(InvalidInput, match="in two shards"):
        merge_page_shards([str(root / "shard0"), str(root / "shard0")], str(tmp_path / "m"))
    with pytest.raises(InvalidInput, match="not a preprocess output"):
        merge_page_shards([str(tmp_path)], str(tmp_path / "m2"))


def test_bad_shard_numbers_are_refused() -> None:
    with pytest.raises(InvalidInput, match="0 <= index < count"):
        Shard(2, 2)
