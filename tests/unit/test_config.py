"""Configuration: file + environment overrides, strict validation, the example file stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from docloop.config import DocloopConfig, load_config
from docloop.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}) == DocloopConfig()


def test_example_file_is_valid_and_equals_the_defaults() -> None:
    assert load_config(ROOT / "docloop.example.yaml", environ={}) == DocloopConfig()


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "docloop.yaml"
    file.write_text("preprocess:\n  dpi: 150\n  workers: 2\n")
    config = load_config(file, environ={"DOCLOOP__PREPROCESS__DPI": "300"})
    assert (config.preprocess.dpi, config.preprocess.workers) == (300, 2)


def test_config_path_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "other.yaml"
    file.write_text("storage:\n  s3_endpoint_url: http://127.0.0.1:9000\n")
    config = load_config(environ={"DOCLOOP_CONFIG": str(file)})
    assert config.storage.s3_endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("preprocess:\n  dpi: 10\n", "preprocess.dpi"),
        ("preprocess:\n  dpii: 200\n", "preprocess.dpii"),
        ("storage:\n  aws_secret_access_key: abc\n", "storage.aws_secret_access_key"),
        ("- a list\n", "mapping"),
        ("preprocess: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "docloop.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(file, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_config_yaml_from_the_environment_is_read_when_no_file_is_named() -> None:
    """Pipeline pods get the docloop-config ConfigMap as $DOCLOOP_CONFIG_YAML."""
    environ = {"DOCLOOP_CONFIG_YAML": "gate:\n  classify_floor: 0.9\n"}
    assert load_config(environ=environ).gate.classify_floor == 0.9
    with pytest.raises(ConfigError, match=r"\$DOCLOOP_CONFIG_YAML is not valid YAML"):
        load_config(environ={"DOCLOOP_CONFIG_YAML": "gate: [unclosed"})
