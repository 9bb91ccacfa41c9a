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
    from docloop.steps import build_retrain_dataset as step

    result = step.run(dataset.path, champion_uri, previous_dataset_uri, seed)
    manifest = result.manifest
    dataset.metadata.update({"digest": manifest.digest, "counts": manifest.counts})
    dataset.metadata.update({"quality": result.quality})
    outputs = NamedTuple(  # noqa: UP014
        "RetrainDatasetOutputs", [("digest", str), ("train", int), ("feedback", int)]
    )
    return outputs(manifest.digest, manifest.counts["train"], step.reviewed_count(result))
