"""The held-out protocol: train and test regions are disjoint, far apart, and respected."""

from __future__ import annotations

import numpy as np
import pytest

from gigasynth.data import open_source
from gigasynth.data.regions import Region, held_out_split, resolve_region, split_gap_px
from gigasynth.errors import GigasynthError


def test_split_is_three_disjoint_bands_with_gaps_along_the_longer_side():
    tall = held_out_split(2220, 2967, 0.499)
    assert list(tall) == ["train", "val", "test"]
    assert tall["train"] == Region(0, 0, 2220, 873)
    assert tall["val"] == Region(0, 1386, 2220, 1774)
    assert tall["test"] == Region(0, 2287, 2220, 2967)
    gap = split_gap_px(0.499)
    assert gap == 513
    assert tall["val"].y0 - tall["train"].y1 == tall["test"].y0 - tall["val"].y1 == gap
    wide = held_out_split(3000, 1000, None)
    assert all(r.y0 == 0 and r.y1 == 1000 for r in wide.values())
    assert wide["val"].x0 - wide["train"].x1 == wide["test"].x0 - wide["val"].x1 == 512
    assert wide["test"].x1 == 3000
    # the shares: 45 / 20 / 35 % of the length less the gaps
    usable = 3000 - 2 * 512
    assert [r.width for r in wide.values()] == [889, 395, usable - 889 - 395]


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("0,0,0,5", "empty"),
        ("0,0,3000,10", "outside"),
        ("-1,0,5,5", "outside"),
        ("validation", "expected 'train', 'val', 'test'"),
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
    for name in ("train", "val", "test"):
        source = open_source(slide_path, 2.0, region=name)
        r = source.region
        corners = source.positions(rng, 500, 128)
        assert (corners[:, 0] >= r.y0).all() and (corners[:, 0] + 128 <= r.y1).all()
        assert (corners[:, 1] >= r.x0).all() and (corners[:, 1] + 128 <= r.x1).all()
        assert source.sample(rng, 2, 64).shape == (2, 64, 64, 3)
    whole = open_source(slide_path, 2.0)
    ys = whole.positions(rng, 500, 128)[:, 0]
    assert ys.min() < 873 and ys.max() > 2287  # unrestricted patches cross every region


def test_regions_apply_to_slides_only(tmp_path):
    np.savez(tmp_path / "a.npz", train=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(GigasynthError, match="slides only"):
        open_source(tmp_path / "a.npz", region="train")


def test_a_region_without_tissue(slide_path):
    with pytest.raises(GigasynthError, match="no tissue found .* region 0,2000,300,2300"):
        open_source(slide_path, 1.0, region="0,2000,300,2300")
