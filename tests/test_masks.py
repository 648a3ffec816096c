"""Procedural tissue masks (gigasynth.cascade.masks): deterministic, seed-dependent, physical
in size, tissue-like in fraction, holes and edges; bad arguments are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from gigasynth.cascade.masks import MAX_MASK_PIXELS, generate_tissue_mask
from gigasynth.errors import GigasynthError

SEEDS = range(20)
MPP = 16.0


def edge_count(mask: np.ndarray) -> int:
    """Tissue/background boundaries between 4-neighbours: the mask's perimeter in pixel edges."""
    return int((mask[1:] != mask[:-1]).sum() + (mask[:, 1:] != mask[:, :-1]).sum())


def enclosed_background(mask: np.ndarray) -> np.ndarray:
    """Background pixels not connected (4-neighbours) to the field's border: holes."""
    background = ~mask
    reached = np.zeros_like(background)
    reached[[0, -1], :] = background[[0, -1], :]
    reached[:, [0, -1]] = background[:, [0, -1]]
    while True:
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= background
        if np.array_equal(grown, reached):
            return background & ~reached
        reached = grown


def test_deterministic_bool_mask_of_the_asked_shape():
    first = generate_tissue_mask(3, 140, 90, MPP)
    assert first.dtype == bool and first.shape == (90, 140)
    assert np.array_equal(first, generate_tissue_mask(3, 140, 90, MPP))
    assert np.array_equal(first, generate_tissue_mask(np.int64(3), 140, 90, np.float32(16.0)))


def test_different_seeds_differ():
    masks = [generate_tissue_mask(seed, 125, 125, MPP) for seed in SEEDS]
    for i, a in enumerate(masks):
        for b in masks[i + 1 :]:
            assert (a != b).mean() > 0.02


def test_same_outline_at_another_resolution():
    """The outline is drawn in µm: 8 µm/px averaged to 16 µm/px agrees with 16 µm/px drawn."""
    for seed in range(6):
        coarse = generate_tissue_mask(seed, 125, 125, 16.0)
        fine = generate_tissue_mask(seed, 250, 250, 8.0)
        pooled = fine.reshape(125, 2, 125, 2).mean(axis=(1, 3))
        agree = coarse == (pooled >= 0.5)
        assert agree.mean() > 0.97, (seed, agree.mean())
        assert abs(coarse.mean() - fine.mean()) < 0.02


@pytest.mark.parametrize("side", [125, 500])  # 2 mm and 8 mm fields at 16 µm/px
def test_tissue_fraction_varies_and_stays_mostly_in_range(side):
    fractions = np.array([generate_tissue_mask(seed, side, side, MPP).mean() for seed in SEEDS])
    assert fractions.std() > 0.05  # varies by seed
    in_range = (fractions >= 0.2) & (fractions <= 0.8)
    assert in_range.mean() >= 0.75, np.round(fractions, 2)
    assert (fractions > 0).all()  # every field shows some tissue


def test_a_field_wider_than_the_largest_piece_is_not_mostly_glass():
    """A 30 mm field gets more pieces of at most 10 mm, not the same few on more glass."""
    fractions = [generate_tissue_mask(seed, 600, 600, 50.0).mean() for seed in range(5)]
    assert all(0.15 <= f <= 0.8 for f in fractions), np.round(fractions, 2)


def test_holes_in_a_fair_share_of_seeds():
    """Background enclosed by tissue (vessels, fat, tears) of at least 3 px (a 50 µm hole)."""
    with_holes = [
        enclosed_background(generate_tissue_mask(s, 250, 250, MPP)).sum() >= 3 for s in SEEDS
    ]
    assert sum(with_holes) >= len(SEEDS) // 2


def test_edges_smooth_against_thresholded_white_noise():
    """Perimeter per tissue pixel: smooth outlines are far below white noise of the same
    fraction (the real slide's Otsu mask at 16 µm/px: 0.36; white noise: 2.7)."""
    rng = np.random.default_rng(0)
    for seed in SEEDS:
        mask = generate_tissue_mask(seed, 250, 250, MPP)
        noise = rng.random(mask.shape) < mask.mean()
        ratio = edge_count(mask) / mask.sum()
        assert ratio < 0.3
        assert ratio < 0.1 * edge_count(noise) / noise.sum()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, 0, 10, 16.0), "width must be a positive integer"),
        ((1, 10, -3, 16.0), "height must be a positive integer"),
        ((1, 10.5, 10, 16.0), "width must be a positive integer"),
        ((1, 1 << 14, 1 << 13, 16.0), f"exceeds {MAX_MASK_PIXELS:,} pixels"),
        ((1, 10, 10, float("nan")), "mpp must be a positive finite number"),
        ((1, 10, 10, float("inf")), "mpp must be a positive finite number"),
        ((1, 10, 10, 0.0), "mpp must be a positive finite number"),
        ((1, 10, 10, "16"), "mpp must be a number"),
        (("1", 10, 10, 16.0), "seed must be an integer"),
        ((True, 10, 10, 16.0), "seed must be an integer"),
    ],
)
def test_bad_arguments_are_one_line_errors(args, message):
    with pytest.raises(GigasynthError, match=message) as info:
        generate_tissue_mask(*args)
    assert "\n" not in str(info.value)


def test_calibration_reads_the_train_region_only(slide_path):
    """The fitted coverage comes from the train region's tissue fraction (checked against an
    independent read of those pixels), not the whole slide's, and generated fields of the
    region's size then have that fraction (median over the calibration's seeds)."""
    import openslide
    from PIL import Image

    from gigasynth.cascade.masks import calibrate_masks, median_fraction, region_tissue
    from gigasynth.data.regions import held_out_split
    from gigasynth.data.tissue import tissue_mask

    slide = openslide.OpenSlide(str(slide_path))
    train = held_out_split(*slide.dimensions, 0.499)["train"]
    calibration = calibrate_masks(slide_path, "train")
    assert calibration.region == str(train)
    d = 16 / 0.499  # level-0 px per calibration px
    width, height = int(train.width // d), int(train.height // d)
    assert (calibration.width, calibration.height) == (width, height) == (69, 27)
    pixels = slide.read_region((train.x0, train.y0), 0, (round(width * d), round(height * d)))
    small = pixels.convert("RGB").resize((width, height), Image.Resampling.BOX)
    assert calibration.tissue_fraction == pytest.approx(tissue_mask(np.asarray(small)).mean())
    whole, _ = region_tissue(slide_path, f"0,0,{slide.dimensions[0]},{slide.dimensions[1]}")
    assert whole.mean() > 1.5 * calibration.tissue_fraction  # the val and test rows are richer
    fitted = median_fraction(calibration.coverage, width, height, 16.0)
    assert fitted == pytest.approx(calibration.tissue_fraction, abs=0.01)
    assert median_fraction(1.0, width, height, 16.0) > 2 * calibration.tissue_fraction


def test_coverage_scales_tissue_and_is_checked():
    small = np.mean([generate_tissue_mask(s, 128, 128, 16.0, 0.5).mean() for s in range(12)])
    large = np.mean([generate_tissue_mask(s, 128, 128, 16.0, 1.0).mean() for s in range(12)])
    assert small < 0.6 * large
    for bad in (0.0, -1.0, 11.0, True, "1"):
        with pytest.raises(GigasynthError, match="mask coverage must be a number"):
            generate_tissue_mask(0, 8, 8, 16.0, bad)
