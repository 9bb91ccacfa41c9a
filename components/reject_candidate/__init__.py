"""The reject-candidate component."""

from components.reject_candidate.component import reject_candidate

__all__ = ["reject_candidate"]
