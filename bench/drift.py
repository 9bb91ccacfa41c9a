"""Benchmark the drift check's statistics: scale, a baseline, false alarms and detection power.

Run with ``python -m bench.drift [--quick]``. Everything is synthetic arrays (the statistics part,
not the database or the encoder), generated here with fixed seeds, and measured in one process:

1. **scale**: the statistics of one drift check on 1,000,000 logged predictions (predicted type,
   mean OCR confidence, words per page, OCR'd-page share) against a 100,000-document reference,
   with 100,000 x 384 embeddings on each side (subsampled to ``max_embedding_rows`` per side, as
   the check does) and the performance of 100,000 reviewed documents (accuracy with its Wilson
   interval, per-class F1 with 1,000 bootstrap resamples). Wall time on this machine; target
   <= 60 s on 2 cores.
2. **baseline**: the MMD permutation test the way alibi-detect's ``MMDDrift`` runs it (kernel
   matrix once, then a Python loop that permutes indices and sums the three kernel blocks of each
   permutation; a numpy port, since alibi-detect is not installed), on the same subsampled
   embeddings, kernel and bandwidth. It runs ``--baseline-permutations`` permutations and is
   extrapolated linearly to the count the check uses (per-permutation cost is constant); the
   observed MMD² of both must agree.
3. **false alarms**: >= 100 no-drift replicas (reference and current drawn from the same
   distribution: 8 document types with skewed shares, OCR statistics, 384-d embeddings from a
   class-conditional Gaussian mixture, so the tests are dependent as in real data), at the default
   family-wise alpha (0.01) and at 0.05. Target: rate <= 5 %.
4. **detection**: replicas with a label shift, an OCR-quality drop, an embedding shift (new
   layout), and a subtle embedding shift (a power check, no target).
5. **Evidently**: the same data through Evidently 0.7's drift preset, timed against docloop's
   drift statistics (``detect_drift``: label shift, the three OCR tests, MMD) on identical arrays,
   for a no-drift case (the scale section's data) and a drifted case (label shares, OCR
   confidence and embeddings moved; words per page and OCR'd-page share not). Evidently runs
   ``DataDriftPreset`` on the predicted type (categorical) and the OCR statistics (numerical),
   with its defaults (above 1,000 reference rows: Wasserstein distance (normed) >= 0.1 for
   numerical columns, Jensen-Shannon distance >= 0.1 for categorical ones and for numerical
   columns with at most 5 values; dataset drift when >= 50 % of the columns drift), and
   ``EmbeddingsDrift`` on the 384 embedding columns (the preset takes an ``embeddings`` argument
   but 0.7.23 does not use it) with its default method for references above 1,000 rows: a
   classifier between reference and current rows, drift when its ROC AUC > 0.55; the metric also
   fits a t-SNE of up to 2,500 rows per side for its plot, which dominates its time. Evidently's
   overall decision is "the preset's dataset drift or embedding drift"; docloop's is "any test".
   Evidently's time covers ``Dataset.from_pandas`` and ``Report.run``; building the DataFrames
   from the arrays and importing Evidently are reported apart. Target: docloop >= 5x faster with
   the same decision. With ``--evidently-mmd-rows`` Evidently's embedding drift gets only the rows
   docloop's MMD subsamples (``max_embedding_rows`` per side) instead of all of them.

Prints a table and writes ``bench/out/drift.json``. Targets are reported, never asserted.
Evidently is optional (``pip install -e .[bench]``); without it section 5 says so and the rest
runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats  # noqa: F401 - imported up front so that no timing includes the import

from docloop.config import DriftConfig
from docloop.monitor.drift import (
    OCR_STATISTICS,
    DriftSample,
    detect_drift,
    embedding_shift,
    label_shift,
    mmd2_from_indicators,
    ocr_shift,
    permutations_for,
    rbf_kernel_matrix,
    subsample_rows,
)
from docloop.monitor.performance import RateEstimate, label_scores, type_counts_from_codes

OUT = Path(__file__).resolve().parent / "out"
CLASSES = 8
DIMS = 384
SHARES = np.array([0.30, 0.20, 0.15, 0.10, 0.10, 0.07, 0.05, 0.03])
WALL_TARGET_S = 60.0
FALSE_ALARM_TARGET = 0.05
EVIDENTLY_SPEEDUP_TARGET = 5.0
EVIDENTLY_MISSING = "evidently not installed (pip install -e .[bench])"
SIGNALS = ("label_shift", *(f"ocr.{name}" for name in OCR_STATISTICS), "embeddings")

logger = logging.getLogger("bench.drift")


# --- synthetic data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """The generating distribution: class means in embedding space, OCR parameters."""

    centres: np.ndarray  # [classes, dims]

    @classmethod
    def make(cls, seed: int = 0) -> World:
        rng = np.random.default_rng(seed)
        return cls(rng.normal(0.0, 0.35, size=(CLASSES, DIMS)).astype(np.float32))

    def sample(
        self,
        rng: np.random.Generator,
        n: int,
        *,
        shares: np.ndarray = SHARES,
        confidence_shift: float = 0.0,
        embedding_shift: float = 0.0,
        embeddings: bool = True,
    ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """Labels (codes), OCR statistics and embeddings of ``n`` documents."""
        labels = rng.choice(CLASSES, size=n, p=shares)
        ocr = {
            "mean_confidence": np.clip(rng.normal(91.0 + confidence_shift, 4.0, n), 0, 100),
            "words_per_page": rng.lognormal(5.3 + 0.05 * labels, 0.35),
            "ocr_page_share": (rng.random(n) < 0.35).astype(np.float64),
        }
        vectors = None
        if embeddings:
            vectors = self.centres[labels] + rng.normal(0.0, 1.0, (n, DIMS)).astype(np.float32)
            if embedding_shift:
                vectors[:, :16] += embedding_shift  # a new layout moves a few directions
        return labels, ocr, vectors


def counts(labels: np.ndarray) -> dict[str, int]:
    values = np.bincount(labels, minlength=CLASSES)
    return {f"type{k}": int(v) for k, v in enumerate(values)}


def drift_sample(
    labels: np.ndarray, ocr: dict[str, np.ndarray], vectors: np.ndarray | None
) -> DriftSample:
    return DriftSample(counts(labels), ocr, vectors)


# --- the baseline ---------------------------------------------------------------------------------


def loop_mmd_null(
    kernel: np.ndarray, m: int, permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """alibi-detect's algorithm in numpy: per permutation, gather and sum the kernel blocks."""
    total = kernel.shape[0]
    n = total - m
    null = np.empty(permutations)
    for index in range(permutations):
        order = rng.permutation(total)
        first, second = order[:m], order[m:]
        kxx = kernel[np.ix_(first, first)]
        kyy = kernel[np.ix_(second, second)]
        kxy = kernel[np.ix_(first, second)]
        null[index] = (
            (kxx.sum() - m) / (m * (m - 1)) + (kyy.sum() - n) / (n * (n - 1)) - 2 * kxy.mean()
        )
    return null


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


