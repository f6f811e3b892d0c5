"""The benchmark script (quick mode) and the FLOP counting it relies on."""

import json
import subprocess
import sys

from conftest import ROOT
from dlcompare.frameworks import ENGINES, REGISTRY
from dlcompare import architectures


# One framework per engine, and through them every tutorial pipeline (keras-io on TensorFlow and on PyTorch, the
# torch-loader one as JAX's): each bench child is a fresh process, so all six would cost CI minutes to run code these
# three already run. test_extras benchmarks pytorch (where only torch is installed).
BENCHED = ["keras", "jax", "keras-torch"]


def test_quick_bench_writes_every_key(tmp_path):
    assert {REGISTRY[name].runtime for name in BENCHED} == set(ENGINES)
    assert {REGISTRY[name].tutorial.pipeline for name in BENCHED} == {entry.tutorial.pipeline for entry in REGISTRY.values()}
    comparison = ROOT / "reference" / "comparison.json"  # a real compare of full runs on the 10k subset
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--out", str(tmp_path),
                             "--comparison", str(comparison), "--frameworks", ",".join(BENCHED)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "images/s" in result.stdout
    [written] = tmp_path.glob("*.json")
    figures = json.loads(written.read_text())
    assert {"cpu", "cores", "memory_gb", "versions"} <= set(figures["machine"])
    assert set(figures["engines"]) == set(ENGINES)
    assert figures["gemm_gflops"] == max(engine["gemm_gflops"] for engine in figures["engines"].values()) > 0
    assert figures["prepare"]["images_per_s"] > 0
    tutorials = {REGISTRY[name].tutorial for name in BENCHED}
    assert set(figures["tutorials"]) == {tutorial.name for tutorial in tutorials}
    for tutorial in tutorials:  # each keras-io run on the backend of the framework it runs as
        if tutorial.pipeline == "keras-io":
            backend = REGISTRY[tutorial.runs_as].keras_backend
            assert f"Keras' {backend} backend" in figures["tutorials"][tutorial.name]["pipeline"]
    assert all(tutorial["tutorial_images_per_s"] > 0 for tutorial in figures["tutorials"].values())
    assert set(figures["train"]) == set(BENCHED)
    for framework in BENCHED:
        train = figures["train"][framework]
        for key in ("images_per_s", "gflops", "fraction_of_gemm", "first_epoch_overhead_s", "peak_rss_mb",
                    "harness_overhead", "speedup_vs_tutorial", "full_dataset_peak_rss_mb"):
            assert isinstance(train[key], float), key
        assert train["fraction_of_gemm"] == train["gflops"] / figures["gemm_gflops"]
        for rate in ("images_per_s", "bare_images_per_s"):  # the median lies within the epochs' spread
            slowest, fastest = train[f"{rate}_range"]
            assert slowest <= train[rate] <= fastest, (framework, rate)
        low, high = train["harness_overhead_range"]
        assert low <= train["harness_overhead"] <= high, framework
        # Training loads only its own engine: Keras on JAX or PyTorch without TensorFlow (~0.7 GB; only its
        # model.save loads it), Keras on TensorFlow or PyTorch without JAX (Keras' optional import, 0.14 GB).
        for engine in ("tensorflow", "jax"):
            assert (engine in train["frameworks_imported"]) == (REGISTRY[framework].runtime == engine), framework
        inference = figures["inference"][framework]
        assert inference["latency_ms_p50"] <= inference["latency_ms_p95"] and inference["images_per_s"] > 0
    # Every framework at each model scale, as a share of the same ceiling, and the order printed per scale.
    assert list(figures["scales"]) == ["plain_cnn", "resnet", "resnet x4"]
    flops = [next(iter(measured.values()))["flops_per_image"] for measured in figures["scales"].values()]
    assert flops[2] > flops[1] > 0 and flops[0] > 0
    for scale, measured in figures["scales"].items():
        assert set(measured) == set(BENCHED), scale
        for framework, cell in measured.items():
            assert cell["fraction_of_gemm"] == cell["gflops"] / figures["gemm_gflops"]
            assert cell["gflops"] == 3 * cell["flops_per_image"] * cell["images_per_s"] / 1e9
            slowest, fastest = cell["images_per_s_range"]
            assert 0 < slowest <= cell["images_per_s"] <= fastest, (scale, framework)
        assert f"order at {scale}: " in result.stdout
    assert "from plain_cnn to resnet x4: " in result.stdout
    # Time to accuracy is the pipeline's (the bench trains no full recipe): copied per framework, null where absent.
    compared = json.loads(comparison.read_text())["frameworks"]
    assert set(figures["time_to_accuracy"]) == set(BENCHED)
    for framework in BENCHED:
        expected = compared[framework]["time_to_accuracy_s"] if framework in compared else None
        assert figures["time_to_accuracy"][framework] == expected
    assert any(reached and (reached["0.80"]["median"] or 0) > 0 for reached in figures["time_to_accuracy"].values())
    assert "time to accuracy" in result.stdout


def test_layer_timings_cover_every_convolution_of_the_model(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layers.py"), "--quick", "--engines", "torch,jax",
                             "--preset", "resnet", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    [written] = tmp_path.glob("*-layers-quick.json")
    figures = json.loads(written.read_text())
    assert list(figures) == ["torch", "jax"]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import at_scale, settings

    model = architectures.from_params(at_scale(settings(True, ["pytorch"])[0], "resnet"))  # --quick's residual network
    convs = model.convs()
    assert {c.stride for c in convs} == {1, 2} and {c.kernel_size for c in convs} == {1, 3}, "strided and 1x1 units"
    ceiling = max(engine["gemm_gflops"] for engine in figures.values())
    for engine in figures.values():
        assert engine["preset"] == "resnet"
        assert list(engine["layers"]) == [c.name for c in convs]
        for c, layer in zip(convs, engine["layers"].values()):
            flops = engine["batch"] * c.flops
            assert layer["forward"]["gflops"] == flops / layer["forward"]["median_ms"] / 1e6
            assert layer["forward"]["fraction_of_gemm"] == layer["forward"]["gflops"] / ceiling
            low, high = layer["forward_backward"]["iqr_ms"]
            assert low <= layer["forward_backward"]["median_ms"] <= high
        conv_ms = sum(layer["forward_backward"]["median_ms"] for layer in engine["layers"].values())
        assert engine["conv_ms"] == conv_ms and engine["conv_share"] == conv_ms / engine["step"]["median_ms"]
    assert "of the step" in result.stdout
