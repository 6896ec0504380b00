"""The models bundled with saunet: saunet-run's default and its float original (see MODEL_CARD.md)."""

from pathlib import Path

FOLDER = Path(__file__).parent
#: saunet-run's default model: the int8 export the model card describes.
BUNDLED_MODEL = FOLDER / "saunet_int8.tflite"
#: The float Keras model it was exported from, with its description and patient split beside it.
BUNDLED_FLOAT = FOLDER / "saunet_float.keras"
