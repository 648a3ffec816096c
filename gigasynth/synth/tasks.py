"""Task functions that run on Dask workers: one tile per exchange, one chunk per conversion.

A task gets a few small descriptors (checkpoint reference and hash, tile, buffer
paths), reads its window from the state store, computes and writes its own chunk.
It returns the tile's pixel count; nothing large travels through the scheduler.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gigasynth.cluster import worker_device, worker_model
from gigasynth.diffusion.samplers import Sampler
from gigasynth.geometry import Window
from gigasynth.images import to_uint8
from gigasynth.io import open_level
from gigasynth.models import DiffNCA
from gigasynth.sampling import SampleRequest, denoise_step, initial_noise
from gigasynth.sampling.condition import model_condition, source_span
from gigasynth.sampling.step import round_state, step_noise
from gigasynth.synth.state import read_region, write_region
from gigasynth.tiling import ReadWindow, Tile


@dataclass(frozen=True)
class ModelRef:
    """How a worker finds the model and sampler of a job."""

    checkpoint: str
    sha256: str
    sampler: str
    steps: int | None
    eta: float
    seed: int


@dataclass(frozen=True)
class Exchange:
    """One pass over all tiles: NCA steps `nca_steps` of the diffusion steps at `timesteps`.

    `source` is None for the very first pass (x_T is keyed noise, computed where
    needed); `source_cells` says whether it holds the full cell state or only x.
    The last exchange of a diffusion step (`final`) applies the sampler and writes
    x_{t_prev}; the others write the full cell state. `whole_step`: one exchange runs all
    S NCA steps from x_t (the default), done by the library's `denoise_step` itself; only
    such a pass may run several diffusion steps (a block: temporal blocking, I6), one
    `denoise_step` after the other on a window that shrinks by one step's reach each time.
    """

    timesteps: tuple[int, ...]
    nca_steps: range
    source: Path | None
    source_cells: bool
    target: Path
    final: bool
    whole_step: bool
    condition: Path | None = None  # a conditioned stage's input (WorkDir.condition)

    @property
    def t(self) -> int:
        """The timestep the pass starts from."""
        return self.timesteps[0]


@lru_cache(maxsize=8)
def _sampler(ref: ModelRef) -> Sampler:
    """The job's sampler with its timesteps, built once per worker process."""
    return SampleRequest(ref.sampler, ref.steps, ref.eta).build(
        worker_model(ref.checkpoint, ref.sha256)
    )