# --- 1 + 2: scale and baseline --------------------------------------------------------------------


def scale(
    rows: int, reference_rows: int, reviews: int, baseline_permutations: int
) -> dict[str, Any]:
    config = DriftConfig()
    world = World.make(0)
    rng = np.random.default_rng(1)
    ref_labels, ref_ocr, ref_vectors = world.sample(rng, reference_rows)
    cur_labels, cur_ocr, _ = world.sample(rng, rows, embeddings=False)
    _, _, cur_vectors = world.sample(rng, reference_rows)
    true = rng.choice(CLASSES, size=reviews, p=SHARES)
    pred = np.where(rng.random(reviews) < 0.92, true, rng.choice(CLASSES, size=reviews))
    assert ref_vectors is not None and cur_vectors is not None
    timings: dict[str, float] = {}

    alpha = config.alpha / 5
    _, timings["label_shift"] = timed(
        lambda: label_shift(
            counts(ref_labels), counts(cur_labels), alpha=alpha, js_threshold=config.label_shift_js
        )
    )
    _, timings["ocr_tests"] = timed(
        lambda: [
            ocr_shift(
                name,
                ref_ocr[name],
                cur_ocr[name],
                alpha=alpha,
                effect_threshold=config.ocr_shift_effect,
            )
            for name in OCR_STATISTICS
        ]
    )

    def performance() -> None:
        correct = int((true == pred).sum())
        RateEstimate.of(correct, reviews)
        per_doc = type_counts_from_codes(true, pred, CLASSES)
        label_scores(per_doc, [f"type{k}" for k in range(CLASSES)], 1000, 0, 0.95)

    _, timings["performance_100k_reviews"] = timed(performance)
    report, timings["detect_drift_total"] = timed(
        lambda: detect_drift(
            drift_sample(ref_labels, ref_ocr, ref_vectors),
            drift_sample(cur_labels, cur_ocr, cur_vectors),
            config,
        )
    )
    permutations = permutations_for(alpha, config.permutations)
    embedding, timings["mmd_ours"] = timed(
        lambda: embedding_shift(
            ref_vectors,
            cur_vectors,
            alpha=alpha,
            permutations=config.permutations,
            max_rows=config.max_embedding_rows,
            seed=config.seed,
        )
    )
    assert embedding.statistic == report.embedding.statistic

    # the baseline, on the same subsample, kernel and bandwidth
    sub = np.random.default_rng(config.seed)
    x = subsample_rows(ref_vectors, config.max_embedding_rows, sub)
    y = subsample_rows(cur_vectors, config.max_embedding_rows, sub)
    (kernel, _), kernel_s = timed(lambda: rbf_kernel_matrix(np.concatenate([x, y])))
    m = len(x)
    indicator = np.zeros((len(kernel), 1))
    indicator[:m] = 1.0
    observed = float(mmd2_from_indicators(kernel, kernel.sum(axis=1), indicator, m)[0])
    _, loop_s = timed(
        lambda: loop_mmd_null(kernel, m, baseline_permutations, np.random.default_rng(9))
    )
    baseline_mmd_s = kernel_s + loop_s * permutations / baseline_permutations
    stats_total = timings["detect_drift_total"] + timings["performance_100k_reviews"]
    return {
        "rows": rows,
        "reference_rows": reference_rows,
        "embedding_rows_per_side_input": reference_rows,
        "embedding_dims": DIMS,
        "embedding_rows_used": [embedding.used_reference, embedding.used_current],
        "reviews": reviews,
        "permutations": permutations,
        "timings_s": {key: round(value, 3) for key, value in timings.items()},
        "statistics_wall_s": round(stats_total, 3),
        "wall_target_s": WALL_TARGET_S,
        "baseline": {
            "what": "alibi-detect MMDDrift algorithm (kernel once, Python loop over permutations)",
            "kernel_s": round(kernel_s, 3),
            "permutations_run": baseline_permutations,
            "loop_s_measured": round(loop_s, 3),
            "mmd_s_extrapolated": round(baseline_mmd_s, 3),
            "observed_mmd2_baseline": observed,
            "observed_mmd2_ours": embedding.statistic,
            "mmd_speedup": round(baseline_mmd_s / timings["mmd_ours"], 1),
            "statistics_speedup": round(
                (stats_total - timings["mmd_ours"] + baseline_mmd_s) / stats_total, 1
            ),
        },
    }


