"""A probe corpus of bad documents for preprocess, built at test time (nothing binary committed).

Each probe is one kind of input that has hurt (or could hurt) a preprocess run: it must be set
aside under its own quarantine code, with a reason that never echoes the file's bytes, while the
good documents of the same batch are processed and the counts add up.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from docloop.config import PreprocessConfig
from docloop.documents.preprocess import PreprocessResult, preprocess, read_page_records
from docloop.documents.schema import QuarantineEntry
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.unit

CONFIG = PreprocessConfig(max_pages=3, dpi=100, max_file_mb=1.0, max_content_mb=16)


@functools.cache
def _scan() -> bytes:
    return documents.image_bytes(documents.text_image(["Invoice total 1,234.56"]), "PNG")


@functools.cache
def _digital() -> bytes:
    return documents.born_digital_pdf([["Referral letter", "Patient: Jane Doe", "MRN 4827163"]])


@functools.cache
def _bomb_tiff() -> bytes:
    """The finding: good frames, then a decompression bomb as the third frame."""
    good = [documents.text_image(["Invoice 12"]), documents.text_image(["Total 9.00"])]
    return documents.multi_frame_tiff([*good, (20_000, 20_000)])


def _padded(size: int) -> bytes:
    return b"%PDF-1.4\n" + os.urandom(size)


# name -> (bytes, expected code); special files are made by SPECIAL below.
PROBES: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty.pdf": (lambda: b"", "empty_file"),
    "empty.png": (lambda: b"", "empty_file"),
    "text-named.pdf": (lambda: b"just some notes, not a PDF\n" * 4, "not_a_pdf"),
    "zip-named.pdf": (lambda: b"PK\x03\x04" + b"\x00" * 64, "not_a_pdf"),
    "html-named.png": (lambda: b"<html><body>secret-html-body</body></html>", "unreadable_image"),
    "json-named.jpg": (lambda: b'{"secret": "json-content-here"}', "unreadable_image"),
    "gif-named.png": (lambda: b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "unreadable_image"),
    "header-only.pdf": (lambda: b"%PDF-1.4\n", "corrupt_pdf"),
    "truncated.pdf": (lambda: _digital()[: len(_digital()) // 2], "corrupt_pdf"),
    "zero-pages.pdf": (documents.zero_page_pdf, "empty_pdf"),
    "encrypted.pdf": (lambda: documents.born_digital_pdf([["x"]], encrypt="pw"), "encrypted_pdf"),
    "four-pages.pdf": (lambda: documents.born_digital_pdf([["p"]] * 4), "too_many_pages"),
    "huge-page-box.pdf": (
        lambda: documents.hand_made_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 14400 14400] >>",
            ]
        ),
        "page_too_large",
    ),
    "huge-embedded-image.pdf": (
        lambda: documents.pdf_with_huge_image(20_000, 20_000),
        "image_too_large",
    ),
    "inflating-content.pdf": (lambda: documents.pdf_inflating_to(24), "too_expensive"),
    "bomb.png": (documents.decompression_bomb_png, "image_too_large"),
    "bomb-third-frame.tiff": (_bomb_tiff, "image_too_large"),
    "bomb-first-frame.tiff": (
        lambda: documents.multi_frame_tiff([(20_000, 20_000)]),
        "image_too_large",
    ),
    "four-frames.tiff": (
        lambda: documents.multi_frame_tiff([documents.text_image(["x"])] * 4),
        "too_many_pages",
    ),
    "truncated.png": (lambda: _scan()[: len(_scan()) // 3], "unreadable_image"),
    "header-only.png": (lambda: _scan()[:8], "unreadable_image"),
    "truncated.jpg": (
        lambda: documents.image_bytes(documents.text_image(["x"]), "JPEG")[:200],
        "unreadable_image",
    ),
    "garbage.tiff": (lambda: b"II*\x00" + b"\xff" * 64, "unreadable_image"),
    "blank.png": (
        lambda: documents.image_bytes(documents.text_image([]), "PNG"),
        "empty_page",
    ),
    "too-big.pdf": (lambda: _padded(1_100_000), "file_too_large"),
    "notes.docx": (lambda: b"PK\x03\x04docx", "unsupported_type"),
    "program.exe": (lambda: b"MZ\x90\x00", "unsupported_type"),
    "bad\x07name.pdf": (lambda: _digital() + b"\n%other bytes\n", "unsafe_name"),
}

SECRET = b"root:x:0:0:secret-line-of-an-outside-file\n"


def _make_special(folder: Path, outside: Path) -> dict[str, str]:
    """Links and special files in ``folder``; returns name -> expected code."""
    outside.mkdir()
    (outside / "passwd").write_bytes(SECRET)
    (outside / "linked.pdf").write_bytes(_digital() + b"\n%outside copy\n")
    (folder / "link-to-passwd.pdf").symlink_to(outside / "passwd")
    (folder / "link-outside.pdf").symlink_to(outside / "linked.pdf")
    (folder / "link-to-outside-folder").symlink_to(outside, target_is_directory=True)
    (folder / "dangling.pdf").symlink_to(folder / "gone.pdf")
    (folder / "link-loop.pdf").symlink_to(folder / "link-loop.pdf")
    os.mkfifo(folder / "pipe.pdf")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.png"))
    server.close()
    return {
        "link-to-passwd.pdf": "unsafe_link",
        "link-outside.pdf": "unsafe_link",
        "link-to-outside-folder": "unsafe_link",
        "dangling.pdf": "dangling_link",
        "link-loop.pdf": "dangling_link",
        "pipe.pdf": "special_file",
        "socket.png": "special_file",
    }


Probed = tuple[Path, dict[str, str], PreprocessResult, dict[str, bytes]]
GOOD = {"scan.png", "digital.pdf", "inside-link.pdf", "frames.tiff"}


def _make_batch(root: Path) -> tuple[Path, dict[str, str], dict[str, bytes]]:
    folder = root / "in"
    folder.mkdir()
    expected: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    for name, (build, code) in PROBES.items():
        data = build()
        documents.write(folder, name, data)
        expected[name] = code
        contents[name] = data
    expected.update(_make_special(folder, root / "outside"))
    contents["link-to-passwd.pdf"] = SECRET
    documents.write(folder, "scan.png", _scan())
    documents.write(folder, "digital.pdf", _digital())
    (folder / "sub").mkdir()
    documents.write(folder / "sub", "target.pdf", _digital() + b"\n%inside\n")
    (folder / "inside-link.pdf").symlink_to(folder / "sub" / "target.pdf")
    frames = [documents.text_image(["Invoice 12"]), documents.text_image(["Total 9.00"])]
    documents.write(folder, "frames.tiff", documents.multi_frame_tiff(frames))
    return folder, expected, contents


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Probed:
    root = tmp_path_factory.mktemp("probes")
    folder, expected, contents = _make_batch(root)
    result = preprocess(str(folder), str(root / "out"), CONFIG, Storage(), workers=2)
    return root, expected, result, contents


def _names(entries: list[QuarantineEntry], folder: Path) -> dict[str, str]:
    prefix = str(folder) + "/"
    return {e.source_uri.removeprefix(prefix): e.code for e in entries if e.page is None}


def test_the_corpus_has_at_least_30_kinds(probed: Probed) -> None:
    _, expected, _, _ = probed
    assert len(set(expected.values())) >= 12  # distinct codes
    assert len(expected) >= 30


def test_every_probe_is_quarantined_with_its_code(
    probed: Probed,
) -> None:
    root, expected, result, _ = probed
    got = _names(result.quarantine, root / "in")
    # blank.png is a page-level quarantine (its only page is empty)
    pages = {
        e.source_uri.rsplit("/", 1)[-1]: e.code for e in result.quarantine if e.page is not None
    }
    got.update({name: code for name, code in pages.items() if name not in got})
    assert {name: got.get(name) for name in expected} == expected


def test_the_rest_of_the_batch_is_processed_and_counts_add_up(
    probed: Probed,
) -> None:
    root, expected, result, _ = probed
    out = root / "out"
    records = read_page_records(Storage(), str(out))
    names = {r.source_uri.rsplit("/", 1)[-1] for r in records}
    assert names == GOOD  # sub/target.pdf has inside-link.pdf's bytes: a duplicate
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quarantined"] == len(expected)
    assert (summary["processed"], summary["duplicates"]) == (len(GOOD), 1)
    lines = (out / "quarantine.jsonl").read_text().splitlines()
    assert len(lines) == len(result.quarantine) >= len(expected)


def test_outside_files_never_reach_the_page_records(
    probed: Probed,
) -> None:
    root, _, _, _ = probed
    records = read_page_records(Storage(), str(root / "out"))
    assert not [r for r in records if "outside" in r.source_uri or "link-outside" in r.source_uri]


def _echoes(reason: str, data: bytes, width: int = 12) -> str | None:
    text = data[:256].decode("latin-1")
    for start in range(max(0, len(text) - width + 1)):
        window = text[start : start + width]
        if window.isprintable() and any(c.isalpha() for c in window) and window in reason:
            return window
    return None


def test_no_reason_echoes_file_content(probed: Probed) -> None:
    root, _, result, contents = probed
    echoed = {}
    for entry in result.quarantine:
        name = entry.source_uri.rsplit("/", 1)[-1]
        found = _echoes(entry.reason, contents.get(name, b""))
        if found:
            echoed[name] = found
    assert echoed == {}
    passwd = next(e for e in result.quarantine if e.source_uri.endswith("link-to-passwd.pdf"))
    assert SECRET[:6].decode() not in passwd.reason
    assert "secret" not in (root / "out" / "quarantine.jsonl").read_text()
