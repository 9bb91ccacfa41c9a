"""A tiny flowing page-layout engine that remembers where every word goes.

Templates place text through :class:`Layout`; each drawn line is one reportlab ``drawString``
and the box of every whitespace-delimited word in it is computed from the font metrics
(``pdfmetrics.stringWidth`` for widths, the font's ascent/descent for heights), which is also
what PDF readers use, so the boxes are exact for the born-digital PDF. Text is given as
*segments* ``(text, tag)``: a tagged segment is an entity value, kept whole when wrapping and
reported with its words' boxes.

Coordinates inside the engine are PDF points with a top-left origin.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen import canvas

Segment = tuple[str, str | None]
"""``(text, tag)``: ``tag`` is an entity type for an entity value, ``None`` for plain text."""

LETTER = (612.0, 792.0)
A4 = (595.2756, 841.8898)


def text_width(text: str, font: str, size: float) -> float:
    """Width in points of ``text`` set in ``font`` at ``size``."""
    return float(pdfmetrics.stringWidth(text, font, size))


def ascent_descent(font: str, size: float) -> tuple[float, float]:
    """Ascent (positive) and descent (negative) in points of ``font`` at ``size``."""
    ascent, descent = pdfmetrics.getAscentDescent(font, size)
    return float(ascent), float(descent)


@dataclass(frozen=True)
class TextOp:
    """Draw ``text`` with its baseline starting at ``(x, baseline)``."""

    font: str
    size: float
    x: float
    baseline: float
    text: str
    gray: float = 0.0


@dataclass(frozen=True)
class LineOp:
    """A straight line from ``(x0, y0)`` to ``(x1, y1)``."""

    x0: float
    y0: float
    x1: float
    y1: float
    width: float = 0.6
    gray: float = 0.0


@dataclass(frozen=True)
class RectOp:
    """A rectangle, top-left at ``(x, y)``; filled with ``fill`` (gray level) and/or stroked."""

    x: float
    y: float
    w: float
    h: float
    fill: float | None = None
    stroke: float | None = None
    width: float = 0.6


Op = TextOp | LineOp | RectOp


@dataclass(frozen=True)
class PlacedWord:
    """A drawn word: its page, text, box in points (top-left origin) and entity tag."""

    page: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    tag: str | None


@dataclass
class Layout:
    """Pages of drawing operations with a flowing cursor.

    Args:
        width: page width in points.
        height: page height in points.
        left: left margin.
        right: right margin.
        top: top margin.
        bottom: bottom margin.
    """

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    pages: list[list[Op]] = field(default_factory=lambda: [[]])
    words: list[PlacedWord] = field(default_factory=list)
    y: float = 0.0

    def __post_init__(self) -> None:
        self.y = self.top

    # --- geometry ---------------------------------------------------------------------
    @property
    def page(self) -> int:
        """Index of the page being filled."""
        return len(self.pages) - 1

    @property
    def content_right(self) -> float:
        """X of the right margin."""
        return self.width - self.right

    @property
    def content_width(self) -> float:
        """Width between the margins."""
        return self.width - self.left - self.right

    @property
    def page_bottom(self) -> float:
        """Y of the bottom margin."""
        return self.height - self.bottom

    def new_page(self) -> None:
        """Start a new page; the cursor goes to the top margin."""
        self.pages.append([])
        self.y = self.top

    def ensure(self, height: float) -> None:
        """Start a new page unless ``height`` points still fit below the cursor."""
        if self.y + height > self.page_bottom and self.y > self.top:
            self.new_page()

    def space(self, points: float) -> None:
        """Move the cursor down (never past the bottom margin)."""
        self.y = min(self.y + points, self.page_bottom)

    # --- drawing ----------------------------------------------------------------------
    def draw(self, op: Op) -> None:
        """Add a drawing operation to the current page."""
        self.pages[-1].append(op)

    def run(
        self,
        x: float,
        baseline: float,
        segments: Sequence[Segment],
        font: str,
        size: float,
        gray: float = 0.0,
        page: int | None = None,
    ) -> float:
        """Draw segments as one string (single spaces between words) and record word boxes.

        Args:
            x: left end of the text.
            baseline: baseline y (top-left origin).
            segments: ``(text, tag)`` pieces, joined with single spaces.
            font: a standard PDF font name.
            size: font size in points.
            gray: gray level of the text (0 black).
            page: page to draw on (default the current page).

        Returns:
            The x where the drawn text ends.
        """
        tokens: list[tuple[str, str | None]] = [
            (word, tag) for text, tag in segments for word in text.split()
        ]
        if not tokens:
            return x
        line = " ".join(word for word, _ in tokens)
        target = self.page if page is None else page
        self.pages[target].append(TextOp(font, size, x, baseline, line, gray))
        ascent, descent = ascent_descent(font, size)
        prefix = ""
        for word, tag in tokens:
            x0 = x + text_width(prefix, font, size)
            x1 = x0 + text_width(word, font, size)
            self.words.append(
                PlacedWord(target, word, x0, baseline - ascent, x1, baseline - descent, tag)
            )
            prefix += word + " "
        return x + text_width(line, font, size)

    def line(
        self,
        segments: Sequence[Segment],
        font: str,
        size: float,
        *,
        leading: float | None = None,
        x: float | None = None,
        align: str = "left",
        right: float | None = None,
        gray: float = 0.0,
    ) -> None:
        """Draw one line at the cursor (flowing to a new page if needed) and advance.

        Args:
            segments: the text.
            font: font name.
            size: font size.
            leading: line advance (default ``1.3 * size``).
            x: left end (default the left margin); for ``right``/``center`` the box's left end.
            align: ``left``, ``right`` or ``center`` inside ``[x, right]``.
            right: right end of the alignment box (default the right margin).
            gray: text gray level.
        """
        advance = leading if leading is not None else 1.3 * size
        self.ensure(advance)
        ascent, _ = ascent_descent(font, size)
        baseline = self.y + ascent + (advance - size) / 2
        left = self.left if x is None else x
        right_end = self.content_right if right is None else right
        width = text_width(" ".join(w for t, _ in segments for w in t.split()), font, size)
        if align == "right":
            left = right_end - width
        elif align == "center":
            left = left + (right_end - left - width) / 2
        self.run(left, baseline, segments, font, size, gray)
        self.y += advance

    def paragraph(
        self,
        segments: Sequence[Segment],
        font: str,
        size: float,
        *,
        leading: float | None = None,
        x: float | None = None,
        right: float | None = None,
        gray: float = 0.0,
    ) -> None:
        """Draw wrapped text; a tagged segment (an entity value) is never split across lines."""
        left = self.left if x is None else x
        right_end = self.content_right if right is None else right
        units: list[list[Segment]] = []
        for text, tag in segments:
            if tag is None:
                units.extend([[(word, None)] for word in text.split()])
            elif text.strip():
                units.append([(text, tag)])
        space = text_width(" ", font, size)
        current: list[Segment] = []
        current_width = 0.0
        for unit in units:
            unit_width = text_width(unit[0][0], font, size)
            if current and current_width + space + unit_width > right_end - left:
                self.line(current, font, size, leading=leading, x=left, gray=gray)
                current, current_width = [], 0.0
            current_width += (space if current else 0.0) + unit_width
            current.extend(unit)
        if current:
            self.line(current, font, size, leading=leading, x=left, gray=gray)

    def hrule(
        self,
        gap: float = 4.0,
        width: float = 0.6,
        gray: float = 0.0,
        x0: float | None = None,
        x1: float | None = None,
    ) -> None:
        """A horizontal rule (default across the content width) with ``gap`` points around it."""
        self.ensure(2 * gap)
        self.y += gap
        left = self.left if x0 is None else x0
        right = self.content_right if x1 is None else x1
        self.draw(LineOp(left, self.y, right, self.y, width, gray))
        self.y += gap


def render_pdf(layout: Layout, title: str) -> bytes:
    """Write the layout as a born-digital PDF (text layer, standard fonts), byte-deterministic.

    Args:
        layout: the laid-out pages.
        title: the PDF's /Title.

    Returns:
        The PDF bytes.
    """
    buffer = io.BytesIO()
    pdf = canvas.Canvas(
        buffer, pagesize=(layout.width, layout.height), invariant=1, pageCompression=1
    )
    pdf.setTitle(title)
    pdf.setAuthor("docloop synth")
    pdf.setCreator("docloop synth")
    pdf.setSubject("synthetic document")
    height = layout.height
    for ops in layout.pages:
        for op in ops:
            if isinstance(op, TextOp):
                pdf.setFillGray(op.gray)
                pdf.setFont(op.font, op.size)
                pdf.drawString(op.x, height - op.baseline, op.text)
            elif isinstance(op, LineOp):
                pdf.setStrokeGray(op.gray)
                pdf.setLineWidth(op.width)
                pdf.line(op.x0, height - op.y0, op.x1, height - op.y1)
            else:
                if op.fill is not None:
                    pdf.setFillGray(op.fill)
                if op.stroke is not None:
                    pdf.setStrokeGray(op.stroke)
                    pdf.setLineWidth(op.width)
                pdf.rect(
                    op.x,
                    height - op.y - op.h,
                    op.w,
                    op.h,
                    stroke=int(op.stroke is not None),
                    fill=int(op.fill is not None),
                )
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()
