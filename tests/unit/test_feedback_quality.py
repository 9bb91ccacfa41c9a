"""Feedback quality rules, each on small hand-made records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from docloop.config import FeedbackConfig
from docloop.feedback.contracts import Correction, FeedbackRecord
from docloop.feedback.quality import (
    PRIOR_TRUST,
    QualityReport,
    assess_feedback,
    audited_labels,
    doc_type_label_issues,
    persist_statuses,
    reviewer_trust,
)
from docloop.feedback.verdicts import verdict_of
from docloop.store import open_store
from docloop.store.tables import FeedbackEvent
from tests.feedback import correction, feedback_record

pytestmark = pytest.mark.unit

TYPES = ("invoice", "lab_report", "referral_letter")
CONFIG = FeedbackConfig()
T0 = datetime(2025, 3, 1, tzinfo=UTC)
NAME = [("patient_name", [3, 4]), ("mrn", [6])]


def probs(top: str, p: float = 0.95) -> dict[str, float]:
    rest = (1 - p) / (len(TYPES) - 1)
    return {t: (p if t == top else rest) for t in TYPES}


def rec(
    id_: int,
    doc: str,
    reviewer: str = "alice",
    *,
    predicted: str = "invoice",
    probabilities: dict[str, float] | None = None,
    to_type: str | None = None,
    to_entities: Sequence[tuple[str, Sequence[int]]] | None = None,
    entities: Sequence[tuple[str, Sequence[int]]] = NAME,
    entity_confidence: float = 0.9,
    kind: str | None = None,
    minutes: int = 0,
) -> FeedbackRecord:
    return feedback_record(
        id_,
        kind=kind,  # type: ignore[arg-type]
        correction=correction(to_type, to_entities),
        doc_id=doc,
        reviewer_id=reviewer,
        received_at=T0 + timedelta(minutes=minutes or id_),
        predicted_doc_type=predicted,
        predicted_probabilities=probabilities or probs(predicted),
        predicted_entities=[
            {"type": k, "word_indices": list(i), "confidence": entity_confidence}
            for k, i in entities
        ],
    )


def by_id(report: QualityReport) -> dict[int, tuple[str, str]]:
    return {event.id: (event.status, event.code) for event in report.events}


def background(start: int = 1000, per_type: int = 20) -> list[FeedbackRecord]:
    """Confident confirmations of every type by many reviewers (the batch's reference)."""
    records = []
    for i in range(per_type * len(TYPES)):
        doc_type = TYPES[i % len(TYPES)]
        records.append(rec(start + i, f"bg{i}", f"bg-reviewer-{i % 7}", predicted=doc_type))
    return records


# ---------------------------------------------------------------------------------- verdicts


def test_verdict_overrides_the_prediction_part_by_part() -> None:
    type_only = verdict_of(rec(1, "d", to_type="lab_report"))
    assert type_only.doc_type == "lab_report"
    assert type_only.entities == frozenset({("patient_name", (3, 4)), ("mrn", (6,))})
    entities_only = verdict_of(rec(2, "d", to_entities=[("mrn", [7])]))
    assert entities_only.doc_type == "invoice"
    assert entities_only.entities == frozenset({("mrn", (7,))})
    assert verdict_of(rec(3, "d")).agrees(verdict_of(rec(4, "d"))) is True
    assert type_only.agrees(entities_only) is False


# ------------------------------------------------------------------------- one per reviewer


def test_a_reviewers_earlier_verdict_is_superseded_by_their_later_one() -> None:
    first = rec(1, "d1", to_type="lab_report", minutes=1)
    second = rec(2, "d1", minutes=5)  # the same reviewer confirms after all
    report = assess_feedback([second, first], CONFIG)
    assert by_id(report) == {1: ("superseded", "replaced_by_reviewer"), 2: ("accepted", "clean")}
    assert "event 2" in report.events[1].reason


def test_an_empty_correction_is_quarantined() -> None:
    empty = rec(1, "d1", kind="correction")
    report = assess_feedback([empty], CONFIG)
    assert by_id(report) == {1: ("quarantined", "empty_correction")}
    assert "correction.doc_type" in report.events[0].reason


# ------------------------------------------------------------------------------------ trust


def test_trust_is_the_prior_without_comparisons_and_moves_with_evidence() -> None:
    k = CONFIG.min_reviews_for_trust
    records = [rec(1, "d1", "alice"), rec(2, "d2", "bob")]
    audited = {"d2": Correction(doc_type="invoice")}  # bob agrees with the audit once
    trust = reviewer_trust(records, audited, CONFIG)
    assert trust["alice"].trust == pytest.approx(PRIOR_TRUST)
    assert trust["alice"].compared == 0 and not trust["alice"].believed
    assert trust["bob"].trust == pytest.approx((1 + PRIOR_TRUST * k) / (1 + k))
    assert trust["bob"].audited == 1


def test_a_reviewer_who_contradicts_audits_is_quarantined_with_the_numbers() -> None:
    records = [rec(i, f"d{i}", "mallory", to_type="lab_report") for i in range(1, 5)]
    records.append(rec(9, "other", "mallory", to_type="lab_report"))
    audited = {f"d{i}": Correction(doc_type="invoice") for i in range(1, 5)}
    report = assess_feedback(records, CONFIG, audited)
    trust = report.reviewers["mallory"]
    expected = (0 + PRIOR_TRUST * 5) / (4 + 5)
    assert trust.trust == pytest.approx(expected) and trust.quarantined
    assert by_id(report)[9] == ("quarantined", "low_trust")
    assert f"{expected:.2f} < min_trust 0.60" in report.events[-1].reason
    assert report.counts["quarantined"] == 5  # audited ones count as low trust first


def test_peer_agreement_weighs_the_peers_trust() -> None:
    # carol always agrees with alice; dave disagrees with alice on the same documents
    records = []
    for i in range(6):
        records.append(rec(10 * i + 1, f"d{i}", "alice"))
        records.append(rec(10 * i + 2, f"d{i}", "carol"))
        records.append(rec(10 * i + 3, f"d{i}", "dave", to_type="lab_report"))
    trust = reviewer_trust(records, None, CONFIG)
    assert trust["alice"].trust > PRIOR_TRUST - 0.2
    assert trust["carol"].trust > trust["dave"].trust
    assert trust["dave"].trust < CONFIG.min_trust and trust["dave"].believed


# ---------------------------------------------------------------------------------- audits


def test_audited_documents_supersede_contradictions_and_protect_matches() -> None:
    wrong = rec(1, "d1", "alice", to_type="lab_report")
    right = rec(2, "d1", "bob")
    report = assess_feedback([wrong, right], CONFIG, {"d1": Correction(doc_type="invoice")})
    assert by_id(report) == {1: ("superseded", "contradicts_audit"), 2: ("accepted", "clean")}
    assert "audited label" in report.events[0].reason


def test_auditors_verdicts_are_the_audits() -> None:
    """feedback.auditors: the latest verdict of an auditor on a document is its gold label."""
    records = [
        rec(1, "d1", "alice", to_type="lab_report"),  # contradicts the audit below
        rec(2, "d1", "auditor", to_type="referral_letter", minutes=1),  # replaced by 3
        rec(3, "d1", "auditor", minutes=50),  # confirms the prediction: invoice + NAME
        rec(4, "d2", "auditor", to_entities=[("mrn", [6])]),
        rec(5, "d2", "bob"),  # keeps patient_name, which the audit removed
        rec(6, "d3", "bob"),  # not audited
    ]
    audits = audited_labels(records, ["auditor"])
    assert set(audits) == {"d1", "d2"}
    assert audits["d1"].doc_type == "invoice"
    assert [(e.type, e.word_indices) for e in audits["d1"].entities or []] == sorted(
        (k, list(i)) for k, i in NAME
    )
    assert audits["d2"].doc_type == "invoice"
    assert [(e.type, e.word_indices) for e in audits["d2"].entities or []] == [("mrn", [6])]
    assert audited_labels(records, []) == {}

    report = assess_feedback(records, CONFIG, audits)
    statuses = by_id(report)
    assert statuses[1] == ("superseded", "contradicts_audit")
    assert statuses[2] == ("superseded", "replaced_by_reviewer")
    assert statuses[3][0] == statuses[4][0] == "accepted"  # the audits themselves train
    assert statuses[5] == ("superseded", "contradicts_audit")
    assert statuses[6][0] == "accepted"
    assert report.reviewers["auditor"].audited == 2
    assert report.reviewers["bob"].audited == 1 and report.reviewers["alice"].audited == 1


# ---------------------------------------------------------------------- confident learning


def confident_correction(id_: int = 1, doc: str = "x1", reviewer: str = "alice") -> FeedbackRecord:
    """The incumbent is sure it is an invoice (0.98); the reviewer says referral letter."""
    return rec(id_, doc, reviewer, probabilities=probs("invoice", 0.98), to_type="referral_letter")


def unsure_correction(id_: int = 2) -> FeedbackRecord:
    """The incumbent hesitated between invoice and referral letter."""
    unsure = {"invoice": 0.5, "referral_letter": 0.45, "lab_report": 0.05}
    return rec(id_, "x2", "alice", probabilities=unsure, to_type="referral_letter")


def test_confident_learning_flags_corrections_against_a_confident_incumbent() -> None:
    records = [*background(), confident_correction(), unsure_correction()]
    report = assess_feedback(records, CONFIG)
    decisions = by_id(report)
    assert decisions[1] == ("quarantined", "suspicious_doc_type")
    assert decisions[2] == ("accepted", "clean")
    event = next(e for e in report.events if e.id == 1)
    assert event.label_quality == pytest.approx(0.01)
    assert "'invoice' (0.980)" in event.reason
    # confirmations are scored but never flagged
    assert all(decisions[r.id] == ("accepted", "clean") for r in background())


def test_cleanlab_scores_come_with_thresholds() -> None:
    scores = doc_type_label_issues([*background(), confident_correction(), unsure_correction()])
    assert scores[1].issue and scores[1].likely_type == "invoice"
    assert not scores[2].issue
    assert scores[1].threshold > 0.8  # mean self-confidence of referral letters in the batch


def test_the_margin_tightens_the_flag() -> None:
    records = [*background(), confident_correction()]
    lenient = FeedbackConfig(label_issue_threshold=0.005)  # below 0.005 x threshold only
    assert by_id(assess_feedback(records, lenient))[1] == ("accepted", "clean")


def test_too_few_classes_are_not_scored() -> None:
    only = {"invoice": 1.0}
    records = [rec(1, "a", probabilities=only), rec(2, "b", probabilities=only, to_type="x")]
    assert doc_type_label_issues(records) == {}


def test_a_second_reviewer_corroborates_a_flagged_correction() -> None:
    records = [*background(), confident_correction(1, "x1", "alice")]
    records.append(confident_correction(2, "x1", "bob"))
    decisions = by_id(assess_feedback(records, CONFIG))
    assert decisions[1] == ("accepted", "corroborated")
    assert decisions[2] == ("accepted", "corroborated")


def test_an_audit_overrides_a_flag() -> None:
    records = [*background(), confident_correction()]
    audited = {"x1": Correction(doc_type="referral_letter")}
    assert by_id(assess_feedback(records, CONFIG, audited))[1] == ("accepted", "matches_audit")


# ------------------------------------------------------------------------------- entities


def test_dropping_a_confident_entity_is_suspicious() -> None:
    confident = rec(1, "d1", entity_confidence=0.995, to_entities=[("patient_name", [3, 4])])
    unsure = rec(2, "d2", entity_confidence=0.7, to_entities=[("patient_name", [3, 4])])
    moved = rec(3, "d3", entity_confidence=0.995, to_entities=[*NAME, ("dob", [9])])
    report = assess_feedback([confident, unsure, moved], CONFIG)
    assert by_id(report) == {
        1: ("quarantined", "suspicious_entities"),
        2: ("accepted", "clean"),
        3: ("accepted", "clean"),  # adding an entity keeps every confident one
    }
    assert "mrn (0.995)" in report.events[0].reason


# ------------------------------------------------------------------------------ conflicts


def test_conflicts_are_settled_by_a_trust_weighted_majority() -> None:
    records = [
        rec(1, "d1", "alice"),
        rec(2, "d1", "bob"),
        rec(3, "d1", "carol", to_type="lab_report"),
    ]
    report = assess_feedback(records, CONFIG)
    assert by_id(report) == {
        1: ("accepted", "conflict_won"),
        2: ("accepted", "conflict_won"),
        3: ("superseded", "conflict_lost"),
    }
    assert "outvoted on d1" in report.events[2].reason


def test_a_trusted_reviewer_outvotes_an_untrusted_one() -> None:
    # alice has a record of matching audits, bob has none: alice's correction wins
    history = [rec(100 + i, f"h{i}", "alice", predicted="lab_report") for i in range(5)]
    audited = {f"h{i}": Correction(doc_type="lab_report") for i in range(5)}
    unsure = {"invoice": 0.5, "lab_report": 0.45, "referral_letter": 0.05}
    conflict = [
        rec(1, "d1", "alice", probabilities=unsure, to_type="lab_report"),
        rec(2, "d1", "bob", probabilities=unsure),
    ]
    report = assess_feedback([*history, *conflict], CONFIG, audited)
    assert report.reviewers["alice"].trust > report.reviewers["bob"].trust
    decisions = by_id(report)
    assert decisions[1] == ("accepted", "conflict_won")
    assert decisions[2] == ("superseded", "conflict_lost")


def test_a_tied_conflict_is_quarantined() -> None:
    records = [rec(1, "d1", "alice"), rec(2, "d1", "bob", to_type="lab_report")]
    report = assess_feedback(records, CONFIG)
    assert by_id(report) == {
        1: ("quarantined", "conflict_tied"),
        2: ("quarantined", "conflict_tied"),
    }


def test_entity_conflicts_count_too() -> None:
    records = [
        rec(1, "d1", "alice", to_entities=[("mrn", [6])]),
        rec(2, "d1", "bob", to_entities=[("mrn", [6])]),
        rec(3, "d1", "carol"),
    ]
    assert by_id(assess_feedback(records, CONFIG))[3] == ("superseded", "conflict_lost")


# ------------------------------------------------------------------------ report and store


def test_the_report_counts_and_filters() -> None:
    records = [rec(1, "d1"), rec(2, "d2", kind="correction"), rec(3, "d1", minutes=99)]
    report = assess_feedback(records, CONFIG)
    assert report.counts == {"accepted": 1, "quarantined": 1, "superseded": 1}
    assert report.reasons == {"clean": 1, "empty_correction": 1, "replaced_by_reviewer": 1}
    assert [r.id for r in report.accepted(records)] == [3]
    summary = report.summary()
    assert summary["prior_trust"] == PRIOR_TRUST
    assert summary["reviewers"] == {
        "alice": {"trust": PRIOR_TRUST, "events": 3, "compared": 0.0, "quarantined": False}
    }


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="distinct ids"):
        assess_feedback([rec(1, "a"), rec(1, "b")], CONFIG)


