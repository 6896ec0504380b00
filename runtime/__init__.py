"""saunet's device runtime: numpy, pillow, click and a LiteRT interpreter; never TensorFlow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("saunet")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
