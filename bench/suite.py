"""Run every quick benchmark, then rewrite the performance block of docs/benchmarks.md.

Run with ``python -m bench.suite [--render-only] [--skip NAME]`` (``make bench`` runs it). Each
benchmark runs as its own process (``sys.executable -m bench.<name> [--quick]``, in the repository
root), one after the other and timed, in this order: preprocess, drift --quick, build_dataset
--quick, predictor --quick, training --quick, retrain_strategies --quick (when
bench/retrain_strategies has a ``__main__``) and training_cuda (only where
``torch.cuda.is_available()``). Its stdout and stderr go to the console as they come; the suite
keeps the last lines of stderr.

The run is recorded in ``bench/out/suite.json``: the date, the machine (CPU model and
architecture, cores, memory, Python, torch and its threads, the GPU or none, tesseract), the load
average, and per benchmark the command, status, wall time, load average at its start and the
digest of its JSON as the suite left it.

Rendering reads only ``suite.json`` and the benchmarks' JSON (never the clock), so unchanged files
re-render to the same bytes; ``--render-only`` does only that. Per benchmark: a line with the
exact command, the size and the wall time, then a ``| figure | value | target |`` table, the
target marked ✔ or ✘ where the benchmark has one (reported, never asserted). A JSON with
``readme_rows`` (``[[figure, value, target], ...]``, with its own ``command``) is rendered as it
is; the others go through this module's extractor for that benchmark. A benchmark that failed
renders as failed with the last lines of its stderr (the others still run; the suite exits 1 at
the end), one without a JSON as "not run". A JSON that changed after the suite saw it (digest)
renders under its own ``command`` if it has one, else marked as written outside the suite; it is
never credited to the suite's command or wall time.

The block is the one between ``<!-- bench:suite:begin -->`` and ``<!-- bench:suite:end -->`` in
docs/benchmarks.md; ``rewrite_section`` replaces any ``<!-- bench:NAME:begin/end -->`` block.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
SUITE_JSON = "suite.json"
SECTION = "suite"
STDERR_LINES = 15
TIMEOUT_S = 3600.0
# what `bench.training --quick` prepares (QUICK_DOCS documents, seed 3); training_cuda reuses it
TRAINING_QUICK_DATASET = "bench/out/training-data/base-40-3/dataset"
# the offline defaults `make` exports, for a suite started by hand
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}

Row = tuple[str, str, str]
SROIE_ENV = "DOCLOOP_SROIE_DIR"
"""Where ``make bench`` finds the public SROIE set (``SROIE=`` passes it); unset: skipped."""
Figures = dict[str, Any]


class MarkersMissing(ValueError):
    """A document lacks a section's begin/end markers (or has them more than once, or reversed)."""


# --- target cells ---------------------------------------------------------------------------------
def target(text: str, met: bool) -> str:
    """A target cell: the target and whether this run met it."""
    return f"{text} {'✔' if met else '✘'}"


def percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f} %"


# --- per-benchmark extractors: a bench's JSON -> (size line, rows) --------------------------------
def preprocess_rows(f: Figures) -> tuple[str, list[Row]]:
    scaling = float(f["scaling_2_workers"])
    rerun = float(f["rerun_fraction"])
    speedup = float(f["fast_path_speedup"])
    words_only = float(f["words_only_speedup"])
    recovery = float(f["entity_recovery_ocr"])
    size = (
        f"{f['documents']} documents per batch ({f['scanned_pages']} scanned pages, "
        f"{f['digital_pages']} born-digital)"
    )
    words_ms = float(f["text_layer_words_s_per_page"]) * 1000
    return size, [
        ("scanned (OCR) pages/s, 1 worker", f"{f['pages_per_s_1_worker']:.3f}", ""),
        ("scanned (OCR) pages/s, 2 workers", f"{f['pages_per_s_2_workers']:.3f}", ""),
        ("scaling, 2 workers / 1", f"{scaling:.2f}x", target("≥ 1.70x", scaling >= 1.7)),
        (
            "re-run on unchanged input / first run",
            f"{percent(rerun, 2)} ({f['rerun_seconds']:.3f} s)",
            target("≤ 2 %", rerun <= 0.02),
        ),
        (
            "text-layer page, end to end (render, JPG, words, records)",
            f"{float(f['text_layer_s_per_page']) * 1000:.0f} ms",
            "",
        ),
        (
            "OCR page, end to end, same born-digital pages (`--force-ocr`)",
            f"{float(f['ocr_s_per_page']) * 1000:.0f} ms",
            "",
        ),
        ("fast-path speed-up, end to end", f"{speedup:.0f}x", target("≥ 50x", speedup >= 50)),
        (
            f"fast-path speed-up, words and boxes alone ({words_ms:.1f} ms/page)",
            f"{words_only:.0f}x",
            target("≥ 50x", words_only >= 50),
        ),
        (
            "labelled entities read back exactly by OCR (scanned `base` pages)",
            f"{percent(recovery)} of {f['entities']}",
            target("≥ 90 %", recovery >= 0.9),
        ),
    ]


