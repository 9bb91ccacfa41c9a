"""The two networks on top of a Hugging Face encoder.

**DocumentClassifier** — document type from OCR text. Long documents are handled by a pooled page
strategy: each of the first ``max_pages`` pages contributes its first ``max_length`` tokens; each
page is encoded separately and mean-pooled over its tokens (the sentence-embedding pooling that
MiniLM was trained with); the document vector is the mean over its pages; a linear head maps it to
the types. So a 2-page lab report is read on both pages, and cost grows with pages, not with the
square of the document length.

**LayoutTokenClassifier** — BIO entity tags over OCR words, layout-aware (LayoutLM-style): learned
embeddings of each token's word box (x0, y0, x1, y1, width, height on the 0-1000 grid) are added to
the token embeddings before the encoder. They start at zero, so an untrained layout model is
exactly the text encoder; training learns how much position matters. ``use_layout=False`` gives the
same model without boxes, for the ablation that measures what boxes are worth.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

COORDINATE_BUCKETS = 1001  # boxes are integers on 0..1000


class DocumentClassifier(nn.Module):
    """Pooled-page document classifier."""

    def __init__(self, encoder: Any, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.config.hidden_size), num_labels)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, page_mask: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[batch, labels]`` from inputs shaped ``[batch, pages, tokens]``."""
        batch, pages, tokens = input_ids.shape
        flat_ids = input_ids.reshape(batch * pages, tokens)
        flat_mask = attention_mask.reshape(batch * pages, tokens)
        hidden = self.encoder(input_ids=flat_ids, attention_mask=flat_mask).last_hidden_state
        weights = flat_mask.unsqueeze(-1).to(hidden.dtype)
        page_vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        page_vectors = page_vectors.reshape(batch, pages, -1)
        page_weights = page_mask.unsqueeze(-1).to(page_vectors.dtype)
        document = (page_vectors * page_weights).sum(1) / page_weights.sum(1).clamp(min=1.0)
        logits: torch.Tensor = self.head(self.dropout(document))
        return logits


class LayoutTokenClassifier(nn.Module):
    """Token classifier whose input embeddings include the word boxes."""

    def __init__(
        self, encoder: Any, num_labels: int, use_layout: bool = True, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.use_layout = use_layout
        hidden = int(encoder.config.hidden_size)
        self.x_embedding = nn.Embedding(COORDINATE_BUCKETS, hidden)
        self.y_embedding = nn.Embedding(COORDINATE_BUCKETS, hidden)
        self.w_embedding = nn.Embedding(COORDINATE_BUCKETS, hidden)
        self.h_embedding = nn.Embedding(COORDINATE_BUCKETS, hidden)
        for table in (self.x_embedding, self.y_embedding, self.w_embedding, self.h_embedding):
            nn.init.zeros_(table.weight)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_labels)

    def layout_embeddings(self, bbox: torch.Tensor) -> torch.Tensor:
        """Sum of the box embeddings, ``[batch, tokens, hidden]``, from ``bbox`` ``[..., 4]``."""
        box = bbox.clamp(0, COORDINATE_BUCKETS - 1)
        x0, y0, x1, y1 = box.unbind(-1)
        summed: torch.Tensor = (
            self.x_embedding(x0)
            + self.y_embedding(y0)
            + self.x_embedding(x1)
            + self.y_embedding(y1)
            + self.w_embedding((x1 - x0).clamp(min=0))
            + self.h_embedding((y1 - y0).clamp(min=0))
        )
        return summed

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bbox: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[batch, tokens, labels]``."""
        embeddings = self.encoder.get_input_embeddings()(input_ids)
        if self.use_layout:
            embeddings = embeddings + self.layout_embeddings(bbox)
        hidden = self.encoder(inputs_embeds=embeddings, attention_mask=attention_mask)
        logits: torch.Tensor = self.head(self.dropout(hidden.last_hidden_state))
        return logits
