"""The predictor: docloop models behind KServe (V1 and Open Inference Protocol v2).

- ``predictor``: ``DocloopModel`` (a ``kserve.Model``) serving a classifier, an extractor or both.
- ``inputs``: request payloads -> validated instances (pages or base64 files), HTTP 400 messages.
- ``documents``: files -> pages with the preprocess component's own intake/render/OCR code.
- ``batching``: the asyncio micro-batcher that groups documents of concurrent requests.
- ``sink``: the prediction log (``PredictionSink``: JSONL or Parquet files, or the state store's
  ``predictions`` table) and the served documents kept for feedback and retraining.
- ``metrics``: Prometheus metrics, served on KServe's ``/metrics``.
- ``server``: ``docloop serve`` (a KServe ``ModelServer``, HTTP only, one worker).

Importing this package is cheap; KServe, torch and the models load only with the submodules.
"""
