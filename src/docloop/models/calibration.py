"""Per-field confidence that means something: Platt scaling on held-out documents.

A field's raw score is the mean probability the extractor gave its span's tags. Scores of a
fine-tuned network are over-confident and differ between fields, so a threshold on them means
nothing to a person routing documents. After training, each field's best span on the validation
documents is scored against the gold labels (right when its value, normalised by the field's kind,
is a gold value of that field in that document), and a logistic regression on the score's logit
(Platt scaling: two numbers per field) maps raw score to the observed share of right values. The
served confidence then reads as "how often a value this confident was right", per field. Two
numbers, not an isotonic curve: validation sets are small (54 receipts in the SROIE benchmark), and
an isotonic curve fitted on them scored its own answers perfectly and held-out ones no better than
the raw scores (measured in docs/benchmarks.md). Fields with too few validation answers, or answers
all right or all wrong, keep their raw scores (and say so: no map in the card).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MIN_SAMPLES = 10
EPSILON = 1e-6
ECE_BINS = 10


class FieldCalibration(BaseModel):
    """The fitted map of one field, and how well calibrated it was where it was fitted."""

    model_config = ConfigDict(extra="forbid")

    slope: float = Field(description="Weight of the raw score's logit.")
    intercept: float
    samples: int = Field(description="Validation answers it was fitted on.")
    ece_raw: float = Field(description="Expected calibration error of the raw scores there.")
    ece: float = Field(description="Expected calibration error after the map, same answers.")

    def apply(self, score: float) -> float:
        """The calibrated confidence of a raw score."""
        return float(_sigmoid(self.slope * _logit(score) + self.intercept))


def _logit(score: float | np.ndarray) -> np.ndarray:
    clipped = np.clip(score, EPSILON, 1 - EPSILON)
    return np.asarray(np.log(clipped / (1 - clipped)))


def _sigmoid(value: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-value)))


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if not confidences:
        return 0.0
    values = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    right = np.asarray(correct, dtype=float)
    which = np.minimum((values * bins).astype(int), bins - 1)
    error = 0.0
    for index in range(bins):
        members = which == index
        if members.any():
            error += members.sum() * abs(right[members].mean() - values[members].mean())
    return float(error / len(values))


def fit_calibration(scores: Sequence[float], correct: Sequence[bool]) -> FieldCalibration | None:
    """A Platt map from raw scores to the share right, or None when it cannot be fitted."""
    from sklearn.linear_model import LogisticRegression

    if len(scores) < MIN_SAMPLES or len(set(correct)) < 2:
        return None
    features = _logit(np.asarray(scores, dtype=float)).reshape(-1, 1)
    regression = LogisticRegression(C=1.0)
    regression.fit(features, np.asarray(correct, dtype=int))
    fitted = FieldCalibration(
        slope=round(float(regression.coef_[0][0]), 6),
        intercept=round(float(regression.intercept_[0]), 6),
        samples=len(scores),
        ece_raw=round(expected_calibration_error(scores, correct), 4),
        ece=0.0,
    )
    fitted.ece = round(expected_calibration_error([fitted.apply(s) for s in scores], correct), 4)
    return fitted
