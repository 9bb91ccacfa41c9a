"""The model artifact: safetensors weights + tokenizer + encoder config + ``docloop-model.json``.

Layout of a model folder (local, or under any storage URI)::

    docloop-model.json     the model card (task, labels, encoder, lengths, metrics, lineage)
    model.safetensors      every weight of the network (encoder, layout embeddings, head)
    encoder/config.json    the encoder architecture (weights come from model.safetensors)
    tokenizer/...          the tokenizer files

Loading builds the architecture from ``encoder/config.json`` and fills it from safetensors: nothing
is unpickled, and no hub is contacted.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn

from docloop.errors import InvalidInput
from docloop.models.calibration import FieldCalibration
from docloop.models.encoder import encoder_from_config, load_tokenizer
from docloop.models.networks import DocumentClassifier, LayoutTokenClassifier
from docloop.storage import Storage, is_local, join, local_path

CARD_FILE = "docloop-model.json"
WEIGHTS_FILE = "model.safetensors"
ARTIFACT_FORMAT = 1

Task = Literal["classify", "extract"]


class ModelCard(BaseModel):
    """What a model is, what it was trained on and how well it did."""

    model_config = ConfigDict(extra="forbid")

    format: int = ARTIFACT_FORMAT
    task: Task
    labels: list[str] = Field(description="Document types, or IOB2 tags for the extractor.")
    field_kinds: dict[str, str] = Field(
        default_factory=dict,
        description="The extractor's fields and their kinds (text, date, amount, id), from the "
        "schema of the dataset it was trained on; empty for cards written before schemas.",
    )
    encoder: str = Field(description="Name or path of the encoder it was fine-tuned from.")
    max_length: int = Field(description="Classifier: tokens per page (older extractors: window).")
    max_pages: int = 1
    window_tokens: int | None = Field(
        default=None, description="Extractor: tokens per window (unset on older cards: max_length)."
    )
    window_overlap: int = Field(default=0, description="Extractor: tokens two windows share.")
    use_layout: bool = True
    metrics: dict[str, float] = Field(default_factory=dict)
    calibration: dict[str, FieldCalibration] = Field(
        default_factory=dict,
        description="Extractor: per field, the map from raw span score to calibrated confidence "
        "(fitted on the validation documents; a field without one answers raw scores).",
    )
    known_values: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extractor: per field named in training.known_value_fields, the values its "
        "labels gave; an answer close to exactly one is read as it (docloop.models.known_values).",
    )
    known_value_similarity: float = 0.85
    known_value_margin: float = 0.06
    dataset_digest: str = ""
    dataset_uri: str = Field(
        default="", description="Where the training dataset is (retraining replays from it)."
    )
    init_from: str | None = None
    train_config: dict[str, Any] = Field(default_factory=dict)
    steps: int = 0
    stopped_by: str = Field(
        default="",
        description="Why training stopped: epochs, max_steps, early_stopping or time_budget.",
    )
    train_seconds: float = Field(
        default=0.0, description="Wall seconds of the training loop, resumed runs included."
    )
    time_budget_s: float | None = Field(
        default=None, description="The wall-time budget it trained under (training.time_budget_s)."
    )
    docloop_version: str = ""
    code_version: str = ""
    mlflow_run_id: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def window_length(self) -> int:
        """The extractor's tokens per window."""
        return self.window_tokens or self.max_length

    @property
    def entity_types(self) -> list[str]:
        """Entity types named by an extractor's tags."""
        return sorted({label[2:] for label in self.labels if label != "O"})


SKIP_FILE = "docloop-skipped.json"
"""Written instead of a model when there was nothing to train (the train step's marker)."""


