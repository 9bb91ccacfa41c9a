"""The gate: is a candidate model *blessed* to replace the incumbent (TFX blessing semantics)?

The policy is `docloop.config.GateConfig`. A candidate is blessed when every check passes:

floor
    On every holdout the key metric reaches the policy's floor. For a first model (no
    incumbent) these are the only checks.
improvement
    On the pooled holdouts (every holdout document once) the key metric improves by at least
    ``min_improvement`` (absolute, or that fraction of the incumbent's score when ``relative``),
    and the improvement is significant: the one-sided lower confidence bound of
    (candidate - incumbent) from a paired bootstrap over documents is above 0.
holdout_regression
    On each holdout the key metric drops by no more than ``max_regression``: a gain on a
    feedback holdout cannot pay for forgetting on the frozen one.
label_regression
    On each holdout, the F1 of each class (classifier) or entity type (extractor) with at least
    ``min_support`` gold examples drops by no more than ``max_regression``. Rarer labels are
    listed as skipped checks. With ``label_significance`` (the default) a larger drop fails only
    when the paired bootstrap of that label's F1 over the holdout's documents confirms it (its
    upper confidence bound is below 0): on a 30-document holdout one entity type's F1 moves by
    0.07 to 0.1 when two documents change, and such noise must not refuse a better model.

Every check carries the numbers it compared and a sentence saying why it passed or failed;
``GateResult.model_dump_json(indent=2)`` is the evaluate component's ``gate.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from docloop.config import GateConfig
from docloop.errors import ConfigError, InvalidInput
from docloop.evaluation.scoring import KEY_METRICS, ModelScores, metric_values

logger = logging.getLogger(__name__)

Task = Literal["classify", "extract"]  # as docloop.models.artifact.Task, without importing torch
CheckName = Literal["floor", "improvement", "holdout_regression", "label_regression"]

TOLERANCE = 1e-9
"""Slack in every comparison, so that e.g. 0.90 → 0.85 is a drop of exactly the tolerated 0.05."""

MINUS = "\u2212"
"""U+2212, the minus sign of the numbers in reasons (reads better than a hyphen in reports)."""

_BLOCK_ELEMENTS = 1 << 19  # resampled document slots per block: about 20 MiB of arrays


class GateCheck(BaseModel):
    """One check of the gate: what was compared, the bar, the verdict and why.

    ``threshold`` is always the value ``candidate`` had to reach (``candidate >= threshold``):
    the floor, the incumbent's score plus the required gain, or the incumbent's F1 minus the
    tolerated drop.
    """

    model_config = ConfigDict(frozen=True)

    name: CheckName
    holdout: str = Field(description="The holdout; pooled holdouts are joined with '+'.")
    metric: str = Field(description="The key metric, or 'f1' for a per-label check.")
    label: str | None = Field(default=None, description="The class or entity type checked.")
    candidate: float
    incumbent: float | None = None
    threshold: float
    passed: bool
    skipped: bool = Field(default=False, description="Not applied (too little support).")
    reason: str
    delta: float | None = Field(default=None, description="candidate - incumbent.")
    lower_bound: float | None = Field(
        default=None, description="Paired-bootstrap lower confidence bound of delta."
    )
    upper_bound: float | None = Field(
        default=None,
        description="Paired-bootstrap upper confidence bound of delta (per-label checks with "
        "label_significance).",
    )
    support: int | None = Field(default=None, description="Gold examples of the label.")


class BootstrapResult(BaseModel):
    """A paired bootstrap of (candidate - incumbent) over documents."""

    model_config = ConfigDict(frozen=True)

    metric: str
    n_documents: int
    samples: int
    seed: int
    confidence: float
    candidate: float = Field(description="The candidate's metric on all documents.")
    incumbent: float = Field(description="The incumbent's metric on all documents.")
    delta: float = Field(description="candidate - incumbent on all documents.")
    lower_bound: float = Field(description="One-sided lower bound of delta at `confidence`.")
    replicates: tuple[float, ...] = Field(
        default=(), exclude=True, repr=False, description="delta on each resample (not saved)."
    )


class GateResult(BaseModel):
    """The gate's verdict; ``model_dump_json(indent=2)`` is ``gate.json``."""

    model_config = ConfigDict(frozen=True)

    blessed: bool
    task: Task
    metric: str = Field(description="The key metric.")
    first_model: bool = Field(description="No incumbent: only the floors applied.")
    holdouts: dict[str, int] = Field(description="Documents scored per holdout.")
    summary: str = Field(
        description="The reason of each failed check, one per line; empty when blessed."
    )
    checks: list[GateCheck]
    bootstrap: BootstrapResult | None = None
    policy: GateConfig
    models: dict[str, str] = Field(
        default_factory=dict, description="Where the candidate (and incumbent) came from."
    )
    holdout_digests: dict[str, str] = Field(
        default_factory=dict, description="Content digest of each holdout's examples."
    )
    field_f1: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict,
        description="Extractor: field exact-match F1 (values normalised by field kind) per "
        "holdout, model (candidate, incumbent) and field, 'overall' micro-averaged; reported "
        "next to the entity spans the gate decides on, not gated.",
    )
    skipped: str = Field(
        default="",
        description="Why there was no candidate to gate (train skipped it, e.g. no classifier: "
        "one document type); then nothing is blessed and nothing is rejected.",
    )

    @property
    def failed(self) -> list[GateCheck]:
        """The checks that failed."""
        return [check for check in self.checks if not check.passed]

    @property
    def headline(self) -> str:
        """One line: ``blessed: all 6 checks passed`` / ``not blessed: 2 of 6 checks failed``."""
        if self.skipped:
            return f"skipped: {self.skipped}"
        applied = sum(1 for check in self.checks if not check.skipped)
        failed = len(self.failed)
        if failed:
            return f"not blessed: {failed} of {applied} checks failed"
        scope = " (first model: floors only)" if self.first_model else ""
        return f"blessed: all {applied} checks passed{scope}"

    def deltas(self) -> dict[str, float]:
        """The key metric's bootstrap figures (candidate, incumbent, delta, its lower bound)."""
        if self.bootstrap is None:
            return {}
        return {
            f"{self.metric}_candidate": self.bootstrap.candidate,
            f"{self.metric}_incumbent": self.bootstrap.incumbent,
            f"{self.metric}_delta": self.bootstrap.delta,
            f"{self.metric}_delta_lower_bound": self.bootstrap.lower_bound,
        }


