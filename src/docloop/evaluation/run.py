"""Evaluation: candidate and incumbent on the same holdouts, the gate, and its outputs.

`run_evaluation` is what ``docloop evaluate`` and the evaluate step (`docloop.steps.evaluate`)
call. Given an output URI, it writes there::

    report.html    the self-contained HTML report (verdict, checks, figures)
    metrics.json   flat metric names -> values (what goes into the KFP Metrics artifact)
    gate.json      the gate's verdict (`docloop.evaluation.gate.GateResult`), written last: its
                   presence means the evaluation finished

Models are named by folder URIs (local paths, ``file://``, ``s3://``, ``gs://``) or by MLflow
registry URIs, ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, which resolve to the
registered version's source folder.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docloop.config import GateConfig
from docloop.documents.examples import DocumentExample, examples_digest, read_examples
from docloop.errors import InvalidInput
from docloop.evaluation.gate import GateResult, Task, evaluate_gate, key_metric
from docloop.evaluation.report import (
    confusion_matrices,
    field_f1,
    flat_metrics,
    render_report,
)
from docloop.evaluation.scoring import ModelScores, score_model
from docloop.storage import Storage, join

if TYPE_CHECKING:
    from docloop.models.artifact import LoadedModel, ModelCard

logger = logging.getLogger(__name__)

GATE_FILE = "gate.json"
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
HOLDOUT_FILE = "holdout.parquet"
FEEDBACK_HOLDOUT_FILE = "feedback_holdout.parquet"
POOLED = "pooled"

StageProgress = Callable[[str, int, int], None]
"""Called with (what is being scored, e.g. "candidate on 'frozen'", documents done, total)."""

_HOLDOUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@dataclass(frozen=True)
class EvaluationOutcome:
    """What an evaluation produced (also written under ``output_uri``).

    Attributes:
        gate: The verdict, as in ``gate.json``.
        metrics: Flat metrics, as in ``metrics.json``.
        confusion_matrices: Per holdout, the candidate's confusion matrix in the shape of a KFP
            ``ClassificationMetrics`` artifact (empty for an extractor).
        html: The report, as in ``report.html``.
        candidate: The candidate's scores per holdout.
        incumbent: The incumbent's, or None for a first model.
        output_uri: Where the files were written; None when nothing was written.
    """

    gate: GateResult
    metrics: dict[str, float]
    confusion_matrices: dict[str, dict[str, list[dict[str, Any]]]]
    html: str
    candidate: dict[str, ModelScores]
    incumbent: dict[str, ModelScores] | None
    output_uri: str | None

    @property
    def blessed(self) -> bool:
        """Whether the candidate may replace the incumbent."""
        return self.gate.blessed

    @property
    def confusion_matrix(self) -> dict[str, list[dict[str, Any]]] | None:
        """The candidate's confusion matrix on the first holdout (the one a KFP UI shows)."""
        return next(iter(self.confusion_matrices.values()), None)

    @property
    def files(self) -> dict[str, str]:
        """The URIs of the written files (empty when nothing was written)."""
        if self.output_uri is None:
            return {}
        return {
            name: join(self.output_uri, name) for name in (REPORT_FILE, METRICS_FILE, GATE_FILE)
        }


def holdout_uri(uri: str) -> str:
    """The Parquet file of a holdout: a dataset folder's ``holdout.parquet``, or a ``.parquet``."""
    return uri if uri.endswith(".parquet") else join(uri, HOLDOUT_FILE)


