"""The build-retrain-dataset component's step: reviewed feedback + replay -> a targeted dataset."""

from __future__ import annotations

from docloop.config import load_config
from docloop.datasets.retrain.build import RetrainDatasetResult, run_component
from docloop.steps.champions import resolve_champion


def run(
    output_dir: str,
    champion_uri: str,
    previous_dataset_uri: str = "",
    seed: int = 0,
) -> RetrainDatasetResult:
    """Build the retraining dataset; replay comes from the champion's own training dataset.

    Args:
        output_dir: the component's ``dataset`` path.
        champion_uri: the champion (``models:/<name>@champion`` or a folder); its card names the
            dataset to replay and whose frozen holdout to carry over.
        previous_dataset_uri: that dataset, explicitly (skips the champion lookup).
        seed: fixes every draw.

    Returns:
        The manifest, the feedback quality summary and the window start.
    """
    previous = previous_dataset_uri or resolve_champion(load_config(), champion_uri).dataset_uri
    return run_component(previous, output_dir, seed=seed)


def reviewed_count(result: RetrainDatasetResult) -> int:
    """How many rows of the dataset come from reviewed feedback (every source but replay)."""
    return sum(
        count
        for split in result.manifest.source_counts.values()
        for source, count in split.items()
        if source != "replay"
    )