def real_documents_rows(f: Figures) -> tuple[str, list[Row]]:
    ocr = f["variants"]["default"]
    coverage = f["dataset"]["coverage"]["all"]
    training, fields = f["training"], f["fields"]["overall"]
    size = (
        f"{f['receipts']} SROIE receipts ({f['dataset']['documents']['holdout']} in the holdout), "
        f"extractor trained {training['steps']} steps"
    )
    recall, ceiling = float(ocr["token_recall"]), float(ocr["value_ceiling"])
    cpu = float(ocr["cpu_s_per_receipt"])
    return size, [
        ("OCR token recall", f"{recall:.3f}", target("≥ 0.90", recall >= 0.9)),
        ("OCR character recall", f"{float(ocr['char_recall']):.3f}", ""),
        ("field-value ceiling", f"{ceiling:.3f}", target("≥ 0.85", ceiling >= 0.85)),
        ("CPU seconds per receipt (one core)", f"{cpu:.2f}", target("≤ 1.0", cpu <= 1.0)),
        (
            "labels by value located (exact + fuzzy)",
            f"{percent(float(coverage['located']))} of {coverage['given']}",
            "",
        ),
        ("extractor entity F1 (seqeval)", f"{float(training['entity_f1']):.3f}", ""),
        ("extractor field F1 (SROIE protocol)", f"{float(fields['f1']):.3f}", ""),
    ]


FALSE_ALARM_TARGET = 0.05  # bench.drift's target (not in its JSON)


def drift_rows(f: Figures) -> tuple[str, list[Row]]:
    scale = f["scale"]
    baseline = scale["baseline"]
    alarms = list(f["false_alarms"].values())
    detection = f["detection"]
    size = (
        f"{scale['rows']:,} logged predictions vs a {scale['reference_rows']:,}-document "
        f"reference, {scale['embedding_rows_per_side_input']:,} x {scale['embedding_dims']} "
        f"embeddings per side (MMD on {scale['embedding_rows_used'][0]:,}, "
        f"{scale['permutations']:,} permutations), {scale['reviews']:,} reviews; replicas of "
        f"{alarms[0]['reference_n']:,} vs {alarms[0]['current_n']:,} documents"
    )
    wall = float(scale["statistics_wall_s"])
    rows: list[Row] = [
        (
            "statistics, wall time",
            f"{wall:.2f} s",
            target(f"≤ {scale['wall_target_s']:.0f} s", wall <= scale["wall_target_s"]),
        ),
        (
            "speed-up vs the alibi-detect loop, whole statistics",
            f"{baseline['statistics_speedup']:.1f}x",
            "",
        ),
        (
            f"speed-up vs the alibi-detect loop, MMD test alone ({baseline['permutations_run']} "
            "permutations timed, extrapolated)",
            f"{baseline['mmd_speedup']:.1f}x",
            "",
        ),
    ]
    for result in alarms:
        low, high = result["wilson_95"]
        rows.append(
            (
                f"false alarms, {result['replicas']} no-drift replicas, alpha {result['alpha']}",
                f"{percent(result['rate'])} (Wilson 95 % {percent(low)}-{percent(high)})",
                target("≤ 5 %", result["rate"] <= FALSE_ALARM_TARGET),
            )
        )
    for name, result in detection.items():
        note = "power check, no target" if name.startswith("subtle") else ""
        rows.append(
            (
                f"detection, {name.replace('_', ' ')} ({result['replicas']} replicas)",
                percent(result["rate"], 0),
                note,
            )
        )
    evidently = f["evidently"]
    if not evidently.get("available"):
        rows.append(("vs Evidently", str(evidently.get("note", "not run")), ""))
    else:
        for name, case in evidently["cases"].items():
            disagree = [signal for signal, same in case["signals_agree"].items() if not same]
            agreement = (
                f"all {len(case['signals_agree'])} signals agree"
                if not disagree
                else f"disagree on {', '.join(disagree)}"
            )
            overall = "same decision" if case["overall_agree"] else "different decision"
            ratio = float(case["ratio"])
            rows.append(
                (
                    f"vs Evidently {evidently['version']}, {name.replace('_', ' ')}: "
                    f"{evidently['rows']:,} / {evidently['reference_rows']:,} rows, "
                    f"{evidently['embedding_rows_per_side_input']:,} embeddings per side",
                    f"{case['docloop_s']:.2f} s vs {case['evidently_s']:.2f} s: {ratio:.1f}x; "
                    f"{agreement}, {overall}",
                    target(
                        f"≥ {evidently['speedup_target']:.0f}x, same decision",
                        ratio >= evidently["speedup_target"] and case["overall_agree"],
                    ),
                )
            )
    return size, rows


