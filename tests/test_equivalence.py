"""Keras and low-level TensorFlow are the same model: same outputs, same optimiser steps.

Both start from the canonical NumPy weights; on the same real batch they must
agree to 1e-4 in inference and training mode, and after optimiser steps every
weight and batch-norm statistic must still agree to 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlcompare.batches import TrainBatches
from dlcompare.model_spec import ModelSpec
from dlcompare.params import TrainParams
from dlcompare.prepared import load_split

TOLERANCE = dict(atol=1e-4, rtol=1e-4)

SPECS = {
    "bn_global_avg": dict(filters=(8, 16, 16), convs_per_block=1, batch_norm=True, head="global_avg", dense_units=0),
    "bias_flatten_dense": dict(filters=(8, 16), convs_per_block=2, batch_norm=False, head="flatten", dense_units=12),
}


def make_spec(dropout: float, **architecture) -> ModelSpec:
    return ModelSpec(image_size=32, kernel_size=3, bn_momentum=0.9, bn_epsilon=1e-3, dropout=dropout, **architecture)


def both(spec: ModelSpec, seed: int = 7):
    from dlcompare.frameworks import load

    train = TrainParams(learning_rate=1e-2)
    weights = spec.initial_weights(seed)
    built = []
    for name in ("keras", "tensorflow"):
        implementation = load(name).Implementation(spec, train, seed)
        implementation.build(weights)
        built.append(implementation)
    return built


@pytest.fixture(scope="module")
def real_batch(tiny_prepared):
    x, y = load_split(tiny_prepared, "train")
    return TrainBatches(x, y, 16, seed=0, shift=0.125).batch(0, 0)


@pytest.mark.parametrize("architecture", sorted(SPECS))
def test_both_start_from_the_canonical_weights(architecture):
    spec = make_spec(0.3, **SPECS[architecture])
    canonical = spec.initial_weights(7)
    for implementation in both(spec):
        weights = implementation.weights()
        assert weights.keys() == canonical.keys()
        for name in canonical:
            np.testing.assert_array_equal(weights[name], canonical[name], err_msg=name)


@pytest.mark.parametrize("architecture", sorted(SPECS))
def test_same_forward_output_in_inference_and_training_mode(architecture, real_batch):
    images, _ = real_batch
    keras_impl, tf_impl = both(make_spec(0.3, **SPECS[architecture]))
    inference = keras_impl.forward(images, training=False)
    np.testing.assert_allclose(inference, tf_impl.forward(images, training=False), **TOLERANCE)
    assert inference.std() > 1e-4, "outputs must differ between images, or the test proves nothing"

    # Training mode uses batch statistics; dropout's random stream cannot be shared, so it is off here.
    keras_impl, tf_impl = both(make_spec(0.0, **SPECS[architecture]))
    training = keras_impl.forward(images, training=True)
    np.testing.assert_allclose(training, tf_impl.forward(images, training=True), **TOLERANCE)
    if SPECS[architecture]["batch_norm"]:
        assert not np.allclose(training, keras_impl.forward(images, training=False), atol=1e-3)
        # Both updated their moving statistics the same way during the training-mode pass.
        keras_weights, tf_weights = keras_impl.weights(), tf_impl.weights()
        moving = [name for name in keras_weights if "moving_" in name]
        for name in moving:
            np.testing.assert_allclose(keras_weights[name], tf_weights[name], err_msg=name, **TOLERANCE)


@pytest.mark.parametrize("architecture", sorted(SPECS))
def test_same_weights_after_optimiser_steps(architecture, tiny_prepared):
    x, y = load_split(tiny_prepared, "train")
    batches = TrainBatches(x, y, 16, seed=0, shift=0.125)
    spec = make_spec(0.0, **SPECS[architecture])
    keras_impl, tf_impl = both(spec)
    start = spec.initial_weights(7)
    for step, rate in enumerate((1e-2, 5e-3, 5e-3)):
        images, labels = batches.batch(0, step)
        keras_impl.train_batch(images, labels, rate)
        tf_impl.train_batch(images, labels, rate)
        keras_weights, tf_weights = keras_impl.weights(), tf_impl.weights()
        for name in start:
            np.testing.assert_allclose(keras_weights[name], tf_weights[name], err_msg=f"step {step}: {name}", **TOLERANCE)
    moved = [name for name in start if not np.allclose(start[name], keras_weights[name])]
    assert len(moved) == len(start), "every weight (and batch-norm statistic) should have changed"


def test_fit_loops_consume_the_same_batches_in_the_same_order(tmp_path, tiny_prepared):
    """A whole epoch through each framework's own training loop ends with the same weights."""
    from dlcompare.frameworks.base import TrainingSession

    x, y = load_split(tiny_prepared, "train")
    x_val, y_val = load_split(tiny_prepared, "val")
    spec = make_spec(0.0, **SPECS["bn_global_avg"])
    finished = []
    for implementation in both(spec):
        train = TrainParams(epochs=1, batch_size=16, learning_rate=5e-3)
        implementation.train = train
        session = TrainingSession(
            train=train, seed=7, batches=TrainBatches(x, y, 16, seed=7, shift=0.125),
            val_x=x_val, val_y=y_val, checkpoint_dir=tmp_path / type(implementation).__module__,
        )
        session.checkpoint_dir.mkdir()
        implementation.fit(session)
        finished.append((implementation.weights(), session.history[0]))
    (keras_weights, keras_epoch), (tf_weights, tf_epoch) = finished
    for name in keras_weights:
        np.testing.assert_allclose(keras_weights[name], tf_weights[name], err_msg=name, atol=2e-4, rtol=2e-4)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert keras_epoch[key] == pytest.approx(tf_epoch[key], abs=1e-4), key
