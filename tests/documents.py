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


# --- documents that cost more than their size (built by hand: no library writes such files) ---


def _deflate_zeros(size: int, chunk: int = 1 << 20) -> bytes:
    """``zlib`` data that inflates to ``size`` zero bytes (built in chunks: nothing large held)."""
    compressor = zlib.compressobj(9)
    parts = []
    block = b"\x00" * chunk
    left = size
    while left > 0:
        parts.append(compressor.compress(block[: min(chunk, left)]))
        left -= chunk
    parts.append(compressor.flush())
    return b"".join(parts)


def multi_frame_tiff(frames: list[Image.Image | tuple[int, int]]) -> bytes:
    """A little-endian multi-frame TIFF, deflate-compressed, one strip per frame.

    An ``Image`` (mode ``L``) is stored as an 8-bit grey frame; a ``(width, height)`` pair as a
    1-bit all-white frame of that size: a decompression bomb (40,000 x 40,000 is 200 MB of bits
    in ~200 KB, and 1.6 GB once a decoder expands it to a byte per pixel).
    """
    strips: list[bytes] = []
    shapes: list[tuple[int, int, int]] = []  # width, height, bits per sample
    for frame in frames:
        if isinstance(frame, Image.Image):
            grey = frame.convert("L")
            strips.append(zlib.compress(grey.tobytes(), 9))
            shapes.append((grey.width, grey.height, 8))
        else:
            width, height = frame
            strips.append(_deflate_zeros((width + 7) // 8 * height))
            shapes.append((width, height, 1))
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets = []
    for strip in strips:
        offsets.append(len(out))
        out += strip
        if len(out) % 2:
            out += b"\x00"
    ifd_positions = []
    for index, ((width, height, bits), strip) in enumerate(zip(shapes, strips, strict=True)):
        ifd_positions.append(len(out))
        entries = [
            (256, 4, width),  # ImageWidth, LONG
            (257, 4, height),  # ImageLength
            (258, 3, bits),  # BitsPerSample, SHORT
            (259, 3, 8),  # Compression: Adobe deflate
            (262, 3, 1 if bits == 8 else 0),  # Photometric: BlackIsZero / WhiteIsZero
            (273, 4, offsets[index]),  # StripOffsets
            (277, 3, 1),  # SamplesPerPixel
            (278, 4, height),  # RowsPerStrip
            (279, 4, len(strip)),  # StripByteCounts
        ]
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, 1) + packed
        out += b"\x00\x00\x00\x00"  # next IFD, patched below
    struct.pack_into("<I", out, 4, ifd_positions[0])
    for index, position in enumerate(ifd_positions[:-1]):
        count = struct.unpack_from("<H", out, position)[0]
        struct.pack_into("<I", out, position + 2 + 12 * count, ifd_positions[index + 1])
    return bytes(out)


def hand_made_pdf(objects: list[bytes]) -> bytes:
    """A PDF from object bodies (object 1 must be the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _stream(dictionary: str, data: bytes) -> bytes:
    return f"<< {dictionary} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def pdf_with_huge_image(width: int, height: int, page_pt: int = 200) -> bytes:
    """A one-page PDF whose small page shows a ``width`` x ``height`` 1-bit image (all black).

    The page box passes any page-size cap; only the embedded image's own size gives it away.
    """
    image = _stream(
        f"/Type /XObject /Subtype /Image /Width {width} /Height {height} "
        "/ColorSpace /DeviceGray /BitsPerComponent 1 /Filter /FlateDecode",
        _deflate_zeros((width + 7) // 8 * height),
    )
    content = _stream("", f"q {page_pt} 0 0 {page_pt} 0 0 cm /Im0 Do Q".encode())
    return hand_made_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_pt} {page_pt}] "
            "/Resources << /XObject << /Im0 5 0 R >> >> /Contents 4 0 R >>".encode(),
            content,
            image,
        ]
    )


def pdf_inflating_to(megabytes: int) -> bytes:
    """A one-page PDF whose content stream inflates to ``megabytes`` MB of blank operators."""
    chunk = b"q Q " * (1 << 18)  # 1 MiB of save/restore pairs
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(chunk) for _ in range(megabytes)) + compressor.flush()
    return hand_made_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            _stream("/Filter /FlateDecode", data),
        ]
    )
