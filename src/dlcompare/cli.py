"""`dlcompare`: one command per pipeline stage (dvc.yaml calls these).

Stage modules are imported inside each command so `dlcompare --help` starts
instantly and never loads a deep-learning framework.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import List

import typer

from dlcompare.errors import Terminated, UserError, on_sigterm, raise_if_terminated
from dlcompare.frameworks import NAMES

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="Parameters file (sections mirror the stages).")


class App(typer.Typer):
    """Typer app that turns user mistakes into one line on stderr and a non-zero exit."""

    def __call__(self, *args, **kwargs):
        # SIGTERM (a scheduler, `kill`, DVC stopping a queued run) unwinds like Ctrl-C, so half-built outputs are
        # removed instead of left behind.
        signal.signal(signal.SIGTERM, on_sigterm)
        sys.unraisablehook = _quiet_when_terminated
        if os.environ.get("DLCOMPARE_DIE_WITH_PARENT"):  # a cluster cell's stage: it stops when its node's task dies
            from dlcompare.lifetime import die_with_parent

            die_with_parent(signal.SIGTERM)
        try:
            try:
                return super().__call__(*args, **kwargs)
            finally:
                raise_if_terminated()  # a SIGTERM whose exception Python dropped after the last commit still ends 143
        except UserError as error:
            print(f"dlcompare: error: {error}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("dlcompare: interrupted", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print("dlcompare: terminated; nothing half-written was kept", file=sys.stderr)
            sys.exit(143)


def _quiet_when_terminated(unraisable, default=sys.unraisablehook):
    # A Terminated raised inside a __del__ is dropped by Python; errors.on_sigterm remembered it, so the
    # command still ends with its one line instead of an "Exception ignored" traceback.
    if not isinstance(unraisable.exc_value, Terminated):
        default(unraisable)


app = App(
    help="Train the same network (model.preset: a plain CNN or a ResNet) on Dogs vs Cats in several frameworks and compare them.\n\n"
    "Stages run in this order (dvc repro runs them for you): check, fetch, prepare, train, evaluate, speed, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: the rich layout prints type columns such as "<bool>" for --help itself.
    rich_markup_mode=None,
)


@app.command()
def check(params: Path = PARAMS_OPTION) -> None:
    """Validate params.yaml, and that every framework in train.frameworks is registered, installed and builds
    model.preset (dvc repro runs it first)."""
    from dlcompare.params import load_params

    loaded = load_params(params)
    typer.echo(f"{params}: valid; frameworks {', '.join(loaded.train.frameworks)} registered, installed and "
               f"implementing model.preset {loaded.model.preset}")


@app.command()
def fetch(
    params: Path = PARAMS_OPTION,
    out: Path = typer.Option(Path("data/raw"), help="Where the raw archive or folder is placed."),
) -> None:
    """Get the raw photos into data/raw/ (download, Kaggle, or a local zip/folder; see data.source)."""
    from dlcompare.data.fetch import fetch as run_fetch
    from dlcompare.params import load_params

    placed = run_fetch(load_params(params).data, out)
    typer.echo(f"fetched {placed}")


@app.command()
def prepare(
    params: Path = PARAMS_OPTION,
    raw: Path = typer.Option(Path("data/raw"), help="Output of fetch: an archive or a folder."),
    out: Path = typer.Option(Path("data/prepared"), help="Where the split arrays and manifest go."),
    metrics: Path = typer.Option(Path("metrics/data.json"), help="Counts of kept and dropped files."),
) -> None:
    """Decode, validate, de-duplicate and split the photos into uint8 arrays (prepare.*)."""
    from dlcompare.params import load_params
    from dlcompare.prepare import prepare as run_prepare

    result = run_prepare(raw, out, metrics, load_params(params).prepare)
    dropped = ", ".join(f"{reason} {count}" for reason, count in result["dropped"].items()) or "none"
    typer.echo(
        f"kept {result['images_kept']:,} of {result['files_seen']:,} files (dropped: {dropped});"
        f" {result['images_per_s']:,.0f} images/s"
    )


FRAMEWORK_OPTION = typer.Option(..., "--framework", "-f", help=f"One of: {', '.join(NAMES)}.")
SEED_OPTION = typer.Option(..., "--seed", "-s", help="Seed of the run: initial weights, batch order, augmentation, dropout.")


@app.command()
def train(framework: str = FRAMEWORK_OPTION, seed: int = SEED_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Train one framework with one seed on the prepared arrays (model.*, train.*); resumes after an interruption."""
    from dlcompare.params import load_params
    from dlcompare.train import train as run_train

    result = run_train(framework, seed, load_params(params))
    typer.echo(
        f"{framework}-{seed}: val accuracy {result['val_accuracy']:.4f}, first epoch {result['seconds']['first_epoch']:.1f} s,"
        f" then {result['seconds']['epoch_median']:.1f} s per epoch ({result['images_per_s']:.0f} images/s)"
    )


