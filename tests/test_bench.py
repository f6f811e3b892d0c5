"""The benchmark script (quick mode) and the FLOP counting it relies on."""

import json
import subprocess
import sys

from conftest import ROOT
from dlcompare.frameworks import NAMES, REGISTRY
from dlcompare.model_spec import ModelSpec


def spec(**changes):
    base = dict(image_size=8, filters=(4,), convs_per_block=1, kernel_size=3, batch_norm=True, bn_momentum=0.9,
                bn_epsilon=1e-3, head="global_avg", dense_units=0, dropout=0.0)
    return ModelSpec(**{**base, **changes})


def test_flops_match_a_hand_count():
    # conv 3x3, 3 -> 4 channels on 8x8 'same': 8*8 outputs * 4 filters * (3*3*3) multiply-adds; output dense 4 -> 1.
    assert spec().flops_per_image() == 2 * (8 * 8 * 4 * 27) + 2 * (4 * 1)
    # Two blocks, flatten head, hidden dense layer: second conv runs at 4x4 after pooling.
    two = spec(filters=(4, 6), head="flatten", dense_units=5)
    conv = 2 * (8 * 8 * 4 * 27) + 2 * (4 * 4 * 6 * 3 * 3 * 4)
    dense = 2 * ((2 * 2 * 6) * 5) + 2 * (5 * 1)
    assert two.flops_per_image() == conv + dense
    assert two.parameter_count() == 3 * 3 * 3 * 4 + 2 * 4 + 3 * 3 * 4 * 6 + 2 * 6 + 24 * 5 + 5 + 5 + 1


def test_quick_bench_writes_every_key(tmp_path):
    comparison = ROOT / "reference" / "comparison.json"  # a real compare of full runs on the 10k subset
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--out", str(tmp_path),
                             "--comparison", str(comparison)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "images/s" in result.stdout
    [written] = tmp_path.glob("*.json")
    figures = json.loads(written.read_text())
    assert {"cpu", "cores", "memory_gb", "versions"} <= set(figures["machine"])
    assert set(figures["engines"]) == {"tensorflow", "torch", "jax"}
    assert figures["gemm_gflops"] == max(engine["gemm_gflops"] for engine in figures["engines"].values()) > 0
    assert figures["prepare"]["images_per_s"] > 0
    assert set(figures["tutorials"]) == {"keras-io", "keras-io-jax", "keras-io-torch", "pytorch", "jax"}
    for name, backend in (("keras-io", "tensorflow"), ("keras-io-jax", "jax"), ("keras-io-torch", "torch")):
        assert f"Keras' {backend} backend" in figures["tutorials"][name]["pipeline"]
    assert all(tutorial["tutorial_images_per_s"] > 0 for tutorial in figures["tutorials"].values())
    assert set(figures["train"]) == set(NAMES)
    for framework in NAMES:
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
    # Time to accuracy is the pipeline's (the bench trains no full recipe): copied per framework, null where absent.
    compared = json.loads(comparison.read_text())["frameworks"]
    assert set(figures["time_to_accuracy"]) == set(NAMES)
    for framework in NAMES:
        expected = compared[framework]["time_to_accuracy_s"] if framework in compared else None
        assert figures["time_to_accuracy"][framework] == expected
    assert any(reached and (reached["0.88"]["median"] or 0) > 0 for reached in figures["time_to_accuracy"].values())
    assert "time to accuracy" in result.stdout


def test_layer_timings_cover_every_convolution_of_the_model(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layers.py"), "--quick", "--engines", "torch,jax",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    [written] = tmp_path.glob("*-layers-quick.json")
    figures = json.loads(written.read_text())
    assert list(figures) == ["torch", "jax"]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import settings

    model = ModelSpec.from_params(settings(True, ["pytorch"])[0])  # --quick's model
    ceiling = max(engine["gemm_gflops"] for engine in figures.values())
    for engine in figures.values():
        assert list(engine["layers"]) == [name for name, *_ in model.convs()]
        for (name, cin, cout, size, _), layer in zip(model.convs(), engine["layers"].values()):
            flops = 2 * engine["batch"] * size * size * 9 * cin * cout
            assert layer["forward"]["gflops"] == flops / layer["forward"]["median_ms"] / 1e6
            assert layer["forward"]["fraction_of_gemm"] == layer["forward"]["gflops"] / ceiling
            low, high = layer["forward_backward"]["iqr_ms"]
            assert low <= layer["forward_backward"]["median_ms"] <= high
        conv_ms = sum(layer["forward_backward"]["median_ms"] for layer in engine["layers"].values())
        assert engine["conv_ms"] == conv_ms and engine["conv_share"] == conv_ms / engine["step"]["median_ms"]
    assert "of the step" in result.stdout
