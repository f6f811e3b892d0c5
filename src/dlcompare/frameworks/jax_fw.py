"""JAX: each architecture as a pure function of a parameter pytree, trained with optax and a `jax.jit` step.

The parameters are a flat dict keyed by the canonical weight names (the
pytree needs no structure of its own), batch-norm moving statistics a second
dict that the step returns updated. The optimiser is `optax.adam` wrapped in
`optax.inject_hyperparams`, so the epoch's learning rate is set in its state.
Checkpoints and the saved model are NumPy `.npz` files of those pytrees.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

import jax
import jax.numpy as jnp
import optax

from dlcompare.batches import EvalBatches
from dlcompare.frameworks import runtime_jax as runtime
from dlcompare.frameworks.base import VALIDATION_BATCH, Framework
from dlcompare import architectures

# Plugs this file into the shared harness; counted apart from its own lines (dlcompare/effort.py).
HARNESS_ADAPTERS = ('keras_adam', 'split_weights', 'weights', 'forward', 'train_batch')

MODEL_FILE = "model.npz"


# ---- model: the network, written as a JAX user would write it
def conv(x, kernel, c):
    """Convolution `c`, padded c.padding on every side."""
    return jax.lax.conv_general_dilated(x, kernel, (c.stride, c.stride), [(c.padding, c.padding)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool(x):
    """2x2 max pooling, stride 2, "VALID" (an odd last row or column is dropped).

    As a max over reshaped windows rather than `lax.reduce_window`: the same values, but its gradient is an
    elementwise mask instead of XLA's select-and-scatter, which on the CPU made the training step 1.4x slower
    (docs/performance.md). Ties split the gradient instead of giving it to one element; after ReLU the only
    ties are zeros, whose gradient ReLU discards anyway.
    """
    batch, height, width, channels = x.shape
    x = x[:, : height // 2 * 2, : width // 2 * 2]
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def batch_norm(x, params, stats, name, spec, training):
    """Normalise with the batch's statistics (training) or the moving ones; returns the updated moving ones."""
    mean_key, variance_key = f"{name}/bn/moving_mean", f"{name}/bn/moving_variance"
    if training:
        mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        m = spec.bn_momentum
        stats = {mean_key: m * stats[mean_key] + (1 - m) * mean, variance_key: m * stats[variance_key] + (1 - m) * variance}
    else:
        mean, variance = stats[mean_key], stats[variance_key]
    scaled = (x - mean) * jax.lax.rsqrt(variance + spec.bn_epsilon)
    return scaled * params[f"{name}/bn/gamma"] + params[f"{name}/bn/beta"], stats


def conv_norm(x, params, stats, c, spec, training):
    """Convolution `c`, then batch norm (or a bias); returns the updated moving statistics too."""
    x = conv(x, params[f"{c.name}/kernel"], c)
    if spec.batch_norm:
        return batch_norm(x, params, stats, c.name, spec, training)
    return x + params[f"{c.name}/bias"], {}


def plain_cnn(params, stats, x, spec, training):
    new_stats = {}
    for block in spec.blocks():
        for c in block:
            x, updated = conv_norm(x, params, stats, c, spec, training)
            x = jax.nn.relu(x)
            new_stats.update(updated)
        x = max_pool(x)
    return (x.mean(axis=(1, 2)) if spec.head == "global_avg" else x.reshape(x.shape[0], -1)), new_stats


def residual_block(params, stats, x, block, spec, training):
    y, stats0 = conv_norm(x, params, stats, block.conv0, spec, training)
    y, stats1 = conv_norm(jax.nn.relu(y), params, stats, block.conv1, spec, training)
    shortcut, stats2 = conv_norm(x, params, stats, block.shortcut, spec, training) if block.shortcut else (x, {})
    return jax.nn.relu(y + shortcut), {**stats0, **stats1, **stats2}


def resnet(params, stats, x, spec, training):
    x, new_stats = conv_norm(x, params, stats, spec.stem(), spec, training)
    x = jax.nn.relu(x)
    for block in spec.residual_blocks():
        x, updated = residual_block(params, stats, x, block, spec, training)
        new_stats.update(updated)
    return x.mean(axis=(1, 2)), new_stats


BODIES = {"plain_cnn": plain_cnn, "resnet": resnet}


def logits(params, stats, images, spec, training, dropout_key=None):
    """Class-1 logits (B,) of images (B, S, S, 3), and the batch-norm statistics after this batch."""
    x, new_stats = BODIES[spec.preset](params, stats, images, spec, training)
    if spec.dense_units:
        x = jax.nn.relu(x @ params["dense/kernel"] + params["dense/bias"])
    if training and spec.dropout > 0:
        keep = jax.random.bernoulli(dropout_key, 1.0 - spec.dropout, x.shape)
        x = jnp.where(keep, x / (1.0 - spec.dropout), 0.0)
    return (x @ params["output/kernel"] + params["output/bias"])[:, 0], new_stats


# ---- training: optimiser, loop, saving and loading
class TrainState(NamedTuple):
    params: dict
    stats: dict
    opt_state: optax.OptState


