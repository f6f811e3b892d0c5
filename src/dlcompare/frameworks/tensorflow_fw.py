"""Low-level TensorFlow 2, no Keras: each architecture as a `tf.Module` of `tf.Variable`s.

Convolution, pooling, batch normalisation (with its own moving statistics),
residual blocks, dropout and the Adam update are written with `tf.nn` /
`tf.math` ops, and one training step is a `tf.function` around a
`tf.GradientTape`. The constants are the ones the Keras run uses, so the two
differ only in the framework; every formula is written out, which is why this
file is the reference of the equivalence tests. Checkpoints are
`tf.train.CheckpointManager`; the model is a SavedModel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcompare.batches import EvalBatches
import tensorflow as tf

from dlcompare.frameworks import runtime_tensorflow as runtime
from dlcompare.frameworks.base import VALIDATION_BATCH, Framework

# Plugs this file into the shared harness; counted apart from its own lines (dlcompare/effort.py).
HARNESS_ADAPTERS = ('weights', 'forward', 'train_batch')


# ---- model: the network, written as a TensorFlow user would write it
class Network(tf.Module):
    """A variable per canonical weight name, and the forward pass of the spec's preset."""

    def __init__(self, spec, weights: dict[str, np.ndarray]):
        super().__init__(name=f"dlcompare_{spec.preset}")
        self.spec = spec
        self.variables_by_name = {
            name: tf.Variable(value, trainable="moving_" not in name, name=name.replace("/", "_"))
            for name, value in weights.items()
        }
        self.body = {"plain_cnn": self.plain_cnn, "resnet": self.resnet}[spec.preset]

    def trainable(self) -> list[tf.Variable]:
        return [v for name, v in self.variables_by_name.items() if "moving_" not in name]

    def batch_norm(self, x, name, training):
        v, spec = self.variables_by_name, self.spec
        if training:
            mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
            for stat, value in (("moving_mean", mean), ("moving_variance", variance)):
                moving = v[f"{name}/bn/{stat}"]
                moving.assign(moving * spec.bn_momentum + value * (1.0 - spec.bn_momentum))
        else:
            mean, variance = v[f"{name}/bn/moving_mean"], v[f"{name}/bn/moving_variance"]
        return tf.nn.batch_normalization(x, mean, variance, v[f"{name}/bn/beta"], v[f"{name}/bn/gamma"], spec.bn_epsilon)

    def conv_norm(self, x, conv, training):
        """Convolution padded conv.padding on every side, then batch norm (or a bias)."""
        p, v = conv.padding, self.variables_by_name
        # At stride 1 "SAME" is that padding (odd kernels) and oneDNN's usual path; explicit padding there trained the
        # plain CNN at 278 against 405-419 images/s (single runs, not interleaved; docs/journal/2026-12-02-resnet.md).
        # At stride 2 "SAME" pads one side only.
        padding = "SAME" if conv.stride == 1 else [[0, 0], [p, p], [p, p], [0, 0]]
        x = tf.nn.conv2d(x, v[f"{conv.name}/kernel"], strides=conv.stride, padding=padding)
        return self.batch_norm(x, conv.name, training) if self.spec.batch_norm else tf.nn.bias_add(x, v[f"{conv.name}/bias"])

    def plain_cnn(self, x, training):
        for block in self.spec.blocks():
            for conv in block:
                x = tf.nn.relu(self.conv_norm(x, conv, training))
            x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")
        return tf.reduce_mean(x, axis=[1, 2]) if self.spec.head == "global_avg" else tf.reshape(x, [tf.shape(x)[0], -1])

    def residual_block(self, x, block, training):
        y = tf.nn.relu(self.conv_norm(x, block.conv0, training))
        y = self.conv_norm(y, block.conv1, training)
        shortcut = self.conv_norm(x, block.shortcut, training) if block.shortcut else x
        return tf.nn.relu(y + shortcut)

    def resnet(self, x, training):
        x = tf.nn.relu(self.conv_norm(x, self.spec.stem(), training))
        for block in self.spec.residual_blocks():
            x = self.residual_block(x, block, training)
        return tf.reduce_mean(x, axis=[1, 2])

    def logits(self, x, training, dropout_seed=None):
        v, spec = self.variables_by_name, self.spec
        x = self.body(x, training)
        if spec.dense_units:
            x = tf.nn.relu(tf.matmul(x, v["dense/kernel"]) + v["dense/bias"])
        if training and spec.dropout > 0:
            x = tf.nn.experimental.stateless_dropout(x, rate=spec.dropout, seed=dropout_seed)
        return tf.matmul(x, v["output/kernel"]) + v["output/bias"]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def predict(self, images):
        """Class-1 probabilities; the serving signature of the SavedModel."""
        return tf.sigmoid(self.logits(images, training=False))[:, 0]


