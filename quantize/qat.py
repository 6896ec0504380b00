"""Quantization-aware fine-tuning with tensorflow-model-optimization.

The trained model's conv units are Conv2D -> DropBlock2D -> BatchNorm -> ReLU. DropBlock is
the identity at inference, but standing between Conv2D and BatchNorm it keeps tfmot from
folding the BatchNorm, which would then stay a separate (float-ranged) op. So the model is
rebuilt without DropBlock (same layer names, same weights) before it is annotated: every
BatchNorm folds into its convolution. ChannelPool and the attention Multiply have no default
QuantizeConfig; they get one that only quantizes their output, so it carries an int8 range.

tfmot starts every activation range at [-6, 6] and moves it towards each training batch's
min/max by an exponential average with decay 0.999, so after a few hundred fine-tuning steps
the ranges are still mostly the initial ones: a ReLU output reaching 15 is clipped near 7 and
a third of the levels are spent on negative values that never occur. `calibrate_ranges` sets
them from data first, as post-training quantization does, and fine-tuning starts from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

from saunet.runtime.spec import ModelSpec
from saunet.training.keras import keras
from saunet.training.layers import ChannelPool, DropBlock2D
from saunet.training.losses import training_metrics

quantizers = tfmot.quantization.keras.quantizers
RANGE_SUFFIXES = ("_min:0", "_max:0")


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes a layer's output only: for layers without weights or activations of their own."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


def without_dropblock(model: keras.Model, spec: ModelSpec, batch_size: int | None = None) -> keras.Model:
    """The same network without DropBlock2D layers, weights copied by layer name.

    Rebuilt from the model's description rather than by editing the graph, so the result is an
    ordinary functional model tfmot can clone.
    """
    from saunet.training.model import build_saunet

    clean = build_saunet(spec, channels=model.input_shape[3], dropblock=False, batch_size=batch_size)
    by_name = {layer.name: layer for layer in model.layers}
    for layer in clean.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    missing = [
        layer.name for layer in model.layers if layer.weights and layer.name not in {c.name for c in clean.layers}
    ]
    if missing or any(isinstance(layer, DropBlock2D) for layer in clean.layers):
        raise ValueError(f"rebuilding without DropBlock lost layers: {missing}")
    return clean


def annotate(model: keras.Model) -> keras.Model:
    """Marks every layer for quantization; ChannelPool and Multiply with OutputQuantizeConfig."""

    def mark(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        config = OutputQuantizeConfig() if isinstance(layer, (ChannelPool, keras.layers.Multiply)) else None
        return tfmot.quantization.keras.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), config)

    annotated = keras.models.clone_model(model, clone_function=mark)
    annotated.set_weights(model.get_weights())
    return annotated


def quantize_scope():
    return tfmot.quantization.keras.quantize_scope(
        {"OutputQuantizeConfig": OutputQuantizeConfig, "ChannelPool": ChannelPool}
    )


def quantization_aware(model: keras.Model, spec: ModelSpec, batch_size: int | None = None) -> keras.Model:
    """The trained float model as a QAT model: DropBlock removed, fake-quant everywhere."""
    clean = without_dropblock(model, spec, batch_size)
    with quantize_scope():
        return tfmot.quantization.keras.quantize_apply(annotate(clean))


@contextmanager
def _range_decay(decay: float) -> Iterator[None]:
    """tfmot hard-codes the range average's decay (0.999); this sets it while eager calls trace anew."""
    original = quant_ops.MovingAvgQuantize

    def with_decay(*args, **kwargs):
        return original(*args, **{**kwargs, "ema_decay": decay})

    quant_ops.MovingAvgQuantize = with_decay
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def range_variables(qat_model: keras.Model) -> list[tf.Variable]:
    """The quantizers' range variables (activation and weight min/max) of a QAT model."""
    return [v for v in qat_model.non_trainable_variables if v.name.endswith(RANGE_SUFFIXES)]


def calibrate_ranges(qat_model: keras.Model, batches: Iterable[np.ndarray]) -> None:
    """Sets every quantizer range to the min/max over `batches`, as post-training calibration does.

    Each batch runs in training mode with the range average's decay at 0, so every range is that
    batch's own (nothing clips on the way down the network); the overall min and max are kept.
    BatchNorm layers run in inference mode meanwhile, their statistics untouched.
    """
    variables = range_variables(qat_model)
    lows = {v.ref(): np.inf for v in variables if v.name.endswith("_min:0")}
    highs = {v.ref(): -np.inf for v in variables if v.name.endswith("_max:0")}
    with _range_decay(0.0), batchnorm_frozen(qat_model):
        for batch in batches:
            qat_model(tf.constant(batch), training=True)
            for v in variables:
                value = v.numpy()
                if v.ref() in lows:
                    lows[v.ref()] = np.minimum(lows[v.ref()], value)
                else:
                    highs[v.ref()] = np.maximum(highs[v.ref()], value)
    for v in variables:
        v.assign(lows[v.ref()] if v.ref() in lows else highs[v.ref()])


def batchnorm_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The BatchNormalization layers of a (QAT) model, inside tfmot's wrappers too."""
    inner = [getattr(layer, "layer", layer) for layer in model.layers]
    return [layer for layer in inner if isinstance(layer, keras.layers.BatchNormalization)]


@contextmanager
def batchnorm_frozen(model: keras.Model) -> Iterator[None]:
    """BatchNorm in inference mode (Keras runs a non-trainable BatchNorm so) for the duration:
    normalised by, and not updating, its moving statistics."""
    layers = batchnorm_layers(model)
    before = [layer.trainable for layer in layers]
    for layer in layers:
        layer.trainable = False
    try:
        yield
    finally:
        for layer, trainable in zip(layers, before):
            layer.trainable = trainable


def fine_tune(
    qat_model: keras.Model,
    dataset: tf.data.Dataset,
    epochs: int,
    learning_rate: float,
    loss: keras.losses.Loss,
    steps_per_epoch: int | None = None,
) -> list[float]:
    """A few epochs of training with fake quantization, on `loss` (the run's own); returns the
    loss per epoch.

    BatchNorm runs in inference mode, its moving statistics fixed: the converter folds them into
    the convolutions, so batches of 16 normalised by their own statistics would train the weights
    for a network the device never runs, while the fine-tuning steps overwrite the statistics of
    the whole training run. Its scale and offset still train (tfmot's wrapper keeps them among
    its trainable weights), like the convolutions they fold into.
    """
    with batchnorm_frozen(qat_model):
        qat_model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=training_metrics())
        history = qat_model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    return [float(x) for x in np.asarray(history.history["loss"])]
