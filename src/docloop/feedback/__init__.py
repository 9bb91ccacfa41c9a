"""Feedback: reviewers' verdicts on predictions (API, records, quality rules)."""
