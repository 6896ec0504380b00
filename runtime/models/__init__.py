"""The models bundled with saunet: saunet-run's defaults and the float original (see MODEL_CARD.md)."""

from pathlib import Path

FOLDER = Path(__file__).parent
#: The single int8 model the model card describes: saunet-run's default, or with --fast when an ensemble is bundled.
BUNDLED_MODEL = FOLDER / "saunet_int8.tflite"
#: The float Keras model it was exported from, with its description and patient split beside it.
BUNDLED_FLOAT = FOLDER / "saunet_float.keras"
#: The fold models' int8 exports, averaged: saunet-run's default when present (see ENSEMBLE_FILE's members).
BUNDLED_ENSEMBLE = FOLDER / "ensemble" / "ensemble.json"