# ---- training: optimiser, loop, saving and loading
class Adam(tf.Module):
    """Adam exactly as Keras 3 applies it (epsilon added to sqrt(v), bias correction folded into the step)."""

    def __init__(self, variables, beta_1, beta_2, epsilon):
        super().__init__(name="adam")
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.learning_rate = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="learning_rate")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(self, gradients, variables):
        step = tf.cast(self.iterations + 1, tf.float32)
        alpha = self.learning_rate * tf.sqrt(1.0 - self.beta_2**step) / (1.0 - self.beta_1**step)
        for g, var, m, v in zip(gradients, variables, self.m, self.v):
            m.assign_add((g - m) * (1.0 - self.beta_1))
            v.assign_add((tf.square(g) - v) * (1.0 - self.beta_2))
            var.assign_sub(m * alpha / (tf.sqrt(v) + self.epsilon))
        self.iterations.assign_add(1)


def mean_loss(logits, labels):
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


class Implementation(Framework):
    def build(self, weights):
        self.runtime = runtime.configure(self.train.threads, self.seed)
        self.model = Network(self.spec, weights)
        t = self.train
        self.optimizer = Adam(self.model.trainable(), t.adam_beta_1, t.adam_beta_2, t.adam_epsilon)
        self.step = tf.function(self._step, jit_compile=runtime.JIT_COMPILE)
        self.evaluate_batch = tf.function(self._evaluate_batch, jit_compile=runtime.JIT_COMPILE)

    def _step(self, images, labels):
        dropout_seed = tf.stack([tf.constant(self.seed, tf.int64), self.optimizer.iterations])
        with tf.GradientTape() as tape:
            logits = self.model.logits(images, training=True, dropout_seed=dropout_seed)
            loss = mean_loss(logits, labels)
        variables = self.model.trainable()
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels), tf.float32))
        return loss, correct

    def _evaluate_batch(self, images, labels):
        logits = self.model.logits(images, training=False)
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(correct)

    def weights(self):
        return {name: v.numpy() for name, v in self.model.variables_by_name.items()}

    def forward(self, x, training):
        return tf.sigmoid(self.model.logits(tf.constant(x), training=training, dropout_seed=[self.seed, 0]))[:, 0].numpy()

    def train_batch(self, x, y, learning_rate):
        self.optimizer.learning_rate.assign(learning_rate)
        self.step(tf.constant(x), tf.constant(y))

    def validate(self, session):
        sums = [self.evaluate_batch(images, labels) for images, labels in EvalBatches(session.val_x, session.val_y, VALIDATION_BATCH)]
        loss_sum, correct_sum = (sum(float(value) for value in column) for column in zip(*sums))  # read after the last batch
        return loss_sum / len(session.val_x), correct_sum / len(session.val_x)

    def fit(self, session):
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epochs_done=epoch)
        manager = tf.train.CheckpointManager(checkpoint, str(session.checkpoint_dir / "tensorflow"), max_to_keep=2)
        checkpoint.restore(manager.latest_checkpoint)
        for e in range(int(epoch.numpy()), self.train.epochs):
            session.epoch_begin(e)
            self.optimizer.learning_rate.assign(session.learning_rate(e))
            losses, accuracies = [], []
            for images, labels in session.batches.epoch(e):
                loss, accuracy = self.step(images, labels)
                losses.append(loss)
                accuracies.append(accuracy)
            train_loss, train_accuracy = np.mean(losses), np.mean(accuracies)  # read once, after the epoch's last step
            session.validation_begin(e)
            val_loss, val_accuracy = self.validate(session)
            session.epoch_end(e, {
                "train_loss": train_loss, "train_accuracy": train_accuracy,
                "val_loss": val_loss, "val_accuracy": val_accuracy,
            })
            epoch.assign(e + 1)
            manager.save()  # after the history entry: a kill in between re-runs this epoch

    def save(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        tf.saved_model.save(self.model, str(directory), signatures={"serving_default": self.model.predict})


def load_predictor(directory: Path, threads: int = 0):
    """A function from float images (B, S, S, 3) to class-1 probabilities (B,)."""
    runtime.configure(threads, seed=0)
    loaded = tf.saved_model.load(str(directory))
    return lambda x: loaded.predict(tf.constant(x)).numpy()