def _host(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A window read from the state store as a (1, C, h, w) host tensor; pinned when it
    goes to a GPU, so that the copy runs asynchronously."""
    tensor = torch.from_numpy(array)[None]
    return tensor.pin_memory() if device.type == "cuda" else tensor


def _read_window(exchange: Exchange, tile: Tile, device: torch.device) -> torch.Tensor | None:
    """The stored state a tile's window needs (x or the full cells), on the host; None on
    the very first pass (x_T is keyed noise, made where it is used)."""
    if exchange.source is None:
        return None
    region = tile.read_window(_shrink(exchange))
    return _host(read_region(exchange.source, *region.slices), device)


def _shrink(exchange: Exchange) -> int:
    """Pixels a pass eats on every non-border side: its NCA steps times its diffusion steps."""
    return len(exchange.nca_steps) * len(exchange.timesteps)


def denoise_tiles(
    ref: ModelRef, exchange: Exchange, tiles: tuple[Tile, ...], threads: int | None
) -> int:
    """Run one exchange on `tiles` in turn: read tile + halo, compute, write its chunks.

    The next tile's window is read while the current one computes, and each result is
    written while the next computes (two I/O threads), so a worker's device waits for
    the state store only on its first read. A block of K diffusion steps reads a halo of
    K times one step's reach and writes the tile once. `threads`: torch intra-op threads
    for this task (None: the worker's setting). Returns the pixels written.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    device = worker_device()
    with ThreadPoolExecutor(2, thread_name_prefix="gigasynth-io") as io:
        reading = io.submit(_read_window, exchange, tiles[0], device)
        writing: Future[None] | None = None
        for i, tile in enumerate(tiles):
            stored = reading.result()
            if i + 1 < len(tiles):
                reading = io.submit(_read_window, exchange, tiles[i + 1], device)
            out = _compute(ref, exchange, tile, stored, device)
            if writing is not None:
                writing.result()
            writing = io.submit(write_region, exchange.target, *tile.slices, out)
        assert writing is not None
        writing.result()
    return sum(tile.pixels for tile in tiles)


def _compute(
    ref: ModelRef,
    exchange: Exchange,
    tile: Tile,
    stored: torch.Tensor | None,
    device: torch.device,
) -> np.ndarray:
    """One tile's pass from its window's stored state (None: x_T, keyed noise)."""
    model = worker_model(ref.checkpoint, ref.sha256)
    sampler = _sampler(ref)
    seeds = [ref.seed]
    steps = exchange.nca_steps
    shrink = _shrink(exchange)
    region = tile.read_window(shrink)
    rows, cols = region.slices
    with torch.no_grad():
        if stored is None:
            x = initial_noise(
                seeds, exchange.t, 3, region.height, region.width, region.window, device
            )
        else:
            x = stored.to(device, non_blocking=True)
        # The condition's window, halo included (a full cell state already holds it).
        cond = None
        if exchange.condition is not None and (exchange.whole_step or not exchange.source_cells):
            cond = _read_condition(exchange.condition, model, seeds, rows, cols, device)
        if exchange.whole_step:
            out, window = x, region
            for t in exchange.timesteps:
                # The same denoise_step as the whole image, on a window one reach smaller
                # each step; the condition is a function of canvas position: cropped.
                crop = None if cond is None else cond[(..., *_offset(window, region))]
                out = denoise_step(
                    model, sampler, out, t, seeds, window.window, window.borders, condition=crop
                )
                window = window.inner(len(steps))
        else:
            state = x if exchange.source_cells else model.initial_state(x, cond)
            out = model.nca(state, [exchange.t], seeds, region.window, region.borders, steps=steps)
        out = out[(..., *tile.crop(region, shrink))]
        if exchange.final and not exchange.whole_step:
            out = _sampler_step(model, sampler, out, exchange.t, seeds, tile)
    return out[0].float().cpu().numpy()


def _offset(window: ReadWindow, region: ReadWindow) -> tuple[slice, slice]:
    """Where `window` lies inside `region` (both canvas rectangles)."""
    dy, dx = window.y0 - region.y0, window.x0 - region.x0
    return slice(dy, dy + window.height), slice(dx, dx + window.width)


def _read_condition(
    path: Path, model: DiffNCA, seeds: list[int], rows: slice, cols: slice, device: torch.device
) -> torch.Tensor:
    """The condition on a window, from the low-resolution pixels it reads: the same
    numbers the whole image computes there (gigasynth.sampling.condition)."""
    config = model.config
    f = config.condition_downsample
    low = np.load(path, mmap_mode="r")
    _, lh, lw = low.shape
    h, w = rows.stop - rows.start, cols.stop - cols.start
    y0, y1 = source_span(rows.start, h, f, lh)
    x0, x1 = source_span(cols.start, w, f, lw)
    crop = torch.from_numpy(np.array(low[:, y0:y1, x0:x1]))[None].to(device)  # a copy
    return model_condition(
        config, crop, seeds, h, w, Window(rows.start, cols.start), Window(y0, x0), (lh, lw)
    )


def _sampler_step(
    model: DiffNCA, sampler: Sampler, state: torch.Tensor, t: int, seeds: list[int], tile: Tile
) -> torch.Tensor:
    """x_{t_prev} on a tile from its final cell state (as denoise_step does on a region,
    rounded alike)."""
    eps_hat = model.readout(state).float()
    x_t = state[:, :3].float()
    noise = None
    if sampler.stochastic and sampler.next_timestep(t) >= 0:
        noise = step_noise(seeds, t, x_t.shape, Window(tile.y0, tile.x0), x_t.device)
    return round_state(sampler.step(eps_hat, t, x_t, noise))


def to_uint8_chunk(source: Path, slide: Path, rows: slice, cols: slice) -> int:
    """Convert one level-0 chunk of the slide from the final float state to RGB uint8."""
    x = torch.from_numpy(read_region(source, rows, cols))[None]
    rgb = np.ascontiguousarray(to_uint8(x)[0].transpose(2, 0, 1))
    open_level(slide, 0, mode="r+")[:, rows, cols] = rgb
    return rgb.shape[1] * rgb.shape[2]