@app.command()
def evaluate(framework: str = FRAMEWORK_OPTION, seed: int = SEED_OPTION, params: Path = PARAMS_OPTION) -> None:
    """Test-set metrics, per-image predictions and latency of one trained model (evaluate.*)."""
    from dlcompare.evaluate import evaluate as run_evaluate
    from dlcompare.params import load_params

    result = run_evaluate(framework, seed, load_params(params))
    typer.echo(
        f"{framework}-{seed}: test accuracy {result['accuracy']:.4f} (n={result['n_test']}), ROC AUC {result['roc_auc']:.4f},"
        f" {result['latency_ms_p50']:.1f} ms per image, {result['images_per_s']:.0f} images/s batched"
    )


@app.command()
def speed(params: Path = PARAMS_OPTION) -> None:
    """Speed verdicts from interleaved rounds: each framework once per round in a fresh process (speed.*)."""
    from dlcompare.params import load_params
    from dlcompare.speed import speed as run_speed

    result = run_speed(load_params(params), params_file=params, echo=typer.echo)
    for figure in ("train_images_per_s", "inference_images_per_s", "latency_ms"):
        for pair in result[figure]["pairs"].values():
            typer.echo(pair["sentence"])
    typer.echo(f"speed: {result['cost_seconds']:.0f} s; speed/rounds.csv, speed/verdicts.json, metrics/speed.json")


@app.command()
def compare(params: Path = PARAMS_OPTION) -> None:
    """Statistics across frameworks and seeds, figures and reports/comparison.md (needs every evaluate@ run)."""
    from dlcompare.compare import compare as run_compare
    from dlcompare.params import load_params

    result = run_compare(load_params(params))
    for pair in result["pairs"].values():
        typer.echo(pair["verdict"])
    if not result["pairs"]:
        (name, entry), = result["frameworks"].items()
        typer.echo(f"{name}: test accuracy {entry['accuracy_mean']:.4f}; a comparison needs a second framework in train.frameworks")
    typer.echo("report: reports/comparison.md, figures: plots/compare/, metrics: metrics/compare.json")


