"""The build-retrain-dataset component."""

from components.build_retrain_dataset.component import build_retrain_dataset

__all__ = ["build_retrain_dataset"]
