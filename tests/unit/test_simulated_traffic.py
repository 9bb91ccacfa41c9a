"""The demo's simulated client sends each page's true source, so OCR statistics compare alike."""

from __future__ import annotations

import pytest

from docloop.demo.simulate import instance_of, page_source
from docloop.documents.synth.corpus import text_layer_example
from docloop.feedback.contracts import text_source_of
from docloop.serve.inputs import PagesInstance, ServeLimits, parse_v1, to_example


@pytest.mark.parametrize(
    ("ocr_pages", "expected", "provenance"),
    [(0, "text_layer", "text_layer"), (2, "ocr", "ocr"), (1, None, "unknown")],
)
def test_instance_carries_the_pages_source(
    ocr_pages: int, expected: str | None, provenance: str
) -> None:
    two_pages = next(
        e for i in range(40) if (e := text_layer_example(i, 3, "base")).page_count == 2
    )
    example = two_pages.model_copy(update={"ocr_pages": ocr_pages})
    assert page_source(example) == expected
    instance = instance_of(example)
    assert [page.get("source") for page in instance["pages"]] == [expected, expected]
    (parsed,) = parse_v1({"instances": [instance]}, ServeLimits())
    assert isinstance(parsed, PagesInstance)
    assert text_source_of([page.source for page in parsed.pages]) == provenance
    served = to_example("d", "x", parsed.pages, parsed.page_count)
    assert served.words == example.words and served.boxes == example.boxes
    assert served.ocr_pages == (ocr_pages if expected else 0)
