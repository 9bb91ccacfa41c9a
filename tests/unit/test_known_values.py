"""Known values: an OCR-misread vendor name or address is read as the value labels gave it.

The texts are real: predicted answers and key values from the SROIE receipts
(``python -m bench.real_documents``), where the OCR misread one or two letters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from docloop.config import TrackingConfig, TrainingConfig
from docloop.documents.examples import read_examples
from docloop.errors import InvalidInput
from docloop.models.artifact import ModelCard, load_model
from docloop.models.inference import field_answers, spans
from docloop.models.known_values import KnownValueMatcher, known_values
from docloop.models.training import gold_field_values, labelled_field_values, train
from docloop.storage import Storage
from tests.datasets import receipt, write_tiny_dataset

pytestmark = pytest.mark.unit

ADDRESSES = (
    "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM, SELANGOR.",
    "S117, SECOND FLOOR, AEON TEBRAU CITY, 1, JALAN DESA TEBRAU, TAMAN DESA TEBRAU, 81100 "
    "JOHOR BAHRU, JOHOR.",
    "NO 15 JALAN BANDAR RAWANG 10 BANDAR BARU RAWANG",
)
COMPANIES = (
    "GARDENIA BAKERIES (KL) SDN BHD",
    "99 SPEED MART S/B",
    "UNIHAKKA INTERNATIONAL SDN BHD",
)


def matcher(values: tuple[str, ...]) -> KnownValueMatcher:
    defaults = TrainingConfig()
    return KnownValueMatcher(values, defaults.known_value_similarity, defaults.known_value_margin)


@pytest.mark.parametrize(
    ("printed", "known"),
    [
        ("GARDENIA BAKERIES (EL) SDN BHD", COMPANIES[0]),
        ("99 SPEED MART 5/B", COMPANIES[1]),
        ("Lot 3, Jalau Pelabur 23/1, 40300 Shah Alam, Selangor.", ADDRESSES[0]),
        (
            "S117, Second Floor, Aeon Tebrau City, 1, Jalan Desa Tebrau, Tamar Desa Tebrau, "
            "81100 Johor Bahru, Johor.",
            ADDRESSES[1],
        ),
        ("No 15 Jalan Bandar Kawang 10 Bandar Baru Kawang", ADDRESSES[2]),
        ("gardenia bakeries (kl) sdn. bhd.", COMPANIES[0]),  # case and punctuation aside
    ],
)
def test_an_ocr_misreading_is_read_as_the_known_value(printed: str, known: str) -> None:
    assert matcher(COMPANIES + ADDRESSES).match(printed) == known


@pytest.mark.parametrize(
    "printed",
    [
        "THE",  # a wrong span: nothing like any known value
        "PIIARMACY",
        "INDAH KMF FOODICIOUS SDN BHD",  # a vendor never seen
        "",
    ],
)
def test_a_text_unlike_every_known_value_stays_as_printed(printed: str) -> None:
    assert matcher(COMPANIES + ADDRESSES).match(printed) is None


def test_an_answer_between_two_branches_of_one_chain_stays_as_printed() -> None:
    branches = (
        "LOT P.T. 2811, JALAN ANGSA, TAMAN BERKELEY 41150 KLANG, SELANGOR 1181-TMN SRI SINAR",
        "LOT P.T. 2811, JALAN ANGSA, TAMAN BERKELEY 41150 KLANG, SELANGOR 1131-TMN SRI SINAR",
    )
    printed = "LOT P.T. 2811, JALAN ANGSA, TANAN BERKELEY 41150 KLANG, SELANGOR 11B1-TMN SRI SINAR"
    assert matcher(branches[:1]).match(printed) == branches[0]  # alone, it is the one
    assert matcher(branches).match(printed) is None  # equally close to both: no guess


def test_known_values_keep_the_most_frequent_printed_form_and_the_incumbents() -> None:
    values = known_values(
        ["ACME SDN BHD", "Acme Sdn. Bhd.", "ACME SDN BHD", "", "BETA  CO"], previous=["OLD SHOP"]
    )
    assert values == ["ACME SDN BHD", "BETA CO", "OLD SHOP"]


LABELS = ["O", "B-company", "I-company", "B-total", "I-total"]


def test_the_answer_reads_its_text_as_the_known_value_and_says_so() -> None:
    card = ModelCard(
        task="extract",
        labels=LABELS,
        field_kinds={"company": "text", "total": "amount"},
        encoder="x",
        max_length=32,
        known_values={"company": list(COMPANIES)},
    )
    words = ["GARDENIA", "BAKERIES", "(EL)", "SDN", "BHD", "TOTAL", "RM9.00"]
    tags = ["B-company", "I-company", "I-company", "I-company", "I-company", "O", "B-total"]
    probabilities = np.full((len(words), len(LABELS)), 0.01)
    for index, tag in enumerate(tags):
        probabilities[index, LABELS.index(tag)] = 0.9
    example = receipt(words, ["O"] * len(words), {})
    answers = field_answers(card, example, spans(example, tags, [0.9] * len(words)), probabilities)

    assert answers["company"].text == "GARDENIA BAKERIES (EL) SDN BHD"  # as printed
    assert answers["company"].value == COMPANIES[0]
    assert answers["company"].known_value
    assert answers["total"].value == "9.00" and not answers["total"].known_value

    plain = card.model_copy(update={"known_values": {}})
    answers = field_answers(plain, example, spans(example, tags, [0.9] * len(words)), probabilities)
    assert answers["company"].value == "GARDENIA BAKERIES (EL) SDN BHD"
    assert not answers["company"].known_value


def test_labelled_values_come_from_labels_by_value_else_from_the_gold_span() -> None:
    by_value = receipt(
        ["GARDENIA", "BAKERIES", "(EL)"],
        ["B-company", "I-company", "I-company"],
        {"company": COMPANIES[0]},
    )
    by_words = receipt(["99", "SPEED", "MART", "S/B"], ["B-company"] + ["I-company"] * 3, {})
    assert labelled_field_values([by_value, by_words], ["company"]) == {
        "company": [COMPANIES[0], "99 SPEED MART S/B"]
    }
    card = ModelCard(task="extract", labels=LABELS, encoder="x", max_length=8)
    # a known value that matches the label's value is a right answer for calibration
    assert gold_field_values(card, by_value)["company"] == {
        COMPANIES[0],
        "GARDENIA BAKERIES (EL)",
    }


OFF = TrackingConfig(enabled=False)
ONE_STEP = TrainingConfig(max_length=32, batch_size=4, epochs=1, max_steps=1)


def test_training_keeps_the_training_splits_values_and_the_incumbents(tmp_path: Path) -> None:
    """Known values come from the training split only (validation stays unseen, so the
    calibration fitted on it measures answers to new documents) and a warm start keeps the
    incumbent's."""
    dataset = write_tiny_dataset(tmp_path / "data")
    storage = Storage()
    names = {
        split: labelled_field_values(
            read_examples(storage, str(dataset / f"{split}.parquet")), ["patient_name"]
        )["patient_name"]
        for split in ("train", "val")
    }
    config = ONE_STEP.model_copy(update={"known_value_fields": ["patient_name"]})
    first = train("extract", str(dataset), str(tmp_path / "v1"), config, OFF)

    assert first.card.known_values == {"patient_name": known_values(names["train"])}
    assert load_model(tmp_path / "v1").card.known_values == first.card.known_values
    assert first.card.known_value_similarity == config.known_value_similarity

    incumbent = first.card.model_copy(update={"known_values": {"patient_name": ["Grace Hopper"]}})
    (tmp_path / "v1" / "docloop-model.json").write_text(incumbent.model_dump_json())
    second = train(
        "extract", str(dataset), str(tmp_path / "v2"), config, OFF, init_from=str(tmp_path / "v1")
    )
    assert "Grace Hopper" in second.card.known_values["patient_name"]
    assert set(known_values(names["train"])) <= set(second.card.known_values["patient_name"])

    plain = train("extract", str(dataset), str(tmp_path / "v3"), ONE_STEP, OFF)
    assert plain.card.known_values == {}


def test_a_known_value_field_the_dataset_lacks_is_refused(tmp_path: Path) -> None:
    dataset = write_tiny_dataset(tmp_path / "data")
    config = ONE_STEP.model_copy(update={"known_value_fields": ["vendor"]})
    with pytest.raises(InvalidInput, match=r"known_value_fields names vendor.*mrn, patient_name"):
        train("extract", str(dataset), str(tmp_path / "m"), config, OFF)