def build_dataset_rows(f: Figures) -> tuple[str, list[Row]]:
    rows_n = int(f["feedback_rows"])
    build_s = float(f["build_s"])
    size = (
        f"{rows_n:,} reviewed documents (~{f['mean_words_per_document']} words each) against a "
        f"{f['previous_documents']:,}-document previous dataset"
    )
    target_s = float(f["target_s"])
    if rows_n == 1_000_000:
        build_target = target(f"≤ {target_s:.0f} s", build_s <= target_s)
    else:
        build_target = f"(≤ {target_s:.0f} s is for 1,000,000 rows)"
    phases = "; ".join(f"{name} {seconds:.2f} s" for name, seconds in f["phases_s"].items())
    return size, [
        (
            "build: sampling + writing",
            f"{build_s:.2f} s ({f['rows_per_s']:,} rows/s; {f['build_cpu_s']:.1f} s CPU)",
            build_target,
        ),
        ("  its phases", phases, ""),
        ("written", f"{f['written_mb']} MiB of Parquet", ""),
        (
            "turning `FeedbackRecord` objects into label columns (pydantic path)",
            f"{f['pydantic_feedback_labels_us_per_row']} µs/row "
            f"({f['pydantic_feedback_labels_s_per_1m_rows']} s per 1M)",
            "not in the target",
        ),
        (
            "`assess_feedback` (quality rules, pydantic records)",
            f"{f['assess_feedback_us_per_row']} µs/row",
            "not in the target",
        ),
    ]


def predictor_rows(f: Figures) -> tuple[str, list[Row]]:
    words = f["words_per_document"]
    size = (
        f"{f['documents']} born-digital documents ({words['min']}-{words['max']} words), "
        f"{f['requests']} one-document requests per configuration; {f['torch_threads']} torch "
        f"threads, device {f['device']}"
    )
    rows: list[Row] = []
    for name, run in f["runs"].items():
        batched = name.startswith("in-process") and not name.endswith("batch 1")
        per_batch = " (per batch)" if batched else ""
        server = run.get("server")
        batch = f", mean batch {server['mean_batch_size']:.1f}" if server else ""
        rows.append(
            (
                name,
                f"{run['docs_per_s']:.2f} docs/s, p50 {run['p50_ms']:.1f} ms{per_batch}, "
                f"p99 {run['p99_ms']:.1f} ms{batch}",
                "",
            )
        )
    overhead = float(f["server_overhead_c1"])
    speedup = float(f["batching_speedup_c16"])
    rows += [
        (
            "server overhead at c=1 (p50 vs in-process p50), batching on",
            f"{overhead * 100:+.1f} %",
            target(f"≤ {f['server_overhead_c1_target'] * 100:.0f} %", f["server_overhead_c1_met"]),
        ),
        (
            "  same, `--no-batching`",
            f"{float(f['server_overhead_c1_no_batching']) * 100:+.1f} %",
            "",
        ),
        (
            "batching speed-up at c=16 (docs/s, on / off)",
            f"{speedup:.2f}x",
            target(f"≥ {f['batching_speedup_c16_target']:.0f}x", f["batching_speedup_c16_met"]),
        ),
        (
            "  in process, batch 16 / batch 1 (docs/s)",
            f"{f['in_process_batch_speedup']:.2f}x",
            "",
        ),
    ]
    goal = float(f.get("inference_speedup_target", 2.0))
    for name, value in f.get("inference_speedup_vs_fp32", {}).items():
        rows.append(
            (
                f"docs/s vs fp32, {name} (serve.inference {f['inference']})",
                f"{float(value):.2f}x",
                target(f"≥ {goal:g}x", float(value) >= goal),
            )
        )
    return size, rows


