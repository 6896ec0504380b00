"""Quantization-aware fine-tuning with tensorflow-model-optimization.

The trained model's conv units are Conv2D -> DropBlock2D -> BatchNorm -> ReLU. DropBlock is
the identity at inference, but standing between Conv2D and BatchNorm it keeps tfmot from
folding the BatchNorm, which would then stay a separate (float-ranged) op. So the model is
rebuilt without DropBlock (same layer names, same weights) before it is annotated: every
BatchNorm folds into its convolution. ChannelPool and the attention Multiply have no default
QuantizeConfig; they get one that only quantizes their output, so it carries an int8 range.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from saunet.runtime.spec import ModelSpec
from saunet.training.keras import keras
from saunet.training.layers import ChannelPool, DropBlock2D
from saunet.training.losses import make_loss, training_metrics

quantizers = tfmot.quantization.keras.quantizers


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


def fine_tune(
    qat_model: keras.Model,
    dataset: tf.data.Dataset,
    epochs: int,
    learning_rate: float,
    steps_per_epoch: int | None = None,
) -> list[float]:
    """A few epochs of training with fake quantization; returns the loss per epoch."""
    qat_model.compile(keras.optimizers.Adam(learning_rate), loss=make_loss("dice", 100.0), metrics=training_metrics())
    history = qat_model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    return [float(x) for x in np.asarray(history.history["loss"])]