def key_metric(task: Task, policy: GateConfig) -> str:
    """The policy's key metric for a task.

    Raises:
        ConfigError: The configured name is not one the task supports; the message lists them.
    """
    setting = "classify_metric" if task == "classify" else "extract_metric"
    name: str = getattr(policy, setting)
    allowed = KEY_METRICS[task]
    if name not in allowed:
        raise ConfigError(
            f"gate.{setting} is {name!r}, which the {task} gate does not know; set it to one "
            f"of {', '.join(allowed)} (docloop.yaml, or DOCLOOP__GATE__{setting.upper()})."
        )
    return name


def floor_of(task: Task, policy: GateConfig) -> float:
    """The policy's absolute floor for the task's key metric."""
    return policy.classify_floor if task == "classify" else policy.extract_floor


def evaluate_gate(
    task: Task,
    policy: GateConfig,
    candidate: Mapping[str, ModelScores],
    incumbent: Mapping[str, ModelScores] | None = None,
) -> GateResult:
    """Decide whether the candidate is blessed.

    Args:
        task: ``classify`` or ``extract``.
        policy: The gate policy.
        candidate: Holdout name to the candidate's scores on it.
        incumbent: The incumbent's scores on the same holdouts and documents, in the same
            order; None for a first model (then only the floors apply).

    Returns:
        The verdict with every check; ``blessed`` is True only when all passed.

    Raises:
        ConfigError: The policy names an unknown key metric.
        InvalidInput: No holdout; scores of another task; the incumbent's holdouts or documents
            differ from the candidate's.
    """
    metric = key_metric(task, policy)
    _check_scores(task, candidate, incumbent)
    checks = [
        _floor_check(task, policy, metric, name, scores) for name, scores in candidate.items()
    ]
    bootstrap: BootstrapResult | None = None
    if incumbent is not None:
        bootstrap, improvement = _improvement_check(policy, metric, candidate, incumbent)
        checks.append(improvement)
        checks.extend(
            _holdout_regression_check(policy, metric, name, scores, incumbent[name])
            for name, scores in candidate.items()
        )
        for name, scores in candidate.items():
            checks.extend(_label_checks(task, policy, name, scores, incumbent[name]))
    failed = [check.reason for check in checks if not check.passed]
    result = GateResult(
        blessed=not failed,
        task=task,
        metric=metric,
        first_model=incumbent is None,
        holdouts={name: scores.n_documents for name, scores in candidate.items()},
        summary="\n".join(failed),
        checks=checks,
        bootstrap=bootstrap,
        policy=policy,
    )
    logger.info("gate (%s, %s): %s", task, metric, result.headline)
    for reason in failed:
        logger.info("failed: %s", reason)
    return result


