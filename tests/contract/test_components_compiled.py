"""The 15 compiled components: current with their code, and loadable back.

A renamed parameter must never silently change what platform teams load from YAML; the component
READMEs and the README's component table are generated from the same code.
"""

from pathlib import Path

import pytest

from tests.compiled import without_sdk_version

pytestmark = pytest.mark.contract


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
        "input_digest",
    }
    image = loaded.component_spec.implementation.container.image
    assert image.endswith(":0.1.0") and "latest" not in image
