"""What one run of the demo did and measured (``demo-summary.json``); read by run and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scores:
    """One model version on one holdout: the key metric and the per-label F1."""

    metric: float
    per_label: dict[str, float]
    documents: int


@dataclass
class DemoResult:
    """What the demo did and measured (also ``demo-summary.json``)."""

    size: str
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    scores: dict[str, dict[str, dict[str, Scores]]] = field(default_factory=dict)
    """version → holdout (``old``, ``drifted``) → task → scores."""
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    """``V1``/``V2``/``final`` → task → registry version."""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    round2_by_hand: bool = False
    round2_rejected: bool = False
    report: str = ""
    logs: str = ""
    """The folder of the demo's logs (``demo.log`` and one file per pipeline task)."""
    claims: dict[str, bool] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The result as JSON."""
        return {
            "size": self.size,
            "seconds": self.seconds,
            "stages": self.stages,
            "versions": self.versions,
            "scores": {
                version: {
                    holdout: {task: vars(s) for task, s in by_task.items()}
                    for holdout, by_task in by_holdout.items()
                }
                for version, by_holdout in self.scores.items()
            },
            "alerts": self.alerts,
            "round2_by_hand": self.round2_by_hand,
            "round2_rejected": self.round2_rejected,
            "claims": self.claims,
            "report": self.report,
            "logs": self.logs,
        }
