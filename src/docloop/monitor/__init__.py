"""Monitoring: performance on feedback, drift, the trigger policy and the drift check.

* ``performance``: per-class / per-entity scores on reviewed documents with Wilson and bootstrap
  intervals;
* ``drift``: label shift, OCR-statistic shift and embedding MMD, Bonferroni-combined;
* ``embeddings``: document embeddings from the champion's encoder;
* ``trigger``: the retrain policy (``TriggerDecision``);
* ``check``: :func:`~docloop.monitor.check.run_drift_check`, store to report to decision;
* ``sources`` / ``report``: the check's I/O and its HTML / Markdown output.

Importing this package imports neither torch nor the store; import the submodules you need.
"""
