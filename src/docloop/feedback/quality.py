"""Feedback quality: decide which reviewer verdicts may train a model, before any of them does.

A reviewer's verdict becomes training labels only when nothing speaks against it. The rules, in
the order :func:`assess_feedback` applies them:

1. **One verdict per reviewer and document.** A reviewer who judged a document twice is taken at
   their latest word (by ``received_at``, then id); the earlier verdicts are ``superseded``.
2. **Empty corrections** (a correction that names neither a type nor an entity list) are
   ``quarantined``: they say something was wrong but not what.
3. **Reviewer trust.** Each reviewer's trust is the posterior mean of a Beta prior updated by how
   often they agreed with the others: with every other reviewer of the same document (a
   comparison weighted by that reviewer's own trust, iterated to a fixed point, so agreeing with a
   careless reviewer proves little) and with audited labels (weight 1). The prior is
   ``Beta(prior_trust * k, (1 - prior_trust) * k)`` with ``k = min_reviews_for_trust``
   pseudo-reviews and ``prior_trust = 0.8`` by default: a reviewer nobody has checked yet is
   presumed good (most documents are judged once, so most reviewers have few comparisons), and
   only after about ``k`` compared reviews does their own record outweigh the prior. Reviewers
   whose trust is below ``min_trust`` have all their verdicts ``quarantined``.
4. **Audited documents.** Where an audited (gold) label exists, verdicts that contradict it are
   ``superseded`` by it; verdicts that match it are accepted whatever the other rules say.
5. **Suspicious corrections.** A document-type correction is flagged with confident learning
   (Northcutt et al., *Confident Learning*, 2021) on the incumbent's prediction-time
   probabilities, which are out-of-sample (production documents were never trained on) and so
   exactly what confident learning needs: ``cleanlab.filter.find_label_issues(labels, pred_probs,
   filter_by="confident_learning")`` with ``labels`` = the type each verdict settles on (the
   corrected type, or the predicted one for confirmations) over every open verdict of the batch.
   Per-class thresholds are the mean self-confidence of each class; an issue is a verdict the
   model *confidently* puts in another class (its probability of that class reaches that class's
   threshold). ``confident_learning`` rather than cleanlab's default ``prune_by_noise_rate`` because
   the decision is per verdict and a feedback batch is too small to estimate the noise matrix that
   pruning by rate relies on. On top, ``label_issue_threshold`` is the margin: a flagged correction
   is suspicious only if the probability of its label is below ``label_issue_threshold`` times the
   label's class threshold (1.0 is confident learning's own criterion; lower flags fewer), and
   the class the model prefers needs :data:`MIN_CLASS_SUPPORT` verdicts in the batch (a
   threshold averaged over one or two documents is no evidence).
   Entity corrections follow a simple rule: a correction that drops or changes (span or type) a
   predicted entity the extractor gave at least ``entity_confidence`` is suspicious.
   A suspicious verdict is ``quarantined`` unless a second reviewer (or the audit) agrees with it.
6. **Conflicts.** Verdicts on the same document that disagree (another type, another entity list,
   a confirmation against a correction) are settled by a trust-weighted vote; the losing verdicts
   are ``superseded`` with the tally, and an exact tie is ``quarantined`` (it needs an audit).
7. Everything left is ``accepted``.

Nothing is deleted: every event keeps its status and a sentence saying why, and
:func:`persist_statuses` writes them to the store's ``feedback_events`` in one transaction.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update

from docloop.config import FeedbackConfig
from docloop.feedback.contracts import CorrectedEntity, Correction, FeedbackRecord
from docloop.feedback.verdicts import (
    Verdict,
    corrected_spans,
    corrects_doc_type,
    gold_verdict,
    is_empty_correction,
    verdict_of,
    verdict_order,
)
from docloop.store.db import Store
from docloop.store.tables import FeedbackEvent as FeedbackEventRow

__all__ = [
    "ENTITY_CONFIDENCE",
    "GOLD_WEIGHT",
    "MIN_CLASS_SUPPORT",
    "PRIOR_TRUST",
    "EventQuality",
    "FeedbackStatus",
    "LabelIssue",
    "QualityReport",
    "ReviewerTrust",
    "assess_feedback",
    "audited_labels",
    "changed_confident_entities",
    "doc_type_label_issues",
    "persist_statuses",
    "reviewer_trust",
]

logger = logging.getLogger(__name__)

FeedbackStatus = Literal["accepted", "quarantined", "superseded"]

PRIOR_TRUST: Final = 0.8
"""Prior mean of a reviewer's trust (a Beta prior worth ``min_reviews_for_trust`` reviews)."""
ENTITY_CONFIDENCE: Final = 0.98
"""Extractor confidence above which dropping or changing a predicted entity is suspicious."""
MIN_CLASS_SUPPORT: Final = 5
"""A class's confident threshold counts only with this many verdicts of it in the batch."""
GOLD_WEIGHT: Final = 1.0
"""Weight of one comparison with an audited label (peer comparisons weigh the peer's trust)."""
_TRUST_ITERATIONS: Final = 50
_TRUST_TOLERANCE: Final = 1e-9
_TIE_TOLERANCE: Final = 1e-9


