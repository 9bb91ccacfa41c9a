"""The merge-pages component."""

from components.merge_pages.component import merge_pages

__all__ = ["merge_pages"]
