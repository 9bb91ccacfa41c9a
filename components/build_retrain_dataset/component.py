"""build-retrain-dataset: reviewed feedback -> a targeted dataset (build-dataset, retrain mode)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_retrain_dataset(
    dataset: Output[Dataset],
    champion_uri: str = "models:/docloop-classifier@champion",
    previous_dataset_uri: str = "",
    seed: int = 0,
) -> NamedTuple("RetrainDatasetOutputs", [("digest", str), ("train", int), ("feedback", int)]):
    """Build a targeted retraining dataset from reviewed feedback, replay and the frozen holdout.

    Feedback first passes the quality rules (conflicts resolved by reviewer trust, low-trust and
    suspicious corrections quarantined but kept; statuses written back to the store). Then the
    ``retrain`` config decides the sample: corrected documents plus a balanced share of confirmed
    ones, replay of the champion's training data (``replay_ratio``), documents with errors on
    weak entities oversampled and a floor of documents per entity. The frozen holdout is copied
    unchanged (same digest) and never enters training; a feedback holdout of reviewed documents
    is kept out for the gate.

    Args:
        dataset: Output. ``train``/``val``/``holdout``/``feedback_holdout`` Parquet + manifest
            (counts per class, entity and source: corrected, confirmed, replay).
        champion_uri: The champion whose training dataset is replayed (its card names it).
        previous_dataset_uri: The dataset to replay instead; empty: the champion's.
        seed: Sampling and split seed.

    Returns:
        digest: Digest of the new dataset.
        train: Training documents.
        feedback: Reviewed documents used (training + feedback holdout).
    """
    from docloop.champions import resolve_champion
    from docloop.config import load_config
    from docloop.datasets.targeted import run_component

    previous = previous_dataset_uri or resolve_champion(load_config(), champion_uri).dataset_uri
    result = run_component(previous, dataset.path, seed=seed)
    manifest = result.manifest
    dataset.metadata.update({"digest": manifest.digest, "counts": manifest.counts})
    dataset.metadata.update({"quality": result.quality})
    reviewed = sum(
        count
        for split in manifest.source_counts.values()
        for source, count in split.items()
        if source != "replay"
    )
    outputs = NamedTuple(  # noqa: UP014
        "RetrainDatasetOutputs", [("digest", str), ("train", int), ("feedback", int)]
    )
    return outputs(manifest.digest, manifest.counts["train"], reviewed)
