"""The bench suite's rendering of docs/benchmarks.md, on small JSON fixtures (none runs)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from bench import suite

pytestmark = pytest.mark.unit

DOC = """# docloop benchmarks

## Quick runs

Prose that stays.

<!-- bench:suite:begin -->
old figures
<!-- bench:suite:end -->

## Tests

More prose.
"""

PREPROCESS = {
    "machine": "x86_64, 2 cores, Python 3.11.7",
    "documents": 12,
    "scanned_pages": 20,
    "pages_per_s_1_worker": 0.645,
    "pages_per_s_2_workers": 1.187,
    "scaling_2_workers": 1.84,
    "rerun_seconds": 0.008,
    "rerun_fraction": 0.0008,
    "rerun_pages_processed": 0,
    "digital_pages": 21,
    "text_layer_s_per_page": 0.028,
    "ocr_s_per_page": 1.128,
    "fast_path_speedup": 40.3,
    "text_layer_words_s_per_page": 0.0126,
    "words_only_speedup": 89.5,
    "entities": 79,
    "entity_recovery_ocr": 0.987,
}

MACHINE = {
    "cpu": "AMD EPYC",
    "arch": "x86_64",
    "cores": 2,
    "cpus_online": 2,
    "memory_gib": 23.4,
    "python": "3.11.7",
    "torch": "2.13.0",
    "torch_threads": 2,
    "gpu": None,
    "cuda": False,
    "tesseract": "tesseract 5.3.0",
}


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))


def ok_record(out: Path, name: str, command: str, seconds: float = 42.0) -> dict[str, Any]:
    return {
        "command": command,
        "status": "ok",
        "returncode": 0,
        "seconds": seconds,
        "load_average_at_start": 1.5,
        "json_sha256": suite.digest(out / name),
    }


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A bench/out with preprocess's JSON and a suite record of the run that wrote it."""
    folder = tmp_path / "out"
    folder.mkdir()
    write_json(folder / "preprocess.json", PREPROCESS)
    write_suite(folder, {"preprocess": ok_record(folder, "preprocess.json", "python -m bench.x")})
    return folder


def write_suite(out: Path, records: dict[str, Any]) -> None:
    write_json(
        out / suite.SUITE_JSON,
        {
            "date": "2025-01-02 03:04 UTC",
            "machine": MACHINE,
            "load_average_at_start": [0.5, 0.4, 0.3],
            "load_average_at_end": [1.9, 1.2, 0.8],
            "seconds": 600.0,
            "benchmarks": records,
        },
    )


def benchmarks_doc(tmp_path: Path, text: str = DOC) -> Path:
    path = tmp_path / "benchmarks.md"
    path.write_text(text)
    return path


