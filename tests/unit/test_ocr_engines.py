"""OCR engines and image preparation: options, word splitting, no downloads, retries."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from PIL import Image

from docloop.config import PreprocessConfig
from docloop.documents import ocr, pages
from docloop.documents.ocr import OcrSettings, PageWords, split_word, tesseract_config
from docloop.documents.preprocess import preprocess, read_page_records, settings_digest
from docloop.documents.scan import Preparation, prepare, skew_angle, text_height
from docloop.errors import InvalidInput
from docloop.storage import Storage
from tests import documents

pytestmark = pytest.mark.unit

LINES = ["Invoice total 1,234.56", "Payer Aetna Health"]


def test_split_word_shares_the_box_by_characters() -> None:
    quad = [[0, 10], [110, 10], [110, 30], [0, 30]]
    parts = split_word("ab  cdefgh", quad)
    assert [text for text, _ in parts] == ["ab", "cdefgh"]
    (_, first), (_, second) = parts
    assert first[0][0] == 0 and first[1][0] == pytest.approx(22)
    assert second[0][0] == pytest.approx(44) and second[1][0] == pytest.approx(110)
    assert split_word("  ", quad) == []
    assert split_word("one", quad) == [
        ("one", [[0.0, 10.0], [110.0, 10.0], [110.0, 30.0], [0.0, 30.0]])
    ]


def test_tesseract_options_follow_the_settings() -> None:
    assert tesseract_config(OcrSettings(psm=6)) == "--psm 6"
    best = tesseract_config(OcrSettings(psm=4, tesseract_model="best", dictionaries=False))
    assert best.startswith(f"--tessdata-dir {ocr.best_tessdata_dir()} --psm 4")
    assert "-c load_system_dawg=0" in best and "-c load_freq_dawg=0" in best
    with pytest.raises(InvalidInput, match=r"no xyz\.traineddata"):
        tesseract_config(OcrSettings(lang="eng+xyz", tesseract_model="best"))


def test_a_missing_rapidocr_model_fails_loudly_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / ocr.RAPIDOCR_MODELS["det"]).write_bytes(b"")
    with pytest.raises(InvalidInput, match=ocr.RAPIDOCR_MODELS["rec"]) as caught:
        ocr.rapidocr_params(tmp_path)
    assert "never downloads" in str(caught.value)


def test_rapidocr_reads_words_without_touching_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    ocr.rapidocr_engine.cache_clear()
    image = documents.text_image(LINES)
    words = ocr.ocr_image(image, OcrSettings(engine="rapidocr"))
    assert attempts == []
    assert {"Invoice", "Aetna", "Health"} <= set(words.words)
    assert len(words.words) == len(words.boxes) == len(words.confidences)
    # words of one line sit left to right, each inside the page
    line = [box for word, box in zip(words.words, words.boxes, strict=True) if word in LINES[0]]
    assert [box[0] for box in line] == sorted(box[0] for box in line)
    assert all(0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 1000 for x0, y0, x1, y1 in words.boxes)


def test_text_height_and_upscaling() -> None:
    image = documents.text_image(LINES)  # 36 px font: capitals about 26 px high
    measured = text_height(ocr_grey(image))
    assert measured is not None and 18 <= measured <= 34
    small = image.resize((image.width // 3, image.height // 3))
    prepared = prepare(small, Preparation(text_height=30))
    assert prepared.scale > 2
    assert prepared.image.shape[1] == round(small.width * prepared.scale)


def test_deskew_levels_a_turned_page_and_boxes_map_back() -> None:
    image = documents.text_image([*LINES, "Member 4827163 Plan B", "Due 2024-03-01"], (1100, 400))
    turned = image.rotate(3, expand=False, fillcolor=255)  # counter-clockwise
    assert skew_angle(ocr_grey(turned)) == pytest.approx(-3, abs=0.5)
    steps = Preparation(text_height=30, binarise=True, deskew=True, border=10)
    plain = prepare(image, Preparation(border=10))
    assert plain.to_original(10, 20, 60, 40) == (0, 10, 50, 30)
    # boxes read on the prepared (upscaled, levelled, bordered) page land where the words are on
    # the page as given
    prepared = ocr.ocr_image(turned, OcrSettings(psm=6, preparation=steps))
    as_given = ocr.ocr_image(turned, OcrSettings(psm=6))
    assert {"Invoice", "Aetna", "4827163"} <= set(prepared.words)
    common = [w for w in ("Invoice", "Aetna", "Health", "Member", "4827163") if w in as_given.words]
    assert len(common) >= 2
    for word in common:
        box = prepared.boxes[prepared.words.index(word)]
        reference = as_given.boxes[as_given.words.index(word)]
        # tesseract's own boxes on the slanted words vary by a few pixels: 25/1000 is 10 px here
        assert max(abs(a - b) for a, b in zip(box, reference, strict=True)) <= 25, word


def ocr_grey(image: Image.Image) -> object:
    from docloop.documents.scan import greyscale

    return greyscale(image)


@pytest.mark.parametrize(
    "change",
    [
        {"ocr_engine": "tesseract"},
        {"fallback_engine": "none"},
        {"tesseract_model": "best"},
        {"tesseract_psm": 4},
        {"tesseract_dictionaries": False},
        {"ocr_text_height": 20},
        {"ocr_binarise": not PreprocessConfig().ocr_binarise},
        {"ocr_deskew": not PreprocessConfig().ocr_deskew},
        {"ocr_border": 25},
        {"ocr_retry_words": 3},
        {"min_page_words": 4},
        {"ocr_lang": "deu"},
    ],
)
def test_every_ocr_setting_enters_the_settings_digest(change: dict[str, object]) -> None:
    config = PreprocessConfig()
    assert settings_digest(config.model_copy(update=change)) != settings_digest(config)


def test_an_almost_empty_page_is_retried_then_read_by_the_fallback_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[OcrSettings] = []
    real = pages.ocr_image

    def tesseract_reads_nothing(image: Image.Image, settings: OcrSettings) -> PageWords:
        seen.append(settings)
        if settings.engine == "tesseract":
            return PageWords(["~"], [[0, 0, 10, 10]], [10.0])
        return real(image, settings)

    monkeypatch.setattr(pages, "ocr_image", tesseract_reads_nothing)
    image = documents.text_image(LINES)
    task = pages.PageTask(
        doc_id="d",
        kind="image",
        path=str(tmp_path / "p.png"),
        page=0,
        dpi=200,
        text_layer=None,
        ocr=OcrSettings(engine="tesseract"),
        jpeg_quality=80,
        color=False,
        image_path=str(tmp_path / "p.jpg"),
        fallback_engine="rapidocr",
        retry_words=3,
    )
    image.save(task.path)
    result = pages.process_page(task)
    assert [s.engine for s in seen] == ["tesseract", "tesseract", "rapidocr"]
    assert seen[1].preparation == pages.FULL_PREPARATION
    assert result.error_code is None and result.words is not None
    assert result.engine.startswith("rapidocr ")
    assert "Aetna" in result.words.words

    seen.clear()
    nothing = pages.process_page(
        pages.PageTask(**{**task.__dict__, "fallback_engine": "none", "min_words": 2})
    )
    assert [s.engine for s in seen] == ["tesseract", "tesseract"]
    assert nothing.error_code == "empty_page"


def test_an_image_rapidocr_cannot_read_is_quarantined_and_the_batch_goes_on(
    tmp_path: Path,
) -> None:
    good = documents.text_image(LINES)
    documents.write(tmp_path / "in", "good.png", documents.image_bytes(good, "PNG"))
    sliver = Image.new("L", (4, 1), 0)
    documents.write(tmp_path / "in", "sliver.png", documents.image_bytes(sliver, "PNG"))
    config = PreprocessConfig(ocr_engine="rapidocr", fallback_engine="none")
    result = preprocess(str(tmp_path / "in"), str(tmp_path / "out"), config, Storage(), workers=1)
    assert result.processed == 1
    (entry,) = result.quarantine
    assert entry.source_uri.endswith("sliver.png")
    assert entry.code in {"empty_page", "ocr_failed"} and len(entry.reason) > 40
    (record,) = read_page_records(Storage(), str(tmp_path / "out"))
    assert record.ocr_engine.startswith("rapidocr ")
    assert "Aetna" in record.words


def test_a_page_the_main_engine_cannot_read_goes_to_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pages.ocr_image
    seen: list[str] = []

    def rapidocr_fails(image: Image.Image, settings: OcrSettings) -> PageWords:
        seen.append(settings.engine)
        if settings.engine == "rapidocr":
            raise ValueError("unsupported image layout")
        return real(image, settings)

    monkeypatch.setattr(pages, "ocr_image", rapidocr_fails)
    image = documents.text_image(LINES)
    task = pages.PageTask(
        doc_id="d", kind="image", path=str(tmp_path / "p.png"), page=0, dpi=200,
        text_layer=None, ocr=OcrSettings(engine="rapidocr"), jpeg_quality=80, color=False,
        image_path=str(tmp_path / "p.jpg"), fallback_engine="tesseract", retry_words=3,
    )  # fmt: skip
    image.save(task.path)
    result = pages.process_page(task)
    assert seen == ["rapidocr", "rapidocr", "tesseract"]
    assert result.error_code is None and result.engine.startswith("tesseract ")
    # without a fallback the first error is the page's reason, with what to do
    seen.clear()
    alone = pages.process_page(pages.PageTask(**{**task.__dict__, "fallback_engine": "none"}))
    assert alone.error_code == "ocr_failed"
    assert alone.error_reason is not None
    assert "unsupported image layout" in alone.error_reason
    assert "ocr_engine: tesseract" in alone.error_reason
