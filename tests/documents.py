"""Builders of small real documents for tests: good ones and every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib import pdfencrypt
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas


def born_digital_pdf(lines_per_page: list[list[str]], encrypt: str | None = None) -> bytes:
    """A PDF with a real text layer, one list of lines per page."""
    buffer = io.BytesIO()
    encryption = pdfencrypt.StandardEncryption(encrypt, ownerPassword="owner") if encrypt else None
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1, encrypt=encryption)
    for lines in lines_per_page:
        y = 780
        for line in lines:
            pdf.setFont("Helvetica", 12)
            pdf.drawString(72, y, line)
            y -= 20
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def text_image(lines: list[str], size: tuple[int, int] = (1100, 300)) -> Image.Image:
    """A small grayscale image with large clear text (fast to OCR)."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    for index, line in enumerate(lines):
        draw.text((40, 30 + 60 * index), line, font=font, fill=0)
    return image


def image_bytes(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    """Encode an image (``PNG``, ``JPEG``, ``TIFF`` or ``PDF`` for an image-only PDF)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def scanned_pdf(pages: list[Image.Image]) -> bytes:
    """An image-only PDF (no text layer), like a scanner makes."""
    buffer = io.BytesIO()
    pages[0].save(buffer, "PDF", resolution=200, save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def zero_page_pdf() -> bytes:
    """A syntactically valid PDF whose page tree is empty."""
    buffer = io.BytesIO()
    pdfium.PdfDocument.new().save(buffer)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\x00" * ((width + 7) // 8))  # one row; the rest is missing
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def write(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/name`` and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