# --- 3 + 4: false alarms and detection ------------------------------------------------------------


def replicas(
    count: int,
    config: DriftConfig,
    reference_n: int,
    current_n: int,
    seed: int,
    **shift: Any,
) -> dict[str, Any]:
    world = World.make(0)
    rng = np.random.default_rng(seed)
    fired = 0
    per_test: dict[str, int] = {}
    start = time.perf_counter()
    for index in range(count):
        reference = drift_sample(*world.sample(rng, reference_n))
        current = drift_sample(*world.sample(rng, current_n, **shift))
        report = detect_drift(
            reference, current, config.model_copy(update={"seed": seed * 100_000 + index})
        )
        fired += int(report.detected)
        for test in report.drifted:
            per_test[test.name] = per_test.get(test.name, 0) + 1
    rate = fired / count
    interval = RateEstimate.of(fired, count)
    return {
        "replicas": count,
        "reference_n": reference_n,
        "current_n": current_n,
        "alpha": config.alpha,
        "rate": rate,
        "wilson_95": [round(interval.lower, 4), round(interval.upper, 4)],
        "by_test": dict(sorted(per_test.items())),
        "seconds": round(time.perf_counter() - start, 1),
    }


# --- 5: Evidently ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One side-by-side input: reference and current arrays of every signal."""

    reference_labels: np.ndarray
    reference_ocr: dict[str, np.ndarray]
    reference_vectors: np.ndarray
    current_labels: np.ndarray
    current_ocr: dict[str, np.ndarray]
    current_vectors: np.ndarray

    @classmethod
    def make(
        cls, rows: int, reference_rows: int, embedding_rows: int, seed: int, **shift: Any
    ) -> Case:
        """Draw a case in the scale section's order.

        Seed 1, no shift and ``embedding_rows == reference_rows`` reproduce its data exactly.
        """
        world = World.make(0)
        rng = np.random.default_rng(seed)
        ref_labels, ref_ocr, ref_vectors = world.sample(rng, reference_rows)
        ref_vectors = ref_vectors[:embedding_rows] if ref_vectors is not None else None
        cur_labels, cur_ocr, _ = world.sample(rng, rows, embeddings=False, **shift)
        _, _, cur_vectors = world.sample(rng, embedding_rows, **shift)
        assert ref_vectors is not None and cur_vectors is not None
        return cls(ref_labels, ref_ocr, ref_vectors, cur_labels, cur_ocr, cur_vectors)


