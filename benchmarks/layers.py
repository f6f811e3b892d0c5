"""Why a framework's training stays below the GEMM ceiling: its convolutions, layer by layer.

`python benchmarks/layers.py [--engines torch,jax] [--preset resnet] [--quick]` measures, for each engine (the
registry's runtimes: TensorFlow, PyTorch, JAX) in its own process, with the thread settings training uses, at the
training batch size and image size (the probes are each runtime's `gemm_probe` and `convolution_timers`):

  gemm_gflops     float32 GEMM through the engine (bench.py's measurement, same device); fractions are of the
                  fastest engine's figure, the machine's ceiling as in bench.py
  layers.<conv>   that convolution alone (every one of the preset's: strided and 1x1 shortcut ones too): forward, and forward + backward (the kernel's gradient and, after
                  the first layer, the input's: what training computes); milliseconds per batch and GFLOP/s
  step_ms         the framework's whole training step on one batch (its train_batch adapter: the same code
                  the equivalence tests drive), for the framework that runs on that engine alone
  conv_share      the convolutions' forward + backward time as a share of that step; the rest is batch norm,
                  ReLU, pooling, the dense head, the optimiser and dispatch

So if an engine's convolutions alone stay below 0.4 of the ceiling, no training loop on it can reach 0.4; if they
are above it and the step is not, the time goes elsewhere. Medians of repeated timings after warm-ups, with
the interquartile range. Writes benchmarks/results/<host>-<date>-layers.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from dlcompare.architectures import PRESETS
from dlcompare.frameworks import ENGINES, missing_packages, native_framework

from ceiling import engine_gemm_gflops
from common import ROOT, at_scale, settings

def timed(run, repeats: int) -> dict:
    """Median and interquartile range, in ms, of `repeats` calls after three warm-up calls."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1e3)
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(median), "iqr_ms": [float(q1), float(q3)]}


