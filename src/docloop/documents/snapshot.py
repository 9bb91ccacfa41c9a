"""What a run reads behind a URI, as a digest: the listing of a prefix plus the settings.

A KFP task keyed on a URI string is served from the cache after the objects under it changed.
The digest is over each object's URI, size and stamp (S3 ETag, GCS generation, local mtime), not
over the bytes, so computing it costs one listing however large the corpus is; a rewritten object
changes its stamp, a new or removed one changes the list. The settings that change what a task
makes of those objects enter the same digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from docloop.storage import ObjectInfo, Storage


def listing_digest(objects: Iterable[ObjectInfo], settings: str = "") -> str:
    """sha256 hex over the sorted (uri, size, stamp) of ``objects`` and ``settings``."""
    rows = sorted((item.uri, item.size, item.stamp) for item in objects)
    payload = json.dumps({"objects": rows, "settings": settings}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def snapshot(uri: str, storage: Storage, settings: str = "") -> str:
    """The digest of what is under ``uri`` now (a prefix or one object) with ``settings``."""
    return listing_digest(storage.list(uri), settings)