def _evidently_modules() -> dict[str, Any] | None:
    """Evidently's entry points, imported on first use (None when it is not installed)."""
    try:
        import evidently
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import EmbeddingsDrift
        from evidently.metrics.embeddings import ModelDriftMethod
        from evidently.presets import DataDriftPreset
    except ImportError:
        return None
    return {
        "version": evidently.__version__,
        "DataDefinition": DataDefinition,
        "Dataset": Dataset,
        "Report": Report,
        "EmbeddingsDrift": EmbeddingsDrift,
        "ModelDriftMethod": ModelDriftMethod,
        "DataDriftPreset": DataDriftPreset,
    }


def _frames(case: Case) -> dict[str, Any]:
    """The DataFrames Evidently reads: tabular (type + OCR) and embeddings, per side."""
    import pandas as pd

    names = np.array([f"type{k}" for k in range(CLASSES)], dtype=object)
    columns = [f"e{j}" for j in range(DIMS)]

    def tabular(labels: np.ndarray, ocr: dict[str, np.ndarray]) -> Any:
        return pd.DataFrame({"doc_type": names[labels], **{k: ocr[k] for k in OCR_STATISTICS}})

    return {
        "reference": tabular(case.reference_labels, case.reference_ocr),
        "current": tabular(case.current_labels, case.current_ocr),
        "reference_embeddings": pd.DataFrame(case.reference_vectors, columns=columns),
        "current_embeddings": pd.DataFrame(case.current_vectors, columns=columns),
        "embedding_columns": columns,
    }


def _status_failed(status: Any) -> bool:
    return str(getattr(status, "value", status)).upper() == "FAIL"


def _run_evidently(ev: dict[str, Any], frames: dict[str, Any]) -> dict[str, Any]:
    """Evidently's drift preset + embeddings drift on the frames: its decisions and scores."""
    definition = ev["DataDefinition"](
        numerical_columns=list(OCR_STATISTICS), categorical_columns=["doc_type"]
    )
    start = time.perf_counter()
    reference = ev["Dataset"].from_pandas(frames["reference"], data_definition=definition)
    current = ev["Dataset"].from_pandas(frames["current"], data_definition=definition)
    tabular = ev["Report"]([ev["DataDriftPreset"]()], include_tests=True).run(current, reference)
    tabular_s = time.perf_counter() - start

    columns = frames["embedding_columns"]
    embedding_definition = ev["DataDefinition"](
        numerical_columns=[], embeddings={"embeddings": columns}
    )
    method = ev["ModelDriftMethod"]()  # = Evidently's default above 1,000 reference rows
    reference_emb = ev["Dataset"].from_pandas(
        frames["reference_embeddings"], data_definition=embedding_definition
    )
    current_emb = ev["Dataset"].from_pandas(
        frames["current_embeddings"], data_definition=embedding_definition
    )
    embedding = ev["Report"](
        [ev["EmbeddingsDrift"](embeddings_name="embeddings", drift_method=method)],
        include_tests=True,
    ).run(current_emb, reference_emb)
    return {
        "tabular": tabular,
        "embedding": embedding,
        "method": method,
        "tabular_s": tabular_s,
        "embedding_s": time.perf_counter() - start - tabular_s,
    }


