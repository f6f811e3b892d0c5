"""dlcompare's speed against this machine's own limits: `make bench`.

Measures, on this machine and in this run:
  gemm_gflops      float32 matrix multiply through each measured framework's engine (TensorFlow, PyTorch, JAX),
                   on the device it trains on, best of several; the fastest engine's figure is the ceiling
  prepare          images/s of `dlcompare prepare` on the shared 10k Kaggle zip, end to end
  train.<fw>       steady-state images/s of dlcompare's training loop, the GFLOP/s that is, its share of
                   gemm_gflops, first-epoch overhead, peak memory, and the overhead of dlcompare's harness
                   against the bare step loop (the framework's one-step function over batches made in
                   advance: no augmentation, validation, logging or checkpoints); peak memory of one epoch over a full-size (25,000 image)
                   memory-mapped dataset
  tutorials        the pipeline a user of each framework would start from, on shared images re-encoded at
                   500x375 like the original downloads: keras-io "Image classification from scratch"
                   (image_dataset_from_directory, augmentation layers in a tf.data map, prefetch, fit) on the
                   Keras backend each Keras framework runs on, and on TensorFlow for tensorflow; PyTorch's
                   ImageFolder + DataLoader feeding the framework's own step for pytorch and jax (JAX's documentation trains with PyTorch data loading)
  scales.<model>.<fw>  training images/s of the framework's own loop on the plain CNN, the residual network and
                   the residual network four times as wide, and the order of the frameworks at each scale
  inference.<fw>   latency of one image (p50, p95) and batched images/s
  time_to_accuracy.<fw>  not trained here (that takes the whole recipe): copied from the pipeline's last
                   `compare` (reports/comparison.json), the median over its seeds of the training seconds until
                   validation accuracy first reached 0.80, 0.85 and 0.88; null for a framework it did not run

Each framework runs in its own process, so memory figures are its own. Every figure is a median over
repeated measurements after a warm-up; the table says how many. `--quick` uses tiny sizes (for tests).

This file is the command line and the table; the measurements live beside it: common.py (paths, sizes, model
scales, the machine), ceiling.py (GEMM and prepare), harness.py (one framework's child process) and tutorials.py
(the tutorial pipelines). layers.py, calibration.py, speed_aa.py and ab_aa.py are the other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from datetime import date
from pathlib import Path

from ceiling import prepare_rate
from dlcompare.frameworks import PRECISIONS, REGISTRY, package_versions

from common import FRAMEWORK_PACKAGES, FRAMEWORKS, PRECISION_VARIABLE, ROOT, SCALES, SHARED_ZIP, machine, settings
from harness import child_framework, child_memory
from tutorials import PIPELINE_NEEDS, child_loader_tutorial, child_tutorial


def frameworks_imported() -> list[str]:
    """Which registered frameworks' packages this process has imported (a GPU machine may have only some)."""
    return [name for name in FRAMEWORK_PACKAGES if name in sys.modules]


