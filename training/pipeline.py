"""The tf.data input pipeline: scale, augment image and mask together, batch, prefetch.

Slices are decoded once by the runtime's numpy readers (training/dataset.py) and held in
memory (the whole data set is about 1 GB of uint8); this pipeline does the per-epoch work.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from saunet.runtime.preprocess import HEAD_LEVEL, Preprocessing
from saunet.training.config import Augmentation

#: The FLAIR channel of the data set's slices (pre-contrast, FLAIR, post-contrast).
FLAIR = Preprocessing(input_size=1).channels.index("FLAIR")


def random_transforms(batch: tf.Tensor, size: int, aug: Augmentation) -> tf.Tensor:
    """Per-sample projective transforms (batch x 8) mapping output to input pixel coordinates.

    One matrix per sample combines flip, rotation, shear, zoom and shift about the centre, so
    image and mask get the same geometry and are resampled once.
    """

    def uniform(limit: float) -> tf.Tensor:
        return tf.random.uniform([batch], -limit, limit)

    theta = uniform(math.radians(aug.rotation))
    shear = uniform(math.radians(aug.shear))
    zoom_x = 1.0 + uniform(aug.zoom)
    zoom_y = 1.0 + uniform(aug.zoom)
    shift_x = uniform(aug.shift) * size
    shift_y = uniform(aug.shift) * size
    flip = tf.where(tf.random.uniform([batch]) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([batch])
    cos, sin = tf.cos(theta), tf.sin(theta)
    # output->input map: x_in = A @ (x_out - c) + c + shift, with A = R(theta) S(shear) Z F
    a00 = cos * zoom_x * flip
    a01 = (-sin + cos * tf.tan(shear)) * zoom_y
    a10 = sin * zoom_x * flip
    a11 = (cos + sin * tf.tan(shear)) * zoom_y
    centre = (size - 1) / 2.0
    b0 = centre - a00 * centre - a01 * centre + shift_x
    b1 = centre - a10 * centre - a11 * centre + shift_y
    zeros = tf.zeros([batch])
    return tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)


def random_contrast(images: tf.Tensor, contrast: float) -> tf.Tensor:
    """Each slice's channels (images in [0, 1]) raised to their own random power about their mean
    level over the head: level * (x / level) ** power, power log-uniform in [1/(1 + contrast),
    1 + contrast]. Black stays black, the order of a channel's pixels is kept, values stay in [0, 1]."""
    head = tf.cast(tf.reduce_max(images, axis=-1, keepdims=True) > HEAD_LEVEL / 255.0, images.dtype)
    pixels = tf.maximum(tf.reduce_sum(head, axis=[1, 2], keepdims=True), 1.0)
    level = tf.maximum(tf.reduce_sum(images * head, axis=[1, 2], keepdims=True) / pixels, 1.0 / 255.0)
    spread = math.log1p(contrast)
    power = tf.exp(tf.random.uniform([tf.shape(images)[0], 1, 1, images.shape[-1]], -spread, spread))
    return tf.clip_by_value(level * tf.pow(images / level, power), 0.0, 1.0)


