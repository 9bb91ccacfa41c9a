"""The preprocess component through kfp.local.SubprocessRunner, and its compiled YAML."""

import json
from pathlib import Path

import pytest

from tests import documents
from tests.compiled import without_sdk_version

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


def test_compiled_component_yaml_is_current(tmp_path: Path) -> None:
    """A renamed parameter must never silently change what platform teams load from YAML."""
    from components.compile import (
        COMPONENT_NAMES,
        COMPONENTS_DIR,
        compile_component,
        readme,
        reference_table,
    )

    for name in COMPONENT_NAMES:
        fresh = compile_component(name, tmp_path).read_text()
        committed = (COMPONENTS_DIR / name / "component.yaml").read_text()
        assert without_sdk_version(fresh) == without_sdk_version(committed), (
            f"components/{name}/component.yaml is stale: run `make compile`"
        )
        assert (COMPONENTS_DIR / name / "README.md").read_text() == readme(name), (
            f"components/{name}/README.md is stale: run `make compile`"
        )
    project_readme = (COMPONENTS_DIR.parent / "README.md").read_text()
    assert reference_table() in project_readme, (
        "the component table in README.md is stale: run `make compile`"
    )


def test_compiled_component_loads_back() -> None:
    from kfp import components

    from components.compile import COMPONENTS_DIR

    loaded = components.load_component_from_file(
        str(COMPONENTS_DIR / "preprocess" / "component.yaml")
    )
    assert set(loaded.component_spec.inputs) == {
        "input_uri",
        "dpi",
        "workers",
        "force_ocr",
        "shard_index",
        "num_shards",
    }
    image = loaded.component_spec.implementation.container.image
    assert image.endswith(":0.1.0") and "latest" not in image
