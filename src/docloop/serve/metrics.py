"""Prometheus metrics of the predictor.

They live in prometheus-client's default registry, which is what KServe's own ``GET /metrics``
(on the HTTP port, next to KServe's ``request_predict_seconds`` and friends) serves, so no second
endpoint or port is needed. Every metric carries the served model's name as ``model_name``, the
label KServe uses too.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

REQUESTS = Counter(
    "docloop_predictor_requests",
    "Prediction requests by protocol and outcome (ok, invalid = HTTP 400, error).",
    ["model_name", "protocol", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "docloop_predictor_request_seconds",
    "Time from a request reaching the model to its answer (preprocess, queue, forward).",
    ["model_name", "protocol"],
    buckets=LATENCY_BUCKETS,
)
DOCUMENTS = Counter(
    "docloop_predictor_documents",
    "Documents predicted, by how they were sent (pages or document).",
    ["model_name", "input"],
)
BATCH_SIZE = Histogram(
    "docloop_predictor_batch_size",
    "Documents per forward pass (above 1 when concurrent requests were batched together).",
    ["model_name"],
    buckets=BATCH_BUCKETS,
)
FORWARD_SECONDS = Histogram(
    "docloop_predictor_forward_seconds",
    "Time of one forward pass over a batch (both models when both are served).",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
)
PREPROCESS_SECONDS = Histogram(
    "docloop_predictor_preprocess_seconds",
    "Time to turn one sent file into pages (intake, render, text layer or OCR).",
    ["model_name"],
    buckets=LATENCY_BUCKETS,
)
DOC_TYPES = Counter(
    "docloop_predictor_doc_types",
    "Predicted document types.",
    ["model_name", "doc_type"],
)
CONFIDENCE = Histogram(
    "docloop_predictor_confidence",
    "Confidence of each predicted document type and entity.",
    ["model_name", "output"],
    buckets=CONFIDENCE_BUCKETS,
)
PREDICTION_LOG_DROPPED = Counter(
    "docloop_predictor_prediction_log_dropped",
    "Prediction-log records dropped because the writer fell behind or failed.",
    ["model_name"],
)