TRAINING_TARGET_S = 180.0  # bench.training's target at its default size (not in its JSON)


def training_rows(f: Figures) -> tuple[str, list[Row]]:
    split = f["split"]
    config = f["config"]
    steps = f"at most {f['max_steps']} steps per model" if f.get("max_steps") else "default steps"
    size = (
        f"{f['documents']}-document `base` corpus (seed {f.get('seed', 3)}; split "
        f"{split.get('train')} train / {split.get('val')} val / {split.get('holdout')} holdout), "
        f"`max_length` {config['max_length']}, batch {config['batch_size']}, {steps}; "
        f"{f['device']}, {f['machine']}"
    )
    rows: list[Row] = []
    for name, label in (
        ("classifier", "classifier"),
        ("extractor", "extractor (words, the default)"),
        ("extractor_layout", "extractor, words + boxes"),
    ):
        run = f[name]
        if "accuracy" in run:
            scores = f"accuracy {run['accuracy']:.3f}, macro-F1 {run['macro_f1']:.3f}"
        else:
            scores = f"entity F1 {run['entity_f1']:.3f} (macro {run['entity_macro_f1']:.3f})"
        if run["already_trained"]:
            value = f"cached, not re-timed; holdout {scores}"
            goal = ""
        else:
            value = (
                f"{run['seconds']:.0f} s, {run['steps']} steps, {run['samples_per_s']} "
                f"samples/s; holdout {scores}"
            )
            goal = (
                f"(≤ {TRAINING_TARGET_S:.0f} s is for the default size)"
                if f.get("quick")
                else target(f"≤ {TRAINING_TARGET_S:.0f} s", run["seconds"] <= TRAINING_TARGET_S)
            )
        rows.append((label, value, goal))
    rows.append(
        ("layout gain, entity F1 (boxes - no boxes)", f"{f['layout_gain_entity_f1']:+.3f}", "")
    )
    return size, rows


def training_cuda_rows(f: Figures) -> tuple[str, list[Row]]:
    size = (
        f"{f['steps']} steps of batch {f['batch_size']}, `max_length` {f['max_length']}, "
        f"medians of {f['repeats']} interleaved runs; {f['device']}, torch {f['torch']}, "
        f"{f['machine']}"
    )
    rows: list[Row] = []
    for task in ("classify", "extract"):
        run = f[task]
        ratio = run["ratio"]
        rows.append(
            (
                f"{task}: samples/s, docloop / HF `Trainer`",
                f"{run['docloop_samples_per_s']} / {run['hf_trainer_samples_per_s']} = {ratio}",
                target("≥ 1.0", ratio is not None and ratio >= 1.0),
            )
        )
        rows.append(
            (
                f"{task}: path",
                f"{run['device']} / {run['mixed_precision']}, {run['cuda_max_memory_mb']} MiB CUDA",
                "",
            )
        )
        inference = run["inference"]
        if "cuda" in inference:
            rows.append(
                (
                    f"{task}: holdout scoring, docs/s on CUDA vs CPU",
                    f"{inference['cuda']['docs_per_s']} vs {inference['cpu']['docs_per_s']} "
                    f"(score {inference['cuda']['score']} vs {inference['cpu']['score']})",
                    "",
                )
            )
    return size, rows


