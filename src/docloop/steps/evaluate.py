"""The evaluate component's step: candidate and incumbent on the same holdouts -> the gate."""

from __future__ import annotations

import logging
from pathlib import Path

from docloop.config import load_config
from docloop.errors import InvalidInput
from docloop.evaluation.run import (
    FEEDBACK_HOLDOUT_FILE,
    EvaluationOutcome,
    parquet_rows,
    run_evaluation,
    skipped_evaluation,
)
from docloop.models.artifact import skip_reason
from docloop.storage import Storage, join
from docloop.store.registry import resolve_model_uri

logger = logging.getLogger(__name__)


def run(
    task: str,
    candidate_dir: str,
    holdout_dir: str,
    incumbent_uri: str,
    feedback_holdout_uri: str,
    gate_path: str,
) -> EvaluationOutcome:
    """Score the candidate (and the incumbent), apply the gate, write ``gate_path``.

    The gate policy, storage and MLflow settings come from the configuration
    (`docloop.config.load_config`). The component writes the report and the metrics into its
    own output artifacts from the returned outcome; this function writes only the gate.

    Args:
        task: ``classify`` or ``extract``.
        candidate_dir: The candidate model folder.
        holdout_dir: The dataset folder whose ``holdout.parquet`` is the frozen holdout.
        incumbent_uri: The incumbent (folder URI or ``models:/...``); empty for a first model.
        feedback_holdout_uri: A second holdout (dataset folder or ``.parquet``); empty: the
            dataset's own ``feedback_holdout.parquet`` when it has one (retrain mode).
        gate_path: The file to write ``gate.json`` into.

    Returns:
        The outcome.

    Raises:
        InvalidInput: A task other than classify/extract, and as `run_evaluation`.
    """
    if task not in ("classify", "extract"):
        raise InvalidInput(f"task must be 'classify' or 'extract', not {task!r}")
    settings = load_config()
    skipped = skip_reason(Path(candidate_dir))
    if skipped is not None:
        outcome = skipped_evaluation(task, candidate_dir, skipped, settings.gate)  # type: ignore[arg-type]
        _write_gate(outcome, gate_path)
        return outcome
    storage = Storage(settings.storage)
    holdouts = {"frozen": holdout_dir}
    bundled = join(holdout_dir, FEEDBACK_HOLDOUT_FILE)
    if feedback_holdout_uri:
        holdouts["feedback"] = feedback_holdout_uri
    elif not holdout_dir.endswith(".parquet") and storage.exists(bundled):
        # a retrain-mode dataset carries the reviewed documents it kept out of training; few
        # new reviews can leave it empty, and then the frozen holdout gates alone
        if parquet_rows(storage, bundled):
            holdouts["feedback"] = bundled
        else:
            logger.warning(
                "%s holds no documents (too few new reviews per type to keep any out of "
                "training); gating on the frozen holdout alone",
                bundled,
            )
    incumbent = resolve_model_uri(incumbent_uri, settings.tracking) if incumbent_uri else None
    outcome = run_evaluation(
        task,  # type: ignore[arg-type]
        candidate_dir,
        incumbent,
        holdouts,
        settings.gate,
        None,
        storage,
    )
    _write_gate(outcome, gate_path)
    return outcome


def _write_gate(outcome: EvaluationOutcome, gate_path: str) -> None:
    target = Path(gate_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(outcome.gate.model_dump_json(indent=2), encoding="utf-8")
