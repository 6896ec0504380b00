"""Tests for saunet.training.model and layers: parameter counts, options, DropBlock2D, attention, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

import saunet.training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from saunet.runtime.spec import ModelSpec, model_spec
from saunet.training.keras import keras
from saunet.training.layers import ChannelPool, DropBlock2D, spatial_attention
from saunet.training.model import PRESETS, build_saunet


def counts(model: keras.Model) -> tuple[int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


def layers_of(model: keras.Model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.fixture(scope="module")
def small() -> dict[str, keras.Model]:
    return {name: build_saunet(name, input_size=32) for name in ("sa-unet", "seed")}


# --- build_saunet ---------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, total, trainable",
    [
        ("sa-unet", 538_707, 537_299),
        ("seed", 1_129_940, 1_128_020),
    ],
)
def test_parameter_counts_of_the_reference_code(preset: str, total: int, trainable: int) -> None:
    model = build_saunet(preset)
    assert model.input_shape == (None, 256, 256, 3)
    assert model.output_shape == (None, 256, 256, 1)
    assert counts(model) == (total, trainable)


@pytest.mark.parametrize("preset, total", [("sa-unet", 538_707), ("seed", 1_129_940)])
def test_input_size_changes_shapes_not_parameters(small, preset: str, total: int) -> None:
    model = small[preset]
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 32, 32, 1)
    assert model.count_params() == total
    wide = build_saunet(preset, input_size=64, channels=1)
    assert wide.input_shape == (None, 64, 64, 1) and wide.output_shape == (None, 64, 64, 1)
    first_conv = wide.get_layer("down1_a_conv")
    assert wide.count_params() == total - 2 * 3 * 3 * first_conv.filters  # two input channels fewer


@pytest.mark.parametrize("preset", ["sa-unet", "seed"])
@pytest.mark.parametrize("base", [8, 32])
def test_base_filters_sets_the_widths(preset: str, base: int) -> None:
    model = build_saunet(preset, input_size=32, base_filters=base)
    levels = len(PRESETS[preset].filters)
    for level in range(1, levels + 1):
        width = base * 2 ** (level - 1)
        for unit in ("a", "b"):
            assert model.get_layer(f"down{level}_{unit}_conv").filters == width
            assert model.get_layer(f"up{level}_{unit}_conv").filters == width
        assert model.get_layer(f"up{level}_upconv").filters == width
    if PRESETS[preset].bottleneck:
        assert model.get_layer("bottom_a_conv").filters == model.get_layer("bottom_b_conv").filters == 2 * width
    assert model.get_layer("mask").filters == 1
    assert model.output_shape == (None, 32, 32, 1)
    default = {"sa-unet": 538_707, "seed": 1_129_940}[preset]
    if base < 16:  # convolution weights scale with width squared
        assert model.count_params() < default / 3
    else:
        assert model.count_params() > default * 3


def test_block_size_and_keep_prob_options() -> None:
    model = build_saunet("sa-unet", input_size=32, block_size=3, keep_prob=0.8)
    blocks = layers_of(model, DropBlock2D)
    assert len(blocks) == 14  # 3 down and 3 up levels of two conv units, two at the bottom
    assert all(b.block_size == 3 and b.keep_prob == 0.8 for b in blocks)
    defaults = layers_of(build_saunet("seed", input_size=32), DropBlock2D)
    assert len(defaults) == 16 and all(b.block_size == 7 and b.keep_prob == 0.9 for b in defaults)
    spec = model_spec("seed", base_filters=8, block_size=5, keep_prob=0.75)
    described = spec.to_dict()
    assert {
        k: described[k]
        for k in ("preset", "filters", "bottleneck", "attention_bias", "block_size", "keep_prob", "dropblock")
    } == {
        "preset": "seed",
        "filters": [8, 16, 32, 64],
        "bottleneck": False,
        "attention_bias": True,
        "block_size": 5,
        "keep_prob": 0.75,
        "dropblock": True,
    }
    assert ModelSpec.from_dict(described) == spec
    built = build_saunet(spec, input_size=32)
    assert built.get_layer("down1_a_conv").filters == 8 and built.get_layer("down1_a_dropblock").block_size == 5


@pytest.mark.parametrize(
    "preset, size",
    [
        ("sa-unet", 36),
        ("sa-unet", 20),
        ("sa-unet", 257),
        ("seed", 40),
        ("seed", 24),
        ("seed", 8),
    ],
)
def test_input_size_not_divisible_raises(preset: str, size: int) -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_saunet(preset, input_size=size)


def test_divisible_sizes_build() -> None:
    assert build_saunet("sa-unet", input_size=40, base_filters=2).output_shape == (None, 40, 40, 1)
    assert build_saunet("seed", input_size=48, base_filters=2).output_shape == (None, 48, 48, 1)


@pytest.mark.parametrize("preset", ["unet", "SA-UNet", "", "sa_unet"])
def test_unknown_preset_raises(preset: str) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        build_saunet(preset, input_size=32)


def test_no_lambda_layer_and_attention_layers_named(small) -> None:
    for preset, model in small.items():
        assert not layers_of(model, keras.layers.Lambda), preset
        assert all(type(layer).__name__ != "Lambda" for layer in model.layers)
        assert isinstance(model.get_layer("attention_pool"), ChannelPool)
        attention = model.get_layer("attention_map")
        assert attention.kernel_size == (7, 7) and attention.filters == 1
        assert attention.use_bias == (preset == "seed")
        assert isinstance(model.get_layer("attention_apply"), keras.layers.Multiply)


def test_save_and_load_keras_file_gives_identical_predictions(small, tmp_path: Path) -> None:
    model = small["sa-unet"]
    # non-trivial batch-norm statistics, so that a lost weight would show
    for layer in layers_of(model, keras.layers.BatchNormalization):
        rng = np.random.default_rng(len(layer.name))
        layer.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])
    x = np.random.default_rng(0).uniform(0, 1, (3, 32, 32, 3)).astype(np.float32)
    before = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.predict(x, verbose=0)
    assert np.array_equal(before, after)
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__ for layer in model.layers]
    blocks = layers_of(loaded, DropBlock2D)
    assert len(blocks) == 14 and all(b.block_size == 7 and b.keep_prob == 0.9 for b in blocks)
    assert loaded.count_params() == model.count_params()
    # inference ignores DropBlock: repeated predictions agree
    assert np.array_equal(loaded(x, training=False).numpy(), loaded(x, training=False).numpy())


# --- DropBlock2D ----------------------------------------------------------------


def test_dropblock_identity_at_inference() -> None:
    layer = DropBlock2D(block_size=5, keep_prob=0.5)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32))
    assert np.array_equal(layer(x, training=False).numpy(), x.numpy())
    assert np.array_equal(layer(x).numpy(), x.numpy())


def test_dropblock_keep_prob_one_is_identity_in_training() -> None:
    layer = DropBlock2D(block_size=3, keep_prob=1.0)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype(np.float32))
    assert np.array_equal(layer(x, training=True).numpy(), x.numpy())


def test_dropblock_drops_square_blocks_and_rescales() -> None:
    tf.random.set_seed(0)
    layer = DropBlock2D(block_size=5, keep_prob=0.8)
    ones = tf.ones((64, 32, 32, 1))
    means, kept_fractions = [], []
    for call in range(4):
        out = layer(ones, training=True).numpy()
        assert out.shape == (64, 32, 32, 1)
        zero = out[..., 0] == 0
        assert zero.any() and not zero.all()
        # every dropped pixel lies in a fully dropped 5x5 window (the zeros are unions of 5x5 squares)
        square = np.ones((5, 5), bool)
        for k in range(len(out)):
            opened = ndimage.binary_dilation(ndimage.binary_erosion(zero[k], square), square)
            assert np.array_equal(opened, zero[k]), (call, k)
        # the kept pixels all share one scale, which restores the mean
        kept = out[..., 0][~zero]
        assert np.allclose(kept, kept[0]) and kept[0] > 1
        assert kept[0] == pytest.approx(zero.size / (~zero).sum(), rel=1e-5)
        means.append(out.mean())
        kept_fractions.append((~zero).mean())
    assert np.mean(means) == pytest.approx(1.0, abs=1e-4)
    assert 0.72 < np.mean(kept_fractions) < 0.88, kept_fractions


def test_dropblock_channels_get_their_own_blocks() -> None:
    tf.random.set_seed(3)
    out = DropBlock2D(block_size=3, keep_prob=0.7)(tf.ones((4, 16, 16, 8)), training=True).numpy()
    zero = out == 0
    assert not all(np.array_equal(zero[..., 0], zero[..., c]) for c in range(1, 8))


def test_dropblock_block_larger_than_the_map_is_clipped() -> None:
    tf.random.set_seed(5)
    out = DropBlock2D(block_size=7, keep_prob=0.5)(tf.ones((32, 4, 4, 1)), training=True).numpy()
    per_map = out.reshape(32, -1)
    # a 4x4 map can only lose all of itself
    assert all((row == 0).all() or (row > 0).all() for row in per_map)


def test_dropblock_get_config_round_trips() -> None:
    layer = DropBlock2D(block_size=3, keep_prob=0.85, name="drop")
    config = layer.get_config()
    assert config["block_size"] == 3 and config["keep_prob"] == 0.85 and config["name"] == "drop"
    clone = DropBlock2D.from_config(config)
    assert (clone.block_size, clone.keep_prob, clone.name) == (3, 0.85, "drop")
    assert clone.get_config() == config
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(revived, DropBlock2D) and revived.get_config() == config


@pytest.mark.parametrize("kwargs", [{"block_size": 0}, {"keep_prob": 0.0}, {"keep_prob": 1.5}, {"keep_prob": -0.1}])
def test_dropblock_invalid_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DropBlock2D(**kwargs)


# --- spatial attention ------------------------------------------------------------


def test_channel_pool_is_mean_and_max_over_channels() -> None:
    x = np.random.default_rng(4).normal(size=(2, 5, 6, 7)).astype(np.float32)
    out = ChannelPool()(tf.constant(x)).numpy()
    assert out.shape == (2, 5, 6, 2)
    np.testing.assert_allclose(out[..., 0], x.mean(axis=-1), rtol=1e-6, atol=1e-6)
    assert np.array_equal(out[..., 1], x.max(axis=-1))
    assert ChannelPool().compute_output_shape((None, 5, 6, 7)) == (None, 5, 6, 2)
    assert keras.layers.deserialize(keras.layers.serialize(ChannelPool(name="p"))).name == "p"


def test_spatial_attention_reweights_each_pixel() -> None:
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, spatial_attention(inputs, kernel_size=3, name="sa"))
    conv = model.get_layer("sa_map")
    assert not conv.use_bias and conv.kernel_size == (3, 3)
    x = np.random.default_rng(6).uniform(0.1, 1.0, (2, 8, 8, 4)).astype(np.float32)
    pooled = np.stack([x.mean(-1), x.max(-1)], -1)
    weights = keras.Model(inputs, conv.output).predict(x, verbose=0)
    assert weights.shape == (2, 8, 8, 1) and (weights > 0).all() and (weights < 1).all()
    np.testing.assert_allclose(model.predict(x, verbose=0), x * weights, rtol=1e-6)
    expected = tf.sigmoid(tf.nn.conv2d(pooled, conv.kernel, 1, "SAME")).numpy()
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
