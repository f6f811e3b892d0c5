"""Keras 3: each architecture with the Functional API, trained with `compile` + `fit`.

This is the whole Keras implementation, on whichever backend `KERAS_BACKEND`
names (the registry sets it: keras, keras-jax, keras-torch); its length is the
coding effort the comparison reports. Checkpoints are Keras' own
`BackupAndRestore`, the saved model a `.keras` file any backend can load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import keras

from dlcompare import frameworks
from dlcompare.batches import EvalBatches
from dlcompare.frameworks.base import VALIDATION_BATCH, Framework, TrainingSession

# Plugs this file into the shared harness; counted apart from its own lines (dlcompare/effort.py).
HARNESS_ADAPTERS = ('layer_name', 'layer_variables', 'tf_data_batches', 'PyDatasetBatches', 'SessionCallback', 'weights', 'forward', 'train_batch')

MODEL_FILE = "model.keras"
runtime = frameworks.runtime(keras.backend.backend())  # threads, seeds, determinism of the engine underneath


# ---- model: the network, written as a Keras user would write it
def layer_name(canonical: str) -> str:
    """Keras layer names cannot hold '/': block0/conv0 is the layer block0_conv0."""
    return canonical.replace("/", "_")


def conv_norm(x, conv, spec):
    """Convolution padded conv.padding on every side, then batch norm (or a bias)."""
    name = layer_name(conv.name)
    if conv.stride > 1 and conv.padding:  # "same" would pad only the bottom and right at stride 2
        x = keras.layers.ZeroPadding2D(conv.padding, name=f"{name}_pad")(x)
    padding = "same" if conv.stride == 1 else "valid"  # at stride 1 (odd kernels) "same" is conv.padding per side
    x = keras.layers.Conv2D(conv.out_channels, conv.kernel_size, strides=conv.stride, padding=padding,
                            use_bias=not spec.batch_norm, name=name)(x)
    if spec.batch_norm:
        x = keras.layers.BatchNormalization(momentum=spec.bn_momentum, epsilon=spec.bn_epsilon, name=f"{name}_bn")(x)
    return x


def plain_cnn(x, spec):
    for block in spec.blocks():
        for conv in block:
            x = keras.layers.ReLU()(conv_norm(x, conv, spec))
        x = keras.layers.MaxPooling2D(pool_size=2)(x)
    return keras.layers.GlobalAveragePooling2D()(x) if spec.head == "global_avg" else keras.layers.Flatten()(x)


def residual_block(x, block, spec):
    y = keras.layers.ReLU()(conv_norm(x, block.conv0, spec))
    y = conv_norm(y, block.conv1, spec)
    shortcut = conv_norm(x, block.shortcut, spec) if block.shortcut else x
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def resnet(x, spec):
    x = keras.layers.ReLU()(conv_norm(x, spec.stem(), spec))
    for block in spec.residual_blocks():
        x = residual_block(x, block, spec)
    return keras.layers.GlobalAveragePooling2D()(x)


BODIES = {"plain_cnn": plain_cnn, "resnet": resnet}


def build_model(spec, seed: int | None = None) -> keras.Model:
    images = keras.Input(shape=(spec.image_size, spec.image_size, 3))
    x = BODIES[spec.preset](images, spec)
    if spec.dense_units:
        x = keras.layers.Dense(spec.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(spec.dropout, seed=seed, name="dropout")(x)
    probability = keras.layers.Dense(1, activation="sigmoid", name="output")(x)
    return keras.Model(images, probability, name=f"dlcompare_{spec.preset}")


# ---- training: optimiser, loop, saving and loading
def layer_variables(model: keras.Model, spec) -> dict[str, keras.Variable]:
    """Canonical weight name -> Keras variable, for every canonical name of the spec."""
    found = {}
    for name in spec.shapes():
        layer, _, attribute = name.rpartition("/")  # Keras' attributes are named like the canonical ones
        if layer.endswith("/bn"):
            layer = layer.removesuffix("/bn") + "_bn"
        found[name] = getattr(model.get_layer(layer_name(layer)), attribute)
    return found


def tf_data_batches(batch, count: int, image_size: int):
    """On TensorFlow: a tf.data pipeline over `count` shared batches, `batch(i)` making the i-th.

    AUTOTUNE is switched off: on a 2-core machine its background threads
    competed with the training step and made about every other epoch twice as
    slow, in Keras' own adapters too (`fit` on a PyDataset or on NumPy
    arrays); a fixed prefetch of two batches keeps every epoch at full speed.
    """
    import tensorflow as tf

    signature = (tf.TensorSpec((None, image_size, image_size, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    dataset = tf.data.Dataset.from_generator(lambda: (batch(i) for i in range(count)), output_signature=signature)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options).apply(tf.data.experimental.assert_cardinality(count)).prefetch(2)


class PyDatasetBatches(keras.utils.PyDataset):
    """On JAX and PyTorch (no TensorFlow needed): the shared batches, fetched in order on the training thread."""

    def __init__(self, batch, count: int, image_size: int):
        super().__init__()
        self.batch, self.count = batch, count

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        return self.batch(index)


shared_batches = tf_data_batches if keras.backend.backend() == "tensorflow" else PyDatasetBatches


class SessionCallback(keras.callbacks.Callback):
    """Feeds `fit`'s epochs into the shared session, and pins what must not depend on history:
    the epoch's batches, its learning rate and its dropout random stream."""

    def __init__(self, session: TrainingSession):
        super().__init__()
        self.session, self.epoch = session, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch  # read by the training pipeline, which starts after this
        self.model.optimizer.learning_rate.assign(self.session.learning_rate(epoch))
        dropout = self.model.get_layer("dropout")
        if dropout.rate:
            state = dropout.seed_generator.state
            state.assign(keras.ops.convert_to_tensor([self.session.seed, epoch << 20], dtype=state.dtype))
        self.session.epoch_begin(epoch)

    def on_test_begin(self, logs=None):
        self.session.validation_begin(self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.session.epoch_end(epoch, {
            "train_loss": logs["loss"], "train_accuracy": logs["accuracy"],
            "val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"],
        })


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' own checkpoints, surviving a kill during the very first one.

    With `double_checkpoint` Keras falls back to the previous checkpoint when
    the latest was cut short, but a cut-short first checkpoint has nothing to
    fall back to and fit fails on every retry; then training starts over.
    """

    def on_train_begin(self, logs=None):
        start = [keras.ops.convert_to_numpy(v) for v in self.model.variables]
        try:
            super().on_train_begin(logs)
        except OSError:
            for variable, value in zip(self.model.variables, start):
                variable.assign(value)
            shutil.rmtree(self.backup_dir)


class Implementation(Framework):
    def build(self, weights):
        # The runtime seeds Python, NumPy and the engine; not keras.utils.set_random_seed, which imports
        # TensorFlow on every backend to seed it (0.7 GB on JAX and PyTorch, where nothing here uses it).
        self.runtime = runtime.configure(self.train.threads, self.seed)
        self.model = build_model(self.spec, self.seed)
        for name, variable in layer_variables(self.model, self.spec).items():
            variable.assign(weights[name])
        optimizer = keras.optimizers.Adam(
            learning_rate=self.train.learning_rate,
            beta_1=self.train.adam_beta_1,
            beta_2=self.train.adam_beta_2,
            epsilon=self.train.adam_epsilon,
        )
        self.model.compile(
            optimizer=optimizer,
            loss=keras.losses.BinaryCrossentropy(),
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
            jit_compile=runtime.JIT_COMPILE,
        )

    def weights(self):
        return {name: keras.ops.convert_to_numpy(variable) for name, variable in layer_variables(self.model, self.spec).items()}

    def forward(self, x, training):
        return keras.ops.convert_to_numpy(self.model(x, training=training))[:, 0]

    def train_batch(self, x, y, learning_rate):
        self.model.optimizer.learning_rate.assign(learning_rate)
        self.model.train_on_batch(x, y)

    def fit(self, session):
        progress = SessionCallback(session)
        size, batches = self.spec.image_size, session.batches
        training = shared_batches(lambda step: batches.batch(progress.epoch, step), batches.steps, size)
        validation = EvalBatches(session.val_x, session.val_y, VALIDATION_BATCH)
        self.model.fit(
            training,
            validation_data=shared_batches(validation.batch, len(validation), size),
            epochs=self.train.epochs,
            shuffle=False,  # the shared batches come shuffled, in the order every framework uses
            verbose=0,
            callbacks=[
                progress,
                BackupAndRestore(
                    str(session.checkpoint_dir / "keras"), delete_checkpoint=False, double_checkpoint=True
                ),
            ],
        )

    def save(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / MODEL_FILE)


def load_predictor(directory: Path, threads: int = 0):
    """A function from float images (B, S, S, 3) to class-1 probabilities (B,)."""
    runtime.configure(threads, seed=0)
    model = keras.saving.load_model(directory / MODEL_FILE)
    return lambda x: np.asarray(model.predict_on_batch(x))[:, 0]