# --- the paired bootstrap ----------------------------------------------------------------------


def bootstrap_indices(n_documents: int, samples: int, seed: int) -> npt.NDArray[np.int64]:
    """The document indices `paired_bootstrap` draws: one row of ``n_documents`` per resample.

    Materialises ``samples x n_documents`` integers; `paired_bootstrap` draws the same rows
    block by block instead. For audits and reference implementations.
    """
    return np.concatenate(list(_index_blocks(n_documents, samples, seed)), axis=0)


def paired_bootstrap(
    metric: str,
    candidate_counts: npt.NDArray[np.int64],
    incumbent_counts: npt.NDArray[np.int64],
    *,
    samples: int,
    seed: int,
    confidence: float,
) -> BootstrapResult:
    """Paired bootstrap over documents of the key-metric difference (candidate - incumbent).

    Each replicate draws ``n`` document indices with replacement (`bootstrap_indices`), once,
    and recomputes *both* models' metric on that same resample, so the document-to-document
    variation both models share cancels in the difference. The metric is recomputed from the
    resample's summed per-document counts (`docloop.evaluation.scoring.metric_values`): the
    multiplicities of a block of resamples times the ``(documents, 3 * labels)`` count matrix
    gives every replicate's totals in one matrix product. The lower bound is the percentile
    bound: the ``1 - confidence`` quantile of the replicate differences.

    Why not ``scipy.stats.bootstrap``: macro-F1 and entity micro-F1 are not means of
    per-document values, so they have to be recomputed from per-document counts on every
    resample; scipy would materialise the resampled data for each replicate and call a Python
    statistic on it, where here one matrix product per block of resamples suffices. Its default
    BCa interval also needs a jackknife (``n`` more evaluations) and returns NaN for degenerate
    replicate distributions, which identical models always produce; the percentile bound is
    well defined there (0, i.e. "not significant"). Writing it out keeps the draws reproducible
    for a seed and checkable against a plain loop (see the tests).

    Args:
        metric: A key metric name (see `docloop.evaluation.scoring.KEY_METRICS`).
        candidate_counts: ``(documents, labels, 3)`` counts of the candidate.
        incumbent_counts: The incumbent's, same documents and label columns.
        samples: Resamples (B).
        seed: Seed of the index draws; same seed and sizes, same result.
        confidence: One-sided confidence of the lower bound, in (0, 1).

    Returns:
        Point estimates, the lower bound and every replicate's difference.

    Raises:
        InvalidInput: Shapes differ, there are no documents, or samples / confidence are out of
            range.
    """
    if candidate_counts.shape != incumbent_counts.shape or candidate_counts.ndim != 3:
        raise InvalidInput(
            f"candidate counts {candidate_counts.shape} and incumbent counts "
            f"{incumbent_counts.shape} must both be (documents, labels, 3) over the same "
            "documents and labels; align them with ModelScores.aligned_counts."
        )
    n_documents, n_labels, _ = candidate_counts.shape
    if n_documents == 0:
        raise InvalidInput("the bootstrap needs at least one document; score a non-empty holdout.")
    if samples < 1 or not 0 < confidence < 1:
        raise InvalidInput(
            f"samples={samples}, confidence={confidence}: use samples >= 1 and 0 < confidence < 1."
        )
    width = n_labels * 3
    both = np.concatenate(
        [
            candidate_counts.reshape(n_documents, width),
            incumbent_counts.reshape(n_documents, width),
        ],
        axis=1,
    ).astype(np.float64)
    deltas = np.empty(samples, dtype=np.float64)
    start = 0
    for indices in _index_blocks(n_documents, samples, seed):
        rows = len(indices)
        offsets = (indices + np.arange(rows)[:, None] * n_documents).ravel()
        weights = np.bincount(offsets, minlength=rows * n_documents).reshape(rows, n_documents)
        totals = weights.astype(np.float64) @ both
        deltas[start : start + rows] = metric_values(
            metric, totals[:, :width].reshape(rows, n_labels, 3)
        ) - metric_values(metric, totals[:, width:].reshape(rows, n_labels, 3))
        start += rows
    candidate_value = float(metric_values(metric, candidate_counts.sum(axis=0)))
    incumbent_value = float(metric_values(metric, incumbent_counts.sum(axis=0)))
    return BootstrapResult(
        metric=metric,
        n_documents=n_documents,
        samples=samples,
        seed=seed,
        confidence=confidence,
        candidate=candidate_value,
        incumbent=incumbent_value,
        delta=candidate_value - incumbent_value,
        lower_bound=float(np.quantile(deltas, 1.0 - confidence)),
        replicates=tuple(deltas.tolist()),
    )


