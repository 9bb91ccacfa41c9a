"""The preprocess component's step: configuration + parameters -> a preprocess run."""

from __future__ import annotations

from pathlib import Path

from docloop.config import load_config
from docloop.documents.preprocess import PreprocessResult, Shard, preprocess
from docloop.storage import Storage, join


def run(
    input_uri: str,
    output_dir: str,
    quarantine_path: str,
    dpi: int,
    workers: int,
    force_ocr: bool,
    shard_index: int = 0,
    num_shards: int = 1,
) -> PreprocessResult:
    """Render, OCR and quarantine the documents under ``input_uri`` into ``output_dir``.

    Args:
        input_uri: documents to process.
        output_dir: the component's ``pages`` Dataset path (a local or FUSE-mounted folder).
        quarantine_path: the component's ``quarantine`` Artifact path (a JSONL file).
        dpi: render resolution, overriding the config.
        workers: OCR processes (0: config or one per core).
        force_ocr: OCR every page.
        shard_index: which shard of the inputs this task processes.
        num_shards: how many shards the inputs are split into.

    Returns:
        The run's result (its counts go into the artifact metadata).
    """
    settings = load_config()
    config = settings.preprocess.model_copy(update={"dpi": dpi, "force_ocr": force_ocr})
    storage = Storage(settings.storage)
    result = preprocess(
        input_uri,
        output_dir,
        config,
        storage,
        workers=workers or None,
        shard=Shard(shard_index, num_shards),
    )
    Path(quarantine_path).parent.mkdir(parents=True, exist_ok=True)
    Path(quarantine_path).write_text(
        storage.read_text(join(output_dir, "quarantine.jsonl")), encoding="utf-8"
    )
    return result
