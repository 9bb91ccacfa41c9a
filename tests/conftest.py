"""Shared fixtures: offline model hub, object-store servers on 127.0.0.1, small documents."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from tests.loop import bootstrapped
from tests.object_stores import gcs_emulator, moto_server
from tests.postgres import postgres_server, postgres_url, store_url

__all__ = [
    "bootstrapped",
    "gcs_emulator",
    "moto_server",
    "postgres_server",
    "postgres_url",
    "store_url",
]
