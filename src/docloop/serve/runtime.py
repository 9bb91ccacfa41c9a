"""How a loaded network runs while it serves: as trained, or under ONNX Runtime.

``serving_model(loaded, inference)`` returns the model with its ``network`` replaced by one that
answers the same forward call (same inputs, logits as a torch tensor), so ``classify`` and
``extract`` run it unchanged:

``fp32``
    the PyTorch network as trained.
``onnx``
    the network exported to ONNX (``torch.onnx``, TorchScript exporter, batch/page/token axes
    dynamic) and run by ONNX Runtime on the CPU, fp32.
``onnx-int8``
    the same graph with its MatMul weights quantised to int8 per channel
    (``onnxruntime.quantization.quantize_dynamic``); activations are quantised on the fly.

The export happens at load time. The graph is kept in a cache folder (``$DOCLOOP_ONNX_CACHE``,
else ``$XDG_CACHE_HOME/docloop/onnx``, else ``~/.cache/docloop/onnx``) under the sha256 of the
model's weights file and the inference, so a restart of the same model loads it in a second;
an unwritable cache only costs the export again. Before the model is served, the session
answers a probe batch (shapes other than the export's, one row padded) next to the PyTorch
network; a difference over ``PROBE_TOLERANCE`` (fp32) is an error, so a graph the exporter got
wrong never serves. ONNX Runtime is a CPU path here: on a CUDA device the network stays as
trained.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from docloop.errors import InvalidInput
from docloop.models.artifact import WEIGHTS_FILE, LoadedModel

logger = logging.getLogger(__name__)

Inference = Literal["fp32", "onnx", "onnx-int8"]
INFERENCE_CHOICES: tuple[str, ...] = get_args(Inference)
PROBE_TOLERANCE = {"onnx": 1e-3, "onnx-int8": None}
"""Largest |logit difference| to PyTorch on the probe batch (None: int8 is only logged)."""

_INPUTS = {
    "classify": ("input_ids", "attention_mask", "page_mask"),
    "extract": ("input_ids", "attention_mask", "bbox"),
}
_AXES: dict[str, dict[str, dict[int, str]]] = {
    "classify": {
        "input_ids": {0: "batch", 1: "pages", 2: "tokens"},
        "attention_mask": {0: "batch", 1: "pages", 2: "tokens"},
        "page_mask": {0: "batch", 1: "pages"},
        "logits": {0: "batch"},
    },
    "extract": {
        "input_ids": {0: "batch", 1: "tokens"},
        "attention_mask": {0: "batch", 1: "tokens"},
        "bbox": {0: "batch", 1: "tokens"},
        "logits": {0: "batch", 1: "tokens"},
    },
}


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind the forward call of the network it was exported from.

    Args:
        session: the ``onnxruntime.InferenceSession``.
        input_names: the forward arguments, in order.
    """

    def __init__(self, session: Any, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.session = session
        self.input_names = input_names
        # the exporter drops an input the network never reads (the boxes of an extractor
        # trained without layout); ONNX Runtime refuses a feed it does not know
        self.graph_inputs = frozenset(node.name for node in session.get_inputs())
        # inference reads the device from the parameters: this network lives on the CPU
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Logits as the PyTorch network would return them (float32, on the CPU)."""
        feeds = {
            name: tensor.detach().cpu().numpy()
            for name, tensor in zip(self.input_names, inputs, strict=True)
            if name in self.graph_inputs
        }
        (logits,) = self.session.run(None, feeds)
        return torch.from_numpy(logits)


def _sample_inputs(task: str, batch: int, pages: int, tokens: int) -> tuple[torch.Tensor, ...]:
    """Inputs shaped like the features, with the last row padded (seeded: the probe repeats)."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, pages, tokens) if task == "classify" else (batch, tokens)
    input_ids = torch.randint(1000, 5000, shape, generator=generator)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[-1, ..., tokens // 2 :] = 0
    if task == "classify":
        page_mask = torch.ones((batch, pages), dtype=torch.long)
        page_mask[-1, -1] = 0
        return input_ids, attention_mask, page_mask
    origin = torch.randint(0, 501, (batch, tokens, 2), generator=generator)
    size = torch.randint(0, 501, (batch, tokens, 2), generator=generator)
    return input_ids, attention_mask, torch.cat([origin, origin + size], dim=-1)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's tracer warnings and the quantiser's per-tensor chatter.

    The quantiser logs on the root logger (one INFO line per tensor, and advice as a WARNING).
    """

    def chatter(record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or record.levelno > logging.WARNING

    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(chatter)


def export_onnx(loaded: LoadedModel, path: Path) -> None:
    """Export the model's network to an ONNX file with dynamic batch/page/token axes."""
    task = loaded.card.task
    sample = _sample_inputs(task, batch=2, pages=2, tokens=16)
    network = loaded.network.eval()
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            network,
            sample,
            str(path),
            dynamo=False,
            input_names=list(_INPUTS[task]),
            output_names=["logits"],
            dynamic_axes=_AXES[task],
            opset_version=17,
        )


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime CPU session with as many threads as torch uses, spinning off.

    Spinning threads keep the cores busy between forward passes; in a server they take the
    cores from the event loop that parses the next request.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cache_folder() -> Path:
    """Where exported graphs are kept (see the module docstring)."""
    if configured := os.environ.get("DOCLOOP_ONNX_CACHE"):
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "docloop" / "onnx"


def graph_key(loaded: LoadedModel, inference: Inference) -> str:
    """The cache key of a model's graph: its weights and card, the inference, runtime versions."""
    import onnxruntime as ort

    digest = hashlib.sha256()
    with (loaded.path / WEIGHTS_FILE).open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    digest.update(loaded.card.model_dump_json().encode())  # e.g. use_layout: the graph's inputs
    digest.update(f"{inference} torch {torch.__version__} ort {ort.__version__}".encode())
    return digest.hexdigest()[:32]


def build_graph(loaded: LoadedModel, inference: Inference, target: Path) -> None:
    """Export (and for ``onnx-int8`` quantise) the network into ``target``."""
    with tempfile.TemporaryDirectory(prefix="docloop-onnx-") as folder:
        path = Path(folder) / "network.onnx"
        export_onnx(loaded, path)
        if inference == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantised = Path(folder) / "network-int8.onnx"
            with _quiet():
                quantize_dynamic(path, quantised, weight_type=QuantType.QInt8, per_channel=True)
            path = quantised
        shutil.copyfile(path, target)


def onnx_network(loaded: LoadedModel, inference: Inference) -> OnnxNetwork:
    """The model's network exported and loaded into ONNX Runtime (``onnx`` or ``onnx-int8``)."""
    cached = cache_folder() / f"{graph_key(loaded, inference)}.onnx"
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.name}.{os.getpid()}")
            build_graph(loaded, inference, partial)
            partial.replace(cached)  # atomic: a reader never sees half a graph
        except OSError as exc:
            logger.warning("cannot keep the ONNX graph in %s (%s); exporting", cached.parent, exc)
            with tempfile.TemporaryDirectory(prefix="docloop-onnx-") as folder:
                path = Path(folder) / "network.onnx"
                build_graph(loaded, inference, path)
                return OnnxNetwork(onnx_session(path), _INPUTS[loaded.card.task])
    return OnnxNetwork(onnx_session(cached), _INPUTS[loaded.card.task])


