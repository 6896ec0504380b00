"""SA-UNet and the seed project's variant, as one short function of named blocks.

SA-UNet: Guo, Szemenyei, Yi, Wang, Chen, Fan 2020, "SA-UNet: Spatial Attention U-Net for
Retinal Vessel Segmentation" (ICPR 2020; Keras code in clguo/SA-UNet).
The `seed` preset follows suniash/brain_mri_segmentation, the notebook this project grew from,
with DropBlock2D in place of its Dropout as its README describes (../shared/REFERENCES.md).
"""

from __future__ import annotations

from dataclasses import replace

from saunet.runtime.preprocess import Preprocessing
from saunet.runtime.spec import PRESETS, ModelSpec, model_spec
from saunet.training.keras import keras
from saunet.training.layers import DropBlock2D, spatial_attention

layers = keras.layers


def conv_unit(x, filters: int, spec: ModelSpec, name: str):
    """Conv2D 3x3 (with bias) -> DropBlock2D -> BatchNorm -> ReLU.

    Args:
        x: input feature map.
        filters: output channels.
        spec: supplies the DropBlock settings.
        name: prefix of the four layers' names (the int8 export finds DropBlocks by it).
    """
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    if spec.dropblock:
        x = DropBlock2D(spec.block_size, spec.keep_prob, name=f"{name}_dropblock")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def two_conv(x, filters: int, spec: ModelSpec, name: str):
    """Two conv units of the same width: one U-Net level.

    Args:
        x: input feature map.
        filters: channels of both units.
        spec: supplies the DropBlock settings.
        name: prefix of the units' names.
    """
    x = conv_unit(x, filters, spec, f"{name}_a")
    return conv_unit(x, filters, spec, f"{name}_b")


def down(x, filters: int, spec: ModelSpec, name: str):
    """An encoder level: two conv units, then a 2x2 max-pool. Returns (skip, pooled).

    Args:
        x: input feature map.
        filters: channels of the level.
        spec: supplies the DropBlock settings.
        name: prefix of the layers' names.
    """
    skip = two_conv(x, filters, spec, name)
    return skip, layers.MaxPooling2D(2, name=f"{name}_pool")(skip)


def up_cat(x, skip, filters: int, spec: ModelSpec, name: str):
    """A decoder level: Conv2DTranspose 3x3 stride 2, concatenate the skip, two conv units.

    Args:
        x: the coarser feature map.
        skip: the encoder map of the target resolution.
        filters: channels of the transposed convolution and of both units.
        spec: supplies the DropBlock settings.
        name: prefix of the layers' names.
    """
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=f"{name}_upconv")(x)
    x = layers.Concatenate(name=f"{name}_cat")([x, skip])
    return two_conv(x, filters, spec, name)


def build_saunet(
    spec: ModelSpec | str = "sa-unet",
    input_size: int | None = None,
    channels: int = 3,
    base_filters: int | None = None,
    block_size: int | None = None,
    keep_prob: float | None = None,
    dropblock: bool | None = None,
    batch_size: int | None = None,
) -> keras.Model:
    """Builds an SA-UNet for binary segmentation; the output is a sigmoid probability map.

    At 256x256x3 and default widths, `sa-unet` has 538,707 parameters and `seed` 1,129,940,
    the counts of the reference code (tests check both).

    Args:
        spec: the model's description, or a preset's name ("sa-unet" or "seed") to describe
            with the arguments below.
        input_size: side of the square input (the spec's by default, else 256); must be
            divisible by 2 ** levels.
        channels: input channels (3: pre-contrast, FLAIR, post-contrast).
        base_filters: width of the first level (16); deeper levels double it.
        block_size, keep_prob: DropBlock2D settings; the preset's by default.
        dropblock: False builds the inference graph without DropBlock2D (same weights); the
            spec's by default.
        batch_size: a fixed batch (the int8 export uses 1 for static shapes); None: any.
    """
    if isinstance(spec, str):
        spec = model_spec(spec, Preprocessing(input_size=input_size or 256), base_filters, block_size, keep_prob)
    elif input_size is not None:
        spec = replace(spec, preprocessing=replace(spec.preprocessing, input_size=input_size))
    if dropblock is not None:
        spec = replace(spec, dropblock=dropblock)
    input_size = spec.input_size
    levels = len(spec.filters)
    if input_size % (2**levels):
        raise ValueError(f"input size {input_size} is not divisible by {2**levels} ({levels} poolings)")

    inputs = keras.Input((input_size, input_size, channels), batch_size=batch_size, name="image")
    skips, x = [], inputs
    for level, width in enumerate(spec.filters, start=1):
        skip, x = down(x, width, spec, f"down{level}")
        skips.append(skip)
    if spec.bottleneck:
        x = conv_unit(x, 2 * spec.filters[-1], spec, "bottom_a")
        x = spatial_attention(x, use_bias=spec.attention_bias)
        x = conv_unit(x, 2 * spec.filters[-1], spec, "bottom_b")
    else:
        x = spatial_attention(x, use_bias=spec.attention_bias)
    for level, (width, skip) in reversed(list(enumerate(zip(spec.filters, skips), start=1))):
        x = up_cat(x, skip, width, spec, f"up{level}")
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    return keras.Model(inputs, outputs, name=f"saunet_{spec.preset.replace('-', '_')}")


def custom_objects() -> dict:
    """What load_model needs beyond Keras; the layers register themselves on import."""
    import saunet.training.layers  # noqa: F401
    import saunet.training.losses  # noqa: F401

    return {}


__all__ = ["PRESETS", "ModelSpec", "build_saunet", "custom_objects", "model_spec"]
