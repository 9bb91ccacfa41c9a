"""Image preparation before OCR, and the mapping of OCR boxes back onto the page as given.

Steps: greyscale, text-height scaling, adaptive binarisation, deskew, a white border.

Every step is cheap (OpenCV on a greyscale array, the estimates on a downscaled copy), so it can
run on every scanned page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

ESTIMATE_WIDTH = 800
"""Width of the downscaled copy the text height and skew are estimated on."""

MAX_SCALE = 4.0
MIN_SCALE = 0.5
SKEW_LIMIT_DEG = 5.0
SKEW_STEP_DEG = 0.25

GreyImage = NDArray[Any]


@dataclass(frozen=True)
class Preparation:
    """Which preparation steps run before OCR (``preprocess.ocr_*`` settings).

    Attributes:
        text_height: rescale the page so its capital letters are about this many pixels high
            (0: never rescale). Only pages whose text is off by more than 25 % are rescaled.
        binarise: adaptive (local mean) thresholding to black text on white.
        deskew: rotate text lines level (within +/- 5 degrees).
        border: add a white margin of this many pixels (0: none).
    """

    text_height: int = 0
    binarise: bool = False
    deskew: bool = False
    border: int = 0

    @property
    def active(self) -> bool:
        """Whether any step changes the image."""
        return bool(self.text_height or self.binarise or self.deskew or self.border)


@dataclass(frozen=True)
class PreparedPage:
    """A page ready for OCR and how to map its pixel boxes back onto the original image."""

    image: GreyImage
    scale: float = 1.0
    angle_deg: float = 0.0
    border: int = 0
    width: int = 0  # original image size
    height: int = 0

    def to_original(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
        """Map a box on the prepared image to the original image's pixels (its bounding box)."""
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        mapped = []
        centre_x = self.width * self.scale / 2
        centre_y = self.height * self.scale / 2
        cos_a = math.cos(math.radians(self.angle_deg))
        sin_a = math.sin(math.radians(self.angle_deg))
        for x, y in corners:
            dx, dy = x - self.border - centre_x, y - self.border - centre_y
            # undo the rotation (the image was turned by angle_deg about its centre)
            rx, ry = dx * cos_a - dy * sin_a, dx * sin_a + dy * cos_a
            mapped.append(((rx + centre_x) / self.scale, (ry + centre_y) / self.scale))
        xs = [x for x, _ in mapped]
        ys = [y for _, y in mapped]
        return min(xs), min(ys), max(xs), max(ys)


def greyscale(image: Image.Image) -> GreyImage:
    """The page as an 8-bit greyscale array."""
    grey = image if image.mode == "L" else image.convert("L")
    return np.asarray(grey, dtype=np.uint8)


def _small(grey: GreyImage) -> tuple[GreyImage, float]:
    height, width = grey.shape
    factor = min(1.0, ESTIMATE_WIDTH / max(width, 1))
    if factor >= 1.0:
        return grey, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA), factor


def _ink(grey: GreyImage) -> GreyImage:
    """Foreground (text) mask, 255 where ink, by Otsu's threshold."""
    _, mask = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return mask


def text_height(grey: GreyImage) -> float | None:
    """Estimate the capital-letter height in pixels.

    The 75th percentile of the heights of letter-sized connected components, on a copy at most
    800 px wide (~5 ms a page).

    Returns:
        The height in the original image's pixels, or None when the page has too few components.
    """
    small, factor = _small(grey)
    count, _, stats, _ = cv2.connectedComponentsWithStats(_ink(small), connectivity=8)
    heights = stats[1:, cv2.CC_STAT_HEIGHT]
    widths = stats[1:, cv2.CC_STAT_WIDTH]
    areas = stats[1:, cv2.CC_STAT_AREA]
    letters = (heights >= 3) & (heights <= small.shape[0] / 8) & (widths <= 3 * heights)
    letters &= areas >= 4
    if count < 20 or letters.sum() < 10:
        return None
    return float(np.percentile(heights[letters], 75)) / factor


def skew_angle(grey: GreyImage) -> float:
    """The angle (degrees, counter-clockwise positive) that levels the text lines.

    The rotation within +/- 5 degrees whose row profile of ink is the sharpest (projection-profile
    method), on a copy at most 800 px wide.
    """
    small, _ = _small(grey)
    ink = (_ink(small) > 0).astype(np.float32)
    height, width = ink.shape
    centre = (width / 2, height / 2)
    best_angle, best_score = 0.0, -1.0
    steps = int(SKEW_LIMIT_DEG / SKEW_STEP_DEG)
    for step in range(-steps, steps + 1):
        angle = step * SKEW_STEP_DEG
        matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
        turned = cv2.warpAffine(ink, matrix, (width, height), flags=cv2.INTER_NEAREST)
        profile = turned.sum(axis=1)
        score = float(np.square(np.diff(profile)).sum())
        if score > best_score:
            best_angle, best_score = angle, score
    return best_angle


def prepare(image: Image.Image, steps: Preparation) -> PreparedPage:
    """Apply the preparation steps to a page image (greyscale always).

    Order: greyscale -> rescale to the text height -> deskew -> binarise -> border.
    """
    grey = greyscale(image)
    height, width = grey.shape
    scale = 1.0
    measured = text_height(grey) if steps.text_height or steps.binarise else None
    if steps.text_height and measured is not None:
        wanted = min(MAX_SCALE, max(MIN_SCALE, steps.text_height / measured))
        if abs(wanted - 1.0) > 0.25:
            scale = wanted
            size = (round(width * scale), round(height * scale))
            method = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
            grey = cv2.resize(grey, size, interpolation=method)
    angle = 0.0
    if steps.deskew:
        angle = skew_angle(grey)
        if angle:
            rows, cols = grey.shape
            matrix = cv2.getRotationMatrix2D((cols / 2, rows / 2), angle, 1.0)
            grey = cv2.warpAffine(
                grey,
                matrix,
                (cols, rows),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=255,
            )
    if steps.binarise:
        # a window about two capital heights wide follows the paper's shading, not the letters
        block = _odd(max(15, round(2 * (measured or 15) * scale)))
        grey = cv2.adaptiveThreshold(
            grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, 15
        )
    if steps.border:
        grey = cv2.copyMakeBorder(
            grey,
            steps.border,
            steps.border,
            steps.border,
            steps.border,
            cv2.BORDER_CONSTANT,
            value=255,
        )
    return PreparedPage(grey, scale, angle, steps.border, width, height)


def _odd(value: int) -> int:
    return value if value % 2 else value + 1