def run_evaluation(
    task: Task,
    candidate_uri: str,
    incumbent_uri: str | None,
    holdouts: Mapping[str, str],
    policy: GateConfig,
    output_uri: str | None,
    storage: Storage | None = None,
    *,
    batch_size: int = 16,
    on_progress: StageProgress | None = None,
) -> EvaluationOutcome:
    """Score the candidate (and the incumbent) on the holdouts, gate, and write the outputs.

    Args:
        task: ``classify`` or ``extract``; both models must be of this task.
        candidate_uri: The candidate model folder (local path or storage URI).
        incumbent_uri: The incumbent's, or None (or empty) for a first model: floors only.
        holdouts: Holdout name → a dataset folder (its ``holdout.parquet`` is read) or a
            ``.parquet`` file of examples. Names are short identifiers (letters, digits, ``_``,
            ``-``); the first is the one whose confusion matrix a KFP UI shows, conventionally
            the frozen holdout.
        policy: The gate policy.
        output_uri: Where ``report.html``, ``metrics.json`` and ``gate.json`` go; None writes
            nothing (the caller stores the outcome itself).
        storage: The object store.
        batch_size: Documents per forward pass.
        on_progress: Progress callback.

    Returns:
        The outcome; ``outcome.blessed`` is the verdict.

    Raises:
        ConfigError: The policy names an unknown key metric.
        InvalidInput: A bad holdout name, a missing or empty holdout, a model of another task,
            or a candidate and incumbent (or a holdout) with no label in common.
        StorageError: A model, a holdout or the output cannot be read or written.
    """
    metric = key_metric(task, policy)  # a misconfigured policy fails before any model loads
    _check_holdout_names(holdouts)
    storage = storage or Storage()
    if output_uri is not None:
        storage.ensure_writable(output_uri)
    examples = {name: _read_holdout(storage, name, uri) for name, uri in holdouts.items()}
    incumbent_uri = incumbent_uri or None
    if incumbent_uri is not None and incumbent_uri.rstrip("/") == candidate_uri.rstrip("/"):
        logger.warning(
            "the candidate and the incumbent are the same model (%s); it cannot be blessed",
            candidate_uri,
        )

    with tempfile.TemporaryDirectory(prefix="docloop-evaluate-") as cache:
        candidate_model = _load(storage, "candidate", candidate_uri, task, Path(cache) / "c")
        incumbent_model = (
            _load(storage, "incumbent", incumbent_uri, task, Path(cache) / "i")
            if incumbent_uri is not None
            else None
        )
        if incumbent_model is not None:
            _check_comparable(candidate_model.card, incumbent_model.card)
        candidate = _score_all("candidate", candidate_model, examples, batch_size, on_progress)
        for name, scores in candidate.items():
            _check_holdout_covers(name, scores)
        incumbent = (
            _score_all("incumbent", incumbent_model, examples, batch_size, on_progress)
            if incumbent_model is not None
            else None
        )

    gate = evaluate_gate(task, policy, candidate, incumbent).model_copy(
        update={
            "models": {
                "candidate": candidate_uri,
                **({"incumbent": incumbent_uri} if incumbent_uri else {}),
            },
            "holdout_digests": {name: examples_digest(docs) for name, docs in examples.items()},
            "field_f1": field_f1(candidate, incumbent),
        }
    )
    metrics = flat_metrics(gate, candidate, incumbent)
    html = render_report(
        gate, candidate, incumbent, candidate_uri=candidate_uri, incumbent_uri=incumbent_uri
    )
    outcome = EvaluationOutcome(
        gate=gate,
        metrics=metrics,
        confusion_matrices=confusion_matrices(candidate),
        html=html,
        candidate=candidate,
        incumbent=incumbent,
        output_uri=output_uri,
    )
    if output_uri is not None:
        _write_outputs(storage, outcome)
    logger.info(
        "%s evaluation (%s): %s%s",
        task,
        metric,
        gate.headline,
        f"; wrote {output_uri}" if output_uri is not None else "",
    )
    return outcome


def skipped_evaluation(
    task: Task, candidate_uri: str, reason: str, policy: GateConfig
) -> EvaluationOutcome:
    """The outcome for a candidate the train step skipped: not blessed, nothing scored.

    Args:
        task: ``classify`` or ``extract``.
        candidate_uri: The skip-marked folder the train step wrote.
        reason: Why nothing was trained (e.g. ``no classifier: one document type (receipt)``).
        policy: The gate policy (recorded in the gate, as for a scored candidate).
    """
    gate = GateResult(
        blessed=False,
        task=task,
        metric=key_metric(task, policy),
        first_model=True,
        holdouts={},
        summary=reason,
        checks=[],
        policy=policy,
        models={"candidate": candidate_uri},
        skipped=reason,
    )
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>docloop evaluation</title>"
        f"</head><body><h1>{task}: skipped</h1><p>{escape(reason)}</p></body></html>"
    )
    logger.info("%s evaluation: %s", task, gate.headline)
    return EvaluationOutcome(
        gate=gate,
        metrics={"blessed": 0.0, "skipped": 1.0},
        confusion_matrices={},
        html=html,
        candidate={},
        incumbent=None,
        output_uri=None,
    )


def _write_outputs(storage: Storage, outcome: EvaluationOutcome) -> None:
    """report.html, metrics.json, then gate.json (last: it marks a finished evaluation)."""
    files = outcome.files
    storage.write_bytes(
        files[REPORT_FILE], outcome.html.encode("utf-8"), content_type="text/html; charset=utf-8"
    )
    storage.write_bytes(
        files[METRICS_FILE],
        json.dumps(outcome.metrics, indent=2).encode("utf-8"),
        content_type="application/json",
    )
    storage.write_bytes(
        files[GATE_FILE],
        outcome.gate.model_dump_json(indent=2).encode("utf-8"),
        content_type="application/json",
    )


