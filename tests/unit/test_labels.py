"""The label contract: the user's schema, labels by value, word alignment and the label report."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from docloop.config import ConfigError, DocloopConfig, SchemaConfig, load_config
from docloop.datasets.initial import build_initial_dataset, check_labels
from docloop.documents.alignment import resolve_labels
from docloop.documents.examples import DatasetManifest, read_examples
from docloop.documents.label_schema import schema_from_config
from docloop.documents.labels import DocumentLabel, read_labels
from docloop.documents.locate import (
    PageWords,
    amount_of,
    candidates,
    choose,
    compact,
    date_of,
)
from docloop.documents.schema import PageRecord, QuarantineEntry, records_to_table
from docloop.errors import InvalidInput
from docloop.storage import Storage

pytestmark = pytest.mark.unit

RECEIPT = SchemaConfig(
    doc_types=["receipt"],
    fields={"company": "text", "date": "date", "address": "text", "total": "amount"},
)


def record(doc_id: str, lines: list[str], source: str | None = None, page: int = 0) -> PageRecord:
    """A page record with one line of words per entry, laid out top to bottom."""
    words: list[str] = []
    boxes: list[list[int]] = []
    for row, line in enumerate(lines):
        for col, word in enumerate(line.split()):
            x0, y0 = 50 + col * 110, 40 + row * 30
            words.append(word)
            boxes.append([x0, y0, x0 + 100, y0 + 20])
    return PageRecord(
        doc_id=doc_id,
        source_uri=source or f"file:///in/{doc_id}.jpg",
        page=page,
        page_count=1,
        width=800,
        height=1200,
        dpi=200,
        source="ocr",
        image_uri=f"file:///out/{doc_id}.jpg",
        words=words,
        boxes=boxes,
        confidences=[90.0] * len(words),
        mean_confidence=90.0,
        ocr_engine="test",
        settings_digest="x",
    )


def page(lines: list[str]) -> list[PageWords]:
    rec = record("d", lines)
    return [PageWords(page=0, words=rec.words, boxes=rec.boxes)]


def label(**fields: object) -> DocumentLabel:
    return DocumentLabel.model_validate(fields)


# --- the schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"": "text"}, "must not be empty"),
        ({"total amount": "amount"}, "'total_amount'"),
        ({"tab\there": "text"}, "control character"),
        ({"O": "text"}, "outside every field"),
    ],
)
def test_bad_field_names_are_refused_with_the_fix(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SchemaConfig(fields=fields)  # type: ignore[arg-type]


def test_duplicate_doc_types_and_unknown_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="receipt declared more than once"):
        SchemaConfig(doc_types=["receipt", "receipt"])
    config = tmp_path / "docloop.yaml"
    config.write_text("schema:\n  fields: {total: money}\n")
    with pytest.raises(ConfigError, match=r"schema\.fields"):
        load_config(config, environ={})


def test_schema_section_loads_and_derives_iob_tags(tmp_path: Path) -> None:
    config = tmp_path / "docloop.yaml"
    config.write_text("schema:\n  doc_types: [receipt]\n  fields: {total: amount, company: text}\n")
    loaded = load_config(config, environ={})
    schema = schema_from_config(loaded.label_schema)
    assert schema is not None and schema.declared
    assert schema.kinds == {"company": "text", "total": "amount"}
    assert schema.tags == ["O", "B-company", "I-company", "B-total", "I-total"]
    assert loaded.model_dump(mode="json")["schema"]["fields"] == {
        "total": "amount",
        "company": "text",
    }
    assert schema_from_config(DocloopConfig().label_schema) is None  # taken from the labels
    classes_only = schema_from_config(SchemaConfig(doc_types=["letter", "invoice"]))
    assert classes_only is not None and classes_only.field_names == []  # a classifier's schema
    assert classes_only.unknown_field("total") is not None


# --- normalisation and kinds ----------------------------------------------------------------


def test_compact_ignores_case_spacing_and_punctuation() -> None:
    assert compact("BOOK TA .K (TAMAN DAYA) SDN BHD") == compact("book ta .k(taman  daya) sdn bhd")
    assert compact("\uff32\uff4d\uff19.\uff10\uff10") == "rm900"  # full-width forms fold (NFKC)


@pytest.mark.parametrize(
    ("printed", "amount"),
    [("9.00", "9.00"), ("RM9.00", "9.00"), ("9.00RM", "9.00"), ("1,234.50", "1234.50"),
     ("9,00", "9.00"), ("$1,234", "1234.00"), ("TOTAL", None)],
)  # fmt: skip
def test_amounts_in_their_printed_forms(printed: str, amount: str | None) -> None:
    assert amount_of(printed) == amount


@pytest.mark.parametrize(
    "printed",
    ["25/12/2018", "25-12-2018", "25.12.18", "Date:25/12/2018", "25 Dec 2018", "DEC 25, 2018",
     "2018-12-25", "25/DEC/2018"],
)  # fmt: skip
def test_dates_in_their_printed_forms(printed: str) -> None:
    assert date_of(printed) == (25, 12, 2018)


# --- location ---------------------------------------------------------------------------------


def test_value_is_located_despite_ocr_errors_within_the_bound() -> None:
    words = page(["MR O.1.Y. (JOHOR) SDN BHD", "TOTAL 9.00"])
    [found] = candidates(words, "MR D.I.Y. (JOHOR) SDN BHD", "text", 0.2)
    assert (found.start, found.end, found.distance) == (0, 5, 2)
    assert candidates(words, "MR D.I.Y. (JOHOR) SDN BHD", "text", 0.05) == []


def test_a_value_spanning_lines_is_one_run_of_words() -> None:
    words = page(["RECEIPT", "NO.53 JALAN SAGU 18,", "TAMAN DAYA, 81100 JOHOR.", "THANK YOU"])
    [found] = candidates(words, "NO.53 JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR.", "text", 0.2)
    assert found.distance == 0
    assert found.text == "NO.53 JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR."


def test_amount_kind_matches_printed_forms_and_not_quantities() -> None:
    words = page(["QTY 1 PRICE RM1.00", "TOTAL RM9.00"])
    [found] = candidates(words, "9.00", "amount")
    assert found.text == "RM9.00" and found.distance == 0
    [one] = candidates(words, "1.00", "amount")
    assert one.text == "RM1.00"  # not the quantity "1"
    assert candidates(words, "9.00", "text") == []  # characters alone: rm900 is 2 edits away


def test_date_kind_matches_other_separators_and_month_names() -> None:
    [found] = candidates(page(["Date: 25-12-18 8:13 PM"]), "25/12/2018", "date")
    assert found.text == "25-12-18"
    [named] = candidates(page(["Date 25 Dec 2018 Cashier"]), "25/12/2018", "date")
    assert named.text == "25 Dec 2018"


def test_edits_never_turn_one_amount_date_or_id_into_another() -> None:
    words = page(["Date 25/12/2016 TOTAL 1,284.50", "Ref INV-1234 Date 25/I2/2018"])
    assert candidates(words, "1,234.50", "amount") == []  # one digit off: another amount
    assert candidates(words, "INV-1235", "id") == []
    # not 25/12/2016 (1 edit away), and not 25/I2/2018 either: a digit read as a letter is
    # reported unlocated (with the nearest miss) rather than guessed
    assert candidates(words, "25/12/2018", "date") == []
    [ref] = candidates(words, "INV-1234", "id")
    assert ref.distance == 0
    [company] = candidates(page(["B0OK TA.K SDN BHD"]), "BOOK TA .K SDN BHD", "text")
    assert company.distance == 1  # text fields keep their OCR tolerance


def test_ties_take_the_last_amount_and_the_typical_place_otherwise() -> None:
    words = page(["SUBTOTAL 9.00", "ITEM 9.00", "TOTAL 9.00"])
    found = candidates(words, "9.00", "amount")
    assert len(found) == 3
    assert choose(found, "amount", None).start == 5
    names = page(["ACME SDN BHD", "thank you", "ACME SDN BHD"])
    found = candidates(names, "ACME SDN BHD", "text")
    assert choose(found, "text", None).start == 0  # no typical place: the first
    assert choose(found, "text", (150.0, 110.0)).start == 5  # nearest the field's usual place


# --- resolution and the report ----------------------------------------------------------------


def test_labels_by_value_by_source_with_report_per_field() -> None:
    records = [
        record("a" * 64, ["ACME SDN BHD", "Date 25-12-18", "TOTAL RM9.00"], "s3://b/in/000.jpg"),
        record("b" * 64, ["ACNE SDN BHD", "TOTAL 12.00"], "s3://b/in/sub/001.jpg"),
    ]
    labels = [
        label(source="000.jpg", fields={"company": "ACME SDN BHD", "date": "25/12/2018",
                                        "total": "9.00"}),
        label(source="sub/001.jpg", doc_type="receipt",
              fields={"company": "ACME SDN BHD", "total": ["12.00", "13.00"]}),
    ]  # fmt: skip
    resolved = resolve_labels(labels, records, schema_from_config(RECEIPT))
    report = resolved.report
    assert resolved.doc_types == {"a" * 64: "receipt", "b" * 64: "receipt"}
    assert report.coverage["company"].model_dump() == {
        "given": 2,
        "exact": 1,
        "fuzzy": 1,
        "not_located": 0,
    }
    assert report.coverage["total"].not_located == 1
    assert report.coverage["address"].given == 0
    [missed] = [i for i in report.issues if i.code == "not_located"]
    assert (missed.document, missed.field, missed.value) == ("sub/001.jpg", "total", "13.00")
    assert missed.taken == "12.00" and missed.distance == 1
    [fuzzy] = [i for i in report.issues if i.code == "located_fuzzily"]
    assert fuzzy.taken == "ACNE SDN BHD" and fuzzy.distance == 1
    located = {(e.doc_id[:1], e.type): e.indices for e in resolved.entities}
    assert located[("a", "date")] == (4,) and located[("a", "total")] == (6,)
    assert resolved.values == {  # the gold values as given, located or not (the first of several)
        "a" * 64: {"company": "ACME SDN BHD", "date": "25/12/2018", "total": "9.00"},
        "b" * 64: {"company": "ACME SDN BHD", "total": "12.00"},
    }


def test_refusals_name_the_schema_and_the_fix_and_the_rest_is_processed() -> None:
    records = [record("a" * 64, ["ACME SDN BHD TOTAL 9.00"])]
    quarantine = [
        QuarantineEntry(
            source_uri="file:///in/bad.pdf", code="encrypted_pdf", reason="remove the password"
        )
    ]
    labels = [
        label(doc_id="a" * 64, fields={"vendor": "ACME", "total": "9.00", "company": " . "}),
        label(source="bad.pdf", fields={"total": "1.00"}),
        label(source="missing.jpg", fields={"total": "1.00"}),
        label(doc_id="a" * 64, doc_type="invoice", fields={"total": "9.00"}),
    ]
    report = resolve_labels(labels, records, schema_from_config(RECEIPT), quarantine).report
    codes = {i.code: i for i in report.issues}
    assert "company, date" in codes["unknown_field"].message
    assert "schema.fields" in codes["unknown_field"].message
    assert "encrypted_pdf: remove the password" in codes["quarantined_document"].message
    assert codes["unknown_document"].document == "missing.jpg"
    assert "schema.doc_types" in codes["unknown_doc_type"].message
    assert codes["empty_value"].field == "company"
    assert report.coverage["total"].exact == 1  # the good value of the first line still counts
    assert report.documents == 4 and report.documents_used == 1


def test_several_types_need_a_doc_type_and_one_type_is_implied() -> None:
    records = [record("a" * 64, ["ACME 9.00"])]
    two = schema_from_config(SchemaConfig(doc_types=["receipt", "invoice"], fields={"t": "text"}))
    resolved = resolve_labels([label(doc_id="a" * 64, fields={"t": "ACME"})], records, two)
    assert resolved.doc_types == {}
    assert resolved.report.issues[0].code == "missing_doc_type"
    implied = resolve_labels([label(doc_id="a" * 64, fields={"t": "ACME"})], records, None)
    assert implied.schema.doc_types == ["document"] and implied.doc_types == {"a" * 64: "document"}


def test_word_positions_align_by_identity_and_misalignment_is_reported() -> None:
    rec = record("a" * 64, ["Patient: Jane Doe MRN 1234567"])
    jane, doe, mrn = rec.boxes[1], rec.boxes[2], rec.boxes[4]
    wide = [mrn[0] - 120, mrn[1], mrn[2], mrn[3]]  # also covers the word "MRN"
    labels = [
        label(doc_id="a" * 64, doc_type="x", entities=[
            {"type": "name", "value": "Jane Doe", "page": 0,
             "words": [{"text": "Jane", "box": jane}, {"text": "Doe", "box": doe}]},
            {"type": "mrn", "value": "1234567", "page": 0,
             "words": [{"text": "1234567", "box": wide}]},
            {"type": "dob", "value": "01/02/1990", "page": 0,
             "words": [{"text": "01/02/1990", "box": [900, 900, 950, 910]}]},
        ]),
    ]  # fmt: skip
    report = resolve_labels(labels, [rec]).report
    assert report.coverage["name"].exact == 1
    assert report.coverage["mrn"].exact == 1  # the same text in the box wins over the neighbour
    assert report.coverage["dob"].not_located == 1
    [lost] = report.issues
    assert (lost.code, lost.field, lost.lost) == ("not_located", "dob", "01/02/1990")
    widened = [{"type": "mrn", "value": "1234567", "page": 0,
                "words": [{"text": "1234S67", "box": wide}]}]  # fmt: skip
    report = resolve_labels([label(doc_id="a" * 64, entities=widened)], [rec]).report
    [issue] = report.issues
    assert issue.code == "misaligned" and issue.taken == "MRN 1234567"


def test_malformed_lines_keep_their_line_number(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"doc_id": "x"}\n{"fields": {"total": "9.00"}}\n')
    with pytest.raises(InvalidInput, match=r"(?s)line 2 .*doc_id .* or by source"):
        read_labels(Storage(), str(labels))


def test_manifests_written_before_the_schema_still_read() -> None:
    old = {
        "doc_types": ["invoice"],
        "entity_types": ["mrn"],
        "counts": {"train": 1},
        "class_counts": {},
        "entity_counts": {},
        "digests": {"train": "x"},
        "seed": 0,
    }
    manifest = DatasetManifest.model_validate_json(json.dumps(old))
    assert manifest.label_schema is None and manifest.labels is None


# --- the dataset and the CLI ----------------------------------------------------------------


def write_pages(folder: Path, records: list[PageRecord]) -> None:
    (folder / "pages").mkdir(parents=True)
    for rec in records:
        pq.write_table(records_to_table([rec]), folder / "pages" / f"{rec.doc_id}.parquet")


@pytest.fixture
def receipts(tmp_path: Path) -> tuple[Path, Path]:
    records = [
        record(f"{i:064x}", [f"SHOP{i} SDN BHD", "Date 25-12-18", f"TOTAL {i}.50"], f"/in/{i}.jpg")
        for i in range(6)
    ]
    pages = tmp_path / "pages"
    write_pages(pages, records)
    (pages / "quarantine.jsonl").write_text(
        QuarantineEntry(
            source_uri="/in/9.jpg", code="empty_page", reason="re-scan it"
        ).model_dump_json()
        + "\n"
    )
    lines = [
        {"source": f"{i}.jpg", "fields": {"company": f"SHOP{i} SDN BHD", "total": f"{i}.50"}}
        for i in range(6)
    ] + [{"source": "9.jpg", "fields": {"total": "1.00"}}]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return pages, labels


def test_build_dataset_writes_the_schema_and_the_report(
    receipts: tuple[Path, Path], tmp_path: Path
) -> None:
    pages, labels = receipts
    manifest = build_initial_dataset(str(pages), str(labels), str(tmp_path / "ds"), schema=RECEIPT)
    assert manifest.doc_types == ["receipt"] and sum(manifest.counts.values()) == 6
    assert manifest.label_schema is not None and manifest.label_schema.kinds["total"] == "amount"
    assert manifest.labels is not None and manifest.labels.coverage["total"].exact == 6
    [quarantined] = manifest.labels.issues
    assert quarantined.code == "quarantined_document" and "re-scan it" in quarantined.message
    examples = [
        e for split in ("train", "val", "holdout")
        for e in read_examples(Storage(), str(tmp_path / "ds" / f"{split}.parquet"))
    ]  # fmt: skip
    for example in examples:
        tagged = [w for w, t in zip(example.words, example.tags, strict=True) if t != "O"]
        assert tagged[:3] == [*example.words[:3]]  # the company, B- then I-
        assert example.tags[:3] == ["B-company", "I-company", "I-company"]
        i = Path(example.source_uri).stem  # the rows carry the values given, for field scoring
        assert example.field_values == {"company": f"SHOP{i} SDN BHD", "total": f"{i}.50"}


def test_labels_check_prints_the_coverage_table(receipts: tuple[Path, Path]) -> None:
    from docloop.cli import app

    pages, labels = receipts
    config = pages.parent / "docloop.yaml"
    config.write_text(
        "schema:\n  doc_types: [receipt]\n"
        "  fields: {company: text, date: date, address: text, total: amount}\n"
    )
    result = CliRunner().invoke(
        app,
        ["labels", "check", "--pages", str(pages), "--labels", str(labels), "-c", str(config)],
        env={"COLUMNS": "240"},
    )
    assert result.exit_code == 1, result.output  # one label names a quarantined document
    assert "company" in result.output and "100.0%" in result.output
    assert "quarantined_document" in result.output


def test_check_labels_reads_the_schema_off_the_labels(receipts: tuple[Path, Path]) -> None:
    pages, labels = receipts
    resolved = check_labels(str(pages), str(labels))
    assert resolved.schema.field_names == ["company", "total"]
    assert not resolved.schema.declared
