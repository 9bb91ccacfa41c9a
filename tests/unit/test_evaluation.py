"""Scoring on holdouts, the report, and run_evaluation end to end on two tiny trained models."""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from docloop.config import GateConfig, TrackingConfig, TrainingConfig
from docloop.documents.examples import read_examples, write_examples
from docloop.errors import ConfigError, InvalidInput
from docloop.evaluation.gate import GateResult, evaluate_gate
from docloop.evaluation.report import confusion_matrices, flat_metrics, render_report
from docloop.evaluation.run import (
    GATE_FILE,
    METRICS_FILE,
    REPORT_FILE,
    run_evaluation,
)
from docloop.evaluation.scoring import (
    ModelScores,
    classification_scores,
    extraction_scores,
    metric_values,
)
from docloop.models.metrics import (
    ClassificationReport,
    EntityReport,
    entity_counts_per_document,
)
from docloop.steps import evaluate as evaluate_step
from docloop.storage import Storage
from docloop.store.registry import resolve_model_uri
from tests.datasets import make_example, tiny_encoder, write_tiny_dataset

pytestmark = pytest.mark.unit

GOLD = ["invoice", "invoice", "invoice", "receipt", "receipt", "letter"]
PRED = ["invoice", "invoice", "receipt", "receipt", "letter", "letter"]
IDS = [f"d{i}" for i in range(6)]


# --- scores -------------------------------------------------------------------------------------


def test_classification_scores_agree_with_the_report() -> None:
    scores = classification_scores(IDS, GOLD, PRED, ["invoice", "receipt", "letter", "memo"])
    assert scores.labels == ("invoice", "receipt", "letter")  # memo: neither gold nor predicted
    assert isinstance(scores.report, ClassificationReport)
    assert scores.metric("accuracy") == pytest.approx(scores.report.accuracy)
    assert scores.metric("macro_f1") == pytest.approx(scores.report.macro_f1)
    assert scores.counts.sum(axis=(0, 1)).tolist() == [4, 6, 6]  # tp, predicted, gold
    assert scores.unknown_labels == ()
    assert scores.predicted_types == tuple(PRED)


def test_a_holdout_class_the_model_does_not_know_counts_as_wrong() -> None:
    gold = [*GOLD, "memo", "memo"]
    pred = [*PRED, "invoice", "letter"]
    scores = classification_scores([*IDS, "m1", "m2"], gold, pred, ["invoice", "receipt", "letter"])
    assert scores.unknown_labels == ("memo",)
    assert scores.labels[-1] == "memo"
    assert scores.per_label["memo"].f1 == 0.0 and scores.per_label["memo"].support == 2
    assert scores.metric("accuracy") == pytest.approx(4 / 8)
    assert scores.metric("macro_f1") == pytest.approx(scores.report.macro_f1)


def test_extraction_scores_agree_with_seqeval_and_the_span_counts() -> None:
    gold = [
        ["B-name", "I-name", "O", "B-date", "O"],
        ["B-date", "O", "B-total", "O"],
        ["O", "B-name", "I-name", "I-name"],
    ]
    pred = [
        ["B-name", "I-name", "O", "B-date", "I-date"],
        ["B-date", "O", "B-total", "B-total"],
        ["O", "I-name", "I-name", "I-name"],
    ]
    scores = extraction_scores(["a", "b", "c"], gold, pred, ["date", "name", "total"])
    np.testing.assert_array_equal(scores.counts.sum(axis=1), entity_counts_per_document(gold, pred))
    report = scores.report
    for metric in ("f1", "precision", "recall", "macro_f1"):
        assert scores.metric(metric) == pytest.approx(getattr(report, metric), abs=1e-12)
    assert scores.unknown_labels == ()

    narrow = extraction_scores(["a", "b", "c"], gold, pred, ["date", "name"])
    assert narrow.unknown_labels == ("total",)