@app.command()
def diff(
    a: str = typer.Argument("HEAD", help="The revision before: a commit, branch, tag or `dvc exp` name."),
    b: str = typer.Argument("workspace", help="The revision after (default: the workspace as it is)."),
    markdown: Path = typer.Option(Path("reviews/diff.md"), help="Where the markdown (a pull-request comment) is written."),
    ab: Path = typer.Option(Path("reviews/ab.json"), help="`dlcompare ab`'s interleaved rounds, used for the speed "
                            "verdicts when they timed these two revisions."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit 2 when a framework is worse beyond review.tolerance, with confidence."),
    params: Path = PARAMS_OPTION,
) -> None:
    """What changed from A to B, per framework: accuracy paired by seed and test image, and speed (verdicts only
    from interleaved A/B rounds); review.tolerance decides what is a regression."""
    from dlcompare.params import load_params
    from dlcompare.review import diff as run_diff, table, write_markdown

    tolerance = load_params(params).review.tolerance
    result = run_diff(Path.cwd(), a, b, tolerance.accuracy_points, tolerance.speed_ratio, ab)
    write_markdown(markdown, result)
    typer.echo(table(result))
    typer.echo(f"markdown: {markdown}")
    if fail_on_regression and result["regressions"]:
        raise typer.Exit(2)


@app.command()
def ab(
    a: str = typer.Argument("HEAD", help="Side A: a commit, branch, tag or `dvc exp` name (its code, params and lock)."),
    b: str = typer.Argument("workspace", help="Side B (default: the workspace as it is). `ab HEAD HEAD` is the A/A check."),
    frameworks: str = typer.Option(None, help="Comma-separated frameworks to time (default: train.frameworks)."),
    lock_a: Path = typer.Option(None, help="Pins for side A instead of its frameworks.lock (a framework version study)."),
    lock_b: Path = typer.Option(None, help="Pins for side B instead of its frameworks.lock."),
    rounds: int = typer.Option(None, min=2, help="A/B rounds (default: review.rounds)."),
    envs: Path = typer.Option(None, help="Where the per-version package overlays are kept (default: ~/.cache/dlcompare/envs)."),
    out: Path = typer.Option(Path("reviews/ab.json"), help="Every round and the verdicts (`dlcompare diff` reads it)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Output of prepare: both sides time the same batches."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Time two revisions (or two framework versions) in interleaved rounds, A B then B A, each side a fresh process
    per framework; the round pair is the unit of the verdict (speed.* sizes each measurement)."""
    from dlcompare.ab import ab as run_ab
    from dlcompare.params import load_params

    settings = load_params(params)
    names = frameworks.split(",") if frameworks else list(settings.train.frameworks)
    result = run_ab(Path.cwd(), a, b, names, rounds or settings.review.rounds, prepared, settings.prepare.image_size,
                    out, lock_a, lock_b, envs, settings.review.tolerance.speed_ratio, echo=typer.echo)
    for side in ("a", "b"):
        env = result[side]["environment"]
        where = (f"overlay {env['overlay']} ({env['mb']:.0f} MB, " +
                 ("reused)" if env["reused"] else f"built in {env['build_seconds']:.0f} s)")) if env["overlay"] else "this environment"
        versions = ", ".join(f"{p} {v}" for p, v in result[side]["versions"].items())
        typer.echo(f"{side.upper()} = {result[side]['label']}: {versions}; {where}")
    for framework, verdict in result["verdicts"].items():
        typer.echo(f"{framework} training: {verdict['sentence']}")
    typer.echo(f"ab: {result['seconds']:.0f} s; {out}")


@app.command()
def predict(
    images: List[Path] = typer.Argument(..., metavar="IMAGE", help="Image files to classify (one or more)."),
    params: Path = PARAMS_OPTION,
) -> None:
    """Classify images with every trained model under models/: one tab-separated line per image and model."""
    from dlcompare.params import load_params
    from dlcompare.predict import predict as run_predict

    def show_timing(run: str, load_seconds: float, predict_seconds: float) -> None:
        typer.echo(f"{run}: loaded in {load_seconds:.1f} s (framework import included), "
                   f"predicted {len(images)} image(s) in {predict_seconds:.2f} s", err=True)

    rows = run_predict(images, load_params(params), on_timing=show_timing)
    typer.echo("image\tmodel\tlabel\tprobability_of_label")
    for row in rows:
        typer.echo(f"{row['image']}\t{row['model']}\t{row['label']}\t{row['probability']:.3f}")


cluster_app = typer.Typer(help="Run the train/evaluate matrix on a Ray cluster, with DVC's remote as the shared record.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("run")
def cluster_run(
    address: str = typer.Option("auto", help="Ray cluster: auto (this node's cluster), host:port, or ray://host:10001."),
    set_: List[str] = typer.Option([], "--set-param", "-S", metavar="KEY=VALUE",
                                   help="Change params.yaml first, as dvc exp run -S does (repeatable)."),
    git_remote: str = typer.Option("origin", help="Git remote the nodes clone the commit from (HEAD must be pushed)."),
    retries: int = typer.Option(1, min=0, help="Times a cell is retried on another node when its node dies."),
    cpus_per_cell: int = typer.Option(None, min=1, help="CPUs a cell reserves; default: the smallest node's, so one cell per node."),
    gpus_per_cell: int = typer.Option(0, min=0, help="GPUs a cell reserves (Ray hands it only those: CUDA_VISIBLE_DEVICES), so "
                                                     "no two cells share a GPU; 0 = CPU cells."),
    workdir: str = typer.Option(None, help="Scratch folder on each node for the cells' clones (default: the system temp folder)."),
) -> None:
    """Train and evaluate every missing framework x seed cell on a Ray cluster, then dvc repro --pull here.

    Needs: the project committed and pushed to git, and a default DVC remote every node can reach (credentials from
    each node's environment, never from git). Run it again after a failure: only the missing cells run."""
    from dlcompare.cluster import run as run_cluster

    run_cluster(address, set_, git_remote, retries, cpus_per_cell, workdir, gpus_per_cell, echo=typer.echo)


if __name__ == "__main__":
    app()
