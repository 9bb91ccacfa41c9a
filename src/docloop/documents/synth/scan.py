"""Make a born-digital PDF look scanned: render, rotate, blur, add noise, JPEG, image-only PDF.

Each page is rendered with pdfium at 200 dpi in grayscale, rotated by a small angle about its
centre (same canvas size, white fill), optionally downscaled and upscaled again (lower effective
resolution), blurred, toned like paper, given Gaussian noise and finally stored as one JPEG
image per page in a PDF written by Pillow at 200 dpi. Because the pixels change, OCR on these
pages makes real errors. Label boxes follow the pages through :func:`rotate_box`, the same
affine transform Pillow applies.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageFilter

DPI = 200
"""Resolution of scanned pages (pixels per inch)."""

FIXED_PDF_DATE = time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0))
"""Creation/modification date written into scanned PDFs (keeps them byte-deterministic)."""


@dataclass(frozen=True)
class ScanProfile:
    """How hard a scanner degrades pages.

    Attributes:
        max_rotation: rotation angle drawn uniformly from ``[-max_rotation, max_rotation]`` deg.
        blur: Gaussian blur radius range in pixels.
        noise: additive Gaussian noise standard deviation range in gray levels.
        jpeg_quality: JPEG quality range (inclusive).
        downscale: factor range for a downscale + upscale round trip, or None.
        paper: gray level range of the paper (255 is white).
    """

    max_rotation: float
    blur: tuple[float, float]
    noise: tuple[float, float]
    jpeg_quality: tuple[int, int]
    downscale: tuple[float, float] | None
    paper: tuple[int, int]


MILD = ScanProfile(
    max_rotation=1.0,
    blur=(0.3, 0.7),
    noise=(3.0, 7.0),
    jpeg_quality=(55, 80),
    downscale=None,
    paper=(238, 255),
)
"""A decent office scanner (``base`` and most scenarios)."""

HARSH = ScanProfile(
    max_rotation=3.0,
    blur=(0.7, 1.3),
    noise=(9.0, 16.0),
    jpeg_quality=(25, 45),
    downscale=(0.5, 0.7),
    paper=(215, 240),
)
"""A poor fax-like scan (``scan_quality`` scenario)."""


@dataclass(frozen=True)
class PageScan:
    """What happened to one page: its pixel size and the rotation applied (degrees, CCW)."""

    width: int
    height: int
    angle: float


def rotate_point(x: float, y: float, width: int, height: int, angle: float) -> tuple[float, float]:
    """Where pixel ``(x, y)`` goes when Pillow rotates the image by ``angle`` degrees (CCW).

    ``Image.rotate(angle, expand=False)`` turns the picture counter-clockwise about the image
    centre; in image coordinates (y down) that maps ``p`` to ``c + R (p - c)`` with
    ``R = [[cos, sin], [-sin, cos]]``.
    """
    theta = math.radians(angle)
    cx, cy = width / 2.0, height / 2.0
    dx, dy = x - cx, y - cy
    return (
        cx + dx * math.cos(theta) + dy * math.sin(theta),
        cy - dx * math.sin(theta) + dy * math.cos(theta),
    )


def rotate_box(box: list[int], scan: PageScan) -> list[int]:
    """Transform a 0-1000 box through a page's rotation; returns the enclosing 0-1000 box."""
    x0, y0, x1, y1 = (
        box[0] * scan.width / 1000,
        box[1] * scan.height / 1000,
        box[2] * scan.width / 1000,
        box[3] * scan.height / 1000,
    )
    corners = [
        rotate_point(x, y, scan.width, scan.height, scan.angle)
        for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))
    ]
    xs = [c[0] for c in corners]
    ys = [c[1] for c in corners]

    def norm(value: float, extent: int) -> int:
        return max(0, min(1000, round(1000 * value / extent)))

    return [
        norm(min(xs), scan.width),
        norm(min(ys), scan.height),
        norm(max(xs), scan.width),
        norm(max(ys), scan.height),
    ]


def render_pages(pdf_bytes: bytes, dpi: int = DPI) -> list[Image.Image]:
    """Render every page of a PDF to a grayscale (mode ``L``) image at ``dpi``."""
    document = pdfium.PdfDocument(pdf_bytes)
    try:
        images: list[Image.Image] = []
        for index in range(len(document)):
            page = document[index]
            bitmap = page.render(scale=dpi / 72.0, grayscale=True)
            image = bitmap.to_pil().convert("L")
            images.append(image)
            bitmap.close()
            page.close()
        return images
    finally:
        document.close()


def degrade(
    image: Image.Image, profile: ScanProfile, rng: np.random.Generator
) -> tuple[Image.Image, float]:
    """Apply rotation, resolution loss, blur, paper tone and noise to one page image.

    Returns:
        The degraded image (same size, mode ``L``) and the rotation angle in degrees (CCW).
    """
    angle = float(rng.uniform(-profile.max_rotation, profile.max_rotation))
    out = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    if profile.downscale is not None:
        factor = float(rng.uniform(*profile.downscale))
        small = (max(1, round(out.width * factor)), max(1, round(out.height * factor)))
        out = out.resize(small, Image.Resampling.BILINEAR).resize(
            image.size, Image.Resampling.BILINEAR
        )
    out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(*profile.blur))))
    pixels = np.asarray(out, dtype=np.float32)
    paper = float(rng.integers(profile.paper[0], profile.paper[1] + 1))
    pixels = pixels * (paper / 255.0)
    sigma = float(rng.uniform(*profile.noise))
    pixels += rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L"), angle


def scan_pdf(
    pdf_bytes: bytes, profile: ScanProfile, rng: np.random.Generator, title: str
) -> tuple[bytes, list[PageScan]]:
    """Turn a born-digital PDF into an image-only "scanned" PDF.

    Args:
        pdf_bytes: the born-digital PDF.
        profile: how hard to degrade.
        rng: the document's scan generator.
        title: the PDF's /Title.

    Returns:
        The scanned PDF bytes (one JPEG image per page at :data:`DPI`) and what was done to
        each page.
    """
    pages: list[Image.Image] = []
    scans: list[PageScan] = []
    for image in render_pages(pdf_bytes):
        degraded, angle = degrade(image, profile, rng)
        pages.append(degraded)
        scans.append(PageScan(degraded.width, degraded.height, angle))
    quality = int(rng.integers(profile.jpeg_quality[0], profile.jpeg_quality[1] + 1))
    buffer = io.BytesIO()
    pages[0].save(
        buffer,
        "PDF",
        resolution=float(DPI),
        save_all=True,
        append_images=pages[1:],
        quality=quality,
        title=title,
        producer="docloop synth",
        creationDate=FIXED_PDF_DATE,
        modDate=FIXED_PDF_DATE,
    )
    return buffer.getvalue(), scans
