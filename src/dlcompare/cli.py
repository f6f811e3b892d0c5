"""`dlcompare`: one command per pipeline stage (dvc.yaml calls these).

Stage modules are imported inside each command so `dlcompare --help` starts
instantly and never loads a deep-learning framework.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer

from dlcompare.errors import UserError

PARAMS_OPTION = typer.Option(Path("params.yaml"), "--params", help="Parameters file (sections mirror the stages).")


class App(typer.Typer):
    """Typer app that turns user mistakes into one line on stderr and a non-zero exit."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except UserError as error:
            print(f"dlcompare: error: {error}", file=sys.stderr)
            sys.exit(1)
        except KeyboardInterrupt:
            print("dlcompare: interrupted", file=sys.stderr)
            sys.exit(130)


app = App(
    help="Train the same CNN on Dogs vs Cats in several frameworks and compare them.\n\n"
    "Stages run in this order (dvc repro runs them for you): fetch, prepare, train, evaluate, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


def _not_yet(stage: str, issue: int) -> None:
    raise UserError(f"`dlcompare {stage}` is not built yet (planned in issue #{issue})")


@app.command()
def train(params: Path = PARAMS_OPTION) -> None:
    """Train one framework with one seed on the prepared arrays. (not built yet: issue #3)"""
    _not_yet("train", 3)


@app.command()
def evaluate(params: Path = PARAMS_OPTION) -> None:
    """Test-set metrics, predictions and latency of one trained model. (not built yet: issue #3)"""
    _not_yet("evaluate", 3)


@app.command()
def compare(params: Path = PARAMS_OPTION) -> None:
    """Statistics across frameworks and seeds, figures and the written report. (not built yet: issue #4)"""
    _not_yet("compare", 4)


@app.command()
def predict(images: List[Path] = typer.Argument(..., help="Image files to classify.")) -> None:
    """Classify images with every trained model. (not built yet: issue #3)"""
    _not_yet("predict", 3)


if __name__ == "__main__":
    app()
