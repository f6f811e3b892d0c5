"""Decode one image file fully, convert it to RGB and resize it once.

This is the only place in dlcompare where image files are decoded; training
reads the uint8 arrays that `prepare` writes.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# We check the pixel count ourselves (against prepare.max_pixels) so the limit
# is a parameter and the reason is recorded, not a Pillow warning.
Image.MAX_IMAGE_PIXELS = None


class BadImage(Exception):
    """The file cannot be used; `reason` is the drop reason for the manifest."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _square(image: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "center_crop":
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        box = (left, top, left + side, top + side)
        return image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return image.resize((size, size), Image.Resampling.BILINEAR)


def decode_image(data: bytes, size: int, resize: str = "squash", max_pixels: int = 50_000_000) -> np.ndarray:
    """Return a (size, size, 3) uint8 RGB array, or raise BadImage(reason).

    JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale while staying
    at least `size` on each side, which is most of prepare's speed on
    full-size photos; the whole entropy stream is still read, so truncated
    files are still caught.
    """
    if not data:
        raise BadImage("empty")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadImage("not_image") from None
    except (OSError, SyntaxError, ValueError):
        raise BadImage("corrupt") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImage("too_large")
    if width < 1 or height < 1:
        raise BadImage("corrupt")
    try:
        with warnings.catch_warnings():
            # e.g. "Palette images with transparency expressed in bytes": harmless here.
            warnings.simplefilter("ignore")
            image.draft("RGB", (size, size))
            image.load()
            rgb = image.convert("RGB")
    except OSError as exc:
        raise BadImage("truncated" if "truncated" in str(exc) else "corrupt") from None
    except (SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        raise BadImage("corrupt") from None
    return np.asarray(_square(rgb, size, resize), dtype=np.uint8)
