"""The picture of a slide evaluation: real and synthetic crops per zoom, and the band ratios."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from gigasynth.atomic import atomic_write_bytes
from gigasynth.errors import FieldError
from gigasynth.eval.slide import SlideEvaluation
from gigasynth.images import grid

DPI = 100
WIDTH_IN = 12.0
ROW_IN = 2.6  # one row of crops per scale (two lines of examples per side)
PLOT_IN = 3.6  # the band-ratio plot
SHOWN_PX = 128  # each crop is drawn at this size (nearest neighbour)
GAP_PX = 16  # between the real and the synthetic crops
SPACE_PX = 4  # between crops of one side
RATIO_CLIP = (1e-3, 1e3)  # band ratios are drawn within these bounds (log axis)


def report_size(scales: int) -> tuple[int, int]:
    """(width, height) in px of the report of an evaluation at `scales` zooms."""
    return round(WIDTH_IN * DPI), round((ROW_IN * scales + PLOT_IN) * DPI)


def _enlarge(crops: np.ndarray) -> np.ndarray:
    """Crops in two lines, each enlarged to SHOWN_PX by pixel repetition (no smoothing)."""
    factor = max(1, SHOWN_PX // crops.shape[1])
    big = crops.repeat(factor, axis=1).repeat(factor, axis=2)
    big = np.pad(big, ((0, 0), (0, SPACE_PX), (0, SPACE_PX), (0, 0)), constant_values=255)
    return grid(big, max(1, -(-len(big) // 2)))


def _row(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    left, right = _enlarge(real), _enlarge(fake)
    gap = np.full((left.shape[0], GAP_PX, 3), 255, dtype=np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def write_report(evaluation: SlideEvaluation, path: str | Path) -> Path:
    """Write the PNG (size `report_size(len(evaluation.scales))`) atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise FieldError("[report] needs matplotlib: pip install 'gigasynth[baselines]'") from None
    path = Path(path)
    count = len(evaluation.scales)
    fig = plt.figure(figsize=(WIDTH_IN, ROW_IN * count + PLOT_IN), dpi=DPI)
    heights = [ROW_IN] * count + [PLOT_IN]
    axes = fig.subplots(count + 1, 1, gridspec_kw={"height_ratios": heights})
    for ax, result in zip(axes[:-1], evaluation.scales, strict=True):
        real, fake = evaluation.examples[result.scale]
        ax.imshow(_row(real, fake), interpolation="nearest")
        ax.set_axis_off()
        where = f", {result.mpp:.3g} µm/px" if result.mpp else ""
        ax.set_title(
            f"scale {result.scale}x{where}, {result.crop} px crops: real (left) | "
            f"synthetic (right)   KID {result.kid:.3f} [{result.kid_low:.3f}, "
            f"{result.kid_high:.3f}]  FID {result.fid:.0f}  (n={result.n})",
            fontsize=9,
        )
    ax = axes[-1]
    if evaluation.bands:
        labels = [f"{b.low_px}-{b.high_px}" for b in evaluation.bands]
        # a constant side has no band energy: its ratio (0 or inf) is drawn at the clip
        ratios = [
            min(max(b.ratio, RATIO_CLIP[0]), RATIO_CLIP[1])
            if math.isfinite(b.ratio)
            else RATIO_CLIP[1]
            for b in evaluation.bands
        ]
        ax.bar(labels, ratios, color="#7a4e9c")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        low, high = min(*ratios, 0.5) / 1.3, max(*ratios, 2.0) * 1.3
        ax.set_yticks(
            [
                t
                for t in (0.001, 0.01, 0.03, 0.1, 0.25, 0.5, 1, 2, 4, 10, 30, 100, 1000)
                if low <= t <= high
            ]
        )
        ax.set_ylim(low, high)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhspan(1 / 1.5, 1.5, color="#cccccc", alpha=0.5, zorder=0)
        at = f" at {evaluation.mpp:.3g} µm/px" if evaluation.mpp else ""
        ax.set_xlabel(f"luminance octave band (px{at}); grey: 0.67-1.5")
        ax.set_ylabel("energy, synthetic / real")
    else:
        ax.set_axis_off()
    cr, cf = evaluation.colour_real, evaluation.colour_fake
    ax.set_title(
        f"band energy ratios; background real {cr.background_fraction:.0%}, "
        f"synthetic {cf.background_fraction:.0%}; tissue OD H {cr.haematoxylin_mean:.2f}"
        f" / {cf.haematoxylin_mean:.2f}, E {cr.eosin_mean:.2f} / {cf.eosin_mean:.2f} "
        "(real / synthetic)",
        fontsize=9,
    )
    fig.subplots_adjust(left=0.07, right=0.98, top=0.96, bottom=0.08, hspace=0.35)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
