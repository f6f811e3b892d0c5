"""The framework-neutral architectures: names, shapes, initial weights, FLOPs, params and the registry's presets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import ROOT
from dlcompare import architectures, frameworks
from dlcompare.architectures import PlainCNN, ResNet
from dlcompare.errors import UserError
from dlcompare.params import load_params

SHARED = dict(bn_momentum=0.9, bn_epsilon=1e-3, dropout=0.0)


def digest(weights: dict) -> str:
    return hashlib.sha256(b"".join(value.tobytes() for value in weights.values())).hexdigest()


def defaults(preset: str):
    params = load_params(ROOT / "params.yaml")
    return architectures.from_params(params.model_copy(update={"model": params.model.model_copy(update={"preset": preset})}))


def test_plain_cnn_initial_weights_are_byte_identical_to_before_the_presets():
    # Digests of the default plain CNN's initial weights (in model order) computed with ModelSpec at commit c30f9fc,
    # before the architectures package: the seeds of every earlier run keep meaning the same start.
    spec = defaults("plain_cnn")
    assert digest(spec.initial_weights(0)) == "9e342ab7efe6b59b52cb4b7cfe92b8bf5979f9f4f392fbca53b7a06025dfe766"
    assert digest(spec.initial_weights(1)) == "b78cd23bf3af05e696299978494862c448fefe41e07c0393fc02f802f18b90d8"
    assert (spec.parameter_count(), spec.flops_per_image()) == (389_153, 120_324_608)


def test_flops_match_a_hand_count():
    plain = PlainCNN(image_size=8, batch_norm=True, dense_units=0, filters=(4,), convs_per_block=1, kernel_size=3,
                     head="global_avg", **SHARED)
    # conv 3x3, 3 -> 4 channels on 8x8: 8*8 outputs * 4 filters * (3*3*3) multiply-adds; output dense 4 -> 1.
    assert plain.flops_per_image() == 2 * (8 * 8 * 4 * 27) + 2 * (4 * 1)
    two = PlainCNN(image_size=8, batch_norm=False, dense_units=5, filters=(4, 6), convs_per_block=1, kernel_size=3,
                   head="flatten", **SHARED)
    conv = 2 * (8 * 8 * 4 * 27) + 2 * (4 * 4 * 6 * 3 * 3 * 4)  # the second conv runs at 4x4 after pooling
    assert two.flops_per_image() == conv + 2 * ((2 * 2 * 6) * 5) + 2 * (5 * 1)
    assert two.parameter_count() == 3 * 3 * 3 * 4 + 4 + 3 * 3 * 4 * 6 + 6 + 24 * 5 + 5 + 5 + 1

    # stem 3->4 at 8x8; stage0 block 4->4 (identity); stage1 block 4->8 at stride 2: conv0 8x8 -> 4x4, conv1 at 4x4,
    # 1x1 projection at stride 2 (4x4 outputs); head 8 -> 1.
    res = ResNet(image_size=8, batch_norm=True, dense_units=0, stem_width=4, stem_stride=1, widths=(4, 8), blocks_per_stage=1,
                 zero_init_residual=True, **SHARED)
    expected = 2 * (64 * 27 * 4) + 2 * 2 * (64 * 36 * 4) + 2 * (16 * 36 * 8) + 2 * (16 * 72 * 8) + 2 * (16 * 4 * 8) + 2 * 8
    assert res.flops_per_image() == expected
    trainable_bn = 2 * (4 + 4 + 4 + 8 + 8 + 8)
    assert res.parameter_count() == 108 + 144 + 144 + 288 + 576 + 32 + trainable_bn + 8 + 1


def test_resnet_strides_projections_and_sizes():
    spec = ResNet(image_size=33, batch_norm=True, dense_units=0, stem_width=8, stem_stride=1, widths=(8, 16, 32), blocks_per_stage=2,
                  zero_init_residual=True, **SHARED)
    blocks = spec.residual_blocks()
    assert [b.name for b in blocks] == [f"stage{s}/block{b}" for s in range(3) for b in range(2)]
    assert [b.conv0.stride for b in blocks] == [1, 1, 2, 1, 2, 1]
    assert [b.shortcut is not None for b in blocks] == [False, False, True, False, True, False]
    # Padding 1 on every side: 33 -> 17 -> 9 (a "SAME"-style one-sided pad would give the same sizes, not the same values).
    assert [b.conv1.output_size for b in blocks] == [33, 33, 17, 17, 9, 9]
    for block in blocks:
        if block.shortcut:
            assert (block.shortcut.kernel_size, block.shortcut.padding) == (1, 0)
            assert block.shortcut.output_size == block.conv1.output_size
    assert spec.zero_gammas() == {b.conv1.name for b in blocks}
    strided = ResNet(**{**spec.__dict__, "stem_stride": 2})  # 33 -> 17 at the stem, then 17 -> 9 -> 5
    assert [b.conv1.output_size for b in strided.residual_blocks()] == [17, 17, 9, 9, 5, 5]
    off = ResNet(**{**spec.__dict__, "zero_init_residual": False})
    assert off.zero_gammas() == set()
    # The zero gammas draw nothing: every other weight is the same with and without them.
    on_weights, off_weights = spec.initial_weights(3), off.initial_weights(3)
    different = [name for name in on_weights if not np.array_equal(on_weights[name], off_weights[name])]
    assert different == [f"{b.conv1.name}/bn/gamma" for b in blocks]


@pytest.mark.parametrize("preset", sorted(architectures.PRESETS))
def test_names_shapes_and_the_saved_description_round_trip(preset, tmp_path):
    spec = defaults(preset)
    shapes = spec.shapes()
    assert len(set(shapes)) == len(shapes)
    assert all(name.count("/") >= 1 and not name.startswith("/") for name in shapes)
    weights = spec.initial_weights(0)
    assert {name: value.shape for name, value in weights.items()} == shapes
    assert all(value.dtype == np.float32 for value in weights.values())
    spec.save(tmp_path)
    assert architectures.load(tmp_path) == spec
    own = {"plain_cnn": f"filters {list(getattr(spec, 'filters', ()))}", "resnet": f"widths {list(getattr(spec, 'widths', ()))}"}
    assert own[preset] in spec.description()
    assert f"{spec.parameter_count():,} parameters" in spec.description()


def test_default_resnet_costs_at_most_about_twice_the_plain_cnn_per_image():
    ratio = defaults("resnet").flops_per_image() / defaults("plain_cnn").flops_per_image()
    assert 1.0 < ratio <= 2.0, ratio


def test_every_registered_preset_exists_and_params_refuse_an_unimplemented_pair(tmp_path, monkeypatch):
    for entry in frameworks.REGISTRY.values():
        assert entry.presets and set(entry.presets) <= set(architectures.PRESETS), entry.name
    text = (ROOT / "params.yaml").read_text().replace("preset: plain_cnn", "preset: resnet")
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").model.preset == "resnet"
    plain_only = frameworks.REGISTRY["jax"].__class__(**{**frameworks.REGISTRY["jax"].__dict__, "presets": ("plain_cnn",)})
    monkeypatch.setitem(frameworks.REGISTRY, "jax", plain_only)
    with pytest.raises(UserError) as refused:
        load_params(tmp_path / "params.yaml")
    message = str(refused.value)
    assert "\n" not in message and "jax does not implement model.preset = resnet" in message
