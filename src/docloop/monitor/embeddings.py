"""Document embeddings from the champion classifier's own encoder, for the embedding-drift test.

A document's embedding is the mean of the encoder's last hidden states over the real (not
padding) tokens of the first ``max_length`` tokens of its words, in reading order — the
sentence-embedding pooling MiniLM was trained with. Using the champion's fine-tuned encoder means
the test looks at the features the classifier actually uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from docloop.documents.examples import DocumentExample
from docloop.errors import InvalidInput
from docloop.models.artifact import LoadedModel

logger = logging.getLogger(__name__)


@torch.inference_mode()
def embed_documents(
    model: LoadedModel, examples: Sequence[DocumentExample], batch_size: int = 32
) -> npt.NDArray[np.float32]:
    """Mean-pooled last hidden states of the model's encoder, one row per document.

    Args:
        model: A loaded docloop model (classifier or extractor: both wrap an ``encoder``).
        examples: The documents; an empty document embeds as the encoding of ``[CLS] [SEP]``.
        batch_size: Documents per forward pass.

    Returns:
        ``[len(examples), hidden]`` float32 array.

    Raises:
        InvalidInput: The network has no ``encoder`` module, or a bad batch size.
    """
    if batch_size < 1:
        raise InvalidInput(f"batch_size must be >= 1, not {batch_size}")
    encoder: Any = getattr(model.network, "encoder", None)
    if not isinstance(encoder, torch.nn.Module):
        raise InvalidInput(
            f"the model at {model.path} has no encoder module; pass a docloop classifier or "
            "extractor"
        )
    encoder_config: Any = getattr(encoder, "config", None)
    hidden = int(encoder_config.hidden_size)
    if not examples:
        return np.zeros((0, hidden), dtype=np.float32)
    device = next(encoder.parameters()).device
    rows: list[npt.NDArray[np.float32]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        encoded = model.tokenizer(
            [list(example.words) or [""] for example in chunk],
            is_split_into_words=True,
            truncation=True,
            max_length=model.card.max_length,
            padding=True,
            return_tensors="pt",
        )
        input_ids = encoded["input_ids"].to(device)
        attention = encoded["attention_mask"].to(device)
        states = encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
        weights = attention.unsqueeze(-1).to(states.dtype)
        pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        rows.append(pooled.float().cpu().numpy().astype(np.float32, copy=False))
    logger.debug("embedded %d documents (%d dims)", len(examples), hidden)
    return np.concatenate(rows)
