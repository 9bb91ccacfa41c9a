"""Serving rollouts: the InferenceService, canaries on KServe or locally, analysis, rollback."""
