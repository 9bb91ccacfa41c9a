"""The build-dataset component."""

from components.build_dataset.component import build_dataset

__all__ = ["build_dataset"]