def test_metric_values_is_vectorised_over_resamples() -> None:
    totals = np.array(
        [
            [[2, 3, 4], [0, 0, 0]],  # one label present: macro = its F1
            [[1, 1, 1], [0, 2, 1]],
        ]
    )
    np.testing.assert_allclose(metric_values("macro_f1", totals), [4 / 7, 0.5])
    np.testing.assert_allclose(metric_values("f1", totals), [4 / 7, 2 / 5])
    np.testing.assert_allclose(metric_values("precision", totals), [2 / 3, 1 / 3])
    np.testing.assert_allclose(metric_values("recall", np.zeros((2, 3))), 0.0)
    with pytest.raises(InvalidInput, match="unknown metric 'auc'"):
        metric_values("auc", totals)


def test_malformed_scores_are_refused() -> None:
    with pytest.raises(InvalidInput, match="repeats 'd0'"):
        classification_scores(["d0", "d0"], ["a", "a"], ["a", "a"])
    with pytest.raises(InvalidInput, match="not among the model's labels"):
        classification_scores(["d0"], ["a"], ["b"], ["a"])
    with pytest.raises(InvalidInput, match="no documents"):
        classification_scores([], [], [])
    with pytest.raises(InvalidInput, match="one of each per document"):
        extraction_scores(["a"], [["O"], ["O"]], [["O"], ["O"]])
    good = classification_scores(IDS, GOLD, PRED)
    with pytest.raises(InvalidInput, match="counts has shape"):
        ModelScores("classify", good.doc_ids, good.labels, good.counts[:2], good.report)
    with pytest.raises(InvalidInput, match="not a key metric of the classify task"):
        good.metric("f1")


# --- report and flat metrics --------------------------------------------------------------------


