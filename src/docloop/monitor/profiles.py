"""Document profiles: what a page looks like and how its values are written, as numbers.

A profile is one row of features per document, computed from its words and 0-1000 boxes only
(no model), in three groups:

* **layout** (fixed names): the share of the document's words whose box centre falls in each
  cell of a 3 x 5 grid (columns x rows of the page), lines per page, words per line, the share of
  lines that start right of the page's middle, the share of lines with a wide gap between two
  words (columns, tables, a sidebar), and the median word-box height.
* **shape**: the character-class pattern of each word (upper ``X``, lower ``x``, digit ``d``,
  other characters kept, runs capped at four: ``12/03/2024`` -> ``dd/dd/dddd``, ``Mar`` ->
  ``Xxx``); the feature is the share of the document's words with that shape.
* **position**: where a word of letters sits: ``total@bottom-right`` is 1 when the document
  prints "total" in that cell of a 3 x 3 grid.

Shape and position features are named by a vocabulary built from the *pooled* documents of both
sides (every name seen in at least ``min_documents`` documents, the most frequent first): the
vocabulary never looks at which side a document is on, so a permutation test over the pooled rows
stays exact.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np
import numpy.typing as npt

from docloop.documents.examples import DocumentExample
from docloop.errors import InvalidInput

GRID_COLUMNS: Final = 3
GRID_ROWS: Final = 5
POSITION_CELLS: Final = 3
WIDE_GAP: Final = 80
MAX_RUN: Final = 4
_COLUMN_NAMES: Final = ("left", "centre", "right")
_ROW_NAMES: Final = ("top", "middle", "bottom")
_LETTERS: Final = re.compile(r"[^a-z]+")

FloatArray = npt.NDArray[np.float64]


def word_shape(word: str) -> str:
    """The character-class pattern of a word (runs of one class capped at four characters)."""
    out: list[str] = []
    run = 0
    for char in word:
        if char.isdigit():
            cls = "d"
        elif char.isalpha():
            cls = "X" if char.isupper() else "x"
        else:
            cls = char
        run = run + 1 if out and out[-1] == cls else 1
        if run <= MAX_RUN:
            out.append(cls)
    return "".join(out)


def _cell(value: float, cells: int) -> int:
    return min(cells - 1, max(0, int(value * cells / 1000.0)))


def _lines(example: DocumentExample) -> list[list[int]]:
    """Word indices grouped into text lines (same page, overlapping vertical extent)."""
    order = sorted(
        range(len(example.words)),
        key=lambda i: (example.pages[i], example.boxes[i][1] + example.boxes[i][3]),
    )
    lines: list[list[int]] = []
    for i in order:
        _, y0, _, y1 = example.boxes[i]
        centre = (y0 + y1) / 2.0
        if lines:
            last = lines[-1][0]
            _, ly0, _, ly1 = example.boxes[last]
            if example.pages[last] == example.pages[i] and ly0 <= centre <= ly1:
                lines[-1].append(i)
                continue
        lines.append([i])
    for line in lines:
        line.sort(key=lambda i: example.boxes[i][0])
    return lines


LAYOUT_FEATURES: Final = (
    *(
        f"layout.words_in_cell[{row},{column}]"
        for row in range(GRID_ROWS)
        for column in range(GRID_COLUMNS)
    ),
    "layout.lines_per_page",
    "layout.words_per_line",
    "layout.right_start_line_share",
    "layout.wide_gap_line_share",
    "layout.median_word_height",
)


def layout_features(example: DocumentExample) -> FloatArray:
    """The layout group of one document (see the module docstring), in :data:`LAYOUT_FEATURES`."""
    row = np.zeros(len(LAYOUT_FEATURES), dtype=np.float64)
    count = len(example.words)
    if count == 0:
        return row
    boxes = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    for x, y in zip(cx, cy, strict=True):
        row[_cell(y, GRID_ROWS) * GRID_COLUMNS + _cell(x, GRID_COLUMNS)] += 1.0
    row[: GRID_ROWS * GRID_COLUMNS] /= count
    lines = _lines(example)
    starts = [example.boxes[line[0]][0] for line in lines]
    gaps = [
        any(example.boxes[b][0] - example.boxes[a][2] > WIDE_GAP for a, b in pairwise(line))
        for line in lines
    ]
    base = GRID_ROWS * GRID_COLUMNS
    row[base] = len(lines) / max(example.page_count, 1)
    row[base + 1] = count / len(lines)
    row[base + 2] = float(np.mean([start > 500 for start in starts]))
    row[base + 3] = float(np.mean(gaps))
    row[base + 4] = float(np.median(boxes[:, 3] - boxes[:, 1]))
    return row


def _position_names(example: DocumentExample) -> set[str]:
    names: set[str] = set()
    for word, box in zip(example.words, example.boxes, strict=True):
        letters = _LETTERS.sub("", word.lower())
        if len(letters) < 3:
            continue
        column = _cell((box[0] + box[2]) / 2.0, POSITION_CELLS)
        row = _cell((box[1] + box[3]) / 2.0, POSITION_CELLS)
        names.add(f"{letters}@{_ROW_NAMES[row]}-{_COLUMN_NAMES[column]}")
    return names


@dataclass(frozen=True)
class Profiles:
    """Profile rows of the two sides over one shared feature list.

    Attributes:
        names: Feature names (``layout.*``, ``shape:<pattern>``, ``position:<word>@<cell>``).
        reference: ``[reference documents, features]``.
        current: ``[current documents, features]``.
    """

    names: list[str]
    reference: FloatArray
    current: FloatArray


def document_profiles(
    reference: Sequence[DocumentExample],
    current: Sequence[DocumentExample],
    *,
    min_documents: int = 5,
    max_vocabulary: int = 2000,
) -> Profiles:
    """Profile both sides over a vocabulary built from the pooled documents.

    Args:
        reference: The reference documents (the champion's training documents).
        current: The served documents of the window.
        min_documents: A shape or position becomes a feature when at least this many pooled
            documents have it.
        max_vocabulary: At most this many shape and this many position features (most frequent).

    Returns:
        The profiles of both sides.

    Raises:
        InvalidInput: A bad ``min_documents`` or ``max_vocabulary``.
    """
    if min_documents < 1 or max_vocabulary < 1:
        raise InvalidInput("min_documents and max_vocabulary must be >= 1")
    pooled = [*reference, *current]
    shapes = [Counter(word_shape(word) for word in example.words) for example in pooled]
    positions = [_position_names(example) for example in pooled]

    def vocabulary(sets: Sequence[Counter[str] | set[str]]) -> list[str]:
        frequency: Counter[str] = Counter()
        for names in sets:
            frequency.update(set(names))
        kept = [(name, n) for name, n in frequency.items() if n >= min_documents]
        kept.sort(key=lambda item: (-item[1], item[0]))
        return [name for name, _ in kept[:max_vocabulary]]

    shape_vocabulary = vocabulary(shapes)
    position_vocabulary = vocabulary(positions)
    shape_index = {name: j for j, name in enumerate(shape_vocabulary)}
    position_index = {name: j for j, name in enumerate(position_vocabulary)}
    width = len(LAYOUT_FEATURES) + len(shape_vocabulary) + len(position_vocabulary)
    rows = np.zeros((len(pooled), width), dtype=np.float64)
    shape_base = len(LAYOUT_FEATURES)
    position_base = shape_base + len(shape_vocabulary)
    for i, example in enumerate(pooled):
        rows[i, :shape_base] = layout_features(example)
        total = max(len(example.words), 1)
        for shape, n in shapes[i].items():
            if shape in shape_index:
                rows[i, shape_base + shape_index[shape]] = n / total
        for name in positions[i]:
            if name in position_index:
                rows[i, position_base + position_index[name]] = 1.0
    names = [
        *LAYOUT_FEATURES,
        *(f"shape:{shape}" for shape in shape_vocabulary),
        *(f"position:{name}" for name in position_vocabulary),
    ]
    return Profiles(names, rows[: len(reference)], rows[len(reference) :])


_GRID_ROW_NAMES: Final = ("top", "upper", "middle", "lower", "bottom")
_LAYOUT_DESCRIPTIONS: Final = {
    "layout.lines_per_page": "text lines per page",
    "layout.words_per_line": "words per text line",
    "layout.right_start_line_share": "share of lines that start right of the page's middle",
    "layout.wide_gap_line_share": "share of lines with a wide gap (columns, tables, a sidebar)",
    "layout.median_word_height": "median word height (1/1000 of the page)",
}
_CELL: Final = re.compile(r"layout\.words_in_cell\[(\d+),(\d+)\]")
SHARE_PREFIXES: Final = ("layout.words_in_cell", "layout.right_start", "layout.wide_gap", "shape:")


def describe_feature(name: str) -> str:
    """A profile feature in words a reviewer can look for on the page."""
    if name in _LAYOUT_DESCRIPTIONS:
        return _LAYOUT_DESCRIPTIONS[name]
    cell = _CELL.fullmatch(name)
    if cell:
        row, column = int(cell.group(1)), int(cell.group(2))
        return f"share of words in the {_GRID_ROW_NAMES[row]} {_COLUMN_NAMES[column]} of the page"
    if name.startswith("shape:"):
        return f"documents with words written like '{name[6:]}'"
    if name.startswith("position:"):
        word, _, where = name[9:].partition("@")
        return f"documents with '{word}' in the {where.replace('-', ' ')} of the page"
    return name


SHAPE_LEGEND: Final = "in word patterns X is an upper-case letter, x lower-case, d a digit"


def summarise_feature(name: str, column: npt.ArrayLike) -> float:
    """A feature column's summary: its mean; for a word shape, the share of documents with it.

    A word shape's share of a document's words is too small to read; whether a document has the
    shape at all is what a reviewer can check.
    """
    values = np.asarray(column, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    return float(np.mean(values > 0)) if name.startswith("shape:") else float(np.mean(values))


def format_feature_value(name: str, value: float) -> str:
    """A feature's summary as a person reads it (a percentage for shares)."""
    if name.startswith(SHARE_PREFIXES) or name.startswith("position:"):
        return f"{value:.0%}"
    return f"{value:.3g}"
