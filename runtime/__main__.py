"""`python -m saunet.runtime INPUT...`, the same as saunet-run."""

from saunet.runtime.cli import main

main()
