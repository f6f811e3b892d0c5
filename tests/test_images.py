"""decode_image on generated images of every mode and on broken bytes."""

import io

import numpy as np
import pytest
from PIL import Image

from dlcompare.data.images import BadImage, decode_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def gradient(mode="RGB", size=(90, 60)):
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    rgb = np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1)
    rgb[..., 1] = 255 - rgb[..., 1]
    return Image.fromarray(rgb).convert(mode)


@pytest.mark.parametrize(
    "mode, fmt",
    [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "WEBP"), ("I;16", "PNG")],
)
def test_any_mode_and_format_becomes_rgb_uint8(mode, fmt):
    array = decode_image(encode(gradient(mode), fmt), 32)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert array.std() > 0


def test_greyscale_gives_equal_channels():
    array = decode_image(encode(gradient("L"), "PNG"), 16)
    assert np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])


def test_center_crop_keeps_the_middle():
    image = Image.new("RGB", (300, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # a blue central square
    array = decode_image(encode(image, "PNG"), 20, resize="center_crop")
    assert (array[..., 2] > 200).all() and (array[..., 0] < 50).all()
    squashed = decode_image(encode(image, "PNG"), 20, resize="squash")
    assert (squashed[:, 0, 0] > 200).all()


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"this is not an image at all" * 10, "not_image"),
        (encode(gradient(size=(400, 300)), "JPEG")[:2000], "truncated"),
    ],
)
def test_bad_bytes_get_a_reason(data, reason):
    with pytest.raises(BadImage) as caught:
        decode_image(data, 32)
    assert caught.value.reason == reason


def test_pixel_limit_drops_huge_images_before_decoding():
    with pytest.raises(BadImage) as caught:
        decode_image(encode(gradient(size=(400, 300)), "PNG"), 32, max_pixels=100_000)
    assert caught.value.reason == "too_large"
