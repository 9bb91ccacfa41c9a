"""Features, networks, inference helpers and the model artifact, on the real packaged encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from docloop.documents.examples import DocumentExample
from docloop.models.artifact import ModelCard, load_model, save_model
from docloop.models.encoder import load_encoder, load_tokenizer, resolve_encoder
from docloop.models.features import IGNORE_INDEX, classifier_features, extractor_windows
from docloop.models.inference import classify, extract, repair_tags, spans
from docloop.models.networks import LayoutTokenClassifier
from tests.datasets import make_example

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(resolve_encoder(None))


def long_example() -> DocumentExample:
    import random

    example = make_example(0, random.Random(1))
    words = example.words * 6 + ["pneumonoultramicroscopicsilicovolcanoconiosis"]
    return example.model_copy(
        update={
            "words": words,
            "boxes": (example.boxes * 7)[: len(words)],
            "pages": [0] * (len(words) // 2) + [1] * (len(words) - len(words) // 2),
            "tags": (example.tags * 7)[: len(words)],
        }
    )


def test_extractor_windows_cover_every_word_once_on_its_first_subtoken(tokenizer) -> None:  # type: ignore[no-untyped-def]
    example = long_example()
    tag_ids = {"O": 0, "B-patient_name": 1, "I-patient_name": 2, "B-mrn": 3, "I-mrn": 4}
    windows = extractor_windows([example], tokenizer, tag_ids, max_length=24)
    assert len(windows) > 3
    seen = [w for window in windows for w in window.word_at_token if w >= 0]
    assert seen == list(range(len(example.words)))  # each word once, in order
    for window in windows:
        assert len(window.input_ids) <= 24
        assert window.input_ids[0] == tokenizer.cls_token_id
        assert window.input_ids[-1] == tokenizer.sep_token_id
        for token, word in enumerate(window.word_at_token):
            if word >= 0:
                assert window.labels[token] == tag_ids[example.tags[word]]
                assert list(window.bbox[token]) == example.boxes[word]
            else:
                assert window.labels[token] == IGNORE_INDEX


def test_classifier_reads_each_page_up_to_max_pages(tokenizer) -> None:  # type: ignore[no-untyped-def]
    example = long_example()
    one = classifier_features([example], tokenizer, {"invoice": 0}, 32, max_pages=1)[0]
    two = classifier_features([example], tokenizer, {"invoice": 0}, 32, max_pages=4)[0]
    assert len(one.input_ids) == 1 and len(two.input_ids) == 2
    assert all(len(ids) == 32 for ids in two.input_ids)
    assert one.label == 0


def test_repair_tags_and_spans() -> None:
    tags = ["O", "I-mrn", "I-mrn", "B-patient_name", "I-patient_name", "I-mrn", "O"]
    assert repair_tags(tags) == [
        "O",
        "B-mrn",
        "I-mrn",
        "B-patient_name",
        "I-patient_name",
        "B-mrn",
        "O",
    ]
    example = DocumentExample(
        doc_id="d",
        source_uri="file:///d.pdf",
        doc_type=None,
        words=["MRN", "12", "34", "Jane", "Doe"],
        boxes=[[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [0, 20, 10, 30], [0, 40, 10, 50]],
        pages=[0, 0, 0, 0, 1],
        tags=["O"] * 5,
        page_count=2,
        ocr_pages=0,
        mean_confidence=100.0,
    )
    found = spans(
        example,
        ["O", "B-mrn", "I-mrn", "B-patient_name", "I-patient_name"],
        [1.0, 0.9, 0.7, 0.8, 0.6],
    )
    assert [(e.type, e.text, e.page, e.box) for e in found] == [
        ("mrn", "12 34", 0, [20, 0, 50, 10]),
        ("patient_name", "Jane", 0, [0, 20, 10, 30]),  # an entity never spans a page break
        ("patient_name", "Doe", 1, [0, 40, 10, 50]),
    ]
    assert found[0].confidence == pytest.approx(0.8)


def test_untrained_layout_model_equals_text_model() -> None:
    """Zero-initialised box embeddings: the layout model starts exactly as the text encoder."""
    torch.manual_seed(0)
    encoder = load_encoder(resolve_encoder(None))
    layout = LayoutTokenClassifier(encoder, 3, use_layout=True).eval()
    text = LayoutTokenClassifier(encoder, 3, use_layout=False).eval()
    text.head.load_state_dict(layout.head.state_dict())
    ids = torch.tensor([[101, 2000, 2001, 102]])
    mask = torch.ones_like(ids)
    bbox = torch.tensor([[[0, 0, 0, 0], [10, 20, 30, 40], [500, 500, 600, 520], [0, 0, 0, 0]]])
    with torch.no_grad():
        assert torch.allclose(layout(ids, mask, bbox), text(ids, mask, bbox))
        layout.x_embedding.weight.normal_()
        assert not torch.allclose(layout(ids, mask, bbox), text(ids, mask, bbox))


@pytest.mark.parametrize("task", ["classify", "extract"])
def test_artifact_round_trip_without_pickle(tmp_path: Path, task: str, tokenizer) -> None:  # type: ignore[no-untyped-def]
    from docloop.models.artifact import build_network

    path = resolve_encoder(None)
    encoder = load_encoder(path)
    labels = ["invoice", "referral_letter"] if task == "classify" else ["O", "B-mrn", "I-mrn"]
    card = ModelCard(task=task, labels=labels, encoder="all-MiniLM-L6-v2", max_length=32)  # type: ignore[arg-type]
    network = build_network(card, encoder).eval()
    save_model(tmp_path, network, tokenizer, encoder.config, card)
    files = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert "model.safetensors" in files and "docloop-model.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".pth")) for name in files)

    loaded = load_model(tmp_path)
    import random

    examples = [make_example(i, random.Random(i)) for i in range(3)]
    reference = type(loaded)(card, network, tokenizer, tmp_path)
    if task == "classify":
        assert classify(loaded, examples) == classify(reference, examples)
    else:
        assert extract(loaded, examples) == extract(reference, examples)
