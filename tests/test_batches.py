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
    # The thread and the worker process yield exactly the random-access batches, in order.
    for ahead in ("thread", "process"):
        made = TrainBatches(x, y, 16, seed=3, shift=0.125, ahead=ahead)
        for step, (images, labels) in enumerate(made.epoch(1)):
            assert np.array_equal(images, second.batch(1, step)[0]) and np.array_equal(labels, second.batch(1, step)[1])
        assert step == first.steps - 1


def test_worker_batches_survive_an_abandoned_epoch_a_slice_and_an_error(train_split):
    """A loop that leaves an epoch early gets the next epoch's batches, not the old ones; a memory-mapped slice
    that does not start at the file's first image is reopened at the right place; a failing batch raises in the
    loop."""
    x, y = train_split
    batches = TrainBatches(x[5:], y[5:], 16, seed=2, shift=0.125, ahead="process")
    assert isinstance(x, np.memmap)
    abandoned = batches.epoch(0)
    next(abandoned)
    for step, (images, labels) in enumerate(batches.epoch(1)):
        expected_images, expected_labels = batches.batch(1, step)
        assert np.array_equal(images, expected_images) and np.array_equal(labels, expected_labels)
    assert step == batches.steps - 1
    with pytest.raises(ValueError, match="non-negative"):
        list(TrainBatches(x, y, 16, seed=0, ahead="process").epoch(-1))  # NumPy refuses the seed [0, -1] in the worker


def test_a_batch_stays_valid_after_its_slot_is_reused(train_split):
    x, y = train_split
    batches = TrainBatches(x, y, 16, seed=1, ahead="process")
    kept = [images for images, _ in batches.epoch(0)]  # every slot reused several times meanwhile
    for step, images in enumerate(kept):
        assert np.array_equal(images, batches.batch(0, step)[0])


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


def test_a_training_loop_fed_by_the_worker_process_ends_bitwise_where_the_thread_fed_one_does(train_split, tmp_path):
    """The worker process is what a GPU run uses; here pytorch's own loop (deterministic on the CPU) runs an epoch
    fed each way."""
    from dlcompare import architectures, frameworks
    from dlcompare.frameworks.base import EPOCH_KEYS, TrainingSession
    from dlcompare.params import TrainParams

    x, y = train_split
    module = frameworks.load("pytorch", threads=1)
    spec = architectures.PlainCNN(image_size=32, batch_norm=True, bn_momentum=0.9, bn_epsilon=1e-3, dense_units=0,
                                  dropout=0.0, filters=(8, 16), convs_per_block=1, kernel_size=3, head="global_avg")
    train = TrainParams(epochs=2, batch_size=16, threads=1)
    final = {}
    for ahead in ("thread", "process"):
        implementation = module.Implementation(spec, train, seed=0)
        implementation.build(spec.initial_weights(0))
        session = TrainingSession(train=train, seed=0, batches=TrainBatches(x, y, 16, seed=0, shift=0.125, ahead=ahead),
                                  val_x=x[:32], val_y=y[:32], checkpoint_dir=tmp_path / ahead)
        session.checkpoint_dir.mkdir()
        implementation.fit(session)
        final[ahead] = (implementation.weights(), session.ordered_history())
    numbers = [[{key: epoch[key] for key in EPOCH_KEYS} for epoch in final[ahead][1]] for ahead in final]
    assert numbers[0] == numbers[1]
    for name, value in final["thread"][0].items():
        assert np.array_equal(value, final["process"][0][name]), name
