"""The drift-check component's step: the champion, recent feedback and drift -> retrain or not."""

from __future__ import annotations

from docloop.config import load_config, store_url
from docloop.monitor.check import DriftCheckResult, run_drift_check
from docloop.steps.champions import holdout_score_or_none, resolve_champion, version_or_none
from docloop.storage import Storage
from docloop.store.db import open_store


def run(
    output_dir: str,
    champion_uri: str,
    extractor_uri: str,
    reference_dataset_uri: str = "",
) -> DriftCheckResult:
    """Run the drift check against the champion; write its files into ``output_dir``.

    The configuration comes from :func:`docloop.config.load_config` (the ``docloop-config``
    ConfigMap in a pod), the store from its URL. The component copies ``report.html`` /
    ``summary.md`` into its ``HTML`` / ``Markdown`` artifacts, the metrics into ``Metrics`` and
    returns ``result.trigger``.

    Args:
        output_dir: Where the files go (a local path or a storage URI).
        champion_uri: The champion classifier (``models:/<name>@champion`` or a folder).
        extractor_uri: The champion extractor; its registered holdout score arms the
            extractor's drop rule (unchecked when it has none), and its version picks the
            verdicts that score entities.
        reference_dataset_uri: The reference dataset; empty: the champion's training dataset.

    Returns:
        The result.

    Raises:
        As :func:`~docloop.monitor.check.run_drift_check`, plus ``ConfigError``.
    """
    config = load_config()
    champion = resolve_champion(config, champion_uri)
    storage = Storage(config.storage)
    store = open_store(store_url(config.store))
    try:
        return run_drift_check(
            config,
            store,
            storage,
            champion.model_uri,
            reference_dataset_uri or champion.dataset_uri,
            champion.holdout_score,
            output_uri=output_dir,
            champion_extract_score=holdout_score_or_none(config, extractor_uri),
            champion_extractor_version=version_or_none(config, extractor_uri, storage),
        )
    finally:
        store.close()
