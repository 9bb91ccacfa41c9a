"""snapshot-inputs through kfp.local: digests that move exactly when what is behind a URI moves."""

import os
from pathlib import Path

import pytest

from tests.loop import World

pytestmark = pytest.mark.local


def test_digests_follow_new_and_rewritten_objects_not_the_uri(world: World) -> None:
    from components.snapshot_inputs import snapshot_inputs

    documents, labels = world.root / "raw", world.root / "labels.jsonl"
    documents.mkdir()
    (documents / "a.pdf").write_bytes(b"%PDF-1.4 a")
    labels.write_text('{"source": "a.pdf", "doc_type": "invoice"}\n')

    def digests() -> dict[str, str]:
        task = snapshot_inputs(input_uri=documents.as_uri(), labels_uri=labels.as_uri())
        return dict(task.outputs)

    first = digests()
    assert digests() == first  # the same objects: the same digests (the cache can hit)
    (documents / "b.pdf").write_bytes(b"%PDF-1.4 b")
    grown = digests()
    assert grown["documents"] != first["documents"] and grown["labels"] == first["labels"]
    rewritten = documents / "a.pdf"  # same size, new bytes: the mtime stamp moves
    stat = rewritten.stat()
    rewritten.write_bytes(b"%PDF-1.4 A")
    os.utime(rewritten, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert digests()["documents"] != grown["documents"]


def test_preprocess_settings_enter_the_documents_digest(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from docloop.steps import snapshot_inputs

    documents = tmp_path / "raw"
    documents.mkdir()
    (documents / "a.pdf").write_bytes(b"%PDF-1.4 a")
    before = snapshot_inputs.run(documents.as_uri(), documents.as_uri())
    monkeypatch.setenv("DOCLOOP__PREPROCESS__DPI", "300")
    after = snapshot_inputs.run(documents.as_uri(), documents.as_uri())
    assert after.documents != before.documents and after.labels == before.labels
