"""The framework-neutral batch iterator: same (seed, epoch) -> same batches, for everyone."""

import numpy as np
import pytest

from dlcompare.batches import EvalBatches, TrainBatches, flip_and_shift
from dlcompare.prepared import load_split


@pytest.fixture(scope="module")
def train_split(tiny_prepared):
    return load_split(tiny_prepared, "train")


def test_same_seed_and_epoch_give_identical_batches(train_split):
    x, y = train_split
    first = TrainBatches(x, y, 16, seed=3, shift=0.125)
    second = TrainBatches(x, y, 16, seed=3, shift=0.125)
    for step in range(first.steps):
        a, b = first.batch(1, step), second.batch(1, step)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # The background-thread iterator yields exactly the random-access batches.
    for step, (images, labels) in enumerate(first.epoch(1)):
        assert np.array_equal(images, second.batch(1, step)[0])


def test_other_seed_or_epoch_gives_other_batches(train_split):
    x, y = train_split
    batches = TrainBatches(x, y, 16, seed=3, shift=0.125)
    other_seed = TrainBatches(x, y, 16, seed=4, shift=0.125)
    assert not np.array_equal(batches.batch(0, 0)[0], other_seed.batch(0, 0)[0])
    assert not np.array_equal(batches.order(0), batches.order(1))


def test_each_epoch_uses_each_image_at_most_once(train_split):
    x, y = train_split
    batches = TrainBatches(x, y, 16, seed=0, flip=False, shift=0.0)
    seen = np.concatenate([batches.order(2)[s * 16 : (s + 1) * 16] for s in range(batches.steps)])
    assert len(set(seen.tolist())) == batches.steps * 16
    # Without augmentation a batch is exactly the chosen images scaled to [0, 1].
    images, labels = batches.batch(2, 0)
    chosen = np.sort(batches.order(2)[:16])
    np.testing.assert_allclose(images, x[chosen].astype(np.float32) / 255, rtol=1e-6)
    np.testing.assert_array_equal(labels[:, 0], y[chosen])
    assert images.dtype == np.float32 and labels.shape == (16, 1)


def test_augmentation_only_mirrors_and_moves_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    flipped = flip_and_shift(pixels, np.random.default_rng(1), flip=True, max_shift=0)
    for original, out in zip(pixels, flipped):
        assert np.array_equal(out, original) or np.array_equal(out, original[:, ::-1])
    assert any(not np.array_equal(o, p) for o, p in zip(flipped, pixels))
    shifted = flip_and_shift(pixels, np.random.default_rng(2), flip=False, max_shift=3)
    assert shifted.shape == pixels.shape
    # A shift keeps an interior window of the original image intact.
    for original, out in zip(pixels, shifted):
        assert any(
            np.array_equal(out[3:13, 3:13], original[3 + dy : 13 + dy, 3 + dx : 13 + dx])
            for dy in range(-3, 4) for dx in range(-3, 4)
        )


def test_eval_batches_cover_the_split_in_order(train_split):
    x, y = train_split
    batches = EvalBatches(x, y, 50)
    images = np.concatenate([images for images, _ in batches])
    np.testing.assert_allclose(images, x.astype(np.float32) / 255, rtol=1e-6)


def test_fewer_images_than_a_batch_is_an_error(train_split):
    x, y = train_split
    with pytest.raises(ValueError, match="fewer than one batch"):
        TrainBatches(x[:3], y[:3], 16, seed=0)