# --- the benchmarks -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the suite: how to run it, where its figures land, how to render them."""

    name: str
    title: str
    args: tuple[str, ...] = ()
    output: str = ""  # its JSON under bench/out/ (default <name>.json)
    extract: Callable[[Figures], tuple[str, list[Row]]] | None = None
    requires: str = ""  # "module": run only when bench/<name> exists; "cuda": only with CUDA

    @property
    def json_name(self) -> str:
        return self.output or f"{self.name}.json"

    @property
    def command(self) -> str:
        return " ".join(["python", "-m", f"bench.{self.name}", *self.args])


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("preprocess", "Preprocess", extract=preprocess_rows),
    Benchmark("drift", "Drift check", ("--quick",), extract=drift_rows),
    Benchmark("build_dataset", "Retrain dataset", ("--quick",), extract=build_dataset_rows),
    Benchmark("predictor", "Predictor", ("--quick",), extract=predictor_rows),
    Benchmark("training", "Training", ("--quick",), extract=training_rows),
    Benchmark(
        "retrain_strategies",
        "Retrain strategies",
        ("--quick",),
        output="retrain_strategies-quick.json",
        requires="module",
    ),
    Benchmark(
        "real_documents",
        "Real documents (SROIE receipts)",
        ("--quick",),
        output="real_documents-quick.json",
        extract=real_documents_rows,
        requires="sroie",
    ),
    Benchmark(
        "training_cuda",
        "Training on a GPU",
        ("--dataset", TRAINING_QUICK_DATASET, "--batch-size", "4", "--repeats", "1"),
        extract=training_cuda_rows,
        requires="cuda",
    ),
)


def runnable(benchmark: Benchmark, bench: Path = BENCH) -> bool:
    """Whether ``python -m bench.<name>`` has a module to run (a file, or a package's __main__)."""
    return (bench / f"{benchmark.name}.py").is_file() or (
        bench / benchmark.name / "__main__.py"
    ).is_file()


# --- the machine ----------------------------------------------------------------------------------
def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if match:
            return round(int(match.group(1)) / 2**20, 1)
    return None


def _tesseract() -> str:
    executable = shutil.which("tesseract")
    if executable is None:
        return "tesseract not found"
    done = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0].strip() if lines else "tesseract (version unknown)"


def machine() -> dict[str, Any]:
    """What the figures were measured on (read once, when the suite runs)."""
    import torch  # here, not at the top: --render-only never needs it

    cuda = torch.cuda.is_available()
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "cpus_online": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": cuda,
        "tesseract": _tesseract(),
    }


def describe_machine(m: dict[str, Any]) -> str:
    memory = f"{m['memory_gib']:.0f} GiB memory" if m.get("memory_gib") else "memory unknown"
    online = f" of {m['cpus_online']} online" if m.get("cpus_online") != m["cores"] else ""
    return (
        f"{m['cpu']} ({m['arch']}), {m['cores']} cores{online}, {memory}; Python {m['python']}, "
        f"torch {m['torch']} ({m['torch_threads']} threads), {m['gpu'] or 'no GPU'}; "
        f"{m['tesseract']}"
    )


