"""The drift-check component."""

from components.drift_check.component import drift_check

__all__ = ["drift_check"]
