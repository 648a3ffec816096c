"""The tile plan: which tiles cover the canvas and what each one reads (invariant I4)."""

from gigasynth.tiling.plan import ReadWindow, Tile, TilePlan, plan_tiles

__all__ = ["ReadWindow", "Tile", "TilePlan", "plan_tiles"]