class EventQuality(BaseModel):
    """The decision on one feedback event.

    Attributes:
        id: the event's id (``feedback_events.id``).
        doc_id: the judged document.
        reviewer_id: who judged it.
        status: ``accepted``, ``quarantined`` (kept out of training, kept for review) or
            ``superseded`` (another verdict on the same document won).
        code: a stable slug of the reason (``clean``, ``low_trust``, ``suspicious_doc_type``, ...).
        reason: a sentence a person can act on.
        label_quality: the incumbent's probability of the type the verdict settles on (confident
            learning's self-confidence score), when it could be scored.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    doc_id: str
    reviewer_id: str
    status: FeedbackStatus
    code: str
    reason: str
    label_quality: float | None = None


class ReviewerTrust(BaseModel):
    """One reviewer's trust score and the evidence behind it.

    Attributes:
        reviewer_id: the reviewer.
        trust: posterior mean agreement in [0, 1].
        events: feedback events they sent in this batch.
        compared: weighted comparisons with other reviewers and audited labels.
        agreed: the weighted comparisons that agreed.
        audited: comparisons with audited labels (unweighted count).
        believed: ``compared`` reached ``min_reviews_for_trust`` (the score is mostly their own).
        quarantined: ``trust`` is below ``min_trust``.
    """

    model_config = ConfigDict(frozen=True)

    reviewer_id: str
    trust: float
    events: int
    compared: float
    agreed: float
    audited: int
    believed: bool
    quarantined: bool


class QualityReport(BaseModel):
    """The outcome of :func:`assess_feedback` over one batch of feedback.

    Attributes:
        events: one decision per event, in the order the events were given.
        reviewers: trust per reviewer id.
        counts: events per status.
        reasons: events per reason code.
        prior_trust: the prior mean of reviewer trust.
        prior_strength: pseudo-reviews the prior is worth (``min_reviews_for_trust``).
        min_trust: reviewers below are quarantined.
        label_issue_method: how document-type corrections were scored.
    """

    model_config = ConfigDict(frozen=True)

    events: list[EventQuality]
    reviewers: dict[str, ReviewerTrust]
    counts: dict[str, int]
    reasons: dict[str, int]
    prior_trust: float
    prior_strength: int
    min_trust: float
    label_issue_method: str = Field(
        default="cleanlab.filter.find_label_issues(filter_by='confident_learning')"
    )

    def accepted_ids(self) -> set[int]:
        """Ids of the events that may train a model."""
        return {event.id for event in self.events if event.status == "accepted"}

    def accepted(self, records: Sequence[FeedbackRecord]) -> list[FeedbackRecord]:
        """The records of ``records`` whose events were accepted, in their order."""
        ids = self.accepted_ids()
        return [record for record in records if record.id in ids]

    def summary(self) -> dict[str, object]:
        """A small JSON-able summary: counts per status and reason, trust per reviewer."""
        return {
            "counts": dict(self.counts),
            "reasons": dict(self.reasons),
            "reviewers": {
                name: {
                    "trust": round(item.trust, 4),
                    "events": item.events,
                    "compared": round(item.compared, 3),
                    "quarantined": item.quarantined,
                }
                for name, item in sorted(self.reviewers.items())
            },
            "prior_trust": self.prior_trust,
            "prior_strength": self.prior_strength,
            "min_trust": self.min_trust,
        }


# ------------------------------------------------------------------------------------ verdicts


def audited_labels(
    records: Sequence[FeedbackRecord], auditors: Sequence[str] = ()
) -> dict[str, Correction]:
    """Audits by document id: the latest verdict of an auditor on each document.

    Auditor is a role: a verdict is an audit when the feedback API stored it with the role
    ``auditor`` (the sender was authenticated as one, or named in ``feedback.auth.roles`` on a
    loopback API without authentication). ``auditors`` (the deprecated ``feedback.auditors``)
    only reads verdicts stored before roles were recorded (``reviewer_role`` None); a verdict
    with a recorded role is never an audit by its self-asserted ``reviewer_id``.

    An auditor's confirmation audits the prediction as it stands (its type, and its entities
    where the prediction carries word positions); a correction audits the parts it names plus
    the predicted type it leaves alone. The auditors' own events stay in ``records``: they agree
    with the audit by construction, so :func:`assess_feedback` accepts them and scores everyone
    else against them.

    Args:
        records: feedback events of one batch (any order).
        auditors: reviewer ids whose role-less (older) verdicts are audits.

    Returns:
        One audited label per audited document.
    """
    chosen = set(auditors)
    audits: dict[str, Correction] = {}
    for record in sorted(records, key=verdict_order):
        role = record.reviewer_role
        if role != "auditor" and (role is not None or record.reviewer_id not in chosen):
            continue
        verdict = verdict_of(record)
        entities = (
            None
            if verdict.entities is None
            else [
                CorrectedEntity(type=kind, word_indices=list(indices))
                for kind, indices in sorted(verdict.entities)
            ]
        )
        audits[record.doc_id] = Correction(doc_type=verdict.doc_type, entities=entities)
    return audits


def changed_confident_entities(
    record: FeedbackRecord, entity_confidence: float = ENTITY_CONFIDENCE
) -> list[tuple[str, float]]:
    """Predicted entities at or above ``entity_confidence`` that the correction drops or changes.

    Returns:
        ``(type, confidence)`` of each such entity; empty when the event corrects no entities.
    """
    correction = record.correction
    if record.kind != "correction" or correction is None or correction.entities is None:
        return []
    kept = corrected_spans(correction.entities)
    changed: list[tuple[str, float]] = []
    for entity in record.predicted_entities:
        span = entity.span()
        if entity.confidence is None or span is None:
            continue
        if entity.confidence >= entity_confidence and span not in kept:
            changed.append((entity.type, entity.confidence))
    return changed


# ----------------------------------------------------------------------------------- the rules


@dataclass
class _Decision:
    status: FeedbackStatus | None = None
    code: str = "clean"
    reason: str = "no rule objected"
    protected: bool = False  # matches an audited label
    label_quality: float | None = None

    def set(self, status: FeedbackStatus, code: str, reason: str) -> None:
        self.status, self.code, self.reason = status, code, reason


def reviewer_trust(
    records: Sequence[FeedbackRecord],
    audited: Mapping[str, Correction] | None,
    config: FeedbackConfig,
    prior_trust: float = PRIOR_TRUST,
) -> dict[str, ReviewerTrust]:
    """Trust per reviewer from agreement with other reviewers and with audited labels.

    ``trust = (agreed + prior_trust * k) / (compared + k)`` with ``k = min_reviews_for_trust``:
    the mean of a Beta posterior. A comparison with another reviewer on a shared document weighs
    that reviewer's trust (the weights are iterated to a fixed point); one with an audited label
    weighs :data:`GOLD_WEIGHT`. On an audited document reviewers are compared with the audit
    only, so one mistake is not counted twice. Pass at most one record per reviewer and document.

    Args:
        records: the verdicts (at most one per reviewer and document).
        audited: audited labels by document id.
        config: ``min_reviews_for_trust`` and ``min_trust``.
        prior_trust: the prior mean.

    Returns:
        Trust per reviewer id (every reviewer in ``records``).
    """
    audited = audited or {}
    k = float(config.min_reviews_for_trust)
    events = Counter(record.reviewer_id for record in records)
    by_doc: dict[str, list[tuple[str, Verdict]]] = defaultdict(list)
    for record in records:
        by_doc[record.doc_id].append((record.reviewer_id, verdict_of(record)))
    # (reviewer, peer or None for gold, agreed)
    comparisons: list[tuple[str, str | None, bool]] = []
    gold_counts: Counter[str] = Counter()
    for doc_id, verdicts in by_doc.items():
        gold = audited.get(doc_id)
        for i, (reviewer, verdict) in enumerate(verdicts):
            if gold is not None:  # the audit is the truth: no peer comparison needed
                agreed = verdict.agrees(gold_verdict(gold))
                if agreed is not None:
                    comparisons.append((reviewer, None, agreed))
                    gold_counts[reviewer] += 1
                continue
            for peer, other in verdicts[i + 1 :]:
                if peer == reviewer:
                    continue
                agreed = verdict.agrees(other)
                if agreed is not None:
                    comparisons.append((reviewer, peer, agreed))
                    comparisons.append((peer, reviewer, agreed))
    trust = dict.fromkeys(events, prior_trust)
    agreed_w: dict[str, float] = {}
    compared_w: dict[str, float] = {}
    for _ in range(_TRUST_ITERATIONS):
        agreed_w = dict.fromkeys(events, 0.0)
        compared_w = dict.fromkeys(events, 0.0)
        for judged, judge, same in comparisons:
            weight = GOLD_WEIGHT if judge is None else trust[judge]
            compared_w[judged] += weight
            agreed_w[judged] += weight if same else 0.0
        updated = {
            name: (agreed_w[name] + prior_trust * k) / (compared_w[name] + k) for name in events
        }
        change = max((abs(updated[n] - trust[n]) for n in events), default=0.0)
        trust = updated
        if change < _TRUST_TOLERANCE:
            break
    return {
        name: ReviewerTrust(
            reviewer_id=name,
            trust=trust[name],
            events=events[name],
            compared=compared_w[name],
            agreed=agreed_w[name],
            audited=gold_counts[name],
            believed=compared_w[name] >= k,
            quarantined=trust[name] < config.min_trust,
        )
        for name in sorted(events)
    }


@dataclass(frozen=True)
class LabelIssue:
    """Confident learning's view of one verdict's document type.

    Attributes:
        issue: cleanlab counts it in an off-diagonal of the confident joint (and the class it
            is confidently put in has enough support).
        self_confidence: the incumbent's probability of the verdict's type.
        threshold: the confident threshold of that type (its mean self-confidence in the batch).
        likely_type: the type the incumbent confidently puts it in (else its next best type).
        likely_probability: the incumbent's probability of ``likely_type``.
    """

    issue: bool
    self_confidence: float
    threshold: float
    likely_type: str
    likely_probability: float


def doc_type_label_issues(records: Sequence[FeedbackRecord]) -> dict[int, LabelIssue]:
    """Score every verdict's document type with confident learning (cleanlab).

    Rows are the records whose verdict names a type the incumbent has a probability for;
    ``labels`` are those types and ``pred_probs`` the prediction-time probabilities (columns: the
    union of classes in the batch, missing ones 0, rows renormalised). Needs two classes at least.
    An issue also needs the class the incumbent confidently prefers to have at least
    :data:`MIN_CLASS_SUPPORT` verdicts in the batch: a threshold averaged over one or two
    documents says nothing.

    Args:
        records: the verdicts to score together (the batch defines the class thresholds).

    Returns:
        The score per record id (records that could not be scored are absent).
    """
    classes = sorted({name for record in records for name in record.predicted_probabilities})
    if len(classes) < 2:
        return {}
    index = {name: position for position, name in enumerate(classes)}
    rows: list[list[float]] = []
    labels: list[int] = []
    ids: list[int] = []
    for record in records:
        label = verdict_of(record).doc_type
        if label is None or label not in index or not record.predicted_probabilities:
            continue
        row = [max(float(record.predicted_probabilities.get(name, 0.0)), 0.0) for name in classes]
        total = sum(row)
        if total <= 0:
            continue
        rows.append([value / total for value in row])
        labels.append(index[label])
        ids.append(record.id)
    if len(ids) < 2 or len(set(labels)) < 2:
        return {}
    from cleanlab.count import get_confident_thresholds
    from cleanlab.filter import find_label_issues

    pred_probs = np.asarray(rows, dtype=np.float64)
    given = np.asarray(labels, dtype=np.int64)
    with warnings.catch_warnings():
        # cleanlab warns about classes with few examples; a feedback batch always has some
        warnings.simplefilter("ignore", UserWarning)
        issues = np.asarray(
            find_label_issues(given, pred_probs, filter_by="confident_learning", n_jobs=1),
            dtype=bool,
        )
        thresholds = np.asarray(get_confident_thresholds(given, pred_probs), dtype=np.float64)
    support = np.bincount(given, minlength=len(classes))
    scored: dict[int, LabelIssue] = {}
    for row_index, record_id in enumerate(ids):
        label = given[row_index]
        others = pred_probs[row_index].copy()
        others[label] = -1.0
        confident = np.where(others >= thresholds, others, -1.0)
        likely = int(np.argmax(confident if confident.max() >= 0 else others))
        scored[record_id] = LabelIssue(
            issue=bool(issues[row_index]) and bool(support[likely] >= MIN_CLASS_SUPPORT),
            self_confidence=float(pred_probs[row_index, label]),
            threshold=float(thresholds[label]),
            likely_type=classes[likely],
            likely_probability=float(pred_probs[row_index, likely]),
        )
    return scored


def assess_feedback(
    records: Sequence[FeedbackRecord],
    config: FeedbackConfig,
    audited: Mapping[str, Correction] | None = None,
    *,
    prior_trust: float = PRIOR_TRUST,
    entity_confidence: float = ENTITY_CONFIDENCE,
) -> QualityReport:
    """Decide, per feedback event, whether it may train a model (see the module docstring).

    Args:
        records: the feedback events of one batch (e.g. since the last retrain), any order.
        config: ``min_trust``, ``min_reviews_for_trust`` and ``label_issue_threshold``.
        audited: audited (gold) labels by document id; a ``None`` part was not audited.
        prior_trust: prior mean of reviewer trust (a Beta prior worth ``min_reviews_for_trust``
            reviews).
        entity_confidence: dropping or changing a predicted entity at least this confident is
            suspicious.

    Returns:
        One decision per event (in the order of ``records``), trust per reviewer and counts.
    """
    audited = audited or {}
    if prior_trust < config.min_trust:
        logger.warning(
            "prior_trust %.2f is below min_trust %.2f: every reviewer without a record is "
            "quarantined; raise prior_trust or lower feedback.min_trust",
            prior_trust,
            config.min_trust,
        )
    decisions = {record.id: _Decision() for record in records}
    if len(decisions) != len(records):
        raise ValueError("feedback records must have distinct ids; pass each event once")
    verdicts = {record.id: verdict_of(record) for record in records}

    # 1-2. the latest verdict per reviewer and document; empty corrections
    _supersede_repeats(records, decisions)
    current = _open(records, decisions)
    for record in current:
        if is_empty_correction(record):
            decisions[record.id].set(
                "quarantined",
                "empty_correction",
                "a correction that names neither a document type nor an entity list; resend it "
                "with correction.doc_type and/or correction.entities",
            )
    current = _open(current, decisions)

    # 3. reviewer trust (events: everything each reviewer sent in the batch)
    sent = Counter(record.reviewer_id for record in records)
    trust = {
        name: score.model_copy(update={"events": sent[name]})
        for name, score in reviewer_trust(current, audited, config, prior_trust).items()
    }
    for name in sorted(set(sent) - set(trust)):
        trust[name] = ReviewerTrust(
            reviewer_id=name,
            trust=prior_trust,
            events=sent[name],
            compared=0.0,
            agreed=0.0,
            audited=0,
            believed=False,
            quarantined=prior_trust < config.min_trust,
        )
    for record in current:
        score = trust[record.reviewer_id]
        if score.quarantined:
            decisions[record.id].set(
                "quarantined",
                "low_trust",
                f"reviewer {record.reviewer_id} has trust {score.trust:.2f} < min_trust "
                f"{config.min_trust:.2f} (agreed {score.agreed:.1f} of {score.compared:.1f} "
                f"weighted comparisons; prior {prior_trust:.2f} worth "
                f"{config.min_reviews_for_trust} reviews); audit their verdicts to restore trust",
            )
    current = _open(current, decisions)

    # 4. audited documents
    _apply_audit(current, verdicts, decisions, audited)
    current = _open(current, decisions)

    # 5. suspicious corrections (confident learning on types, confident entities)
    _flag_suspicious(current, verdicts, decisions, config, entity_confidence)
    current = _open(current, decisions)

    # 6. conflicts: trust-weighted vote per document
    _resolve_conflicts(current, verdicts, decisions, trust)

    # 7. the rest
    events: list[EventQuality] = []
    for record in records:
        decision = decisions[record.id]
        if decision.status is None:
            decision.status = "accepted"
        events.append(
            EventQuality(
                id=record.id,
                doc_id=record.doc_id,
                reviewer_id=record.reviewer_id,
                status=decision.status,
                code=decision.code,
                reason=decision.reason,
                label_quality=decision.label_quality,
            )
        )
    counts = Counter(event.status for event in events)
    reasons = Counter(event.code for event in events)
    report = QualityReport(
        events=events,
        reviewers=trust,
        counts={
            status: counts.get(status, 0) for status in ("accepted", "quarantined", "superseded")
        },
        reasons=dict(sorted(reasons.items())),
        prior_trust=prior_trust,
        prior_strength=config.min_reviews_for_trust,
        min_trust=config.min_trust,
    )
    logger.info(
        "feedback quality: %d events -> %s; reasons %s",
        len(events),
        report.counts,
        report.reasons,
    )
    return report


def _open(
    records: Sequence[FeedbackRecord], decisions: Mapping[int, _Decision]
) -> list[FeedbackRecord]:
    """The records no rule has decided yet."""
    return [record for record in records if decisions[record.id].status is None]


def _supersede_repeats(
    records: Sequence[FeedbackRecord], decisions: Mapping[int, _Decision]
) -> None:
    """A reviewer's earlier verdicts on a document they judged again are superseded."""
    latest: dict[tuple[str, str], FeedbackRecord] = {}
    for record in sorted(records, key=verdict_order):
        key = (record.doc_id, record.reviewer_id)
        earlier = latest.get(key)
        if earlier is not None:
            decisions[earlier.id].set(
                "superseded",
                "replaced_by_reviewer",
                f"reviewer {record.reviewer_id} judged {record.doc_id} again later "
                f"(event {record.id}); their latest verdict counts",
            )
        latest[key] = record