def child(engine: str, preset: str, quick: bool) -> dict:
    from dlcompare import frameworks, architectures
    from dlcompare.batches import TrainBatches

    framework = native_framework(engine)
    params, sizes = settings(quick, [framework])
    params = at_scale(params, preset or params.model.preset)
    module = frameworks.load(framework, params.train.threads, params.train.precision)
    spec, batch = architectures.from_params(params), params.train.batch_size
    repeats = 5 if quick else 20
    gemm, engine_settings = engine_gemm_gflops(engine, sizes["gemm_n"], sizes["gemm_repeats"])

    layers, conv_ms = {}, 0.0
    timers = frameworks.runtime(engine).convolution_timers(spec, batch).values()
    for index, (c, (forward, train)) in enumerate(zip(spec.convs(), timers)):
        flops = batch * c.flops  # forward; backward: one more per gradient
        passes = 3 if index else 2  # the first layer's input needs no gradient (the runtimes' convolution_timers)
        shape = f"{c.kernel_size}x{c.kernel_size}/{c.stride} {c.input_size}x{c.input_size}x{c.in_channels} -> {c.out_channels}"
        layer = {"shape": shape, "forward": timed(forward, repeats),
                 "forward_backward": timed(train, repeats)}
        layer["forward"]["gflops"] = flops / layer["forward"]["median_ms"] / 1e6
        layer["forward_backward"]["gflops"] = passes * flops / layer["forward_backward"]["median_ms"] / 1e6
        conv_ms += layer["forward_backward"]["median_ms"]
        layers[c.name] = layer

    implementation = module.Implementation(spec, params.train, seed=0)
    implementation.build(spec.initial_weights(0))
    x = np.random.default_rng(0).integers(0, 256, size=(batch, spec.image_size, spec.image_size, 3), dtype=np.uint8)
    images, labels = TrainBatches(x, np.arange(batch) % 2, batch, seed=0).batch(0, 0)

    def ten_steps():
        for _ in range(10):
            implementation.train_batch(images, labels, params.train.learning_rate)
        implementation.weights()  # waits for engines that dispatch asynchronously (JAX, GPUs)

    ten = timed(ten_steps, max(3, repeats // 4))
    step_time = {"median_ms": ten["median_ms"] / 10, "iqr_ms": [t / 10 for t in ten["iqr_ms"]]}
    step_flops = 3 * spec.flops_per_image() * batch
    return {"engine": engine, "framework": framework, "preset": spec.preset, "gemm_gflops": gemm, **engine_settings, "batch": batch,
            "image_size": spec.image_size, "layers": layers, "step": {**step_time, "gflops": step_flops / step_time["median_ms"] / 1e6},
            "conv_ms": conv_ms, "conv_share": conv_ms / step_time["median_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description="per-layer convolution timings (see the module docstring)")
    parser.add_argument("--engines", type=lambda text: text.split(","), default=None,
                        help=f"comma-separated subset of {','.join(ENGINES)} (default: those installed)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (tests); the numbers mean nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for the JSON file")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="the architecture whose convolutions are timed (default: params.yaml model.preset)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.preset, args.quick)))
        return
    engines = args.engines or [engine for engine in ENGINES if not missing_packages(native_framework(engine))]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        raise SystemExit(f"layers: unknown engine(s) {', '.join(unknown)}; use {', '.join(ENGINES)}")
    results = {}
    for engine in engines:
        command = [sys.executable, __file__, *(["--quick"] if args.quick else []), *(["--preset", args.preset] if args.preset else []),
                   "--child", engine]
        ran = subprocess.run(command, capture_output=True, text=True)
        if ran.returncode != 0:
            raise SystemExit(f"layers: {engine} failed:\n{ran.stderr[-3000:]}")
        results[engine] = json.loads(ran.stdout.strip().splitlines()[-1])
    # As in bench.py: the machine's ceiling is the fastest GEMM any engine gave (engines' BLAS differ by 2x here).
    ceiling = max(r["gemm_gflops"] for r in results.values())
    for r in results.values():
        for part in [r["step"], *(layer[p] for layer in r["layers"].values() for p in ("forward", "forward_backward"))]:
            part["fraction_of_gemm"] = part["gflops"] / ceiling
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"{socket.gethostname()}-{date.today().isoformat()}-layers{'-quick' if args.quick else ''}.json"
    out_file.write_text(json.dumps(results, indent=2) + "\n")
    for engine, r in results.items():
        print(f"{engine} (steps of {r['framework']}), {r['preset']}, batch {r['batch']}, {r['image_size']} px, its GEMM "
              f"{r['gemm_gflops']:.0f} GFLOP/s, fractions of the ceiling {ceiling:.0f}:")
        print(f"  {'layer':24}{'kernel/stride, input -> out':>30}{'fwd ms':>9}{'GFLOP/s':>9}{'of GEMM':>9}{'fwd+bwd ms':>12}{'GFLOP/s':>9}{'of GEMM':>9}")
        for name, layer in r["layers"].items():
            f, t = layer["forward"], layer["forward_backward"]
            print(f"  {name:24}{layer['shape']:>30}{f['median_ms']:9.2f}{f['gflops']:9.1f}{f['fraction_of_gemm']:9.2f}"
                  f"{t['median_ms']:12.2f}{t['gflops']:9.1f}{t['fraction_of_gemm']:9.2f}")
        s = r["step"]
        print(f"  whole training step {s['median_ms']:.2f} ms (IQR {s['iqr_ms'][0]:.2f}-{s['iqr_ms'][1]:.2f}), "
              f"{s['gflops']:.1f} GFLOP/s, {s['fraction_of_gemm']:.2f} of GEMM; convolutions alone {r['conv_ms']:.2f} ms, "
              f"{r['conv_share']:.0%} of the step")
    print(f"written: {out_file}")


if __name__ == "__main__":
    main()