def augment(
    images: tf.Tensor, masks: tf.Tensor, aug: Augmentation, soft_masks: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies one random transform per sample to a batch of images and their masks.

    Images are resampled bilinearly, 0/1 masks by nearest neighbour so they stay 0/1, and
    soft masks (tumour shares, "area" targets) bilinearly like their images; the area moved in
    from outside the scan is black (background), as in the scans themselves.
    """
    shape = tf.shape(images)
    if aug.contrast:  # before grey, so that a grey slice carries its FLAIR's new contrast
        images = random_contrast(images, aug.contrast)
    if aug.grey:
        grey = tf.random.uniform([shape[0], 1, 1, 1]) < aug.grey
        images = tf.where(grey, tf.repeat(images[..., FLAIR : FLAIR + 1], images.shape[-1], axis=-1), images)
    transforms = random_transforms(shape[0], images.shape[1], aug)
    output_shape = shape[1:3]

    def warp(x: tf.Tensor, interpolation: str) -> tf.Tensor:
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=transforms,
            output_shape=output_shape,
            fill_value=0.0,
            interpolation=interpolation,
            fill_mode="CONSTANT",
        )

    return (
        tf.ensure_shape(warp(images, "BILINEAR"), images.shape),
        tf.ensure_shape(warp(masks, "BILINEAR" if soft_masks else "NEAREST"), masks.shape),
    )


def sample_tumour_slices(images: np.ndarray, masks: np.ndarray, share: float, seed: int | None) -> tf.data.Dataset:
    """An epoch of len(images) slices, each one with tumour with probability `share`.

    About two slices in three of the data set show no tumour, so a model sees few tumour
    pixels per batch. The data set author's training code (mateuszbuda/brain-segmentation-
    pytorch) draws a patient's slices in proportion to their tumour area, with a tenth of the
    weight spread evenly, so that most draws show tumour. The epoch keeps its length,
    so a learning-rate schedule counted in steps is unchanged. Both pools are reshuffled and
    drawn anew each epoch.

    Raises:
        ValueError: `share` outside (0, 1), or one of the two pools empty.
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"tumour share {share}: give a fraction between 0 and 1 (exclusive)")
    has_tumour = masks.any(axis=(1, 2))
    if has_tumour.all() or not has_tumour.any():
        kind = "empty" if has_tumour.all() else "tumour"
        raise ValueError(f"tumour share {share}: the training slices include no {kind} slice to draw")

    def pool(chosen: np.ndarray, offset: int) -> tf.data.Dataset:
        part = tf.data.Dataset.from_tensor_slices((images[chosen], masks[chosen][..., None]))
        return part.shuffle(
            int(chosen.sum()), seed=None if seed is None else seed + offset, reshuffle_each_iteration=True
        ).repeat()

    mixed = tf.data.Dataset.sample_from_datasets(
        [pool(has_tumour, 1), pool(~has_tumour, 2)],
        weights=[share, 1.0 - share],
        seed=seed,
        rerandomize_each_iteration=True,
    )
    return mixed.take(len(images))


def make_dataset(
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int,
    spec: Preprocessing,
    augmentation: Augmentation | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    tumour_share: float | None = None,
) -> tf.data.Dataset:
    """(uint8 images n x s x s x 3, masks n x s x s) -> batches of (float image, float mask).

    Masks are uint8 0/1, or floats in [0, 1] (tumour shares: "area" targets), which augmentation
    then resamples bilinearly instead of by nearest neighbour.

    Scaling is `runtime.preprocess.to_input`'s arithmetic (float32 times float32 scale).
    With `tumour_share`, slices are drawn (shuffled) by `sample_tumour_slices` instead of
    each being shown once.
    """
    scale = tf.constant(np.float32(spec.scale))
    soft_masks = np.issubdtype(masks.dtype, np.floating)
    if tumour_share is None:
        data = tf.data.Dataset.from_tensor_slices((images, masks[..., None]))
        if shuffle:
            data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    else:
        data = sample_tumour_slices(images, masks, tumour_share, seed)
    data = data.batch(batch_size)

    def prepare(x, y):
        x = tf.cast(x, tf.float32) * scale
        y = tf.cast(y, tf.float32)
        if augmentation is not None:
            x, y = augment(x, y, augmentation, soft_masks)
        return x, y

    data = data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Keras makes a new iterator every epoch, and deleting the old one waits for tf.data's autotuning
    # thread to wake from its sleep, which grows to a minute: up to 60 s idle between epochs (a
    # third of a 128x128 epoch on 2 cores). Without autotuning, AUTOTUNE means one call per core and
    # the order of the batches is unchanged.
    options.autotune.enabled = False
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)