def probe_difference(loaded: LoadedModel, network: nn.Module) -> float:
    """Largest |logit difference| between ``network`` and the model's own on a probe batch."""
    probe = _sample_inputs(loaded.card.task, batch=3, pages=3, tokens=37)
    with torch.inference_mode():
        expected = loaded.network(*probe).float()
        got = network(*probe).float()
    return float((expected - got).abs().max())


def serving_model(loaded: LoadedModel, inference: Inference) -> LoadedModel:
    """The model as it serves under ``inference`` (``fp32``: unchanged).

    Raises:
        InvalidInput: ``inference`` is unknown, or the exported graph does not answer like the
            network (a model the exporter cannot follow; serve it with ``fp32``).
    """
    if inference not in INFERENCE_CHOICES:
        raise InvalidInput(
            f"serve.inference: {inference!r} is not one of {', '.join(INFERENCE_CHOICES)}"
        )
    if inference == "fp32":
        return loaded
    device = next(loaded.network.parameters()).device
    if device.type != "cpu":
        logger.info(
            "serve.inference %s is a CPU runtime; the %s model runs as trained on %s",
            inference,
            loaded.card.task,
            device,
        )
        return loaded
    started = time.perf_counter()
    network = onnx_network(loaded, inference)
    difference = probe_difference(loaded, network)
    tolerance = PROBE_TOLERANCE[inference]
    if tolerance is not None and difference > tolerance:
        raise InvalidInput(
            f"{loaded.path}: the ONNX export of the {loaded.card.task} model differs from it by "
            f"{difference:.2g} on a probe batch (tolerance {tolerance:g}); serve it with "
            "serve.inference: fp32"
        )
    logger.info(
        "the %s model runs on ONNX Runtime (%s), ready in %.1f s; probe |logit difference| %.2g",
        loaded.card.task,
        inference,
        time.perf_counter() - started,
        difference,
    )
    return replace(loaded, network=network)