def _index_blocks(n_documents: int, samples: int, seed: int) -> Iterator[npt.NDArray[np.int64]]:
    """Resampled document indices, a block of rows at a time (block size fixed by the sizes)."""
    rng = np.random.default_rng(seed)
    rows = max(1, min(samples, _BLOCK_ELEMENTS // max(1, n_documents)))
    for start in range(0, samples, rows):
        yield rng.integers(0, n_documents, size=(min(rows, samples - start), n_documents))


# --- the checks --------------------------------------------------------------------------------


def _check_scores(
    task: Task,
    candidate: Mapping[str, ModelScores],
    incumbent: Mapping[str, ModelScores] | None,
) -> None:
    if not candidate:
        raise InvalidInput("no holdout scores; score the candidate on at least one holdout.")
    for role, scores_by_holdout in (("candidate", candidate), ("incumbent", incumbent or {})):
        for name, scores in scores_by_holdout.items():
            if scores.task != task:
                raise InvalidInput(
                    f"the {role}'s scores on holdout {name!r} are for a {scores.task} model, but "
                    f"the gate runs for {task}; score a {task} model."
                )
    if incumbent is None:
        return
    if list(incumbent) != list(candidate):
        raise InvalidInput(
            f"the candidate was scored on holdouts {list(candidate)} but the incumbent on "
            f"{list(incumbent)}; score both models on the same holdouts, in the same order."
        )
    for name, scores in candidate.items():
        if incumbent[name].doc_ids != scores.doc_ids:
            raise InvalidInput(
                f"holdout {name!r}: the candidate and the incumbent were scored on different "
                "documents (or in a different order); score both on the same examples."
            )


def _floor_check(
    task: Task, policy: GateConfig, metric: str, holdout: str, scores: ModelScores
) -> GateCheck:
    floor = floor_of(task, policy)
    value = scores.metric(metric)
    passed = value >= floor - TOLERANCE
    where = f"{metric} on holdout {holdout!r} is {value:.3f}"
    reason = (
        f"{where}, at or above the floor {floor:.3f}"
        if passed
        else f"{where}, below the floor {floor:.3f}"
    )
    return GateCheck(
        name="floor",
        holdout=holdout,
        metric=metric,
        candidate=value,
        threshold=floor,
        passed=passed,
        reason=reason,
    )


def _improvement_check(
    policy: GateConfig,
    metric: str,
    candidate: Mapping[str, ModelScores],
    incumbent: Mapping[str, ModelScores],
) -> tuple[BootstrapResult, GateCheck]:
    names = list(candidate)
    candidate_counts, incumbent_counts = _pooled_counts(
        [candidate[name] for name in names], [incumbent[name] for name in names]
    )
    result = paired_bootstrap(
        metric,
        candidate_counts,
        incumbent_counts,
        samples=policy.bootstrap_samples,
        seed=policy.bootstrap_seed,
        confidence=policy.confidence,
    )
    needed = policy.min_improvement * (result.incumbent if policy.relative else 1.0)
    enough = result.delta >= needed - TOLERANCE
    significant = result.lower_bound > TOLERANCE
    where = (
        f"holdout {names[0]!r}"
        if len(names) == 1
        else "the pooled holdouts " + " + ".join(map(repr, names))
    )
    level = f"{policy.confidence:.0%} paired-bootstrap lower bound {_signed(result.lower_bound)}"
    verb = "improved" if result.delta > TOLERANCE else "changed"
    reason = (
        f"{metric} on {where} ({result.n_documents} documents) {verb} by "
        f"{_signed(result.delta)} ({result.incumbent:.3f} → {result.candidate:.3f}; {level}"
        f"{' > 0' if significant else ' ≤ 0, not significant'})"
    )
    relative = (
        f" ({policy.min_improvement:.1%} of the incumbent's {result.incumbent:.3f})"
        if policy.relative
        else ""
    )
    reason += (
        f"; needed ≥ {_signed(needed)}{relative}"
        if enough
        else f", less than the required {_signed(needed)}{relative}"
    )
    check = GateCheck(
        name="improvement",
        holdout="+".join(names),
        metric=metric,
        candidate=result.candidate,
        incumbent=result.incumbent,
        threshold=result.incumbent + needed,
        passed=enough and significant,
        reason=reason,
        delta=result.delta,
        lower_bound=result.lower_bound,
    )
    return result, check


def _pooled_counts(
    candidate: Sequence[ModelScores], incumbent: Sequence[ModelScores]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Both models' counts over every holdout document once, on one shared label axis."""
    labels = list(
        dict.fromkeys(label for scores in [*candidate, *incumbent] for label in scores.labels)
    )
    seen: set[str] = set()
    keep: list[npt.NDArray[np.bool_]] = []
    repeated = 0
    for scores in candidate:
        mask = np.array([doc_id not in seen for doc_id in scores.doc_ids], dtype=np.bool_)
        repeated += int((~mask).sum())
        seen.update(scores.doc_ids)
        keep.append(mask)
    if repeated:
        logger.warning(
            "%d documents appear in more than one holdout; the pooled improvement counts each once",
            repeated,
        )

    def pooled(scores_list: Sequence[ModelScores]) -> npt.NDArray[np.int64]:
        return np.concatenate(
            [
                scores.aligned_counts(labels)[mask]
                for scores, mask in zip(scores_list, keep, strict=True)
            ],
            axis=0,
        )

    return pooled(candidate), pooled(incumbent)


def _holdout_regression_check(
    policy: GateConfig,
    metric: str,
    holdout: str,
    candidate: ModelScores,
    incumbent: ModelScores,
) -> GateCheck:
    new, old = candidate.metric(metric), incumbent.metric(metric)
    return _regression_check(
        "holdout_regression", f"{metric} on holdout {holdout!r}", policy, holdout, metric, new, old
    )


def _label_checks(
    task: Task,
    policy: GateConfig,
    holdout: str,
    candidate: ModelScores,
    incumbent: ModelScores,
) -> list[GateCheck]:
    kind = "class" if task == "classify" else "entity type"
    new_labels, old_labels = candidate.per_label, incumbent.per_label
    supports = {label: metrics.support for label, metrics in {**old_labels, **new_labels}.items()}
    checks: list[GateCheck] = []
    for label in sorted(label for label, support in supports.items() if support > 0):
        support = supports[label]
        new = new_labels[label].f1 if label in new_labels else 0.0
        old = old_labels[label].f1 if label in old_labels else 0.0
        what = f"{kind} {label!r} F1 on holdout {holdout!r}"
        if support < policy.min_support:
            checks.append(
                GateCheck(
                    name="label_regression",
                    holdout=holdout,
                    metric="f1",
                    label=label,
                    candidate=new,
                    incumbent=old,
                    threshold=old - policy.max_regression,
                    passed=True,
                    skipped=True,
                    delta=new - old,
                    support=support,
                    reason=f"{what} not checked: {support} holdout examples, fewer than "
                    f"min_support {policy.min_support} ({old:.3f} → {new:.3f})",
                )
            )
            continue
        check = _regression_check("label_regression", what, policy, holdout, "f1", new, old)
        update: dict[str, object] = {"label": label, "support": support}
        if policy.label_significance and new - old < -TOLERANCE:
            upper = _label_upper_bound(policy, label, candidate, incumbent)
            update["upper_bound"] = upper
            if not check.passed and upper >= -TOLERANCE:
                update["passed"] = True
                update["reason"] = (
                    f"{check.reason} but not significantly ({policy.confidence:.0%} "
                    f"paired-bootstrap upper bound {_signed(max(upper, 0.0))} ≥ 0 on {support} "
                    "examples)"
                )
        checks.append(check.model_copy(update=update))
    return checks


def _label_upper_bound(
    policy: GateConfig, label: str, candidate: ModelScores, incumbent: ModelScores
) -> float:
    """Upper confidence bound of (candidate - incumbent) F1 of one label, paired over documents."""
    labels = list(dict.fromkeys([*candidate.labels, *incumbent.labels]))
    column = [labels.index(label)]
    result = paired_bootstrap(
        "f1",
        candidate.aligned_counts(labels)[:, column, :],
        incumbent.aligned_counts(labels)[:, column, :],
        samples=policy.bootstrap_samples,
        seed=policy.bootstrap_seed,
        confidence=policy.confidence,
    )
    return float(np.quantile(result.replicates, policy.confidence))


def _regression_check(
    name: CheckName,
    what: str,
    policy: GateConfig,
    holdout: str,
    metric: str,
    new: float,
    old: float,
) -> GateCheck:
    delta = new - old
    tolerated = policy.max_regression
    passed = delta >= -tolerated - TOLERANCE
    change = f"{old:.3f} → {new:.3f} ({_signed(delta)})"
    if not passed:
        reason = f"{what} fell {change}, more than the tolerated {tolerated:.3f}"
    elif delta < -TOLERANCE:
        reason = f"{what} fell {change}, within the tolerated {tolerated:.3f}"
    elif delta > TOLERANCE:
        reason = f"{what} rose {change}"
    else:
        reason = f"{what} held at {new:.3f}"
    return GateCheck(
        name=name,
        holdout=holdout,
        metric=metric,
        candidate=new,
        incumbent=old,
        threshold=old - tolerated,
        passed=passed,
        delta=delta,
        reason=reason,
    )


def _signed(value: float) -> str:
    """``+0.031``, or ``-0.090`` written with `MINUS`; ``+0.000`` for values that round to 0."""
    text = f"{value:+.3f}"
    if text == "-0.000":
        return "+0.000"
    return text.replace("-", MINUS)


def read_gate(gate_path: str) -> GateResult:
    """Read the evaluate step's ``gate.json`` (or the gate artifact folder holding it)."""
    file = Path(gate_path)
    if file.is_dir():  # the evaluate component's gate artifact may be a folder
        file = file / "gate.json"
    return GateResult.model_validate_json(file.read_text(encoding="utf-8"))