def parquet_rows(storage: Storage, uri: str) -> int:
    """Rows of a Parquet file, from its footer (nothing is decoded)."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(io.BytesIO(storage.read_bytes(uri))).metadata.num_rows)


def _check_holdout_names(holdouts: Mapping[str, str]) -> None:
    if not holdouts:
        raise InvalidInput(
            "no holdout given; pass at least one, e.g. frozen=<dataset folder written by "
            "build-dataset>."
        )
    for name in holdouts:
        if not _HOLDOUT_NAME.fullmatch(name) or name == POOLED:
            raise InvalidInput(
                f"holdout name {name!r} is not allowed; use up to 63 letters, digits, '_' or '-' "
                f"starting with a letter or digit (and not {POOLED!r}, which names all holdouts "
                "together in the metrics)."
            )


def _read_holdout(storage: Storage, name: str, uri: str) -> list[DocumentExample]:
    parquet = holdout_uri(uri)
    if not storage.exists(parquet):
        raise InvalidInput(
            f"holdout {name!r}: {parquet} does not exist; pass a dataset folder written by "
            f"build-dataset (it holds {HOLDOUT_FILE}) or the URI of a .parquet file of examples."
        )
    examples = read_examples(storage, parquet)
    if not examples:
        raise InvalidInput(
            f"holdout {name!r} ({parquet}) has no documents; a gate needs a non-empty holdout. "
            "Rebuild the dataset with a larger holdout fraction, or drop this holdout."
        )
    logger.info("holdout %r: %d documents from %s", name, len(examples), parquet)
    return examples


def _load(storage: Storage, role: str, uri: str, task: Task, cache: Path) -> LoadedModel:
    """Load a model (onto the GPU when there is one; scoring stays in fp32)."""
    import torch

    from docloop.models.artifact import fetch_model_folder, load_model

    model = load_model(fetch_model_folder(storage, uri, cache))
    if model.card.task != task:
        raise InvalidInput(
            f"the {role} at {uri} is a {model.card.task} model, but this evaluation is for "
            f"{task}; pass a {task} model, or evaluate with task {model.card.task!r}."
        )
    if torch.cuda.is_available():
        model.network.to("cuda")
    logger.info("%s: %s model with %d labels from %s", role, task, len(model.card.labels), uri)
    return model


def _label_set(card: ModelCard) -> list[str]:
    return list(card.labels) if card.task == "classify" else card.entity_types


def _check_comparable(candidate: ModelCard, incumbent: ModelCard) -> None:
    """Refuse models with nothing to compare; warn about labels only one of them knows."""
    kind = "classes" if candidate.task == "classify" else "entity types"
    new, old = _label_set(candidate), _label_set(incumbent)
    if not set(new) & set(old):
        raise InvalidInput(
            f"the candidate's {kind} ({', '.join(new)}) and the incumbent's ({', '.join(old)}) "
            "have nothing in common, so comparing them is meaningless; compare against an "
            "incumbent trained for the same labels, or evaluate the candidate alone as a first "
            "model (no incumbent: floors only)."
        )
    added = [label for label in new if label not in old]
    dropped = [label for label in old if label not in new]
    if added:
        logger.warning(
            "the candidate adds %s the incumbent does not know: %s", kind, ", ".join(added)
        )
    if dropped:
        logger.warning(
            "the candidate drops %s the incumbent knows: %s; holdout documents with them count "
            "as errors for the candidate",
            kind,
            ", ".join(dropped),
        )


def _check_holdout_covers(name: str, scores: ModelScores) -> None:
    """Refuse a holdout that has no gold label the candidate can predict."""
    gold = [label for label, metrics in scores.per_label.items() if metrics.support > 0]
    if not set(gold) - set(scores.unknown_labels):
        kind = "class" if scores.task == "classify" else "entity"
        found = ", ".join(gold) if gold else "none"
        raise InvalidInput(
            f"holdout {name!r} has no gold {kind} the candidate can predict (holdout: {found}; "
            f"candidate: {', '.join(scores.model_labels)}), so it cannot measure it; pass a "
            "holdout labelled for this model's task."
        )


def _score_all(
    role: str,
    model: LoadedModel,
    examples: Mapping[str, list[DocumentExample]],
    batch_size: int,
    on_progress: StageProgress | None,
) -> dict[str, ModelScores]:
    scores: dict[str, ModelScores] = {}
    for name, holdout in examples.items():
        stage = f"{role} on {name!r}"

        def progress(done: int, total: int, stage: str = stage) -> None:
            if on_progress is not None:
                on_progress(stage, done, total)

        scores[name] = score_model(
            model, holdout, holdout=name, batch_size=batch_size, on_progress=progress
        )
        logger.info("%s: %d documents scored", stage, scores[name].n_documents)
    return scores
