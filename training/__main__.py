"""`python -m saunet.training train|eval ...`, the same as saunet-train and saunet-eval."""

from saunet.training.cli import main

main()
