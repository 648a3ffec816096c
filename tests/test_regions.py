"""The held-out protocol: train and test regions are disjoint, far apart, and respected."""

from __future__ import annotations

import numpy as np
import pytest

from gigasynth.data import open_source
from gigasynth.data.regions import Region, held_out_split, resolve_region, split_gap_px
from gigasynth.errors import GigasynthError


def test_split_is_disjoint_with_a_gap_along_the_longer_side():
    tall = held_out_split(2220, 2967, 0.499)
    assert tall["train"] == Region(0, 0, 2220, tall["train"].y1)
    assert tall["test"].y1 == 2967 and tall["test"].x1 == 2220
    assert tall["test"].y0 - tall["train"].y1 == split_gap_px(0.499) == 513
    wide = held_out_split(3000, 1000, None)
    assert wide["train"].y1 == wide["test"].y1 == 1000
    assert wide["test"].x0 - wide["train"].x1 == 512


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("0,0,0,5", "empty"),
        ("0,0,3000,10", "outside"),
        ("-1,0,5,5", "outside"),
        ("val", "expected 'train', 'test'"),
        ("1,2,3", "expected"),
        ("0,0,²,5", "expected"),
    ],
)
def test_bad_regions_are_one_line_errors(spec, problem):
    with pytest.raises(GigasynthError, match=problem):
        resolve_region(spec, 2220, 2967, 0.5)


def test_a_slide_too_small_to_split():
    with pytest.raises(GigasynthError, match="too small"):
        held_out_split(100, 200, 1.0)


def test_slide_patches_stay_inside_their_region(slide_path):
    rng = np.random.default_rng(0)
    for name in ("train", "test"):
        source = open_source(slide_path, 2.0, region=name)
        r = source.region
        corners = source.positions(rng, 500, 128)
        assert (corners[:, 0] >= r.y0).all() and (corners[:, 0] + 128 <= r.y1).all()
        assert (corners[:, 1] >= r.x0).all() and (corners[:, 1] + 128 <= r.x1).all()
        assert source.sample(rng, 2, 64).shape == (2, 64, 64, 3)
    whole = open_source(slide_path, 2.0)
    ys = whole.positions(rng, 500, 128)[:, 0]
    assert ys.min() < 1228 and ys.max() > 1741  # unrestricted patches cross both regions


def test_regions_apply_to_slides_only(tmp_path):
    np.savez(tmp_path / "a.npz", train=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(GigasynthError, match="slides only"):
        open_source(tmp_path / "a.npz", region="train")


def test_a_region_without_tissue(slide_path):
    with pytest.raises(GigasynthError, match="no tissue found .* region 0,2000,300,2300"):
        open_source(slide_path, 1.0, region="0,2000,300,2300")