# --- running --------------------------------------------------------------------------------------
def digest(path: Path) -> str | None:
    """The file's sha256, None when there is no file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL the benchmark and what it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)


def execute(benchmark: Benchmark, out: Path, timeout_s: float, console: Console) -> dict[str, Any]:
    """Run one benchmark as a subprocess; its record for suite.json."""
    command = [sys.executable, "-m", f"bench.{benchmark.name}", *benchmark.args]
    record: dict[str, Any] = {
        "command": benchmark.command,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    console.rule(f"{benchmark.command}  (load {record['load_average_at_start']})")
    env = {**CHILD_ENV, **os.environ}
    tail: deque[str] = deque(maxlen=STDERR_LINES)
    started_wall = time.time()
    started = time.perf_counter()
    # its own process group, so that a timeout also ends the servers the predictor starts
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(process)

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
        returncode = process.wait()
    except KeyboardInterrupt:
        _kill_group(process)  # the child is in its own session: Ctrl-C did not reach it
        raise
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    record.update({"returncode": returncode, "seconds": round(seconds, 1)})
    written = out / benchmark.json_name
    if returncode != 0:
        record.update(
            status="failed",
            reason=f"killed after {timeout_s:.0f} s" if expired.is_set() else f"exit {returncode}",
            stderr_tail=list(tail),
        )
    elif not written.is_file() or written.stat().st_mtime < started_wall - 1:
        record.update(
            status="failed",
            reason=f"exit 0 but no new bench/out/{benchmark.json_name}",
            stderr_tail=list(tail),
        )
    else:
        record.update(status="ok")
    record["json_sha256"] = digest(written)
    return record


def run_suite(
    out: Path, timeout_s: float, console: Console, skip: Sequence[str] = ()
) -> dict[str, Any]:
    """Run the benchmarks in order (but those in ``skip``); the record, also in suite.json."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    suite: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "benchmarks": {},
    }
    for listed in BENCHMARKS:
        benchmark = listed
        reason = ""
        if benchmark.name in skip:
            reason = "on request (`--skip`)"
        elif benchmark.requires == "module" and not runnable(benchmark):
            reason = f"bench/{benchmark.name} is not there yet"
        elif benchmark.requires == "cuda" and not suite["machine"]["cuda"]:
            reason = "no CUDA device (`torch.cuda.is_available()` is False)"
        elif benchmark.requires == "sroie":
            folder = os.environ.get(SROIE_ENV, "")
            if not folder or not (Path(folder) / "img").is_dir():
                reason = (
                    f"no SROIE data ({SROIE_ENV} is {folder or 'unset'}): run `make bench "
                    "SROIE=<the data/ folder of zzzDavid/ICDAR-2019-SROIE>`"
                )
            else:
                benchmark = replace(benchmark, args=(*benchmark.args, "--sroie", folder))
        if reason:
            record = {
                "command": benchmark.command,
                "status": "skipped",
                "reason": reason,
                "json_sha256": digest(out / benchmark.json_name),
            }
        else:
            record = execute(benchmark, out, timeout_s, console)
        suite["benchmarks"][benchmark.name] = record
    suite["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    suite["seconds"] = round(time.perf_counter() - started, 1)
    (out / SUITE_JSON).write_text(json.dumps(suite, indent=2, ensure_ascii=False) + "\n")
    return suite


# --- rendering ------------------------------------------------------------------------------------
def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    return re.sub(r"(?<!\\)\|", r"\\|", text)


def table(rows: Sequence[Sequence[object]]) -> str:
    lines = ["| figure | value | target |", "| --- | --- | --- |"]
    for row in rows:
        cells = [*(_cell(cell) for cell in row), "", "", ""][:3]
        lines.append(f"| {cells[0]} | {cells[1]} | {cells[2]} |".replace("|  |", "| |"))
    return "\n".join(lines)


def _load(path: Path) -> Figures | None:
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text())
    except json.JSONDecodeError as error:  # a half-written file: rendered as unreadable figures
        return {"_unreadable": str(error)}
    return loaded if isinstance(loaded, dict) else {"_not_an_object": loaded}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render_benchmark(
    benchmark: Benchmark, record: dict[str, Any] | None, out: Path, cores: int | None = None
) -> str:
    """The Markdown of one benchmark: heading, command line, table (or why there is none).

    With the machine's ``cores``, a start under a load average above them is flagged.
    """
    heading = f"### {benchmark.title}"
    record = record or {}
    status = record.get("status")
    path = out / benchmark.json_name
    # a JSON the suite did not see (written after its run, or no run recorded) speaks for itself
    rewritten = not record or record.get("json_sha256") != digest(path)
    if status == "skipped" and not rewritten:
        return f"{heading}\n\n`{record['command']}`: skipped, {record['reason']}."
    if status == "failed" and not rewritten:
        tail = "\n".join(record.get("stderr_tail") or ["(no stderr)"])
        fence = "```"
        while fence in tail:  # a fence the stderr cannot close
            fence += "`"
        return (
            f"{heading}\n\n`{record['command']}`: **failed** ({record['reason']}, after "
            f"{_duration(record['seconds'])}); no figures. The last lines of its stderr:\n\n"
            f"{fence}text\n{tail}\n{fence}"
        )
    figures = _load(path)
    if figures is None:
        return f"{heading}\n\n`{record.get('command', benchmark.command)}`: not run."
    same_run = status == "ok" and not rewritten
    if "command" in figures:
        command = f"`{figures['command']}`"
    elif same_run:
        command = f"`{record['command']}`"
    else:
        command = (
            f"Figures from `bench/out/{benchmark.json_name}`, written outside the last "
            f"`make bench` run (command not recorded; `make bench` runs `{benchmark.command}`)"
        )
    timing = ""
    if same_run:
        load = record["load_average_at_start"]
        timing = f"{_duration(record['seconds'])}, load {load} at start"
        if cores and load > cores:
            timing += f" (above its {cores} cores: other jobs skew the timings)"
    try:
        if "readme_rows" in figures:
            size, rows = "", [tuple(row) for row in figures["readme_rows"]]
        elif benchmark.extract is not None:
            size, rows = benchmark.extract(figures)
        else:
            return f"{heading}\n\n{command}: its JSON has no `readme_rows`; nothing to render."
    except (KeyError, TypeError, ValueError, IndexError, StopIteration) as error:
        # a JSON of another version of the bench: say so rather than fail the whole block
        return (
            f"{heading}\n\n{command}: its figures do not have the expected shape "
            f"({type(error).__name__}: {error}); run `make bench`."
        )
    details = "; ".join(part for part in (size, timing) if part)
    line = f"{command}: {details}." if details else f"{command}."
    return f"{heading}\n\n{line}\n\n{table(rows)}"


