"""Per-field confidence that means something: isotonic calibration on held-out documents.

A field's raw score is the mean probability the extractor gave its span's tags. Scores of a
fine-tuned network are over-confident and differ between fields, so a threshold on them means
nothing to a person routing documents. After training, each field's best span on the validation
documents is scored against the gold labels (right when its value, normalised by the field's kind,
is a gold value of that field in that document), and an isotonic regression maps raw score to the
observed share of right values. The map is stored in the model card as points and applied by
linear interpolation, so the served confidence reads as "how often a value this confident was
right", per field. Fields with too few validation answers, or answers all right or all wrong, keep
their raw scores (and say so: no curve in the card).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MIN_SAMPLES = 10
ECE_BINS = 10


class FieldCalibration(BaseModel):
    """The fitted map of one field, and how well calibrated it was where it was fitted."""

    model_config = ConfigDict(extra="forbid")

    scores: list[float] = Field(description="Raw scores of the map's points, ascending.")
    probabilities: list[float] = Field(description="Calibrated confidence at each point.")
    samples: int = Field(description="Validation answers it was fitted on.")
    ece_raw: float = Field(description="Expected calibration error of the raw scores there.")
    ece: float = Field(description="Expected calibration error after the map, same answers.")

    def apply(self, score: float) -> float:
        """The calibrated confidence of a raw score."""
        return float(np.interp(score, self.scores, self.probabilities))


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
    """An isotonic map from raw scores to the share right, or None when it cannot be fitted."""
    from sklearn.isotonic import IsotonicRegression

    if len(scores) < MIN_SAMPLES or len(set(correct)) < 2:
        return None
    regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    regression.fit(np.asarray(scores, dtype=float), np.asarray(correct, dtype=float))
    fitted = FieldCalibration(
        scores=[round(float(x), 6) for x in regression.X_thresholds_],
        probabilities=[round(float(y), 6) for y in regression.y_thresholds_],
        samples=len(scores),
        ece_raw=round(expected_calibration_error(scores, correct), 4),
        ece=0.0,
    )
    fitted.ece = round(expected_calibration_error([fitted.apply(s) for s in scores], correct), 4)
    return fitted