def _apply_audit(
    records: Sequence[FeedbackRecord],
    verdicts: Mapping[int, Verdict],
    decisions: Mapping[int, _Decision],
    audited: Mapping[str, Correction],
) -> None:
    """Verdicts contradicting an audited label are superseded; matching ones are protected."""
    for record in records:
        gold = audited.get(record.doc_id)
        if gold is None:
            continue
        truth = gold_verdict(gold)
        agreed = verdicts[record.id].agrees(truth)
        if agreed is False:
            decisions[record.id].set(
                "superseded",
                "contradicts_audit",
                f"contradicts the audited label of {record.doc_id} "
                f"({truth.describe()} vs {verdicts[record.id].describe()})",
            )
        elif agreed:
            decisions[record.id].protected = True


def _corroborated(
    record: FeedbackRecord, peers: Sequence[FeedbackRecord], verdicts: Mapping[int, Verdict]
) -> bool:
    """Another reviewer's open verdict on the same document agrees with this one."""
    return any(
        peer.reviewer_id != record.reviewer_id
        and verdicts[peer.id].agrees(verdicts[record.id]) is True
        for peer in peers
    )


def _flag_suspicious(
    current: Sequence[FeedbackRecord],
    verdicts: Mapping[int, Verdict],
    decisions: Mapping[int, _Decision],
    config: FeedbackConfig,
    entity_confidence: float,
) -> None:
    by_doc: dict[str, list[FeedbackRecord]] = defaultdict(list)
    for record in current:
        by_doc[record.doc_id].append(record)
    scores = doc_type_label_issues(current)
    margin = config.label_issue_threshold
    for record in current:
        decision = decisions[record.id]
        score = scores.get(record.id)
        if score is not None:
            decision.label_quality = round(score.self_confidence, 6)
        problems: list[tuple[str, str]] = []
        if (
            score is not None
            and corrects_doc_type(record)
            and score.issue
            and score.self_confidence < margin * score.threshold
        ):
            problems.append(
                (
                    "suspicious_doc_type",
                    f"confident learning flags the correction to {verdicts[record.id].doc_type!r}: "
                    f"the incumbent gave it {score.self_confidence:.3f}, below "
                    f"{margin:g} x its class threshold {score.threshold:.3f}, and is confident "
                    f"it is {score.likely_type!r} ({score.likely_probability:.3f})",
                )
            )
        changed = changed_confident_entities(record, entity_confidence)
        if changed:
            listed = ", ".join(f"{kind} ({confidence:.3f})" for kind, confidence in changed)
            problems.append(
                (
                    "suspicious_entities",
                    f"the correction drops or changes entities the extractor was at least "
                    f"{entity_confidence:g} confident about: {listed}",
                )
            )
        if not problems:
            continue
        code = problems[0][0] if len(problems) == 1 else "suspicious_doc_type_and_entities"
        reason = "; ".join(text for _, text in problems)
        if decision.protected:
            decision.code, decision.reason = "matches_audit", f"{reason}; but the audit agrees"
            continue
        if _corroborated(record, by_doc[record.doc_id], verdicts):
            decision.code, decision.reason = (
                "corroborated",
                f"{reason}; but another reviewer gave the same verdict",
            )
            continue
        decision.set(
            "quarantined",
            code,
            f"{reason}; kept out of training until a second reviewer or an audit confirms it",
        )


