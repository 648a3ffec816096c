"""The tile plan: coverage, read windows with halos, canvas-border flags (invariant I4)."""

import time
import tracemalloc

import pytest
import torch

from gigasynth.errors import GigasynthError
from gigasynth.geometry import Borders
from gigasynth.tiling import plan_tiles


@pytest.mark.parametrize(
    ("width", "height", "tile", "halo"),
    [(333, 270, 64, 4), (333, 270, 100, 12), (128, 128, 64, 32), (50, 7, 8, 4), (1, 1, 2, 1)],
)
def test_tiles_cover_the_canvas_once(width, height, tile, halo):
    plan = plan_tiles(width, height, tile, halo)
    owner = torch.zeros(height, width, dtype=torch.int64)
    for t in plan:
        owner[t.slices] += 1
        assert t.height <= tile and t.width <= tile
        # Only the last row and column are smaller.
        assert t.height == tile or t.y0 + t.height == height
        assert t.width == tile or t.x0 + t.width == width
    assert bool((owner == 1).all())
    assert [t.index for t in plan] == list(range(len(plan)))
    assert plan.chunk == (min(tile, height), min(tile, width))


def test_read_window_is_tile_plus_halo_clipped_with_border_flags():
    plan = plan_tiles(333, 270, 64, 4)
    by_pos = {(t.y0, t.x0): t for t in plan}
    inner = by_pos[(64, 128)].read_window(4)
    assert (inner.y0, inner.x0, inner.height, inner.width) == (60, 124, 72, 72)
    assert inner.borders == Borders(False, False, False, False)
    corner = by_pos[(0, 0)].read_window(4)
    assert (corner.y0, corner.x0, corner.height, corner.width) == (0, 0, 68, 68)
    assert corner.borders == Borders(top=True, bottom=False, left=True, right=False)
    # The last column is 333 - 320 = 13 px wide: its left neighbour's halo is clipped at
    # the canvas edge, so that window's right side is canvas border (reflect padding).
    before_last = by_pos[(0, 256)].read_window(16)
    assert before_last.x0 + before_last.width == 333
    assert before_last.borders.right and not before_last.borders.left


def test_a_block_of_steps_shrinks_the_window_one_reach_at_a_time():
    """Temporal blocking (I6): after each of K steps the window loses one reach on its
    non-border sides; after all K exactly what `crop` keeps of it covers the tile."""
    plan = plan_tiles(333, 270, 64, 4)
    for t in plan:
        region = t.read_window(5 * 4)
        window = region
        for _ in range(5):
            window = window.inner(4)
        assert window.borders == region.borders
        assert (window.y0, window.x0) == region.output_origin(20)
        rows, cols = t.crop(region, 20)
        assert rows.start == t.y0 - window.y0 and cols.start == t.x0 - window.x0
        assert t.y0 + t.height <= window.y0 + window.height
        assert t.x0 + t.width <= window.x0 + window.width
    middle = plan[7].read_window(8).inner(4)
    assert (middle.y0, middle.x0, middle.height, middle.width) == (60, 60, 72, 72)


def test_crop_finds_the_tile_in_the_shrunk_output():
    plan = plan_tiles(333, 270, 64, 16)
    for t in plan:
        for steps in (16, 5):
            region = t.read_window(16)
            out_h = (
                region.height
                - (0 if region.borders.top else steps)
                - (0 if region.borders.bottom else steps)
            )
            rows, cols = t.crop(region, steps)
            assert rows.stop - rows.start == t.height and cols.stop - cols.start == t.width
            assert rows.start >= 0 and rows.stop <= out_h


def test_tile_zero_is_the_whole_canvas():
    plan = plan_tiles(333, 270, 0, 48)
    (whole,) = plan
    region = whole.read_window(48)
    assert (region.height, region.width) == (270, 333)
    assert region.borders == Borders()
    assert plan.chunk == (270, 333)


def test_redundant_work_shrinks_with_larger_tiles():
    small = plan_tiles(2048, 2048, 128, 12)
    large = plan_tiles(2048, 2048, 512, 12)
    assert small.read_pixels > large.read_pixels > 2048 * 2048


@pytest.mark.parametrize(
    ("tile", "halo", "fragment"), [(7, 4, "smaller than twice the halo"), (-1, 4, "must be 0")]
)
def test_bad_plans_are_one_line_errors(tile, halo, fragment):
    with pytest.raises(GigasynthError, match=fragment):
        plan_tiles(100, 100, tile, halo)


@pytest.mark.parametrize(
    ("width", "height", "tile", "halo"),
    [(333, 270, 64, 4), (50, 7, 8, 4), (128, 128, 64, 32), (90, 60, 0, 9)],
)
def test_plan_arithmetic_is_the_row_major_enumeration(width, height, tile, halo):
    """Tiles made on demand equal the explicit double loop, and so do their read windows."""
    plan = plan_tiles(width, height, tile, halo)
    step = tile or max(width, height)
    expected = [
        (y0, x0, min(step, height - y0), min(step, width - x0))
        for y0 in range(0, height, step)
        for x0 in range(0, width, step)
    ]
    assert len(plan) == len(expected)
    assert [(t.y0, t.x0, t.height, t.width) for t in plan] == expected
    assert plan[-1] == plan[len(plan) - 1]
    with pytest.raises(IndexError):
        plan[len(plan)]
    brute = sum(w.height * w.width for w in (t.read_window(halo) for t in plan))
    assert plan.read_pixels == brute


def test_planning_cost_does_not_grow_with_the_slide():
    """A plan is arithmetic: no per-tile objects, whatever the slide size (admission cost).

    The small plan is checked first so that a per-tile implementation fails here quickly
    instead of building 119 million tiles below.
    """
    for width, height in ((2400, 2400), (262_144, 262_144)):
        tracemalloc.start()
        started = time.perf_counter()
        plan = plan_tiles(width, height, 24, 4)
        count = len(plan)
        last = plan[count - 1]
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == -(-width // 24) * -(-height // 24)
        assert (last.y0, last.x0) == ((height - 1) // 24 * 24, (width - 1) // 24 * 24)
        assert peak < 20_000, f"{width}x{height}: planning allocated {peak} bytes"
        assert seconds < 0.05, f"{width}x{height}: planning took {seconds:.3f} s"