def run_child(quick: bool, *args: str) -> dict:
    command = [sys.executable, __file__, *(["--quick"] if quick else []), "--child", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark step {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the run and its table

def main() -> None:
    parser = argparse.ArgumentParser(description="dlcompare benchmarks (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI); the numbers mean nothing")
    parser.add_argument("--source", type=Path, default=SHARED_ZIP, help="Kaggle-layout zip to prepare and train on")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the JSON file")
    parser.add_argument("--frameworks", type=lambda text: text.split(","), default=None,
                        help="comma-separated subset (default: every registered framework whose packages are installed);"
                             " e.g. pytorch,jax on a machine without TensorFlow")
    parser.add_argument("--comparison", type=Path, default=ROOT / "reports" / "comparison.json",
                        help="compare's report whose time to accuracy is copied (default: the pipeline's last)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="train.precision for this run (default: params.yaml's); on a GPU, run once per setting")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.precision:
        os.environ[PRECISION_VARIABLE] = args.precision  # the child processes measure at it too
    if args.child:
        kind, name, path = args.child
        work = {"framework": child_framework, "memory": child_memory}
        work.update({"keras-io": child_tutorial, "torch-loader": child_loader_tutorial})  # Tutorial.pipeline
        result = work[kind](name, Path(path), args.quick)
        print(json.dumps({**result, "frameworks_imported": frameworks_imported()}))
        return

    from dlcompare.frameworks import missing_packages

    chosen = args.frameworks or [name for name in FRAMEWORKS if not missing_packages(name)]
    unknown = [name for name in chosen if name not in FRAMEWORKS]
    if unknown:
        raise SystemExit(f"bench: unknown framework(s) {', '.join(unknown)}; registered: {', '.join(FRAMEWORKS)}")
    params, sizes = settings(args.quick, chosen)
    results = {"machine": machine(), "quick": args.quick, "frameworks": chosen, "precision": params.train.precision,
               "engines": {}}
    with tempfile.TemporaryDirectory() as scratch:
        source = args.source
        if args.quick:
            source = Path(scratch) / "small.zip"
            with zipfile.ZipFile(args.source) as src, zipfile.ZipFile(source, "w") as dst:
                for name in [f"train/{c}.{i}.jpg" for c in ("cat", "dog") for i in range(150)]:
                    dst.writestr(name, src.read(name))
        results["prepare"] = {"images_per_s": prepare_rate(source, params, sizes["prepare_repeats"], Path(scratch)),
                              "image_size": params.prepare.image_size, "runs": sizes["prepare_repeats"]}
        prepared = str(Path(scratch) / "prepared")
        results["train"], results["inference"], scales = {}, {}, {}
        for framework in chosen:
            measured = run_child(args.quick, "framework", framework, prepared)
            scales[framework] = measured["scales"]
            memory = run_child(args.quick, "memory", framework, prepared)
            train = measured["train"]
            train["harness_overhead"] = 1 - train["images_per_s"] / train["bare_images_per_s"]
            # Bounds from the epochs' spread: an overhead whose range holds 0 is not one this run can show.
            (slowest, fastest), (bare_slowest, bare_fastest) = train["images_per_s_range"], train["bare_images_per_s_range"]
            train["harness_overhead_range"] = [1 - fastest / bare_slowest, 1 - slowest / bare_fastest]
            train["full_dataset_peak_rss_mb"] = memory["peak_rss_mb"]
            train["full_dataset_images"] = memory["images"]
            train["frameworks_imported"] = memory["frameworks_imported"]  # by training alone, as the memory figure is
            results["train"][framework] = train
            results["inference"][framework] = measured["inference"]
            engine = measured["engine"]
            best = results["engines"].setdefault(engine["name"], engine)
            if engine["gemm_gflops"] > best["gemm_gflops"]:
                results["engines"][engine["name"]] = engine
        # The machine's ceiling: the fastest GEMM any engine measured here (one BLAS on a CPU; the GPU on a GPU machine).
        results["gemm_gflops"] = max(engine["gemm_gflops"] for engine in results["engines"].values())
        for train in results["train"].values():
            train["fraction_of_gemm"] = train["gflops"] / results["gemm_gflops"]
        results["scales"] = {scale: {name: cells.pop(scale) for name, cells in scales.items()} for scale in SCALES}
        for cell in (cell for measured in results["scales"].values() for cell in measured.values()):
            cell["fraction_of_gemm"] = cell["gflops"] / results["gemm_gflops"]
        results["tutorials"], results["tutorials_not_run"] = {}, {}
        for framework in chosen:
            pipeline, name, runs_as = REGISTRY[framework].tutorial
            train = results["train"][framework]
            missing = [package for package, version in package_versions(PIPELINE_NEEDS[pipeline]).items() if version is None]
            if missing:
                results["tutorials_not_run"][name] = f"{pipeline} needs {', '.join(missing)}, which is not installed"
                train["tutorial_images_per_s"] = train["speedup_vs_tutorial"] = None
                continue
            if name not in results["tutorials"]:  # keras and tensorflow share the keras-io run on TensorFlow
                results["tutorials"][name] = run_child(args.quick, pipeline, runs_as, str(args.source))
            tutorial = results["tutorials"][name]
            train["tutorial_images_per_s"] = tutorial["tutorial_images_per_s"]
            train["speedup_vs_tutorial"] = train["images_per_s"] / tutorial["tutorial_images_per_s"]

    results["time_to_accuracy"] = pipeline_time_to_accuracy(args.comparison, chosen)
    results["machine"]["frameworks_imported_by_the_parent"] = frameworks_imported()
    args.out.mkdir(parents=True, exist_ok=True)
    precision = "" if params.train.precision == "float32" else f"-{params.train.precision}"
    out_file = args.out / f"{socket.gethostname()}-{date.today().isoformat()}{precision}{'-quick' if args.quick else ''}.json"
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, params, sizes, out_file)


def pipeline_time_to_accuracy(comparison: Path, frameworks: list[str]) -> dict:
    """Each framework's time to accuracy as the pipeline's last compare measured it (None where it has none)."""
    compared = json.loads(comparison.read_text())["frameworks"] if comparison.is_file() else {}
    return {name: compared[name]["time_to_accuracy_s"] if name in compared else None for name in frameworks}


def print_table(results: dict, params, sizes: dict, out_file: Path) -> None:
    m = results["machine"]
    gpus = sorted({gpu for engine in results["engines"].values() for gpu in engine["gpu_names"]})
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, GPUs: {', '.join(gpus) or 'none'}; "
          + ", ".join(f"{name} {version}" for name, version in m["versions"].items()))
    print(f"train.precision {results['precision']}; float32 GEMM (best of {sizes['gemm_repeats']}): "
          + ", ".join(f"{name} {e['gemm_gflops']:.1f} GFLOP/s ({e['gemm_n']}x{e['gemm_n']}, {e['intra_op']} threads"
                      + (f"; {e['float32_precision']})" if gpus else ")") for name, e in results["engines"].items())
          + f"; ceiling {results['gemm_gflops']:.1f}")
    print(f"prepare at {results['prepare']['image_size']} px (median of {results['prepare']['runs']}): "
          f"{results['prepare']['images_per_s']:.0f} images/s")
    print(f"training at {params.prepare.image_size} px, batch {params.train.batch_size}, {sizes['train_images']} images per epoch, "
          f"median of {sizes['epochs'] - 1} epochs after a warm-up epoch; 25k MB: one epoch over {sizes['full_dataset']:,} images")
    print(f"{'':12}{'images/s':>10}{'bare':>9}{'overhead (range)':>22}{'GFLOP/s':>9}{'of GEMM':>9}{'1st epoch +s':>13}"
          f"{'peak MB':>9}{'25k MB':>8}{'vs tutorial':>12}{'GPU MB':>8}")
    for name, t in results["train"].items():
        low, high = t["harness_overhead_range"]
        print(f"{name:12}{t['images_per_s']:10.1f}{t['bare_images_per_s']:9.1f}"
              f"{t['harness_overhead']:7.3f} ({low:6.3f}..{high:6.3f}){t['gflops']:9.1f}"
              f"{t['fraction_of_gemm']:9.2f}{t['first_epoch_overhead_s']:13.2f}{t['peak_rss_mb']:9.0f}"
              f"{t['full_dataset_peak_rss_mb']:8.0f}"
              + (f"{t['speedup_vs_tutorial']:12.2f}" if t["speedup_vs_tutorial"] is not None else f"{'-':>12}")
              + (f"{t['peak_device_mb']:8.0f}" if t["peak_device_mb"] is not None else f"{'-':>8}"))
    print_scales(results["scales"])
    for name, b in results["tutorials"].items():
        print(f"tutorial {name:14} {b['tutorial_images_per_s']:8.1f} images/s ({b['images']} JPEGs, {b['jpeg_size']}): {b['pipeline']}")
    for name, why in results["tutorials_not_run"].items():
        print(f"tutorial {name:14} not run: {why}")
    for name, i in results["inference"].items():
        print(f"inference {name:11} latency p50 {i['latency_ms_p50']:.2f} ms, p95 {i['latency_ms_p95']:.2f} ms; "
              f"{i['images_per_s']:.0f} images/s at batch {i['batch_size']} (median of 3 passes)")
    for name, reached in results["time_to_accuracy"].items():
        print(f"time to accuracy {name:11} " + ("no run in reports/comparison.json (dvc repro first)" if reached is None else
              ", ".join(f"{target}: " + (f"{r['median']:.0f} s" if r["median"] is not None else "not reached")
                        + f" ({r['reached']} of {r['seeds']} seeds)" for target, r in reached.items())))
    print(f"written: {out_file}")


def ranking(measured: dict) -> list[str]:
    return sorted(measured, key=lambda name: -measured[name]["images_per_s"])


def order_changes(first: dict, second: dict) -> list[str]:
    """The pairs whose order differs between two scales, each marked when both runs' epoch ranges overlap."""
    changes = []
    order = ranking(first)
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if second[b]["images_per_s"] > second[a]["images_per_s"]:
                overlap = any(r[a]["images_per_s_range"][1] >= r[b]["images_per_s_range"][0] and
                              r[b]["images_per_s_range"][1] >= r[a]["images_per_s_range"][0] for r in (first, second))
                changes.append(f"{b} overtakes {a}" + (" (within the epochs' spread)" if overlap else ""))
    return changes


def print_scales(scales: dict) -> None:
    names = list(next(iter(scales.values())))
    print("training at two model scales (own loop, images/s and fraction of the GEMM ceiling; each framework in its "
          "own process, the same FLOPs per epoch at every scale):")
    print(f"{'':12}" + "".join(f"{scale + ' ' + format(next(iter(m.values()))['flops_per_image'] / 1e6, ',.0f') + ' MFLOPs':>26}"
                                for scale, m in scales.items()))
    for name in names:
        print(f"{name:12}" + "".join(f"{m[name]['images_per_s']:18.1f} ({m[name]['fraction_of_gemm']:5.3f})" for m in scales.values()))
    for scale, measured in scales.items():
        print(f"order at {scale}: {' > '.join(ranking(measured))}")
    first_scale, first = next(iter(scales.items()))
    for scale, measured in list(scales.items())[1:]:
        changes = order_changes(first, measured)
        print(f"from {first_scale} to {scale}: {'; '.join(changes) if changes else 'the same order'}")


if __name__ == "__main__":
    main()
