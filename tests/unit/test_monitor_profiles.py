"""Document profiles and the layout/format drift test, on laid-out synthetic documents."""

from __future__ import annotations

import numpy as np
import pytest

from docloop.config import DriftConfig
from docloop.documents.examples import DocumentExample
from docloop.documents.synth.corpus import text_layer_example
from docloop.errors import InvalidInput
from docloop.monitor.drift import (
    DriftSample,
    detect_drift,
    max_shift_permutation_test,
    profile_shift,
)
from docloop.monitor.profiles import (
    LAYOUT_FEATURES,
    describe_feature,
    document_profiles,
    layout_features,
    word_shape,
)

ALPHA = 0.01 / 6  # the check's per-test level when all six tests run


def corpus(scenario: str, count: int, start: int = 0, seed: int = 7) -> list[DocumentExample]:
    return [text_layer_example(i, seed, scenario) for i in range(start, start + count)]


@pytest.fixture(scope="module")
def base() -> list[DocumentExample]:
    return corpus("base", 150)


def example(
    words: list[str], boxes: list[list[int]], pages: list[int] | None = None
) -> DocumentExample:
    pages = pages or [0] * len(words)
    return DocumentExample(
        doc_id="d",
        source_uri="x",
        doc_type=None,
        words=words,
        boxes=boxes,
        pages=pages,
        tags=["O"] * len(words),
        page_count=max(pages, default=0) + 1,
        ocr_pages=0,
        mean_confidence=100.0,
    )


def test_word_shape_classes_and_capped_runs() -> None:
    assert word_shape("12/03/2024") == "dd/dd/dddd"
    assert word_shape("Mar") == "Xxx"
    assert word_shape("$1,234.50") == "$d,ddd.dd"
    assert word_shape("Hospitalisation") == "Xxxxx"
    assert word_shape("MRN-0012345") == "XXX-dddd"


def test_layout_features_of_a_hand_made_page() -> None:
    # two lines: "Invoice 12" at the top left; "Total" left and "9.00" far right at the bottom
    page = example(
        ["Invoice", "12", "Total", "9.00"],
        [[50, 40, 150, 60], [160, 40, 200, 60], [50, 900, 120, 920], [850, 900, 950, 920]],
    )
    row = dict(zip(LAYOUT_FEATURES, layout_features(page), strict=True))
    assert row["layout.words_in_cell[0,0]"] == pytest.approx(0.5)
    assert row["layout.words_in_cell[4,0]"] == pytest.approx(0.25)
    assert row["layout.words_in_cell[4,2]"] == pytest.approx(0.25)
    assert sum(v for k, v in row.items() if "cell" in k) == pytest.approx(1.0)
    assert row["layout.lines_per_page"] == 2
    assert row["layout.words_per_line"] == 2
    assert row["layout.wide_gap_line_share"] == pytest.approx(0.5)  # 120 -> 850 on line two
    assert row["layout.right_start_line_share"] == 0
    assert row["layout.median_word_height"] == 20
    assert not layout_features(example([], [])).any()


def test_vocabulary_comes_from_the_pooled_documents(base: list[DocumentExample]) -> None:
    vendor = corpus("new_vendor", 20)
    profiles = document_profiles(base[:40], vendor, min_documents=5)
    assert profiles.reference.shape == (40, len(profiles.names))
    assert profiles.current.shape == (20, len(profiles.names))
    # a shape only the new vendor writes (an ISO date) is a feature: it is in >= 5 pooled documents
    assert "shape:dddd-dd-dd" in profiles.names
    column = profiles.names.index("shape:dddd-dd-dd")
    assert profiles.reference[:, column].max() == 0 and profiles.current[:, column].max() > 0
    # swapping the sides gives the same features: the vocabulary never looks at the side
    swapped = document_profiles(vendor, base[:40], min_documents=5)
    assert sorted(swapped.names) == sorted(profiles.names)
    with pytest.raises(InvalidInput):
        document_profiles(base[:5], vendor[:5], min_documents=0)


@pytest.mark.parametrize("scenario", ["new_template", "new_vendor"])
def test_profile_shift_fires_on_a_new_layout_or_format(
    base: list[DocumentExample], scenario: str
) -> None:
    drifted = corpus(scenario, 72, start=300)
    profiles = document_profiles(base[:105], drifted)
    test = profile_shift(
        profiles.reference, profiles.current, profiles.names, alpha=ALPHA, permutations=500
    )
    assert test.ran and test.drift and test.p_value is not None and test.p_value <= ALPHA
    assert test.permutations >= 3 / ALPHA
    assert test.reason.startswith("Layout/format drift") and test.moved
    assert test.moved[0].description in test.reason


def test_profile_shift_is_quiet_on_a_resample_of_the_reference(
    base: list[DocumentExample],
) -> None:
    # disjoint documents of the same scenario on each side, several splits
    rng = np.random.default_rng(3)
    for seed in range(5):
        order = rng.permutation(len(base))
        reference = [base[i] for i in order[:90]]
        current = [base[i] for i in order[90:150]]
        profiles = document_profiles(reference, current)
        test = profile_shift(
            profiles.reference,
            profiles.current,
            profiles.names,
            alpha=ALPHA,
            permutations=500,
            seed=seed,
        )
        assert test.ran and not test.drift, test.reason
        assert test.reason.startswith("No layout/format drift")


def test_max_shift_permutation_test_on_arrays() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 50))
    y = rng.normal(size=(60, 50))
    y[:, 7] += 1.0  # one feature of fifty moves
    statistic, p_value, differences, kept = max_shift_permutation_test(x, y, permutations=400)
    assert p_value < 0.01 and int(np.argmax(np.abs(differences))) == 7 and kept.all()
    assert statistic == pytest.approx(float(np.abs(differences).max()))
    _, p_null, _, _ = max_shift_permutation_test(x, rng.normal(size=(60, 50)), permutations=400)
    assert p_null > 0.05
    constant = np.ones((20, 3))
    assert max_shift_permutation_test(constant, constant, permutations=10)[1] == 1.0
    with pytest.raises(InvalidInput):
        max_shift_permutation_test(x, y[:, :3], permutations=10)


def test_detect_drift_counts_the_profile_test_and_names_what_moved(
    base: list[DocumentExample],
) -> None:
    drifted = corpus("new_template", 72, start=300)
    profiles = document_profiles(base[:105], drifted)
    reference = DriftSample({"a": 60, "b": 45}, {}, None, profiles.reference, profiles.names)
    current = DriftSample({"a": 40, "b": 32}, {}, None, profiles.current, profiles.names)
    report = detect_drift(reference, current, DriftConfig())
    assert report.tests_run == 2 and report.profile.alpha == pytest.approx(0.005)
    assert report.detected and [t.name for t in report.drifted] == ["layout_format"]
    assert report.flat()["drift.layout_format.drift"] == 1.0
    bad = DriftSample({"a": 40, "b": 32}, {}, None, profiles.current, profiles.names[::-1])
    with pytest.raises(InvalidInput):
        detect_drift(reference, bad, DriftConfig())


def test_features_are_described_in_words() -> None:
    assert describe_feature("layout.words_in_cell[0,2]") == (
        "share of words in the top right of the page"
    )
    assert "'dd/dd/dddd'" in describe_feature("shape:dd/dd/dddd")
    assert describe_feature("position:total@bottom-right") == (
        "documents with 'total' in the bottom right of the page"
    )