def test_the_blocks_live_in_docs_benchmarks_md_not_in_the_readme() -> None:
    from bench.retrain_strategies.__main__ import BENCHMARKS_DOC

    assert suite.BENCHMARKS_DOC == BENCHMARKS_DOC == suite.ROOT / "docs" / "benchmarks.md"
    text = suite.BENCHMARKS_DOC.read_text(encoding="utf-8")
    readme = (suite.ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("suite", "retrain_strategies"):
        for marker in suite.markers(name):
            assert text.count(marker) == 1, marker
            assert marker not in readme, marker


def test_rewrite_replaces_only_the_block_and_says_whether_it_changed(tmp_path: Path) -> None:
    path = benchmarks_doc(tmp_path)
    assert suite.rewrite_section(path, "suite", "| a | b | c |\n")
    text = path.read_text()
    assert text == DOC.replace("old figures", "| a | b | c |")
    assert not suite.rewrite_section(path, "suite", "| a | b | c |")
    assert path.read_text() == text


def test_rewrite_other_sections_by_name(tmp_path: Path) -> None:
    text = DOC + "\n<!-- bench:efficacy:begin -->\n<!-- bench:efficacy:end -->\n"
    path = benchmarks_doc(tmp_path, text)
    assert suite.rewrite_section(path, "efficacy", "efficacy table")
    assert "<!-- bench:efficacy:begin -->\nefficacy table\n<!-- bench:efficacy:end -->" in (
        path.read_text()
    )
    assert "old figures" in path.read_text()


@pytest.mark.parametrize(
    "text",
    [
        "# no markers\n",
        "<!-- bench:suite:begin -->\nonly the start\n",
        "<!-- bench:suite:end -->\nreversed\n<!-- bench:suite:begin -->\n",
        DOC + DOC,
    ],
)
def test_missing_or_broken_markers_name_them(tmp_path: Path, text: str) -> None:
    path = benchmarks_doc(tmp_path, text)
    with pytest.raises(suite.MarkersMissing, match=r"<!-- bench:suite:begin -->.*bench:suite:end"):
        suite.rewrite_section(path, "suite", "x")
    assert path.read_text() == text


def test_render_is_byte_identical_when_the_json_is_unchanged(tmp_path: Path, out: Path) -> None:
    path = benchmarks_doc(tmp_path)
    assert suite.main(["--render-only", "--out", str(out), "--doc", str(path)]) == 0
    first = path.read_bytes()
    assert suite.main(["--render-only", "--out", str(out), "--doc", str(path)]) == 0
    assert path.read_bytes() == first
    assert not suite.rewrite_section(path, "suite", suite.render(out))


def test_render_of_a_benchmark_that_ran(out: Path) -> None:
    markdown = suite.render(out)
    assert "Run of 2025-01-02 03:04 UTC, 10.0 min in all" in markdown
    assert "AMD EPYC (x86_64), 2 cores, 23 GiB memory; Python 3.11.7, torch 2.13.0" in markdown
    assert "no GPU; tesseract 5.3.0" in markdown
    assert "`python -m bench.x`: 12 documents per batch" in markdown
    assert "born-digital); 42 s, load 1.5 at start.\n" in markdown
    assert "| figure | value | target |\n| --- | --- | --- |\n" in markdown
    assert "| scanned (OCR) pages/s, 1 worker | 0.645 | |" in markdown
    assert "| scaling, 2 workers / 1 | 1.84x | ≥ 1.70x ✔ |" in markdown
    assert "| fast-path speed-up, end to end | 40x | ≥ 50x ✘ |" in markdown
    recovery = "| labelled entities read back exactly by OCR (scanned `base` pages) | 98.7 % of 79"
    assert recovery in markdown
    # the benchmarks with neither a record nor a JSON
    assert "`python -m bench.predictor --quick`: not run." in markdown
    assert "skew" not in markdown  # load 1.5 on 2 cores


def test_a_start_on_a_busy_machine_is_flagged(out: Path) -> None:
    record = ok_record(out, "preprocess.json", "python -m bench.preprocess")
    write_suite(out, {"preprocess": {**record, "load_average_at_start": 3.4}})
    assert "load 3.4 at start (above its 2 cores: other jobs skew the timings)." in (
        suite.render(out)
    )


def test_failure_renders_its_stderr_and_no_figures(out: Path) -> None:
    records = {
        "preprocess": {
            "command": "python -m bench.preprocess",
            "status": "failed",
            "returncode": 1,
            "seconds": 3.2,
            "load_average_at_start": 0.1,
            "reason": "exit 1",
            "stderr_tail": ["Traceback (most recent call last):", "RuntimeError: no tesseract"],
            "json_sha256": suite.digest(out / "preprocess.json"),  # an earlier run's, stale
        },
        "drift": {"command": "python -m bench.drift --quick", "status": "skipped", "reason": "r"},
    }
    write_suite(out, records)
    markdown = suite.render(out)
    assert "`python -m bench.preprocess`: **failed** (exit 1, after 3 s)" in markdown
    assert "```text\nTraceback (most recent call last):\nRuntimeError: no tesseract\n```" in (
        markdown
    )
    assert "pages/s" not in markdown  # the stale preprocess.json is not rendered
    assert "`python -m bench.drift --quick`: skipped, r." in markdown


def test_json_rewritten_after_the_run_is_not_credited_to_its_command(out: Path) -> None:
    write_json(out / "preprocess.json", {**PREPROCESS, "documents": 3})
    markdown = suite.render(out)
    assert "written outside the last `make bench` run" in markdown
    assert "`python -m bench.x`" not in markdown
    assert "`make bench` runs `python -m bench.preprocess`): 3 documents" in markdown
    assert "load 1.5 at start" not in markdown


def test_a_json_with_its_own_command_written_after_a_skip_is_rendered(out: Path) -> None:
    command = "python -m bench.retrain_strategies --quick"
    write_suite(
        out,
        {
            "retrain_strategies": {
                "command": command,
                "status": "skipped",
                "reason": "on request (`--skip`)",
                "json_sha256": None,
            }
        },
    )
    assert f"`{command}`: skipped, on request (`--skip`)." in suite.render(out)
    rows = [["strategy", "targeted", ""]]
    write_json(out / "retrain_strategies-quick.json", {"command": command, "readme_rows": rows})
    markdown = suite.render(out)
    assert "skipped" not in markdown
    assert f"`{command}`.\n\n| figure | value | target |" in markdown
    assert "| strategy | targeted | |" in markdown


def test_without_a_suite_record(tmp_path: Path) -> None:
    markdown = suite.render(tmp_path)
    assert "No suite run recorded" in markdown
    assert markdown.count(": not run.") == len(suite.BENCHMARKS)


def test_readme_rows_are_rendered_as_they_are(out: Path) -> None:
    rows = [["targeted vs full retrain, macro-F1", "+0.012 (|Δ| ≤ 0.02)", "≥ 0 ✔"], ["n", 3, ""]]
    write_json(
        out / "retrain_strategies-quick.json",
        {"command": "python -m bench.retrain_strategies --quick --seeds 2", "readme_rows": rows},
    )
    # and a known benchmark whose JSON brings its own rows: they win over the extractor
    write_json(out / "drift.json", {"command": "python -m bench.drift --quick", "readme_rows": []})
    markdown = suite.render(out)
    assert "`python -m bench.retrain_strategies --quick --seeds 2`." in markdown
    assert r"| targeted vs full retrain, macro-F1 | +0.012 (\|Δ\| ≤ 0.02) | ≥ 0 ✔ |" in markdown
    assert "| n | 3 | |" in markdown
    empty = "`python -m bench.drift --quick`.\n\n| figure | value | target |\n| --- | --- | --- |"
    assert empty in markdown


def test_a_json_of_another_shape_does_not_break_the_block(out: Path) -> None:
    write_json(out / "training.json", {"documents": 40})
    (out / "drift.json").write_text('{"scale": ')
    markdown = suite.render(out)
    assert "its figures do not have the expected shape (KeyError: 'split')" in markdown
    assert "its figures do not have the expected shape (KeyError: 'scale')" in markdown
    assert "| scaling, 2 workers / 1 | 1.84x | ≥ 1.70x ✔ |" in markdown


def test_the_suite_runs_the_quick_sizes_in_order() -> None:
    commands = [b.command for b in suite.BENCHMARKS]
    assert commands[:6] == [
        "python -m bench.preprocess",
        "python -m bench.drift --quick",
        "python -m bench.build_dataset --quick",
        "python -m bench.predictor --quick",
        "python -m bench.training --quick",
        "python -m bench.retrain_strategies --quick",
    ]
    assert commands[6] == "python -m bench.real_documents --quick"
    assert commands[7].startswith("python -m bench.training_cuda")
    by_name = {b.name: b for b in suite.BENCHMARKS}
    assert by_name["real_documents"].requires == "sroie"
    assert by_name["retrain_strategies"].json_name == "retrain_strategies-quick.json"
    assert by_name["training_cuda"].requires == "cuda"


def test_the_real_document_benchmark_runs_only_with_the_sroie_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = next(b for b in suite.BENCHMARKS if b.name == "real_documents")
    monkeypatch.setattr(suite, "BENCHMARKS", (real,))
    ran: list[tuple[str, ...]] = []

    def execute(benchmark: suite.Benchmark, *_: object) -> dict[str, object]:
        ran.append(benchmark.args)
        return {"command": benchmark.command, "status": "ok"}

    monkeypatch.setattr(suite, "execute", execute)
    console = Console(file=io.StringIO())
    monkeypatch.delenv(suite.SROIE_ENV, raising=False)
    record = suite.run_suite(tmp_path / "a", 60, console)["benchmarks"]["real_documents"]
    assert record["status"] == "skipped" and "make bench SROIE=" in record["reason"]
    monkeypatch.setenv(suite.SROIE_ENV, str(tmp_path))  # no img/ inside
    record = suite.run_suite(tmp_path / "b", 60, console)["benchmarks"]["real_documents"]
    assert record["status"] == "skipped" and ran == []
    (tmp_path / "img").mkdir()
    record = suite.run_suite(tmp_path / "c", 60, console)["benchmarks"]["real_documents"]
    assert record["status"] == "ok" and ran == [("--quick", "--sroie", str(tmp_path))]


def test_runnable_needs_a_module_or_a_package_main(tmp_path: Path) -> None:
    strategies = next(b for b in suite.BENCHMARKS if b.name == "retrain_strategies")
    (tmp_path / "retrain_strategies").mkdir()
    (tmp_path / "retrain_strategies" / "data.py").write_text("")
    assert not suite.runnable(strategies, tmp_path)
    (tmp_path / "retrain_strategies" / "__main__.py").write_text("")
    assert suite.runnable(strategies, tmp_path)
