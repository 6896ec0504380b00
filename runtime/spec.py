"""One description of a saunet model: its architecture and the preprocessing it was trained with.

It is written into a run's config.json, travels into every export's metadata and reaches the
device with the model, so that no code has to guess a model's preset or widths from layer or
file names. Plain Python: the device reads it without TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from saunet.runtime.preprocess import Preprocessing


@dataclass(frozen=True)
class ModelSpec:
    """What a saunet model is.

    Args:
        preset: "sa-unet" (Guo et al. 2020) or "seed" (the seed notebook's topology).
        filters: encoder widths, one per level; each level ends in a 2x2 max-pool.
        bottleneck: Guo et al. put Conv-SA-Conv at the bottom (True); the seed applies the
            attention straight to the last pooled map and has no bottleneck convolutions.
        attention_bias: whether the 7x7 attention convolution has a bias (seed: yes).
        block_size, keep_prob: DropBlock2D settings (keep_prob 1 drops nothing).
        dropblock: False leaves DropBlock2D out of the graph (it is the identity at inference),
            so each BatchNorm directly follows its Conv2D and the int8 export can fold it.
        preprocessing: how a scan becomes the model's input (its size among it).
    """

    preset: str
    filters: tuple[int, ...]
    bottleneck: bool
    attention_bias: bool
    block_size: int = 7
    keep_prob: float = 0.9
    dropblock: bool = True
    preprocessing: Preprocessing = field(default_factory=Preprocessing)

    @property
    def input_size(self) -> int:
        return self.preprocessing.input_size

    def to_dict(self) -> dict:
        return {**asdict(self), "filters": list(self.filters), "preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelSpec:
        if not isinstance(values, dict) or values.get("preset") not in PRESETS:
            raise ValueError(f"not a saunet model description: {values!r:.80}")
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        known["filters"] = tuple(int(f) for f in known.get("filters", PRESETS[values["preset"]].filters))
        known["preprocessing"] = Preprocessing.from_dict(values.get("preprocessing", {}))
        return cls(**known)


PRESETS: dict[str, ModelSpec] = {
    "sa-unet": ModelSpec("sa-unet", filters=(16, 32, 64), bottleneck=True, attention_bias=False),
    "seed": ModelSpec("seed", filters=(16, 32, 64, 128), bottleneck=False, attention_bias=True),
}


def model_spec(
    preset: str,
    preprocessing: Preprocessing | None = None,
    base_filters: int | None = None,
    block_size: int | None = None,
    keep_prob: float | None = None,
) -> ModelSpec:
    """The named preset with any of its settings overridden."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    if preprocessing is not None:
        spec = replace(spec, preprocessing=preprocessing)
    if base_filters is not None:
        spec = replace(spec, filters=tuple(base_filters * 2**i for i in range(len(spec.filters))))
    if block_size is not None:
        spec = replace(spec, block_size=block_size)
    if keep_prob is not None:
        spec = replace(spec, keep_prob=keep_prob)
    return spec
