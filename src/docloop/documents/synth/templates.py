"""Page layouts: where a document's :class:`~docloop.documents.synth.doctypes.Content` goes.

Every template draws through :class:`~docloop.documents.synth.layout.Layout`, so each word's box
is known. Within a template, fonts (Helvetica, Times, Courier), sizes (9-12 pt), margins, page
size (US Letter or A4), label case and alignment vary per document.

- ``A``: key/value header block (``Patient Name: Jane Doe``), one or two columns, then the body.
- ``B``: a grid of boxed cells, each with a small label above its value, then the body.
- ``C``: a letter: letterhead, recipient, salutation, values embedded in sentences, signature.
- ``D`` (only in the ``new_template`` scenario): a shaded right sidebar where each value is
  printed first and its label after it, title above the issuer, tables in reversed column order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from docloop.documents.synth.doctypes import (
    Block,
    Content,
    Field,
    Heading,
    Items,
    PageBreak,
    Para,
    Table,
)
from docloop.documents.synth.layout import (
    A4,
    LETTER,
    Layout,
    RectOp,
    Segment,
    ascent_descent,
    text_width,
)
from docloop.documents.synth.vocab import pick

BASE_TEMPLATES: tuple[str, ...] = ("A", "B", "C")
NEW_TEMPLATE = "D"

FAMILIES: dict[str, tuple[str, str, str]] = {
    "Helvetica": ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique"),
    "Times": ("Times-Roman", "Times-Bold", "Times-Italic"),
    "Courier": ("Courier", "Courier-Bold", "Courier-Oblique"),
}


@dataclass(frozen=True)
class Style:
    """Typography of one document.

    Attributes:
        regular: body font.
        bold: bold font (labels, headings, titles).
        italic: italic font.
        size: body size in points.
        leading: line advance as a multiple of the size.
        title_size: title size in points.
        label_bold: labels in bold (else regular).
        upper_labels: labels in upper case (grid layouts).
    """

    regular: str
    bold: str
    italic: str
    size: float
    leading: float
    title_size: float
    label_bold: bool
    upper_labels: bool

    @property
    def lead(self) -> float:
        """Line advance in points at the body size."""
        return self.size * self.leading

    @property
    def small(self) -> float:
        """Size of small print (grid labels, page footers)."""
        return max(7.5, self.size - 2.0)

    @property
    def label_font(self) -> str:
        """Font of field labels."""
        return self.bold if self.label_bold else self.regular


def choose_style(rng: np.random.Generator) -> Style:
    """Draw the typography of one document."""
    family = str(rng.choice(["Helvetica", "Times", "Courier"], p=[0.45, 0.35, 0.2]))
    regular, bold, italic = FAMILIES[family]
    low = 9.5 if family == "Courier" else 9.0
    size = float(rng.choice(np.arange(low, 12.01, 0.5)))
    return Style(
        regular=regular,
        bold=bold,
        italic=italic,
        size=size,
        leading=float(rng.uniform(1.25, 1.5)),
        title_size=size + float(rng.choice([3.0, 4.0, 5.0, 6.0, 8.0])),
        label_bold=bool(rng.random() < 0.6),
        upper_labels=bool(rng.random() < 0.5),
    )


def new_layout(rng: np.random.Generator) -> Layout:
    """A blank layout on US Letter (70 %) or A4 with random margins."""
    width, height = LETTER if rng.random() < 0.7 else A4
    side = float(rng.uniform(40.0, 75.0))
    return Layout(
        width=width,
        height=height,
        left=side,
        right=side + float(rng.uniform(-8.0, 8.0)),
        top=float(rng.uniform(36.0, 70.0)),
        bottom=float(rng.uniform(48.0, 70.0)),
    )


# --- shared pieces ----------------------------------------------------------------------------


def _bare(label: str) -> str:
    """A label without its trailing colon."""
    return label.rstrip(":").rstrip()


def _value(field: Field) -> Segment:
    return (field.value, field.entity)


def _row(
    lay: Layout,
    cells: Sequence[tuple[float, Sequence[Segment], str, float]],
    advance: float,
    gray: float = 0.0,
) -> None:
    """Draw several runs on one baseline at the cursor and advance (cells: x, text, font, size)."""
    lay.ensure(advance)
    top_size = max(size for _, _, _, size in cells)
    ascent = max(ascent_descent(font, size)[0] for _, _, font, size in cells)
    baseline = lay.y + ascent + (advance - top_size) / 2
    for x, segments, font, size in cells:
        lay.run(x, baseline, segments, font, size, gray)
    lay.y += advance


def _fit_size(texts: Sequence[str], font: str, size: float, width: float, floor: float) -> float:
    """The largest size <= ``size`` (>= ``floor``) at which every text fits in ``width``."""
    widest = max((text_width(t, font, size) for t in texts), default=0.0)
    if widest <= width:
        return size
    return max(floor, size * width / widest)


def letterhead(lay: Layout, content: Content, st: Style, align: str) -> None:
    """Issuer name, address and phone."""
    lay.line([(content.org, None)], st.bold, st.size + 4, align=align)
    lay.line([(content.address, None)], st.regular, st.small, align=align, gray=0.25)
    phone_label = pick_label(("Phone:", "Tel:", "Ph:"), content.phone)
    lay.line(
        [(f"{phone_label} {content.phone}", None)], st.regular, st.small, align=align, gray=0.25
    )


def pick_label(options: Sequence[str], seed_text: str) -> str:
    """A label chosen from ``options`` by a stable hash of ``seed_text`` (no extra draws)."""
    return options[sum(ord(c) for c in seed_text) % len(options)]


def kv_block(
    lay: Layout,
    fields: Sequence[Field],
    st: Style,
    columns: int,
    aligned: bool,
    x0: float | None = None,
    x1: float | None = None,
) -> None:
    """``label value`` rows in one or two columns (values aligned in a column, or inline)."""
    if not fields:
        return
    left = lay.left if x0 is None else x0
    right = lay.content_right if x1 is None else x1
    gap = 8.0
    labels = [f.label.upper() if st.upper_labels and not aligned else f.label for f in fields]
    label_w = max(text_width(label, st.label_font, st.size) for label in labels) + gap
    for cols in (columns, 1):
        col_w = (right - left) / cols
        fits = all(
            (label_w if aligned else text_width(label, st.label_font, st.size) + gap)
            + text_width(f.value, st.regular, st.size)
            < col_w - gap
            for label, f in zip(labels, fields, strict=True)
        )
        if fits:
            break
    size = st.size
    if not fits:
        size = _fit_size(
            [f.value for f in fields], st.regular, st.size, right - left - label_w, 7.5
        )
    rows = (len(fields) + cols - 1) // cols
    for r in range(rows):
        cells: list[tuple[float, Sequence[Segment], str, float]] = []
        for c in range(cols):
            index = c * rows + r
            if index >= len(fields):
                continue
            x = left + c * col_w
            label = labels[index]
            value_x = (
                x + label_w if aligned else x + text_width(label + " ", st.label_font, st.size)
            )
            cells.append((x, [(label, None)], st.label_font, st.size))
            cells.append((value_x, [_value(fields[index])], st.regular, size))
        _row(lay, cells, st.lead)


def render_table(
    lay: Layout, table: Table, st: Style, x0: float, x1: float, reverse: bool, ruled: bool
) -> None:
    """A table with a bold header row; numeric columns right-aligned."""
    order = list(range(len(table.header)))
    if reverse:
        order.reverse()
    header = [table.header[i] for i in order]
    rows = [[row[i] for i in order] for row in table.rows]
    numeric = [table.numeric[i] for i in order]
    gap = 12.0
    size = st.size
    widths: list[float] = []
    for _ in range(3):
        widths = [
            max(
                [text_width(header[c], st.bold, size)]
                + [text_width(row[c], st.regular, size) for row in rows]
            )
            for c in range(len(header))
        ]
        total = sum(widths) + gap * (len(widths) - 1)
        if total <= x1 - x0 or size <= 6.5:
            break
        size = max(6.5, size * (x1 - x0) / total * 0.98)
    spare = max(0.0, (x1 - x0) - sum(widths) - gap * (len(widths) - 1))
    extra = min(spare / max(1, len(widths) - 1), 30.0)
    lefts: list[float] = []
    x = x0
    for w in widths:
        lefts.append(x)
        x += w + gap + extra
    lead = size * st.leading

    def cells(texts: Sequence[str], font: str) -> list[tuple[float, Sequence[Segment], str, float]]:
        out: list[tuple[float, Sequence[Segment], str, float]] = []
        for c, text in enumerate(texts):
            if not text.strip():
                continue
            left = lefts[c]
            if numeric[c]:
                left = lefts[c] + widths[c] - text_width(text, font, size)
            out.append((left, [(text, None)], font, size))
        return out

    lay.ensure(3 * lead)
    _row(lay, cells(header, st.bold), lead)
    lay.hrule(gap=1.5, x0=x0, x1=x1)
    for row in rows:
        _row(lay, cells(row, st.regular), lead)
        if ruled:
            lay.hrule(gap=1.0, width=0.3, gray=0.6, x0=x0, x1=x1)


def render_body(
    lay: Layout,
    blocks: Sequence[Block],
    st: Style,
    rng: np.random.Generator,
    x0: float | None = None,
    x1: float | None = None,
    reverse_tables: bool = False,
) -> None:
    """Draw body blocks between ``x0`` and ``x1`` (default the margins)."""
    left = lay.left if x0 is None else x0
    right = lay.content_right if x1 is None else x1
    ruled = bool(rng.random() < 0.4)
    bullet = pick(rng, ("-", "*", "o"))
    heading_upper = bool(rng.random() < 0.3)
    for block in blocks:
        if isinstance(block, PageBreak):
            if lay.y > lay.top:
                lay.new_page()
        elif isinstance(block, Heading):
            lay.ensure(4 * st.lead)
            lay.space(0.5 * st.lead)
            text = block.text.upper() if heading_upper else block.text
            lay.line([(text, None)], st.bold, st.size + 1, x=left, leading=st.lead * 1.1)
        elif isinstance(block, Para):
            lay.paragraph(
                [(block.text, None)], st.regular, st.size, leading=st.lead, x=left, right=right
            )
        elif isinstance(block, Table):
            render_table(lay, block, st, left, right, reverse_tables, ruled)
        elif isinstance(block, Items):
            mark = block.bullet and bullet
            indent = 14.0 if mark else 0.0
            for item in block.items:
                lay.ensure(st.lead)
                if mark:
                    ascent = ascent_descent(st.regular, st.size)[0]
                    baseline = lay.y + ascent + (st.lead - st.size) / 2
                    lay.run(left + 2, baseline, [(mark, None)], st.regular, st.size)
                lay.paragraph(
                    [(item, None)],
                    st.regular,
                    st.size,
                    leading=st.lead,
                    x=left + indent,
                    right=right,
                )


def page_footers(lay: Layout, content: Content, st: Style, rng: np.random.Generator) -> None:
    """``Page i of n`` (and sometimes a confidentiality line) at the bottom of every page."""
    count = len(lay.pages)
    notice = bool(rng.random() < 0.5)
    align = pick(rng, ("center", "right"))
    baseline = lay.height - lay.bottom / 2
    for page in range(count):
        text = f"Page {page + 1} of {count}"
        width = text_width(text, st.regular, st.small)
        x = lay.content_right - width if align == "right" else (lay.width - width) / 2
        lay.run(x, baseline, [(text, None)], st.regular, st.small, gray=0.3, page=page)
        if notice:
            lay.run(
                lay.left,
                baseline - st.small * 1.4,
                [("Confidential health information", None)],
                st.italic,
                st.small,
                gray=0.3,
                page=page,
            )


# --- the templates ----------------------------------------------------------------------------


def template_a(lay: Layout, content: Content, st: Style, rng: np.random.Generator) -> None:
    """Key/value header block, then the body, then footer fields."""
    align = pick(rng, ("left", "center"))
    letterhead(lay, content, st, align)
    lay.hrule(gap=5.0, width=1.0)
    if content.title:
        lay.line(
            [(content.title, None)], st.bold, st.title_size, align=pick(rng, ("left", "center"))
        )
    lay.space(st.size * 0.5)
    kv_block(
        lay, content.header, st, columns=int(pick(rng, (1, 2, 2))), aligned=bool(rng.random() < 0.6)
    )
    lay.hrule(gap=5.0)
    render_body(lay, content.body, st, rng)
    if content.footer:
        lay.space(st.lead)
        half = lay.left + lay.content_width * 0.45
        kv_block(lay, content.footer, st, columns=1, aligned=True, x0=pick(rng, (lay.left, half)))


def grid(lay: Layout, fields: Sequence[Field], st: Style, upper: bool) -> None:
    """Boxed cells, label (small) above value."""
    if not fields:
        return
    pad = 5.0
    label_size = st.small
    value_size = st.size + 0.5
    for cols in (3, 2, 1):
        cell_w = lay.content_width / cols
        if all(text_width(f.value, st.regular, value_size) < cell_w - 2 * pad for f in fields):
            break
    value_size = _fit_size([f.value for f in fields], st.regular, value_size, cell_w - 2 * pad, 7.5)
    cell_h = pad + label_size * 1.3 + value_size * 1.35 + pad
    for start in range(0, len(fields), cols):
        lay.ensure(cell_h)
        top = lay.y
        for c, item in enumerate(fields[start : start + cols]):
            x = lay.left + c * cell_w
            lay.draw(RectOp(x, top, cell_w, cell_h, stroke=0.35, width=0.7))
            label = _bare(item.label)
            label = label.upper() if upper else label
            label_base = top + pad + ascent_descent(st.regular, label_size)[0]
            lay.run(x + pad, label_base, [(label, None)], st.regular, label_size, gray=0.3)
            value_base = label_base + label_size * 0.35 + value_size * 1.1
            lay.run(x + pad, value_base, [_value(item)], st.regular, value_size)
        lay.y = top + cell_h


def template_b(lay: Layout, content: Content, st: Style, rng: np.random.Generator) -> None:
    """Title and issuer on one band, a grid of labelled cells, the body, footer cells."""
    title_size = st.title_size
    top = lay.y
    beside = content.title is not None and (
        text_width(content.title, st.bold, title_size)
        + text_width(content.org, st.bold, st.size + 2)
        < lay.content_width - 24.0
    )
    if content.title and beside:
        lay.line([(content.title, None)], st.bold, title_size, align="right")
        lay.y = top
    lay.line(
        [(content.org, None)], st.bold, st.size + 2, leading=title_size * 1.3 if beside else None
    )
    line = f"{content.address}  |  {content.phone}"
    size = _fit_size([line], st.regular, st.small, lay.content_width, 6.5)
    lay.line([(line, None)], st.regular, size, gray=0.25)
    lay.hrule(gap=4.0, width=1.5)
    if content.title and not beside:
        lay.line([(content.title, None)], st.bold, title_size, align="center")
    lay.space(4.0)
    grid(lay, content.header, st, st.upper_labels)
    lay.space(st.lead * 0.5)
    render_body(lay, content.body, st, rng)
    if content.footer:
        lay.space(st.lead)
        if rng.random() < 0.5:
            grid(lay, content.footer, st, st.upper_labels)
        else:
            kv_block(lay, content.footer, st, columns=1, aligned=True)


def _sentence(field: Field) -> list[Segment]:
    before, after = field.prose
    return [(before, None), _value(field), (after, None)]


def template_c(lay: Layout, content: Content, st: Style, rng: np.random.Generator) -> None:
    """A letter: values embedded in sentences, provider in the signature block."""
    letterhead(lay, content, st, pick(rng, ("center", "left")))
    lay.hrule(gap=4.0, width=0.8)
    lay.space(st.lead * 0.5)
    if content.issued:
        lay.line([(content.issued, None)], st.regular, st.size, align="right")
    for line in content.letter.recipient:
        lay.line([(line, None)], st.regular, st.size)
    lay.space(st.lead * 0.5)
    distractors = [f for f in content.header if f.entity is None]
    entities = [f for f in content.header if f.entity is not None]
    for item in distractors:
        lay.line(
            [(item.label, None), (item.value, None)],
            st.regular,
            st.small + 0.5,
            leading=st.lead * 0.9,
        )
    if content.title:
        lay.space(st.lead * 0.4)
        lay.line([(f"Re: {content.title}", None)], st.bold, st.size + 1)
    lay.space(st.lead * 0.5)
    lay.line([(content.letter.salutation, None)], st.regular, st.size)
    lay.space(st.lead * 0.3)
    segments: list[Segment] = [(content.letter.opening, None)]
    split = len(entities) // 2 if len(entities) > 4 and rng.random() < 0.5 else len(entities)
    for item in entities[:split]:
        segments.extend(_sentence(item))
    lay.paragraph(segments, st.regular, st.size, leading=st.lead)
    if entities[split:]:
        lay.space(st.lead * 0.4)
        lay.paragraph(
            [seg for item in entities[split:] for seg in _sentence(item)],
            st.regular,
            st.size,
            leading=st.lead,
        )
    render_body(lay, content.body, st, rng)
    signature = [f for f in content.footer if f.entity == "provider_name"]
    totals = [f for f in content.footer if f.entity is None]
    prose = [f for f in content.footer if f.entity not in (None, "provider_name")]
    if totals:
        lay.space(st.lead * 0.5)
        kv_block(lay, totals, st, columns=1, aligned=True)
    if prose:
        lay.space(st.lead * 0.5)
        lay.paragraph(
            [seg for item in prose for seg in _sentence(item)], st.regular, st.size, leading=st.lead
        )
    lay.ensure(5 * st.lead)
    lay.space(st.lead)
    lay.line([(content.letter.closing, None)], st.regular, st.size)
    lay.space(st.lead * 1.2)
    for item in signature:
        lay.line([_value(item)], st.regular, st.size + 0.5)
    lay.line([(content.letter.signer_role, None)], st.italic, st.size, gray=0.2)


def template_d(lay: Layout, content: Content, st: Style, rng: np.random.Generator) -> None:
    """A right sidebar of ``value`` over ``label`` pairs; title above issuer; reversed tables."""
    sidebar_w = lay.content_width * float(rng.uniform(0.3, 0.36))
    sb_x0 = lay.content_right - sidebar_w
    main_x1 = sb_x0 - 16.0
    pad = 8.0
    # sidebar (page 0): value first, its label after it in small italics
    top = lay.y
    lay.y = top + pad
    value_size = _fit_size(
        [f.value for f in content.header], st.bold, st.size + 0.5, sidebar_w - 2 * pad, 7.5
    )
    for item in content.header:
        lay.line(
            [_value(item)],
            st.bold,
            value_size,
            x=sb_x0 + pad,
            right=lay.content_right - pad,
            align="right",
        )
        lay.line(
            [(_bare(item.label).lower(), None)],
            st.italic,
            st.small,
            x=sb_x0 + pad,
            right=lay.content_right - pad,
            align="right",
            gray=0.35,
            leading=st.small * 1.6,
        )
    sidebar_bottom = lay.y + pad
    lay.pages[0].insert(0, RectOp(sb_x0, top, sidebar_w, sidebar_bottom - top, fill=0.93))
    # main column
    lay.y = top
    if content.title:
        lay.line([(content.title, None)], st.bold, st.title_size, x=lay.left, right=main_x1)
    lay.line([(content.org, None)], st.bold, st.size + 1, x=lay.left, right=main_x1)
    lay.paragraph(
        [(content.address, None)], st.regular, st.small, x=lay.left, right=main_x1, gray=0.25
    )
    lay.line([(content.phone, None)], st.regular, st.small, x=lay.left, right=main_x1, gray=0.25)
    lay.hrule(gap=5.0, width=1.0, x0=lay.left, x1=main_x1)
    render_body(lay, content.body, st, rng, x1=main_x1, reverse_tables=True)
    if content.footer:
        lay.space(st.lead)
        for item in content.footer:
            _row(
                lay,
                [
                    (lay.left, [_value(item)], st.bold, st.size),
                    (
                        lay.left + text_width(item.value + "  ", st.bold, st.size),
                        [(_bare(item.label).lower(), None)],
                        st.italic,
                        st.size,
                    ),
                ],
                st.lead,
            )


TEMPLATES: dict[str, Callable[[Layout, Content, Style, np.random.Generator], None]] = {
    "A": template_a,
    "B": template_b,
    "C": template_c,
    "D": template_d,
}


def lay_out(template: str, content: Content, rng: np.random.Generator, pages: int = 1) -> Layout:
    """Lay a document's content out with one template, on at most ``pages`` pages if possible.

    If the content overflows, the same layout choices are retried with tighter typography
    (smaller size, less leading), up to four times.

    Args:
        template: ``A``, ``B``, ``C`` or ``D``.
        content: what the document says.
        rng: the document's generator (typography, page and layout choices).
        pages: the page count the content is meant to fill.

    Returns:
        The finished layout, page footers included.
    """
    style = choose_style(rng)
    layout_seed = int(rng.integers(2**63))
    lay = new_layout(rng)
    for attempt in range(5):
        st = replace(
            style,
            size=style.size - 0.5 * attempt,
            leading=max(1.12, style.leading - 0.06 * attempt),
            title_size=style.title_size - attempt,
        )
        lay = Layout(lay.width, lay.height, lay.left, lay.right, lay.top, lay.bottom)
        layout_rng = np.random.Generator(np.random.PCG64(layout_seed))
        TEMPLATES[template](lay, content, st, layout_rng)
        if len(lay.pages) <= pages:
            break
    page_footers(lay, content, st, layout_rng)
    return lay
