"""The build-dataset component's step (initial mode): page records + labels -> splits."""

from __future__ import annotations

from docloop.config import load_config
from docloop.datasets.initial import build_initial_dataset
from docloop.documents.examples import DatasetManifest
from docloop.storage import Storage


def run(
    pages_dir: str,
    labels_uri: str,
    output_dir: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.2,
) -> DatasetManifest:
    """Join the page records with their labels and write train / val / holdout.

    Args:
        pages_dir: the preprocess output (page records).
        labels_uri: the labels JSONL; the config's ``schema`` section names the types and fields.
        output_dir: the component's ``dataset`` path.
        seed: fixes the split.
        val_fraction: share of validation.
        holdout_fraction: share of the frozen holdout.

    Returns:
        The dataset's manifest (digests and counts for the outputs).
    """
    config = load_config()
    return build_initial_dataset(
        pages_dir,
        labels_uri,
        output_dir,
        seed=seed,
        val_fraction=val_fraction,
        holdout_fraction=holdout_fraction,
        storage=Storage(config.storage),
        schema=config.label_schema,
    )