def _evidently_decisions(outcome: dict[str, Any]) -> dict[str, Any]:
    """Per-signal decisions from Evidently's own results (its tests' FAIL = drift)."""
    data = outcome["tabular"].dict()
    signals: dict[str, dict[str, Any]] = {}
    share: float | None = None
    for metric in data["metrics"]:
        config = metric["config"]
        if str(config.get("type", "")).endswith("ValueDrift"):
            signals[config["column"]] = {
                "score": metric["value"],
                "method": config.get("method"),
                "threshold": config.get("threshold"),
            }
        elif str(config.get("type", "")).endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    dataset_drift = False
    for test in data["tests"]:
        params = test["metric_config"]["params"]
        kind = str(params.get("type", ""))
        if kind.endswith("ValueDrift"):
            signals[params["column"]]["drift"] = _status_failed(test["status"])
        elif kind.endswith("DriftedColumnsCount"):
            dataset_drift = _status_failed(test["status"])
    # EmbeddingsDrift reports only its score; the decision is on the legacy result it wraps.
    embedding_data = outcome["embedding"].dict()["metrics"][0]
    legacy = getattr(outcome["embedding"].context, "_legacy_metrics", {})
    result = next(
        (value[0] for value in legacy.values() if hasattr(value[0], "drift_detected")), None
    )
    method = outcome["method"]
    embedding = {
        "score": float(embedding_data["value"]),
        "method": f"{getattr(result, 'method_name', 'model')} (classifier ROC AUC)",
        "threshold": method.threshold,
        "drift": bool(result.drift_detected)
        if result is not None
        else float(embedding_data["value"]) > method.threshold,
    }
    by_signal = {"label_shift": signals["doc_type"]}
    by_signal.update({f"ocr.{name}": signals[name] for name in OCR_STATISTICS})
    by_signal["embeddings"] = embedding
    return {
        "signals": by_signal,
        "drifted_share": share,
        "dataset_drift": dataset_drift,
        "overall": dataset_drift or embedding["drift"],
        "any_signal": any(signal["drift"] for signal in by_signal.values()),
    }


def _docloop_decisions(report: Any) -> dict[str, Any]:
    tests = {test.name: test for test in report.tests}
    by_signal = {"label_shift": tests["label_shift"]}
    by_signal.update({f"ocr.{name}": tests[f"ocr.{name}"] for name in OCR_STATISTICS})
    by_signal["embeddings"] = tests["embedding_mmd"]
    return {
        "signals": {
            name: {
                "drift": test.drift,
                "p_value": test.p_value,
                "effect": test.effect,
                "effect_name": test.effect_name,
            }
            for name, test in by_signal.items()
        },
        "overall": report.detected,
    }


