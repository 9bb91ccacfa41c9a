"""The snapshot-inputs component."""

from components.snapshot_inputs.component import snapshot_inputs

__all__ = ["snapshot_inputs"]
