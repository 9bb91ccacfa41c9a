"""The preprocess component through kfp.local.SubprocessRunner."""

import json
from pathlib import Path

import pytest

from tests import documents

pytestmark = pytest.mark.local


@pytest.fixture
def kfp_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import kfp.local

    # every local task leaves a mktemp -d folder behind: keep them in this test's tmp_path
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "pipeline-root"),
    )
    return tmp_path


@pytest.mark.slow  # OCR inside a kfp.local task
def test_preprocess_component_runs_locally(kfp_local: Path) -> None:
    from kfp import dsl

    from components.preprocess import preprocess

    folder = kfp_local / "in"
    documents.write(folder, "letter.pdf", documents.born_digital_pdf([["Referral letter"]]))
    image = documents.text_image(["Lab report", "Patient: Jane Doe"])
    documents.write(folder, "scan.png", documents.image_bytes(image, "PNG"))
    documents.write(folder, "locked.pdf", documents.born_digital_pdf([["x"]], encrypt="pw"))

    @dsl.pipeline(name="preprocess-only")
    def only_preprocess(input_uri: str) -> None:
        preprocess(input_uri=input_uri, workers=1)

    task = preprocess(input_uri=str(folder), workers=1)
    assert task.outputs["processed"] == 2
    assert task.outputs["quarantined"] == 1
    pages = Path(task.outputs["pages"].path)
    assert len(list((pages / "pages").glob("*.parquet"))) == 2
    quarantine = Path(task.outputs["quarantine"].path).read_text().splitlines()
    assert [json.loads(line)["code"] for line in quarantine] == ["encrypted_pdf"]
    assert task.outputs["pages"].metadata["pages_ocr"] == 1
    assert task.outputs["pages"].metadata["pages_text_layer"] == 1

    only_preprocess(input_uri=str(folder))  # and inside a pipeline
