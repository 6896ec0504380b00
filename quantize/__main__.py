"""`python -m saunet.quantize SOURCE --int8 ...`, the same as saunet-export."""

from saunet.quantize.cli import main

main()
