"""Training losses and the in-training Dice metric (TensorFlow).

These are what the optimiser and the progress bar see, batch by batch. The figures a run is
judged by (per-patient 3D Dice and the rest) are computed in numpy by saunet.runtime.metrics.
"""

from __future__ import annotations

import tensorflow as tf

from saunet.training.config import LOSSES  # noqa: F401
from saunet.training.keras import keras


def soft_dice(y_true: tf.Tensor, y_pred: tf.Tensor, smooth: float) -> tf.Tensor:
    """The seed's Dice coefficient: pooled over the whole batch, on soft predictions."""
    y_true = tf.cast(y_true, y_pred.dtype)
    intersection = tf.reduce_sum(y_true * y_pred)
    return (2.0 * intersection + smooth) / (tf.reduce_sum(y_true) + tf.reduce_sum(y_pred) + smooth)


@keras.utils.register_keras_serializable(package="saunet")
class DiceLoss(keras.losses.Loss):
    """1 - batch soft Dice (the seed trains on -Dice; the constant changes no gradient).

    Args:
        smooth: added to numerator and denominator (the seed uses 100).
        bce_weight: weight of binary cross-entropy added to it (0: Dice alone).
    """

    def __init__(self, smooth: float = 100.0, bce_weight: float = 0.0, name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)
        self.bce_weight = float(bce_weight)

    def call(self, y_true, y_pred):
        loss = 1.0 - soft_dice(y_true, y_pred, self.smooth)
        if self.bce_weight:
            loss += self.bce_weight * tf.reduce_mean(keras.losses.binary_crossentropy(y_true, y_pred))
        return loss

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth, "bce_weight": self.bce_weight}


def make_loss(name: str, smooth: float) -> DiceLoss:
    """The loss named on the command line: `dice` or `bce-dice` (BCE + Dice, equal weights)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return DiceLoss(smooth=smooth, bce_weight=1.0 if name == "bce-dice" else 0.0)


@keras.utils.register_keras_serializable(package="saunet")
class BatchDice(keras.metrics.Mean):
    """The seed's batch-pooled soft Dice (smoothing 100), averaged over the epoch's batches."""

    def __init__(self, smooth: float = 100.0, name: str = "dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(soft_dice(y_true, y_pred, self.smooth))

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


def training_metrics() -> list:
    """Binary accuracy, IoU of the thresholded mask, and the seed's batch soft Dice."""
    return [
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name="iou"),
        BatchDice(),
    ]