def evidently_comparison(
    rows: int, reference_rows: int, embedding_rows: int, mmd_rows_only: bool
) -> dict[str, Any]:
    """docloop's drift statistics vs Evidently's drift preset on the same arrays, two cases."""
    start = time.perf_counter()
    ev = _evidently_modules()
    import_s = time.perf_counter() - start
    if ev is None:
        return {"available": False, "note": EVIDENTLY_MISSING}
    config = DriftConfig()
    shifted = SHARES.copy()
    shifted[0], shifted[3] = 0.20, 0.20
    cases = {
        "no_drift": {},
        "drift": {"shares": shifted, "confidence_shift": -3.0, "embedding_shift": 0.25},
    }
    results: dict[str, Any] = {}
    for name, shift in cases.items():
        case = Case.make(rows, reference_rows, embedding_rows, seed=1, **shift)
        report, docloop_s = timed(
            lambda case=case: detect_drift(
                drift_sample(case.reference_labels, case.reference_ocr, case.reference_vectors),
                drift_sample(case.current_labels, case.current_ocr, case.current_vectors),
                config,
            )
        )
        if mmd_rows_only:  # the rows docloop's MMD used: same generator, same draws
            sub = np.random.default_rng(config.seed)
            x = subsample_rows(case.reference_vectors, config.max_embedding_rows, sub)
            y = subsample_rows(case.current_vectors, config.max_embedding_rows, sub)
            case = Case(
                case.reference_labels, case.reference_ocr, x, case.current_labels,
                case.current_ocr, y,
            )  # fmt: skip
        frames, frames_s = timed(lambda case=case: _frames(case))
        outcome, evidently_s = timed(lambda frames=frames: _run_evidently(ev, frames))
        ours = _docloop_decisions(report)
        theirs = _evidently_decisions(outcome)
        agreement = {
            signal: ours["signals"][signal]["drift"] == theirs["signals"][signal]["drift"]
            for signal in SIGNALS
        }
        results[name] = {
            "shift": {key: np.asarray(value).round(3).tolist() for key, value in shift.items()},
            "docloop_s": round(docloop_s, 3),
            "evidently_s": round(evidently_s, 3),
            "evidently_preset_s": round(outcome["tabular_s"], 3),
            "evidently_embeddings_s": round(outcome["embedding_s"], 3),
            "evidently_frames_s": round(frames_s, 3),
            "ratio": round(evidently_s / docloop_s, 1),
            "docloop": ours,
            "evidently": theirs,
            "signals_agree": agreement,
            "overall_agree": ours["overall"] == theirs["overall"],
            "embedding_rows_evidently": len(case.reference_vectors),
        }
        del case, frames, outcome
    return {
        "available": True,
        "version": ev["version"],
        "import_s": round(import_s, 2),
        "rows": rows,
        "reference_rows": reference_rows,
        "embedding_rows_per_side_input": embedding_rows,
        "embedding_rows_docloop_mmd": min(embedding_rows, config.max_embedding_rows),
        "evidently_embedding_rows": "mmd subsample" if mmd_rows_only else "all",
        "speedup_target": EVIDENTLY_SPEEDUP_TARGET,
        "cases": results,
    }


def run(quick: bool, evidently_mmd_rows: bool = False) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}",
        "quick": quick,
    }
    figures["scale"] = scale(
        rows=1_000_000,
        reference_rows=100_000,
        reviews=100_000,
        baseline_permutations=20 if quick else 100,
    )
    reference_n, current_n = (1000, 300) if quick else (2000, 500)
    null_count = 100 if quick else 300
    figures["false_alarms"] = {
        f"alpha_{alpha}": replicas(
            null_count, DriftConfig(alpha=alpha), reference_n, current_n, seed=seed
        )
        for seed, alpha in ((11, 0.01), (12, 0.05))
    }
    power_count = 20 if quick else 50
    shifted = SHARES.copy()
    shifted[0], shifted[3] = 0.20, 0.20  # a third fewer of the commonest type, twice the fourth
    scenarios = {
        "label_shift": {"shares": shifted},
        "ocr_quality_drop": {"confidence_shift": -3.0},
        "embedding_shift": {"embedding_shift": 0.25},
        "subtle_embedding_shift": {"embedding_shift": 0.08},
    }
    figures["detection"] = {
        name: replicas(power_count, DriftConfig(), reference_n, current_n, seed=20 + i, **shift)
        for i, (name, shift) in enumerate(scenarios.items())
    }
    figures["evidently"] = (
        evidently_comparison(20_000, 2_000, 500, evidently_mmd_rows)
        if quick
        else evidently_comparison(1_000_000, 100_000, 100_000, evidently_mmd_rows)
    )
    return figures