def _resolve_conflicts(
    current: Sequence[FeedbackRecord],
    verdicts: Mapping[int, Verdict],
    decisions: Mapping[int, _Decision],
    trust: Mapping[str, ReviewerTrust],
) -> None:
    by_doc: dict[str, list[FeedbackRecord]] = defaultdict(list)
    for record in current:
        by_doc[record.doc_id].append(record)
    for doc_id, group in by_doc.items():
        if len(group) < 2:
            continue
        if all(
            verdicts[a.id].agrees(verdicts[b.id]) is not False
            for i, a in enumerate(group)
            for b in group[i + 1 :]
        ):
            continue
        # verdicts that match an audit are the only candidates when there are any
        candidates = [record for record in group if decisions[record.id].protected] or group
        tallies: list[tuple[float, FeedbackRecord]] = []
        for candidate in candidates:
            support = sum(
                trust[voter.reviewer_id].trust
                for voter in group
                if verdicts[voter.id].agrees(verdicts[candidate.id]) is not False
            )
            tallies.append((support, candidate))
        tallies.sort(key=lambda item: (-item[0], verdict_order(item[1])))
        best_support, best = tallies[0]
        winner = verdicts[best.id]
        rivals = [
            support
            for support, candidate in tallies[1:]
            if verdicts[candidate.id].agrees(winner) is False
        ]
        if rivals and best_support - rivals[0] <= _TIE_TOLERANCE:
            for record in group:
                decisions[record.id].set(
                    "quarantined",
                    "conflict_tied",
                    f"reviewers disagree on {doc_id} and the trust-weighted vote is tied "
                    f"({best_support:.2f} each); audit the document to settle it",
                )
            continue
        losing = max(rivals, default=0.0)
        for record in group:
            if verdicts[record.id].agrees(winner) is False:
                decisions[record.id].set(
                    "superseded",
                    "conflict_lost",
                    f"outvoted on {doc_id}: {winner.describe()} has trust-weighted support "
                    f"{best_support:.2f} against {verdicts[record.id].describe()}",
                )
            elif decisions[record.id].code == "clean":
                decisions[record.id].code = "conflict_won"
                decisions[record.id].reason = (
                    f"reviewers disagreed on {doc_id}; this verdict won the trust-weighted vote "
                    f"{best_support:.2f} to {losing:.2f}"
                )


def persist_statuses(store: Store, report: QualityReport) -> int:
    """Write every event's status and reason to ``feedback_events`` in one transaction.

    ``accepted`` clears ``quarantine_reason``; ``quarantined`` and ``superseded`` store
    ``<code>: <sentence>`` (out of training either way, and the reason says why).

    Args:
        store: the state store.
        report: from :func:`assess_feedback`.

    Returns:
        The number of events written.
    """
    rows = [
        {
            "id": event.id,
            "status": event.status,
            "quarantine_reason": None
            if event.status == "accepted"
            else f"{event.code}: {event.reason}",
        }
        for event in report.events
    ]
    if not rows:
        return 0
    with store.write() as session:
        session.execute(update(FeedbackEventRow), rows)
    logger.info("wrote the quality status of %d feedback events", len(rows))
    return len(rows)