def test_the_report_escapes_every_string_and_is_self_contained() -> None:
    nasty = "<script>alert('x')</script>"
    gold = ["a"] * 10 + [nasty] * 10
    incumbent = classification_scores([f"d{i}" for i in range(20)], gold, gold)
    candidate = classification_scores(
        [f"d{i}" for i in range(20)], gold, ["a"] * 12 + [nasty] * 8, ["a", nasty]
    )
    gate = evaluate_gate("classify", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    page = render_report(
        gate,
        {"frozen": candidate},
        {"frozen": incumbent},
        candidate_uri="s3://bucket/<b>candidate</b>",
        incumbent_uri="s3://bucket/v1",
    )

    assert not gate.blessed
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<b>candidate" not in page and "&lt;b&gt;candidate&lt;/b&gt;" in page
    assert "NOT BLESSED" in page and "#cf222e" in page
    assert re.search(r"""(src|href)=["']?(https?:)?//""", page) is None  # no external assets
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4  # bootstrap histogram, F1 bars, two confusion matrices
    assert page.index("NOT BLESSED") < page.index("Holdout")  # the verdict comes first


def test_flat_metrics_and_confusion_matrices() -> None:
    gold = ["a"] * 10 + ["b"] * 10
    ids = [f"d{i}" for i in range(20)]
    candidate = classification_scores(ids, gold, gold)
    incumbent = classification_scores(ids, gold, ["a"] * 12 + ["b"] * 8)
    gate = evaluate_gate("classify", GateConfig(), {"frozen": candidate}, {"frozen": incumbent})

    flat = flat_metrics(gate, {"frozen": candidate}, {"frozen": incumbent})

    assert flat["blessed"] == float(gate.blessed) and flat["checks_failed"] == len(gate.failed)
    assert flat["candidate.frozen.macro_f1"] == 1.0
    assert flat["incumbent.frozen.macro_f1"] == pytest.approx(incumbent.report.macro_f1)
    assert flat["delta.frozen.macro_f1"] == pytest.approx(1.0 - incumbent.report.macro_f1)
    assert flat["delta.macro_f1"] == pytest.approx(flat["delta.frozen.macro_f1"])
    assert flat["incumbent.frozen.f1.b"] == pytest.approx(incumbent.per_label["b"].f1)
    assert "delta_lower_bound.macro_f1" in flat and flat["documents.frozen"] == 20
    assert all(isinstance(value, float) for value in flat.values())
    matrix = confusion_matrices({"frozen": incumbent})["frozen"]
    assert matrix == {
        "annotationSpecs": [{"displayName": "a"}, {"displayName": "b"}],
        "rows": [{"row": [10, 0]}, {"row": [2, 8]}],
    }


# --- run_evaluation on tiny trained models ------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    dataset: Path
    feedback: Path  # a .parquet holdout with a class the classifiers never saw
    v1: Path  # classifier
    v2: Path  # classifier warm-started from v1
    extractor: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from docloop.models import training

    root = tmp_path_factory.mktemp("evaluate")
    dataset = write_tiny_dataset(root / "dataset")
    tracking = TrackingConfig(enabled=False)  # test_training.py covers what training logs
    config = TrainingConfig(
        encoder=str(tiny_encoder(root / "encoder")),
        max_length=32,
        batch_size=4,
        epochs=1,
        max_steps=2,
    )
    one_step = config.model_copy(update={"max_steps": 1})
    training.train("classify", str(dataset), str(root / "v1"), config, tracking)
    training.train(
        "classify", str(dataset), str(root / "v2"), one_step, tracking, init_from=str(root / "v1")
    )
    training.train("extract", str(dataset), str(root / "x1"), one_step, tracking)

    rng = random.Random(7)
    fresh = [make_example(100 + i, rng) for i in range(10)]
    unknown = [
        example.model_copy(update={"doc_id": f"new{i}", "doc_type": "aaa_unknown"})
        for i, example in enumerate(fresh[:2])
    ]
    feedback = root / "feedback.parquet"
    write_examples(Storage(), str(feedback), fresh + unknown)
    return Trained(dataset, feedback, root / "v1", root / "v2", root / "x1")


def test_run_evaluation_writes_consistent_outputs(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = (tmp_path / "evaluation").as_uri()  # file:// URIs and plain paths both work
    policy = GateConfig(bootstrap_samples=200, classify_floor=0.0)
    progress: list[tuple[str, int, int]] = []

    with caplog.at_level(logging.WARNING):
        outcome = run_evaluation(
            "classify",
            str(trained.v2),
            str(trained.v1),
            {"frozen": str(trained.dataset), "feedback": str(trained.feedback)},
            policy,
            output,
            on_progress=lambda stage, done, total: progress.append((stage, done, total)),
        )

    folder = tmp_path / "evaluation"
    assert {p.name for p in folder.iterdir()} == {GATE_FILE, METRICS_FILE, REPORT_FILE}
    gate = GateResult.model_validate_json((folder / GATE_FILE).read_text(encoding="utf-8"))
    assert gate.model_dump() == outcome.gate.model_dump()
    assert gate.holdouts == {"frozen": 4, "feedback": 12}
    assert gate.models == {"candidate": str(trained.v2), "incumbent": str(trained.v1)}
    assert set(gate.holdout_digests) == {"frozen", "feedback"}
    assert [c.name for c in gate.checks][:5] == [
        "floor",
        "floor",
        "improvement",
        "holdout_regression",
        "holdout_regression",
    ]
    assert all(c.name == "label_regression" for c in gate.checks[5:])

    metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    assert metrics == outcome.metrics
    assert metrics["blessed"] == float(gate.blessed) == float(outcome.blessed)
    for key in ("candidate.frozen.macro_f1", "incumbent.feedback.macro_f1", "delta.macro_f1"):
        assert key in metrics
    assert metrics["candidate.frozen.macro_f1"] == pytest.approx(
        outcome.candidate["frozen"].report.macro_f1
    )
    assert metrics["delta.macro_f1"] == pytest.approx(gate.bootstrap.delta)  # type: ignore[union-attr]

    page = (folder / REPORT_FILE).read_text(encoding="utf-8")
    assert page == outcome.html
    verdict = "BLESSED" if gate.blessed else "NOT BLESSED"
    assert f">{verdict}</p>" in page
    assert page.count("data:image/png;base64,") == 1 + 2 * 3  # bootstrap + per holdout 3

    feedback = outcome.candidate["feedback"]
    assert feedback.unknown_labels == ("aaa_unknown",)
    assert "'aaa_unknown' (2)" in caplog.text and "count as misclassified" in caplog.text
    labels = ["invoice", "referral_letter", "aaa_unknown"]
    assert [
        spec["displayName"] for spec in outcome.confusion_matrices["feedback"]["annotationSpecs"]
    ] == [label for label in labels if label in feedback.labels]
    assert outcome.confusion_matrix == outcome.confusion_matrices["frozen"]
    assert outcome.candidate["frozen"].doc_ids == outcome.incumbent["frozen"].doc_ids  # type: ignore[index]
    assert ("candidate on 'feedback'", 12, 12) in progress


def test_the_evaluate_step_gates_a_first_extractor_on_floors_only(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no docloop.yaml here: defaults plus the override below
    monkeypatch.setenv("DOCLOOP__GATE__EXTRACT_FLOOR", "0.0")
    gate_path = tmp_path / "outputs" / "gate"

    outcome = evaluate_step.run(
        "extract", str(trained.extractor), str(trained.dataset), "", "", str(gate_path)
    )

    assert outcome.blessed and outcome.gate.first_model and outcome.gate.summary == ""
    assert [c.name for c in outcome.gate.checks] == ["floor"]
    assert outcome.gate.policy.extract_floor == 0.0
    assert GateResult.model_validate_json(gate_path.read_text(encoding="utf-8")) == outcome.gate
    assert outcome.output_uri is None and outcome.files == {}
    report = outcome.candidate["frozen"].report
    assert isinstance(report, EntityReport)
    assert outcome.metrics["candidate.frozen.f1"] == pytest.approx(report.f1, abs=1e-12)
    assert outcome.confusion_matrices == {} and outcome.confusion_matrix is None
    assert "none: first model" in outcome.html
    # field exact-match next to the spans: gold values from the tags (labels by word positions)
    fields = outcome.candidate["frozen"].field_report
    assert fields is not None
    holdout = read_examples(Storage(), str(trained.dataset / "holdout.parquet"))
    gold = {(e.doc_id, t[2:]) for e in holdout for t in e.tags if t.startswith("B-")}
    assert fields.overall.gold == len(gold)
    assert outcome.metrics["candidate.frozen.field_f1"] == pytest.approx(fields.overall.f1)
    for name, score in fields.per_field.items():
        assert outcome.metrics[f"candidate.frozen.field_f1.{name}"] == pytest.approx(score.f1)
        assert outcome.gate.field_f1["frozen"]["candidate"][name] == round(score.f1, 4)
    assert "Field values, exact match" in outcome.html


@pytest.mark.parametrize("kept_out", [0, 4])
def test_the_evaluate_step_gates_on_the_bundled_feedback_holdout_unless_it_is_empty(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept_out: int
) -> None:
    """A retrain dataset's feedback_holdout.parquet joins the gate; an empty one is skipped."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCLOOP__GATE__EXTRACT_FLOOR", "0.0")
    dataset = tmp_path / "dataset"
    shutil.copytree(trained.dataset, dataset)
    reviewed = read_examples(Storage(), str(trained.dataset / "holdout.parquet"))[:kept_out]
    write_examples(Storage(), str(dataset / "feedback_holdout.parquet"), reviewed)

    outcome = evaluate_step.run(
        "extract", str(trained.extractor), str(dataset), "", "", str(tmp_path / "gate")
    )

    expected = {"frozen", "feedback"} if kept_out else {"frozen"}
    assert set(outcome.candidate) == expected and outcome.blessed


class FakeRegistry:
    """The two MlflowClient calls resolve_model_uri makes."""

    def get_model_version_by_alias(self, name: str, alias: str) -> SimpleNamespace:
        return SimpleNamespace(version="3", source=f"s3://models/{name}/{alias}")

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        return SimpleNamespace(version=version, source=f"s3://models/{name}/v{version}")


def test_registry_uris_resolve_to_the_version_source() -> None:
    client = FakeRegistry()
    assert resolve_model_uri("models:/clf@champion", client=client) == "s3://models/clf/champion"
    assert resolve_model_uri("models:/clf/7", client=client) == "s3://models/clf/v7"
    assert resolve_model_uri("s3://bucket/model", client=client) == "s3://bucket/model"
    with pytest.raises(InvalidInput, match=r"models:/<name>@<alias>"):
        resolve_model_uri("models:/clf", client=client)


def test_run_evaluation_refuses_what_it_cannot_compare(trained: Trained, tmp_path: Path) -> None:
    frozen = {"frozen": str(trained.dataset)}
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match=r"gate\.classify_metric"):  # before any model loads
        run_evaluation("classify", "/nowhere", None, frozen, GateConfig(classify_metric="x"), out)
    with pytest.raises(
        InvalidInput, match="is a classify model, but this evaluation is for extract"
    ):
        run_evaluation("extract", str(trained.v1), None, frozen, GateConfig(), out)
    with pytest.raises(InvalidInput, match=r"the incumbent at .* is a extract model"):
        run_evaluation(
            "classify", str(trained.v2), str(trained.extractor), frozen, GateConfig(), out
        )
    with pytest.raises(InvalidInput, match=r"holdout\.parquet does not exist"):
        run_evaluation(
            "classify", str(trained.v1), None, {"frozen": str(tmp_path)}, GateConfig(), out
        )
    with pytest.raises(InvalidInput, match=r"holdout name 'a\.b' is not allowed"):
        run_evaluation(
            "classify", str(trained.v1), None, {"a.b": str(trained.dataset)}, GateConfig(), out
        )

    empty = tmp_path / "empty.parquet"
    write_examples(Storage(), str(empty), [])
    with pytest.raises(InvalidInput, match="has no documents"):
        run_evaluation("classify", str(trained.v1), None, {"h": str(empty)}, GateConfig(), out)

    strangers = tmp_path / "strangers.parquet"
    examples = read_examples(Storage(), str(trained.dataset / "holdout.parquet"))
    write_examples(
        Storage(), str(strangers), [e.model_copy(update={"doc_type": "memo"}) for e in examples]
    )
    with pytest.raises(InvalidInput, match="no gold class the candidate can predict"):
        run_evaluation("classify", str(trained.v1), None, {"h": str(strangers)}, GateConfig(), out)

    renamed = tmp_path / "renamed"
    shutil.copytree(trained.v1, renamed)
    card = json.loads((renamed / "docloop-model.json").read_text(encoding="utf-8"))
    card["labels"] = ["memo", "fax"]
    (renamed / "docloop-model.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(InvalidInput, match="have nothing in common"):
        run_evaluation("classify", str(trained.v2), str(renamed), frozen, GateConfig(), out)
    assert not (tmp_path / "out" / GATE_FILE).exists()


def test_the_cli_exits_3_when_not_blessed_and_names_the_failed_checks(
    trained: Trained, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from docloop.cli import EXIT_NOT_BLESSED, app

    policy = tmp_path / "policy.yaml"
    policy.write_text("min_improvement: 0.9\nbootstrap_samples: 100\n")  # unreachable gain
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--candidate",
            str(trained.v2),
            "--incumbent",
            str(trained.v1),
            "--holdout",
            str(trained.dataset),
            "--policy",
            str(policy),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == EXIT_NOT_BLESSED, result.output
    printed = " ".join(result.output.split())  # rich wraps long lines
    assert "NOT BLESSED" in printed and "required +0.900" in printed
    assert (tmp_path / "out" / "gate.json").is_file()
    bad = CliRunner().invoke(
        app, ["evaluate", "--candidate", str(tmp_path), "--holdout", "x", "--output", "y"]
    )
    assert bad.exit_code == 2 and "not a docloop model" in " ".join(bad.output.split())
