"""Evaluation: scoring a model on a holdout, the gate, the report, and the evaluate run."""
