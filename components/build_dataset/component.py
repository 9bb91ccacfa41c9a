"""build-dataset: labelled page records -> train / val / frozen holdout, split by document."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_dataset(
    pages: Input[Dataset],
    labels_uri: str,
    dataset: Output[Dataset],
    seed: int = 0,
    val_fraction: float = 0.15,
    holdout_fraction: float = 0.2,
    labels_digest: str = "",
) -> NamedTuple("DatasetOutputs", [("digest", str), ("holdout_digest", str), ("train", int)]):
    """Join page records with labels and split them by document, stratified by type.

    A document lands in exactly one split; within each document type the split follows a draw
    fixed by (seed, document id), so the same inputs always give the same splits. The holdout is
    frozen and versioned: its digest is in the manifest, and later candidates are scored on
    exactly these documents.

    Args:
        pages: Page records from preprocess (or merge-pages).
        labels_uri: JSON lines, one per document, naming it by ``doc_id`` (sha256 of the file)
            or ``source`` (its path below the preprocess input), with its ``doc_type`` and
            ``entities`` (field, value, page, words with boxes) and/or ``fields`` (``{field:
            value}``, located among the OCR words). The config's ``schema`` section names the
            document types and fields (empty: taken from the labels).
        dataset: Output. ``train.parquet``, ``val.parquet``, ``holdout.parquet`` (one example per
            document: words, boxes, pages, BIO tags, type) and ``manifest.json`` (label sets,
            counts per split/class/entity, digest per split, the schema, and the label report:
            coverage per field and every label not taken exactly).
        seed: Split seed.
        val_fraction: Share of each type's documents for validation (early stopping).
        holdout_fraction: Share of each type's documents for the frozen holdout (the gate).
        labels_digest: Digest of the labels file's listing (snapshot-inputs), recorded in the
            artifact's metadata; as an input it changes KFP's cache key when the labels change.

    Returns:
        digest: Digest of the whole dataset (all splits).
        holdout_digest: Digest of the frozen holdout.
        train: Training documents.
    """
    from docloop.steps import build_dataset as step

    manifest = step.run(
        pages.path,
        labels_uri,
        dataset.path,
        seed=seed,
        val_fraction=val_fraction,
        holdout_fraction=holdout_fraction,
    )
    dataset.metadata.update(
        {
            "digest": manifest.digest,
            "counts": manifest.counts,
            "doc_types": manifest.doc_types,
            "labels_digest": labels_digest,
        }
    )
    outputs = NamedTuple(  # noqa: UP014
        "DatasetOutputs", [("digest", str), ("holdout_digest", str), ("train", int)]
    )
    return outputs(manifest.digest, manifest.digests["holdout"], manifest.counts["train"])