def report(figures: dict[str, Any], console: Console) -> None:
    scale_figures = figures["scale"]
    table = Table(title=f"drift-check statistics ({figures['machine']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target / note")
    timings = scale_figures["timings_s"]
    table.add_row(
        "statistics wall time (1M predictions, 100k x 384 embeddings, 100k reviews)",
        f"{scale_figures['statistics_wall_s']:.2f} s",
        f"<= {WALL_TARGET_S:.0f} s",
    )
    for key, value in timings.items():
        table.add_row(f"  {key}", f"{value:.3f} s", "")
    baseline = scale_figures["baseline"]
    table.add_row(
        f"MMD baseline ({baseline['permutations_run']} perms, extrapolated to "
        f"{scale_figures['permutations']})",
        f"{baseline['mmd_s_extrapolated']:.1f} s",
        "alibi-detect's loop, numpy port",
    )
    table.add_row("MMD speed-up vs baseline", f"{baseline['mmd_speedup']:.1f}x", "")
    table.add_row("whole statistics speed-up", f"{baseline['statistics_speedup']:.1f}x", "")
    for name, result in figures["false_alarms"].items():
        table.add_row(
            f"false-alarm rate, {name} ({result['replicas']} no-drift replicas)",
            f"{result['rate']:.1%}",
            f"<= {FALSE_ALARM_TARGET:.0%} (Wilson 95% {result['wilson_95'][0]:.1%}-"
            f"{result['wilson_95'][1]:.1%}; {result['by_test'] or 'none'})",
        )
    for name, result in figures["detection"].items():
        table.add_row(
            f"detection rate, {name} ({result['replicas']} replicas)",
            f"{result['rate']:.0%}",
            str(result["by_test"]),
        )
    console.print(table)
    evidently_table(figures["evidently"], console)


def _yes(flag: bool) -> str:
    return "drift" if flag else "no drift"


SHORT_NAMES = {
    "|standardised mean difference|": "|SMD|",
    "JS distance": "JS",
    "Jensen-Shannon distance": "JS",
    "Wasserstein distance (normed)": "Wasserstein (normed)",
    "model (classifier ROC AUC)": "classifier ROC AUC",
}


def _short(name: Any) -> str:
    return SHORT_NAMES.get(str(name), str(name))


def evidently_table(figures: dict[str, Any], console: Console) -> None:
    if not figures.get("available"):
        console.print(f"Evidently baseline: {figures.get('note', EVIDENTLY_MISSING)}", markup=False)
        return
    table = Table(
        title=(
            f"docloop vs Evidently {figures['version']} (DataDriftPreset + EmbeddingsDrift): "
            f"{figures['rows']:,} current / {figures['reference_rows']:,} reference rows, "
            f"{figures['embedding_rows_per_side_input']:,} x {DIMS} embeddings per side "
            f"(Evidently: {figures['evidently_embedding_rows']} rows, docloop MMD: "
            f"{figures['embedding_rows_docloop_mmd']:,})"
        )
    )
    table.add_column("case / signal")
    table.add_column("docloop", justify="right")
    table.add_column("Evidently", justify="right")
    table.add_column("agree / note")
    for name, case in figures["cases"].items():
        ratio = case["ratio"]
        table.add_row(
            f"{name}: wall time",
            f"{case['docloop_s']:.2f} s",
            f"{case['evidently_s']:.2f} s",
            f"{ratio:.1f}x (target >= {figures['speedup_target']:.0f}x: "
            f"{'met' if ratio >= figures['speedup_target'] else 'missed'}); Evidently: preset "
            f"{case['evidently_preset_s']:.1f} s + embeddings "
            f"{case['evidently_embeddings_s']:.1f} s (frames {case['evidently_frames_s']:.2f} s, "
            "not counted)",
        )
        for signal in SIGNALS:
            ours = case["docloop"]["signals"][signal]
            theirs = case["evidently"]["signals"][signal]
            table.add_row(
                f"  {signal}",
                f"{_yes(ours['drift'])} ({_short(ours['effect_name'])} "
                f"{ours['effect'] or 0:.3g}, "
                f"p {ours['p_value'] if ours['p_value'] is not None else float('nan'):.2g})",
                f"{_yes(theirs['drift'])} ({_short(theirs['method'])} {theirs['score']:.3g} "
                f"vs {theirs['threshold']:.3g})",
                "yes" if case["signals_agree"][signal] else "NO",
            )
        table.add_row(
            "  overall",
            _yes(case["docloop"]["overall"]),
            f"{_yes(case['evidently']['overall'])} (preset drifted share "
            f"{case['evidently']['drifted_share']:.2f})",
            "yes" if case["overall_agree"] else "NO",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicas (a few minutes less)")
    parser.add_argument(
        "--evidently-mmd-rows",
        action="store_true",
        help="give Evidently's embedding drift only the rows docloop's MMD subsamples",
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = run(arguments.quick, arguments.evidently_mmd_rows)
    report(figures, Console())
    OUT.mkdir(exist_ok=True)
    (OUT / "drift.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
