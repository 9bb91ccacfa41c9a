"""Helpers for tests that compare compiled KFP YAML with the committed files."""

from __future__ import annotations


def without_sdk_version(text: str) -> str:
    """The YAML without its ``sdkVersion`` lines (a KFP upgrade alone must not fail the diff)."""
    return "\n".join(line for line in text.splitlines() if "sdkVersion" not in line)
