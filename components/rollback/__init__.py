"""The rollback component."""

from components.rollback.component import rollback

__all__ = ["rollback"]
