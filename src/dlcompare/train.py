"""Stage `train@<framework>-<seed>`: train one framework with one seed.

Everything that is not the framework's own business happens here, the same
way for every framework: reading the prepared arrays, the canonical initial
weights, the batch iterator, the checkpoint directory (and whether its
checkpoint belongs to this configuration), dvclive curves, timing and memory.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import statistics
import time
from pathlib import Path

from dlcompare import frameworks
from dlcompare.atomic import building_dir, write_json
from dlcompare.batches import TrainBatches
from dlcompare.effort import coding_effort
from dlcompare.errors import UserError
from dlcompare.machine import machine
from dlcompare import architectures
from dlcompare.params import FRAMEWORKS, Params
from dlcompare.prepared import load_info, load_split


def run_name(framework: str, seed: int) -> str:
    return f"{framework}-{seed}"


def framework_and_seed(run: str) -> tuple[str, int]:
    """run_name's inverse (framework names hold dashes; the seed is after the last)."""
    framework, seed = run.rsplit("-", 1)
    return framework, int(seed)


# Each epoch-history key -> the dvclive metric it is logged as (dvclive/<run>/plots/metrics/<name>.tsv), which
# compare reads back. train_seconds: the epoch's training only, validation excluded.
DVCLIVE_METRICS = {"train_loss": "train/loss", "train_accuracy": "train/accuracy", "val_loss": "val/loss",
                   "val_accuracy": "val/accuracy", "learning_rate": "learning_rate", "train_seconds": "time/epoch_seconds"}


