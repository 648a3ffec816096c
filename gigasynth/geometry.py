"""Where an array sits on the canvas and which of its sides are canvas border.

The vocabulary of the tiled engine's invariants I1 and I3: random numbers are keyed by
canvas coordinates (`Window`, the offset of an array's first pixel), and reflect padding
applies only on the sides of an array that lie on the canvas border (`Borders`); on the
other sides the array is an engine tile with its halo, and a 3x3 update shrinks it by one
pixel there. Nothing here imports from the rest of gigasynth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Where an array sits on the canvas: global offset of its first row/column."""

    y0: int = 0
    x0: int = 0


@dataclass(frozen=True)
class Borders:
    """Which sides of an array lie on the canvas border (reflect-padded there)."""

    top: bool = True
    bottom: bool = True
    left: bool = True
    right: bool = True

    def shrink(self, window: Window) -> Window:
        """The window of an update's output: one pixel in on every non-border side."""
        return Window(window.y0 + (not self.top), window.x0 + (not self.left))


ALL_BORDERS = Borders()
