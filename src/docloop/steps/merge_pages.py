"""The merge-pages component's step: sharded preprocess outputs -> one page-record dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from docloop.config import load_config
from docloop.documents.preprocess import PreprocessResult, merge_page_shards
from docloop.storage import Storage


def run(shard_dirs: Sequence[str], output_dir: str, quarantine_path: str) -> PreprocessResult:
    """Merge the shards into ``output_dir`` and write the merged quarantine report.

    Args:
        shard_dirs: the preprocess tasks' ``pages`` folders.
        output_dir: the component's ``pages`` Dataset path.
        quarantine_path: the component's ``quarantine`` Artifact path (JSONL).

    Returns:
        The merged result (counts for the artifact metadata).
    """
    result = merge_page_shards(list(shard_dirs), output_dir, Storage(load_config().storage))
    Path(quarantine_path).parent.mkdir(parents=True, exist_ok=True)
    Path(quarantine_path).write_text(
        "".join(entry.model_dump_json() + "\n" for entry in result.quarantine), encoding="utf-8"
    )
    return result
