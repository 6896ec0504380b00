"""Command-line number types shared by saunet's commands: ranges that refuse NaN.

click.FloatRange compares the value with its bounds, and every comparison with NaN is false,
so `--threshold nan` passes a FloatRange(0, 1). A NaN threshold or learning rate gives masks
or models that look like results; refusing it where the command line is read is the cure.
"""

from __future__ import annotations

import math

import click


class FiniteFloatRange(click.FloatRange):
    """A click.FloatRange that also refuses NaN and infinities (no saunet option means either)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number