def keras_adam(train):
    """optax.adam with Keras' epsilon, which every framework here uses.

    optax adds eps to sqrt(v / (1 - b2^t)), Keras to sqrt(v); eps_t =
    eps / sqrt(1 - b2^t), a schedule of the step count, makes them the same.
    """
    def epsilon(count):
        return train.adam_epsilon / jnp.sqrt(1.0 - train.adam_beta_2 ** (count + 1))

    return optax.inject_hyperparams(optax.adam)(
        learning_rate=train.learning_rate, b1=train.adam_beta_1, b2=train.adam_beta_2, eps=epsilon)


def split_weights(weights):
    stats = {name: jnp.asarray(value) for name, value in weights.items() if "moving_" in name}
    params = {name: jnp.asarray(value) for name, value in weights.items() if "moving_" not in name}
    return params, stats


class Implementation(Framework):
    def build(self, weights):
        self.runtime = runtime.configure(self.train.threads, self.seed)
        self.optimizer = keras_adam(self.train)
        params, stats = split_weights(weights)
        self.state = TrainState(params, stats, self.optimizer.init(params))
        self.dropout_root = jax.random.key(self.seed)

    @partial(jax.jit, static_argnums=0)
    def train_step(self, state, images, labels):
        dropout_key = jax.random.fold_in(self.dropout_root, state.opt_state.count)  # a function of the step: resumes draw the same masks

        def loss_fn(params):
            z, stats = logits(params, state.stats, images, self.spec, True, dropout_key)
            return optax.sigmoid_binary_cross_entropy(z, labels).mean(), (z, stats)

        (loss, (z, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        accuracy = ((z > 0) == (labels > 0.5)).mean()
        return TrainState(optax.apply_updates(state.params, updates), stats, opt_state), loss, accuracy

    @partial(jax.jit, static_argnums=0)
    def evaluate_batch(self, state, images, labels):
        z, _ = logits(state.params, state.stats, images, self.spec, False)
        return optax.sigmoid_binary_cross_entropy(z, labels).sum(), ((z > 0) == (labels > 0.5)).sum()

    def set_learning_rate(self, learning_rate: float) -> None:
        self.state.opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)

    def validate(self, session):
        sums = [self.evaluate_batch(self.state, images, labels[:, 0])
                for images, labels in EvalBatches(session.val_x, session.val_y, VALIDATION_BATCH)]
        loss_sum, correct = (sum(float(value) for value in column) for column in zip(*jax.device_get(sums)))  # one wait
        return loss_sum / len(session.val_x), correct / len(session.val_x)

    def fit(self, session):
        checkpoint = session.checkpoint_dir / "jax.npz"
        start = 0
        if checkpoint.exists():
            with np.load(checkpoint) as saved:
                leaves = [saved[f"leaf{i}"] for i in range(len(saved.files) - 1)]
                start = int(saved["epochs_done"])
            self.state = jax.tree.unflatten(jax.tree.structure(self.state), [jnp.asarray(leaf) for leaf in leaves])
        for epoch in range(start, self.train.epochs):
            session.epoch_begin(epoch)
            self.set_learning_rate(session.learning_rate(epoch))
            steps = []
            for images, labels in session.batches.epoch(epoch):
                self.state, loss, accuracy = self.train_step(self.state, images, labels[:, 0])
                steps.append((loss, accuracy))
            train_loss, train_accuracy = np.mean(jax.device_get(steps), axis=0)
            session.validation_begin(epoch)
            val_loss, val_accuracy = self.validate(session)
            session.epoch_end(epoch, {"train_loss": train_loss, "train_accuracy": train_accuracy,
                                      "val_loss": val_loss, "val_accuracy": val_accuracy})
            leaves = {f"leaf{i}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(self.state))}
            partial_file = checkpoint.with_suffix(".partial.npz")
            np.savez(partial_file, epochs_done=epoch + 1, **leaves)
            os.replace(partial_file, checkpoint)  # after the history entry: a kill in between re-runs this epoch

    # Adapters for the equivalence tests (canonical weights, one step, one forward pass).
    def weights(self):
        return {name: np.asarray(value) for name, value in {**self.state.params, **self.state.stats}.items()}

    def forward(self, x, training):
        z, stats = logits(self.state.params, self.state.stats, jnp.asarray(x), self.spec, training,
                          jax.random.fold_in(self.dropout_root, 0))
        if training:  # like Keras' model(x, training=True), a training-mode pass moves the statistics
            self.state = self.state._replace(stats={**self.state.stats, **stats})
        return np.asarray(jax.nn.sigmoid(z))

    def train_batch(self, x, y, learning_rate):
        self.set_learning_rate(learning_rate)
        self.state, _, _ = self.train_step(self.state, x, y[:, 0])

    def save(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / MODEL_FILE, **self.weights())
        self.spec.save(directory)  # the weights need the architecture to be loaded


def load_predictor(directory: Path, threads: int = 0):
    """A function from float images (B, S, S, 3) to class-1 probabilities (B,)."""
    runtime.configure(threads, seed=0)
    spec = architectures.load(directory)
    with np.load(directory / MODEL_FILE) as saved:
        params, stats = split_weights({name: saved[name] for name in saved.files})
    predict = jax.jit(lambda x: jax.nn.sigmoid(logits(params, stats, x, spec, False)[0]))
    return lambda x: np.asarray(predict(x))