def render(out: Path = OUT, benchmarks: Sequence[Benchmark] = BENCHMARKS) -> str:
    """The whole generated block, from ``out/suite.json`` and the benchmarks' JSON files."""
    suite = _load(out / SUITE_JSON) or {}
    records = suite.get("benchmarks", {})
    parts = ["<!-- generated by `python -m bench.suite` from bench/out/*.json; do not edit -->"]
    if "machine" in suite:
        load_start = suite.get("load_average_at_start", ["?"])[0]
        load_end = suite.get("load_average_at_end", ["?"])[0]
        parts.append(
            f"Run of {suite['date']}, {_duration(suite.get('seconds', 0))} in all, load average "
            f"{load_start} at start and {load_end} at the end. Machine: "
            f"{describe_machine(suite['machine'])}."
        )
    else:
        parts.append(f"No suite run recorded (no bench/out/{SUITE_JSON}): run `make bench`.")
    cores = suite.get("machine", {}).get("cores")
    for benchmark in benchmarks:
        parts.append(render_benchmark(benchmark, records.get(benchmark.name), out, cores))
    return "\n\n".join(parts) + "\n"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def rewrite_section(doc: Path, name: str, markdown: str) -> bool:
    """Replace the block between ``<!-- bench:NAME:begin -->`` and its end marker with markdown.

    The markers stay; the block becomes exactly ``markdown`` (one newline after the begin marker,
    one before the end marker).

    Args:
        doc: The Markdown file to rewrite in place.
        name: The section's name in its markers.
        markdown: The block's new content.

    Returns:
        Whether the file changed.

    Raises:
        MarkersMissing: Either marker is missing, appears twice, or the end comes first.
    """
    begin, end = markers(name)
    text = doc.read_text(encoding="utf-8")
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise MarkersMissing(
            f"{doc} needs exactly one {begin!r} followed by one {end!r} (found "
            f"{text.count(begin)} and {text.count(end)}); add them where the generated block goes"
        )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    body = markdown.strip("\n")
    new = f"{head}{begin}\n{body}\n{end}{tail}" if body else f"{head}{begin}\n{end}{tail}"
    if new == text:
        return False
    doc.write_text(new, encoding="utf-8")
    return True


def summary(suite: dict[str, Any], console: Console) -> None:
    overview = Table(title=f"bench suite ({_duration(suite['seconds'])} in all)")
    for column in ("benchmark", "status", "wall time", "load at start"):
        overview.add_column(column)
    for name, record in suite["benchmarks"].items():
        status = record["status"]
        colour = {"ok": "green", "failed": "red"}.get(status, "yellow")
        reason = f" ({record['reason']})" if "reason" in record else ""
        overview.add_row(
            name,
            f"[{colour}]{status}[/{colour}]{reason}",
            _duration(record["seconds"]) if "seconds" in record else "",
            str(record.get("load_average_at_start", "")),
        )
    console.print(overview)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--render-only", action="store_true", help="re-render the block from bench/out/*.json"
    )
    parser.add_argument(
        "--doc", type=Path, default=BENCHMARKS_DOC, help="the Markdown file holding the block"
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the benchmarks' JSON lands")
    parser.add_argument(
        "--timeout", type=float, default=TIMEOUT_S, help="seconds one benchmark may run"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=[b.name for b in BENCHMARKS],
        help="do not run this benchmark (repeatable); it renders as skipped",
    )
    args = parser.parse_args(argv)
    console = Console()
    failed: list[str] = []
    if not args.render_only:
        suite = run_suite(args.out, args.timeout, console, args.skip)
        summary(suite, console)
        failed = [n for n, r in suite["benchmarks"].items() if r["status"] == "failed"]
    try:
        changed = rewrite_section(args.doc, SECTION, render(args.out))
    except MarkersMissing as error:
        console.print(str(error), style="red", markup=False, highlight=False)
        return 2
    console.print(f"{args.doc}: {'rewritten' if changed else 'unchanged'}", highlight=False)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