def _fingerprint(params: Params, framework: str, seed: int, prepared: Path) -> str:
    """What a checkpoint must have been trained with to be resumed: params, data and code."""
    package = Path(__file__).parent
    code = [path for path in frameworks.dependency_files(framework).values() if isinstance(path, Path)]
    identity = {
        "framework": framework, "seed": seed, "model": params.model.model_dump(),
        "train": params.train.model_dump(exclude={"frameworks", "seeds"}),
        "prepare": params.prepare.model_dump(),
        "manifest": hashlib.sha256((prepared / "manifest.csv").read_bytes()).hexdigest(),
        "code": {str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest() for path in code},
        "versions": frameworks.installed_versions(framework),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _checkpoint_dir(directory: Path, fingerprint: str) -> Path:
    """The run's checkpoint folder, emptied if it holds another configuration's checkpoint."""
    stamp = directory / "fingerprint.txt"
    if directory.exists() and (not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return directory


def _log_curves(directory: Path, history: list[dict]) -> None:
    """The run's per-epoch curves through dvclive: the one per-epoch history (compare reads it back).

    Written once, from the finished history: a run killed between an epoch's history entry and its
    checkpoint repeats that epoch, and live logging would have drawn it twice. dvclive writes no
    dvc.yaml or experiment of its own here: dvc.yaml declares this folder as the stage's output.
    """
    from dvclive import Live

    with Live(dir=str(directory), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for record in history:
            for key, name in DVCLIVE_METRICS.items():
                live.log_metric(name, record[key])
            live.next_step()


ACCURACY_TARGETS = (0.80, 0.85, 0.88)


def time_to_accuracy(history: list[dict], targets=ACCURACY_TARGETS) -> dict[str, float | None]:
    """Training seconds (first epoch's compile included, validation excluded) until validation accuracy first
    reaches each target; None where the run never reached it."""
    reached, elapsed = {}, 0.0
    for record in history:
        elapsed += record["train_seconds"]
        for target in targets:
            if f"{target:.2f}" not in reached and record["val_accuracy"] >= target:
                reached[f"{target:.2f}"] = round(elapsed, 3)
    return {f"{target:.2f}": reached.get(f"{target:.2f}") for target in targets}


def steady_epochs(epoch_seconds: list[float]) -> list[float]:
    """The epochs that measure steady-state speed: all but the first (tracing, compilation), unless there is only one."""
    return epoch_seconds[1:] or epoch_seconds


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def train(framework: str, seed: int, params: Params, prepared: Path = Path("data/prepared"),
          models: Path = Path("models"), checkpoints: Path = Path("checkpoints"),
          metrics_dir: Path = Path("metrics/train"), curves_dir: Path = Path("dvclive")) -> dict:
    if framework not in FRAMEWORKS:
        raise UserError(f"--framework {framework!r} is not one of {', '.join(FRAMEWORKS)}")
    run = run_name(framework, seed)
    started = time.perf_counter()
    load_info(prepared, params.prepare.image_size)
    x_train, y_train = load_split(prepared, "train")
    x_val, y_val = load_split(prepared, "val")
    if len(x_val) == 0:
        raise UserError("the validation split is empty; set prepare.val_fraction above 0")
    augment = params.train.augment
    try:
        batches = TrainBatches(x_train, y_train, params.train.batch_size, seed, augment.flip, augment.shift)
    except ValueError as error:
        raise UserError(f"train.batch_size = {params.train.batch_size}: {error}") from None
    data_seconds = time.perf_counter() - started

    started = time.perf_counter()
    module = frameworks.load(framework, params.train.threads, params.train.precision)
    import_seconds = time.perf_counter() - started

    started = time.perf_counter()
    spec = architectures.from_params(params)
    implementation = module.Implementation(spec, params.train, seed)
    implementation.build(spec.initial_weights(seed))
    build_seconds = time.perf_counter() - started

    from dlcompare.frameworks.base import TrainingSession

    epoch_seconds: list[float] = []

    def show_epoch(epoch: int, record: dict) -> None:
        # One plain line per epoch (readable in a terminal and in dvc's logs alike); the ETA is the median epoch so
        # far times the epochs left, so the first epoch's compile time does not inflate it.
        epoch_seconds.append(record["seconds"])
        left = params.train.epochs - epoch - 1
        eta = f", about {_duration(statistics.median(epoch_seconds) * left)} left" if left else ""
        print(f"{run} epoch {epoch + 1}/{params.train.epochs}: loss {record['train_loss']:.4f}"
              f" acc {record['train_accuracy']:.4f} val_loss {record['val_loss']:.4f}"
              f" val_acc {record['val_accuracy']:.4f} ({record['seconds']:.1f} s{eta})", flush=True)

    session = TrainingSession(
        train=params.train, seed=seed, batches=batches, val_x=x_val, val_y=y_val,
        checkpoint_dir=_checkpoint_dir(checkpoints / run, _fingerprint(params, framework, seed, prepared)),
        on_epoch=show_epoch,
    )
    session.load_history()
    if session.history:
        # The history can be one epoch ahead of the checkpoint (a kill between the two writes): that epoch is trained again.
        print(f"resuming {run} from its last checkpoint in {session.checkpoint_dir} ({len(session.history)} of "
              f"{params.train.epochs} epochs recorded)", flush=True)
    implementation.fit(session)
    history = session.ordered_history()

    _log_curves(curves_dir / run, history)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    device_mb = frameworks.runtime(frameworks.REGISTRY[framework].runtime).peak_device_mb()
    # Keras' saving imports TensorFlow on every backend where it is installed (0.7 GB, and C++ start-up lines on
    # stderr); training did not need it, so the peak is taken before and those lines are hidden.
    with building_dir(models / run) as directory, frameworks.native_stderr_hidden():
        implementation.save(directory)

    train_seconds = [record["train_seconds"] for record in history]
    epoch_median = statistics.median(steady_epochs(train_seconds))
    final = history[-1]
    metrics = {
        "epochs": len(history),
        "train_loss": final["train_loss"],
        "train_accuracy": final["train_accuracy"],
        "val_loss": final["val_loss"],
        "val_accuracy": final["val_accuracy"],
        "seconds": {
            "data": round(data_seconds, 3),
            "import": round(import_seconds, 3),
            "build": round(build_seconds, 3),
            "first_epoch": round(train_seconds[0], 3),
            "epoch_median": round(epoch_median, 3),
            "train": round(sum(record["seconds"] for record in history), 3),
        },
        "images_per_s": round(batches.steps * batches.batch_size / epoch_median, 1),
        "time_to_accuracy": time_to_accuracy(history),
        "images_per_epoch": batches.steps * batches.batch_size,
        "peak_rss_mb": round(peak_rss_mb, 1),
        **({"peak_device_mb": round(device_mb, 1)} if device_mb is not None else {}),  # a GPU's, where one was used
        "params": spec.parameter_count(),
        "flops_per_image": spec.flops_per_image(),
        "statements": coding_effort(frameworks.source_file(framework)),  # model, training_loop, adapters
        "runtime": implementation.runtime,
        "versions": frameworks.installed_versions(framework),
        "precision": params.train.precision,
        "machine": machine(),
    }
    write_json(metrics_dir / f"{run}.json", metrics)
    return metrics
