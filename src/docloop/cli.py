"""The ``docloop`` command line (typer + rich)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from docloop import __version__
from docloop.config import DocloopConfig, load_config
from docloop.errors import ConfigError, DocloopError, NothingToProcess, StorageError

app = typer.Typer(
    name="docloop",
    help="Self-improving document AI on Kubeflow Pipelines, MLflow and KServe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
logger = logging.getLogger("docloop")

EXIT_NOTHING_PROCESSED = 1
EXIT_CONFIG_OR_STORAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="docloop.yaml (default: $DOCLOOP_CONFIG or ./docloop.yaml)."
    ),
]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _config(path: Path | None) -> DocloopConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Self-improving document AI on Kubeflow Pipelines, MLflow and KServe."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for noisy in ("botocore", "urllib3", "google", "PIL", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def version() -> None:
    """Print the docloop version (equal to the component image tag)."""
    typer.echo(__version__)


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective configuration (file + DOCLOOP__SECTION__KEY overrides) as YAML."""
    import yaml

    typer.echo(yaml.safe_dump(_config(config).model_dump(mode="json"), sort_keys=False))


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        ".docloop/demo"
    ),
    docs: Annotated[int, typer.Option(min=1, help="Synthetic documents to generate.")] = 16,
    seed: Annotated[int, typer.Option(help="Corpus seed.")] = 0,
) -> None:
    """Run the main job end to end on the embedded defaults (what `make demo` runs)."""
    from docloop.demo import print_summary, run_demo

    workdir.mkdir(parents=True, exist_ok=True)
    with _progress() as progress:
        summary = run_demo(workdir, docs, seed, progress)
    print_summary(summary, Console())


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder for the PDFs and labels.jsonl.")],
    docs: Annotated[int, typer.Option(min=1, help="Number of documents.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    scenario: Annotated[
        str,
        typer.Option(help="base, new_template, class_mix, scan_quality or new_vendor."),
    ] = "base",
    scanned_fraction: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Share of image-only (scanned) PDFs.")
    ] = None,
) -> None:
    """Write a synthetic labelled corpus: PDFs plus labels.jsonl."""
    from docloop.documents.synth import generate_corpus

    try:
        with _progress() as progress:
            task = progress.add_task(f"synth {scenario}", total=docs)
            generated = generate_corpus(
                out,
                docs,
                seed,
                scenario,
                scanned_fraction=scanned_fraction,
                on_document=lambda _: progress.advance(task),
            )
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    scanned = sum(1 for doc in generated if doc.scanned)
    typer.echo(
        f"wrote {len(generated)} documents ({scanned} scanned, {len(generated) - scanned} "
        f"born-digital) and labels.jsonl to {out}"
    )


@app.command()
def preprocess(
    input_uri: Annotated[str, typer.Option("--input", help="URI prefix with PDFs/images.")],
    output_uri: Annotated[str, typer.Option("--output", help="URI for page records and reports.")],
    workers: Annotated[
        int | None, typer.Option(min=1, help="OCR processes (default: one per core).")
    ] = None,
    dpi: Annotated[int | None, typer.Option(min=72, max=600, help="Render resolution.")] = None,
    force_ocr: Annotated[
        bool, typer.Option("--force-ocr", help="OCR every page, even with a text layer.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Render, OCR and quarantine: documents in, page records (Parquet) out.

    Exit code 0 with a `processed=N quarantined=M` summary line; 1 when nothing could be read at
    all; 2 when the output is not writable or the configuration is invalid.
    """
    from docloop.documents.preprocess import preprocess as run_preprocess
    from docloop.storage import Storage

    settings = _config(config)
    overrides: dict[str, object] = {}
    if dpi is not None:
        overrides["dpi"] = dpi
    if force_ocr:
        overrides["force_ocr"] = True
    preprocess_config = settings.preprocess.model_copy(update=overrides)
    try:
        with _progress() as progress:
            task = progress.add_task("pages", total=None)
            result = run_preprocess(
                input_uri,
                output_uri,
                preprocess_config,
                Storage(settings.storage),
                workers=workers,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except NothingToProcess as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_NOTHING_PROCESSED) from exc
    except StorageError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    typer.echo(result.summary_line())


if __name__ == "__main__":
    app()
