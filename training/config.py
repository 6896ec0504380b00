"""What a training run is: its settings, the named recipes and the choices the command line offers.

No TensorFlow here, so that `saunet-train --help` and config.json handling start at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from saunet.runtime.preprocess import Preprocessing
from saunet.runtime.spec import ModelSpec, model_spec

SCHEDULES = ("constant", "cosine")
LOSSES = ("dice", "bce-dice")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker")


@dataclass(frozen=True)
class Augmentation:
    """Random affine augmentation, with the meanings of Keras' ImageDataGenerator.

    The defaults are the seed project's settings (where rotation and shear, given in degrees,
    do next to nothing).

    Args:
        rotation: maximum rotation, degrees.
        shift: maximum width and height shift, as a fraction of the side.
        shear: maximum shear angle, degrees.
        zoom: zoom factors are drawn from [1 - zoom, 1 + zoom], independently per axis.
        flip: mirror left-right with probability 0.5 (the brain is near-symmetric).
        grey: probability of showing a slice grey, its FLAIR channel copied into all three. The
            data set filled missing sequences with FLAIR, so some volumes are grey; few of them
            are in any training split, and a model that never saw one segments nothing on it.
            Measured since: in those volumes the tumour stands out less in FLAIR than in most
            others, so this imitates their colour but not their contrast
            (benchmarks/reports/2026-12-06-intensity-levels.json, `flair_contrast`).
        contrast: each channel's contrast about its mean level over the head is raised to a
            random power drawn log-uniformly from [1/(1 + contrast), 1 + contrast] (0: off), so
            a region r times as bright as the head's mean becomes about r**power times. The
            volumes whose tumour stands out least in FLAIR are the ones the models miss most out
            of fold; this shows the model tumours as faint (and as bright) as other scanners make
            them.
    """

    rotation: float = 0.25
    shift: float = 0.05
    shear: float = 0.05
    zoom: float = 0.05
    flip: bool = True
    grey: float = 0.0
    contrast: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


#: A new run's length when --epochs is not given (the seed project's).
DEFAULT_EPOCHS = 50


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as config.json and reloaded by --resume.

    The defaults are the best recipe the project knows by cross-validation (docs/experiments.md):
    the bundled models' with contrast augmentation added; RECIPES names the others.
    """

    data: str
    out: str
    preset: str = "seed"
    input_size: int = 128
    base_filters: int | None = None
    block_size: int | None = None
    keep_prob: float | None = 1.0
    epochs: int | None = None
    batch_size: int = 16
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    loss: str = "bce-dice"
    smooth: float = 100.0
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    augmentation: Augmentation = field(default_factory=lambda: Augmentation(grey=0.1, contrast=0.5))
    strategy: str = "auto"
    skip_bad: bool = False
    samples: int = 6
    normalise: str = "channel-median"
    tumour_share: float | None = None
    mask_targets: str = "nearest"
    init_from: str | None = None
    folds: int | None = None
    fold: int | None = None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["split"] = list(self.split)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A saved config.json; keys it lacks (written before they existed) take the values they
        had then, so an old run folder resumes and scores as it was trained."""
        names = {f.name for f in fields(cls)}
        values = {**SAVED_BEFORE_RECIPES, **{k: v for k, v in values.items() if k in names}}
        values["split"] = tuple(values["split"])
        augmentation = values["augmentation"]
        if isinstance(augmentation, dict):  # None: trained with --no-augment
            values["augmentation"] = Augmentation(**augmentation)
        return cls(**values)

    def model_spec(self) -> ModelSpec:
        """The model this config trains (what config.json's "model" holds)."""
        preprocessing = Preprocessing(input_size=self.input_size, normalise=self.normalise)
        return model_spec(self.preset, preprocessing, self.base_filters, self.block_size, self.keep_prob)


#: What a config.json without a key meant before the defaults became the "saunet" recipe.
SAVED_BEFORE_RECIPES: dict = {
    "preset": "sa-unet",
    "input_size": 256,
    "keep_prob": None,
    "batch_size": 32,
    "learning_rate": 1e-4,
    "schedule": "constant",
    "loss": "dice",
    "split": (0.85, 0.10, 0.05),
    "augmentation": {},
    "normalise": "none",
}


#: Named recipes, as the TrainConfig fields where they differ from its defaults ("saunet").
RECIPES: dict[str, dict] = {
    "saunet": {},
    "seed-notebook": {
        "preset": "seed",
        "input_size": 256,
        "batch_size": 32,
        "learning_rate": 1e-4,
        "schedule": "constant",
        "loss": "dice",
        "split": (0.85, 0.10, 0.05),
        "keep_prob": None,
        "normalise": "none",
        "augmentation": Augmentation(grey=0.0),
    },
}


def recipe_config(recipe: str, given: dict, **settings) -> TrainConfig:
    """A TrainConfig from a named recipe, the options given on the command line (None: not given)
    and the settings no recipe fixes."""
    values = {**RECIPES[recipe], **{k: v for k, v in given.items() if v is not None}, **settings}
    return TrainConfig(**values)
