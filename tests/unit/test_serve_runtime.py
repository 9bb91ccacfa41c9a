"""How the served networks run: ONNX Runtime answers as the PyTorch network does, on both tiny
trained models, at shapes other than the export's."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from docloop.documents.examples import DocumentExample
from docloop.errors import InvalidInput
from docloop.models.artifact import CARD_FILE, LoadedModel, load_model
from docloop.models.inference import classify, extract
from docloop.serve.runtime import Inference, OnnxNetwork, probe_difference, serving_model
from tests.datasets import make_example

if TYPE_CHECKING:  # imported for real by pytest_plugins
    from tests.serving import TinyModels

pytest_plugins = ["tests.serving"]
pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def trained(tiny_models: TinyModels) -> dict[str, LoadedModel]:
    return {
        "classify": load_model(tiny_models.classifier),
        "extract": load_model(tiny_models.extractor),
    }


def examples() -> list[DocumentExample]:
    """Tiny documents of 9-35 words (their windows differ in length)."""
    rng = random.Random(5)
    return [make_example(index, rng) for index in range(6)]


def test_fp32_serves_the_network_as_trained(trained: dict[str, LoadedModel]) -> None:
    loaded = trained["extract"]
    assert serving_model(loaded, "fp32") is loaded


def test_an_unknown_inference_is_refused(trained: dict[str, LoadedModel]) -> None:
    with pytest.raises(InvalidInput, match=r"serve\.inference: 'tensorrt' is not one of"):
        serving_model(trained["extract"], "tensorrt")  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["classify", "extract"])
def test_onnx_answers_like_the_network(trained: dict[str, LoadedModel], task: str) -> None:
    loaded = trained[task]
    served = serving_model(loaded, "onnx")
    assert isinstance(served.network, OnnxNetwork) and served.card == loaded.card
    assert probe_difference(loaded, served.network) < 1e-4
    documents = examples()
    if task == "classify":
        expected = classify(loaded, documents)
        got = classify(served, documents)
        assert [p.label for p in got] == [p.label for p in expected]
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.confidence == pytest.approx(theirs.confidence, abs=1e-4)
    else:
        # batch sizes 1 and 5: different numbers of windows and of tokens per forward call
        for batch_size in (1, 5):
            got_tags = [r.tags for r in extract(served, documents, batch_size=batch_size)]
            assert got_tags == [r.tags for r in extract(loaded, documents)]


@pytest.mark.parametrize("inference", ["onnx", "onnx-int8"])
def test_an_extractor_without_layout_serves_under_onnx(
    tiny_models: TinyModels, tmp_path: Path, inference: Inference
) -> None:
    """The exporter drops the boxes input that a ``--no-layout`` extractor never reads; the
    session must not be fed it (it was: ONNX Runtime's "Invalid input name: bbox")."""
    folder = tmp_path / "no-layout"
    shutil.copytree(tiny_models.extractor, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    card["use_layout"] = False
    (folder / CARD_FILE).write_text(json.dumps(card))
    loaded = load_model(folder)
    served = serving_model(loaded, inference)
    assert isinstance(served.network, OnnxNetwork) and "bbox" not in served.network.graph_inputs
    documents = examples()
    got = [r.tags for r in extract(served, documents)]
    if inference == "onnx":
        assert got == [r.tags for r in extract(loaded, documents)]
    else:
        assert len(got) == len(documents)


def test_int8_stays_close_to_the_network(trained: dict[str, LoadedModel]) -> None:
    loaded = trained["extract"]
    served = serving_model(loaded, "onnx-int8")
    probe = (
        torch.randint(1000, 5000, (2, 23)),
        torch.ones((2, 23), dtype=torch.long),
        torch.zeros((2, 23, 4), dtype=torch.long),
    )
    with torch.inference_mode():
        expected = torch.softmax(loaded.network(*probe), -1)
        got = torch.softmax(served.network(*probe), -1)
    assert got.shape == expected.shape
    # int8 weights move the probabilities a little, not the picture
    assert float((expected - got).abs().max()) < 0.1