def test_statuses_are_persisted_in_one_transaction(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    records = [rec(1, "d1"), rec(2, "d2", kind="correction"), rec(3, "d1", minutes=99)]
    with store.write() as session:
        for r in records:
            session.add(
                FeedbackEvent(
                    id=r.id,
                    idempotency_key=r.idempotency_key,
                    model_name=r.model_name,
                    model_version=r.model_version,
                    request_id=r.request_id,
                    doc_id=r.doc_id,
                    reviewer_id=r.reviewer_id,
                    kind=r.kind,
                    payload={},
                )
            )
    report = assess_feedback(records, CONFIG)
    assert persist_statuses(store, report) == 3
    with store.read() as session:
        rows = {
            row.id: (row.status, row.quarantine_reason)
            for row in session.scalars(select(FeedbackEvent))
        }
    store.close()
    assert rows[3] == ("accepted", None)
    assert rows[2][0] == "quarantined" and rows[2][1].startswith("empty_correction: ")
    assert rows[1][0] == "superseded" and rows[1][1].startswith("replaced_by")


def test_an_auditor_is_a_role_not_a_reviewer_id() -> None:
    """Issue 19: a verdict stored with a role is an audit only when that role is ``auditor``."""
    forged = feedback_record(
        1,
        reviewer_id="auditor",
        reviewer_role="reviewer",
        correction=correction(doc_type="letter"),
        doc_id="d1",
    )
    real = feedback_record(2, reviewer_id="carol", reviewer_role="auditor", doc_id="d2")
    older = feedback_record(3, reviewer_id="auditor", doc_id="d3")  # stored before roles
    audits = audited_labels([forged, real, older], ["auditor"])
    assert sorted(audits) == ["d2", "d3"]
    assert audited_labels([forged, real, older]) == {"d2": audits["d2"]}
