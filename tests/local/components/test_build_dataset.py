"""build-dataset through kfp.local: preprocessed synthetic documents and their labels, split."""

from pathlib import Path

import pytest

from tests.loop import World

pytestmark = pytest.mark.local

DOCS = 12


def test_every_labelled_document_lands_in_one_split(world: World) -> None:
    from kfp import dsl

    from components.build_dataset import build_dataset
    from components.preprocess import preprocess
    from docloop.documents.examples import read_manifest
    from docloop.documents.synth import generate_corpus
    from docloop.storage import Storage

    corpus = world.root / "corpus"
    generate_corpus(corpus, DOCS, 3, "base", scanned_fraction=0.0)

    @dsl.pipeline(name="preprocess-then-build")
    def preprocess_then_build(input_uri: str, labels_uri: str) -> dsl.Dataset:
        pages = preprocess(input_uri=input_uri, workers=1)
        built = build_dataset(pages=pages.outputs["pages"], labels_uri=labels_uri)
        return built.outputs["dataset"]

    dataset = preprocess_then_build(
        input_uri=str(corpus), labels_uri=str(corpus / "labels.jsonl")
    ).output

    folder = Path(dataset.path)
    manifest = read_manifest(Storage(), str(folder))
    assert {
        split for split in ("train", "val", "holdout") if (folder / f"{split}.parquet").is_file()
    } == {
        "train",
        "val",
        "holdout",
    }
    assert sum(manifest.counts[split] for split in ("train", "val", "holdout")) == DOCS
    assert dataset.metadata["digest"] == manifest.digest
