"""The copy check can fail: a field pieced together from the training region is flagged,
real tissue the model never saw (the validation and test regions) is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gigasynth.data.sources import SlideRegions
from gigasynth.errors import GigasynthError
from gigasynth.eval.copies import COPIED_SHARE_LIMIT, copy_check

DOWNSAMPLE = 4.0  # 2 µm/px: the train region is 555 x 218 px, so each FFT is cheap


def _region(slide: Path, name: str) -> np.ndarray:
    regions = SlideRegions(slide, DOWNSAMPLE, name)
    return np.asarray(regions.read(0, 0, regions.height, regions.width))


def memorised_field(train: np.ndarray, side: int, patch: int, seed: int) -> np.ndarray:
    """The memorising control: a field tiled with patches copied from random places of the
    training region (what a model that stores its training crops would draw)."""
    rng = np.random.default_rng(seed)
    field = np.empty((side, side, 3), np.uint8)
    for y in range(0, side, patch):
        for x in range(0, side, patch):
            sy = int(rng.integers(0, train.shape[0] - patch + 1))
            sx = int(rng.integers(0, train.shape[1] - patch + 1))
            field[y : y + patch, x : x + patch] = train[sy : sy + patch, sx : sx + patch]
    return field


def test_the_memorising_control_fails_and_held_out_tissue_passes(slide_path):
    train = _region(slide_path, "train")
    control = copy_check(train, [memorised_field(train, 256, 32, 0)], samples=40)
    assert control.flagged and control.copied_share > 0.8, control
    assert control.synthetic.median < 0.8 * control.internal.median
    for name in ("val", "test"):
        held_out = copy_check(train, [_region(slide_path, name)], samples=40)
        assert not held_out.flagged, (name, held_out)
        assert held_out.copied_share <= COPIED_SHARE_LIMIT
        assert held_out.synthetic.median == pytest.approx(held_out.internal.median, rel=0.1)
    assert "COPIES the training region" in control.line()


def test_copy_check_refuses_what_it_cannot_measure():
    glass = np.full((64, 64, 3), 245, np.uint8)
    with pytest.raises(GigasynthError, match="too few tissue crops"):
        copy_check(glass, [glass])
    with pytest.raises(GigasynthError, match="multiple of 4"):
        copy_check(glass, [glass], crop=30)
    with pytest.raises(GigasynthError, match="no synthetic field"):
        copy_check(glass, [])


def test_cli_reports_the_copy_check(slide_path, tmp_path, capsys):
    import json

    from gigasynth.cli import main
    from gigasynth.images import write_png

    train = _region(slide_path, "train")
    fake = tmp_path / "control.png"
    write_png(fake, memorised_field(train, 256, 32, 1))
    args = ["eval", "--real", str(slide_path), "--fake", str(fake), "--fake-mpp", "1.996"]
    args += ["--copies", "train", "--scales", "1", "--n", "4", "--crop", "32", "--json"]
    assert main([*args, "--bootstrap", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["copies"]["flagged"] is True and out["copies"]["crop"] == 32
    assert out["real_downsample"] == pytest.approx(4.0)
