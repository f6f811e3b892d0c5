"""Decode one image file fully, convert it to RGB and resize it once.

This is the only place in dlcompare where image files are decoded; training
reads the uint8 arrays that `prepare` writes.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# Modes holding more than 8 bits per sample, and the factor that brings them to 0..255. Pillow's
# convert("RGB") clips them instead (16-bit greyscale comes out near white, floats near black).
HIGH_BIT_DEPTH = {"I;16": 1 / 257, "I;16B": 1 / 257, "I;16L": 1 / 257, "I;16N": 1 / 257}


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

    Pillow's own decompression-bomb check stays on with the limit at
    `max_pixels`: it runs on the declared size of every image Pillow opens,
    including those inside containers (an ICO holding a huge PNG), before the
    pixels are decoded. JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8
    scale while staying at least `size` on each side, which is most of
    prepare's speed on full-size photos; the whole entropy stream is still read.
    """
    if not data:
        raise BadImage("empty")
    Image.MAX_IMAGE_PIXELS = max_pixels  # above it Pillow warns (made an error below); above twice it refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width < 1 or height < 1:
                raise BadImage("corrupt")
            # e.g. "Palette images with transparency expressed in bytes": harmless here.
            warnings.filterwarnings("ignore", category=UserWarning)
            image.draft("RGB", (size, size))
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise BadImage("too_large") from None
        except UnidentifiedImageError:
            raise BadImage("not_image") from None
        except OSError as exc:
            raise BadImage("truncated" if "truncated" in str(exc) else "corrupt") from None
        except (SyntaxError, ValueError, EOFError, TypeError, struct.error):
            raise BadImage("corrupt") from None
    if image.size[0] * image.size[1] > max_pixels:  # a container may hold a larger image than it declared
        raise BadImage("too_large")
    rgb = _to_rgb(image)
    if image.format == "JPEG" and _flat_bottom_band(rgb):
        raise BadImage("truncated")
    return np.asarray(_square(rgb, size, resize), dtype=np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, scaling high-bit-depth and float samples instead of clipping them."""
    if image.mode in HIGH_BIT_DEPTH:
        samples = np.asarray(image, dtype=np.float64) * HIGH_BIT_DEPTH[image.mode]
    elif image.mode in ("I", "F"):
        samples = np.asarray(image, dtype=np.float64)
        if not np.isfinite(samples).all() or samples.min() < 0:
            raise BadImage("unsupported_pixels")
        top = samples.max()
        # Floats in [0, 1], 8-bit or 16-bit integers stored in 32 bits: their range is what the file type says, not
        # what this image happens to reach (a dark photo must stay dark).
        scale = 255.0 if image.mode == "F" and top <= 1.0 else 1.0 if top <= 255 else 1 / 257 if top <= 65535 else None
        if scale is None:
            raise BadImage("unsupported_pixels")
        samples = samples * scale
    else:
        return image.convert("RGB")
    grey = Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def _flat_bottom_band(rgb: Image.Image) -> bool:
    """Whether the bottom eighth (at least 8 rows) of a JPEG is exactly mid grey (128, 128, 128).

    libjpeg decodes the blocks a cut-short file lacks as all-zero coefficients, which is mid grey,
    and reports it only as a warning, so a half-missing photo decodes "successfully". Exact
    mid grey, not any flat colour: real photos are often padded with flat white or black
    (ten such in the 10k subset), never with a perfect 128 band.
    """
    pixels = np.asarray(rgb)
    band = max(8, pixels.shape[0] // 8)
    if pixels.shape[0] < 2 * band:
        return False
    return bool((pixels[-band:] == 128).all())