def write_skip(folder: Path, task: Task, reason: str) -> None:
    """Mark ``folder`` as a model that was not trained, and why."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SKIP_FILE).write_text(
        json.dumps({"task": task, "skipped": reason}, indent=2), encoding="utf-8"
    )


def skip_reason(folder: Path) -> str | None:
    """Why no model was trained into ``folder``; None when it is (or may become) a model."""
    marker = folder / SKIP_FILE
    if not marker.is_file():
        return None
    return str(json.loads(marker.read_text(encoding="utf-8"))["skipped"])


def card_version(card: ModelCard) -> str:
    """The version a served model reports: its MLflow run id, else when its card was written."""
    return card.mlflow_run_id or card.created_at


def build_network(card: ModelCard, encoder: Any) -> nn.Module:
    """The network a card describes, around ``encoder``."""
    if card.task == "classify":
        return DocumentClassifier(encoder, len(card.labels))
    return LayoutTokenClassifier(encoder, len(card.labels), use_layout=card.use_layout)


def save_model(
    folder: Path, network: nn.Module, tokenizer: Any, encoder_config: Any, card: ModelCard
) -> None:
    """Write a model folder (weights last-but-one, card last: a card means a complete model)."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder_config.save_pretrained(str(folder / "encoder"))
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    state = {
        name: tensor.detach().contiguous().cpu() for name, tensor in network.state_dict().items()
    }
    save_file(state, str(folder / WEIGHTS_FILE), metadata={"task": card.task})
    (folder / CARD_FILE).write_text(card.model_dump_json(indent=2), encoding="utf-8")


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, CPU unless moved)."""

    card: ModelCard
    network: nn.Module
    tokenizer: Any
    path: Path


def read_card(folder: Path) -> ModelCard:
    """Read a model folder's card.

    Raises:
        InvalidInput: the folder is not a docloop model.
    """
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise InvalidInput(f"{folder} is not a docloop model: {CARD_FILE} is missing")
    return ModelCard.model_validate_json(card_path.read_text(encoding="utf-8"))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> the first CUDA GPU when there is one, else the CPU; otherwise as named.

    Raises:
        InvalidInput: ``cuda`` was asked for on a machine without one.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"device {device!r} asked for, but torch sees no CUDA GPU; use auto")
    return torch.device(device)


def load_model(folder: Path, device: str = "cpu") -> LoadedModel:
    """Load a model folder written by :func:`save_model` (no unpickling) onto ``device``."""
    card = read_card(folder)
    network = build_network(card, encoder_from_config(folder / "encoder"))
    state = load_file(str(folder / WEIGHTS_FILE))
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InvalidInput(
            f"{folder / WEIGHTS_FILE} does not match its card: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    network.eval()
    network.to(resolve_device(device))
    return LoadedModel(card, network, load_tokenizer(folder / "tokenizer"), folder)


def fetch_model_folder(storage: Storage, uri: str, cache: Path | None = None) -> Path:
    """A local folder with the model at ``uri`` (downloaded unless already local)."""
    if is_local(uri):
        return local_path(uri)
    target = cache or Path(tempfile.mkdtemp(prefix="docloop-model-"))
    prefix = uri.rstrip("/") + "/"
    for info in storage.list(uri):
        relative = info.uri[len(prefix) :]
        storage.download(info.uri, target / relative)
    return target


def upload_folder(
    storage: Storage, folder: Path, uri: str, *, last: str, skip_dirs: tuple[str, ...] = ()
) -> None:
    """Copy a local folder to ``uri``, the file named ``last`` after all others.

    Readers treat that file as "complete" (a model card, a checkpoint's state), so they never see
    half a folder. Sub-folders whose names start with one of ``skip_dirs`` are left out.
    """
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(skip_dirs) for part in path.relative_to(folder).parts[:-1])
    )
    files.sort(key=lambda path: path.name == last)
    for path in files:
        storage.upload(path, join(uri, *path.relative_to(folder).parts))


def publish_model_folder(storage: Storage, folder: Path, uri: str) -> None:
    """Copy a local model folder (without its training checkpoint) to ``uri``, card last."""
    upload_folder(storage, folder, uri, last=CARD_FILE, skip_dirs=("checkpoint",))
