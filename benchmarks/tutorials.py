"""The pipeline a user of each framework would start from (the registry's `Tutorial`), timed on JPEGs of the
original size: keras-io's "Image classification from scratch", and PyTorch's Dataset + DataLoader."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from common import epoch_rates, settings
from dlcompare.machine import available_cores

# What each pipeline imports besides the framework it feeds: keras-io's image_dataset_from_directory returns a
# tf.data pipeline on every Keras backend, so a machine without TensorFlow (a GPU machine) cannot run it.
PIPELINE_NEEDS = {"keras-io": ("tensorflow",), "torch-loader": ("torch",)}


def _epoch_timer(times: list):
    import keras

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    return Timer()


def _tutorial_jpegs(source: Path, folder: Path, count: int) -> int:
    """<folder>/<class>/<name>.jpg at the original downloads' size: the shared 200x200 copies re-encoded at 500x375."""
    from PIL import Image

    with zipfile.ZipFile(source) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg")]
        chosen = [n for n in names if n.split("/")[-1].startswith("cat.")][: count // 2] + \
                 [n for n in names if n.split("/")[-1].startswith("dog.")][: count // 2]
        for name in chosen:
            label, file = name.split("/")[-1].split(".")[0], name.split("/")[-1]
            (folder / label).mkdir(exist_ok=True)
            Image.open(io.BytesIO(archive.read(name))).convert("RGB").resize((500, 375)).save(folder / label / file, quality=90)
    return len(chosen)


JPEG_SIZE = "500x375, re-encoded from the shared 200x200 images"


def child_tutorial(framework: str, source: Path, quick: bool) -> dict:
    """The keras-io "Image classification from scratch" pipeline, on JPEG files of the original size, on the
    Keras backend `framework` runs on (tensorflow's users would start from the same page, on TensorFlow)."""
    from dlcompare import frameworks, architectures

    params, sizes = settings(quick, [framework])
    frameworks.load(framework, params.train.threads, params.train.precision)  # sets KERAS_BACKEND before Keras is imported
    frameworks.runtime(frameworks.REGISTRY[framework].runtime).configure(params.train.threads, 0)
    import keras
    import tensorflow as tf  # image_dataset_from_directory returns a tf.data pipeline on every backend

    from dlcompare.frameworks.keras_fw import build_model

    size = params.prepare.image_size
    with tempfile.TemporaryDirectory() as folder:
        count = _tutorial_jpegs(source, Path(folder), sizes["tutorial_images"])
        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=params.train.batch_size, label_mode="binary", seed=0,
            verbose=False)
        shift = params.train.augment.shift
        # As keras-io does: each augmentation layer called in the tf.data map (a Sequential there works on
        # TensorFlow only; a single preprocessing layer switches to TensorFlow inside tf.data on every backend).
        augmentation = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomTranslation(shift, shift)]

        def augment(images):
            for layer in augmentation:
                images = layer(images)
            return images

        dataset = dataset.map(lambda x, y: (augment(x) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        model = build_model(architectures.from_params(params))
        model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate), loss="binary_crossentropy",
                      metrics=["accuracy"])
        times: list[float] = []
        model.fit(dataset, epochs=sizes["epochs"], verbose=0, callbacks=[_epoch_timer(times)])
    rate, _ = epoch_rates(times, count)
    return {"tutorial_images_per_s": rate, "images": count, "jpeg_size": JPEG_SIZE,
            "pipeline": f"keras-io on Keras' {keras.backend.backend()} backend: image_dataset_from_directory, "
                        "augmentation layers in a tf.data map, prefetch; fit"}


def child_loader_tutorial(framework: str, source: Path, quick: bool) -> dict:
    """The PyTorch tutorial pipeline (ImageFolder + DataLoader with PIL transforms) feeding `framework`'s own step.

    PyTorch's tutorials and JAX's ("training with PyTorch data loading") both read images this way. torchvision
    itself is not used: its PyPI wheels need a CUDA build of torch, and the CPU build is what runs here, so its
    ImageFolder and the three transforms are written out with PIL below, doing the same work per image.
    """
    import random

    from PIL import Image

    from dlcompare import frameworks, architectures
    from dlcompare.batches import to_float

    params, sizes = settings(quick, [framework])
    module = frameworks.load(framework, params.train.threads, params.train.precision)
    import torch
    from torch.utils.data import DataLoader, Dataset

    size, shift = params.prepare.image_size, params.train.augment.shift

    class ImageFolder(Dataset):
        def __init__(self, root: Path):
            self.classes = sorted(p.name for p in root.iterdir())
            self.samples = [(path, index) for index, name in enumerate(self.classes) for path in sorted((root / name).iterdir())]

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, i):
            path, label = self.samples[i]
            image = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)  # Resize
            if random.random() < 0.5:  # RandomHorizontalFlip
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            dx, dy = (round(random.uniform(-shift, shift) * size) for _ in range(2))  # RandomAffine(translate)
            image = image.transform(image.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy))
            return np.asarray(image), label

    spec = architectures.from_params(params)
    implementation = module.Implementation(spec, params.train, seed=0)
    implementation.build(spec.initial_weights(0))
    with tempfile.TemporaryDirectory() as folder:
        count = _tutorial_jpegs(source, Path(folder), sizes["tutorial_images"])
        loader = DataLoader(ImageFolder(Path(folder)), batch_size=params.train.batch_size, shuffle=True, drop_last=True,
                            num_workers=min(4, available_cores()), generator=torch.Generator().manual_seed(0))
        times = []
        for _ in range(sizes["epochs"]):
            started = time.perf_counter()
            for images, labels in loader:
                implementation.train_batch(to_float(images.numpy()), labels.numpy().astype(np.float32)[:, None],
                                           params.train.learning_rate)
            implementation.weights()  # waits for frameworks that dispatch asynchronously (JAX)
            times.append(time.perf_counter() - started)
    images_per_epoch = count - count % params.train.batch_size
    rate, _ = epoch_rates(times, images_per_epoch)
    return {"tutorial_images_per_s": rate, "images": images_per_epoch, "jpeg_size": JPEG_SIZE,
            "pipeline": "PyTorch tutorial: ImageFolder + DataLoader (PIL resize, flip, translate), the framework's step"}
