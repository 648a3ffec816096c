"""`gigasynth bench`: the machine's ceiling, the update's throughput, training, projections."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gigasynth.bench.ceiling import copy_bandwidth, matmul_rates
from gigasynth.bench.workloads import TrainTiming, UpdateTiming, time_training, time_update
from gigasynth.config import ModelConfig, preset
from gigasynth.models import macs_per_pixel

GIGAPIXEL = 1e9


@dataclass(frozen=True)
class BenchSizes:
    """Problem sizes and repetitions of one benchmark run."""

    matmul_n: int
    copy_bytes: int
    crop: int
    crop_batch: int
    tiles: tuple[int, ...]
    train_batch: int
    train_size: int
    reps: int
    train_reps: int
    ceiling_reps: int  # more: a short call is easily disturbed on a shared machine


SIZES = {
    "cuda": BenchSizes(8192, 1 << 30, 64, 64, (1024, 2048), 4, 64, 10, 3, 20),
    # Two shared cores: 16 crops instead of 64, one 512^2 tile, a batch of 1 to train.
    "cpu": BenchSizes(2048, 1 << 28, 64, 16, (512,), 1, 64, 3, 1, 8),
    # A smoke run: every stage at toy sizes.
    "quick": BenchSizes(256, 1 << 22, 16, 2, (32,), 1, 16, 2, 1, 2),
}


def halo_factor(config: ModelConfig, tile: int) -> float:
    """Pixel-steps of a tile with an S-pixel halo, per pixel-step of the tile itself.

    NCA step k of S works on the tile grown by the S - 1 - k pixels of halo still
    needed on every side (invariant I4).
    """
    s = config.nca_steps
    return sum((tile + 2 * k) ** 2 for k in range(s)) / (s * tile * tile)


def gigapixel_hours(config: ModelConfig, rate: float, tile: int, diffusion_steps: int) -> float:
    """Hours for one 1-gigapixel sample at `rate` pixel-steps/s in tiles of `tile` px."""
    pixel_steps = GIGAPIXEL * diffusion_steps * config.nca_steps * halo_factor(config, tile)
    return pixel_steps / rate / 3600.0


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            model = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def _update_record(config: ModelConfig, timing: UpdateTiming, ceiling: float) -> dict:
    flops_per_pixel_step = 2 * macs_per_pixel(config)
    record: dict[str, Any] = {"batch": timing.batch, "height": timing.height, "width": timing.width}
    for name, t in (("fast", timing.fast), ("naive", timing.naive)):
        rate = timing.pixels / t.best_s
        record[name] = {
            "mpx_steps_per_s": rate / 1e6,
            "mpx_steps_per_s_median": timing.pixels / t.median_s / 1e6,
            "efficiency": flops_per_pixel_step * rate / ceiling,
        }
    record["speedup"] = timing.naive.best_s / timing.fast.best_s
    return record


def _train_record(t: TrainTiming) -> dict:
    return {
        "batch": t.batch,
        "size": t.size,
        "checkpointing": t.checkpointing,
        "seconds_per_iteration": t.timing.best_s,
        "seconds_per_iteration_median": t.timing.median_s,
        "images_per_s": t.batch / t.timing.best_s,
        "memory_bytes": t.memory_bytes,
        "memory_kind": t.memory_kind,
    }


def run_bench(
    device: torch.device,
    presets: Sequence[str],
    quick: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """Every measurement of one run, as a JSON-ready dict."""
    sizes = SIZES["quick" if quick else device.type]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    result: dict = {
        "device": device_name(device),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "load_average_start": list(os.getloadavg()),
        "quick": quick,
    }
    log("ceiling: matrix product and copy")
    rates = matmul_rates(device, dtype, sizes.matmul_n, sizes.ceiling_reps)
    ceiling = max(rates.values())
    result["ceiling"] = {
        "dtype": str(dtype).removeprefix("torch."),
        "matmul_n": sizes.matmul_n,
        "flops_by_library": rates,
        "flops": ceiling,
        "copy_bytes_per_s": copy_bandwidth(device, sizes.copy_bytes, sizes.ceiling_reps),
    }
    result["presets"] = {}
    for name in presets:
        config = preset(name)
        entry: dict = {
            "macs_per_pixel": macs_per_pixel(config),
            "nca_steps": config.nca_steps,
            "updates": [],
            "train": [],
        }
        shapes = [(sizes.crop_batch, sizes.crop)] + [(1, tile) for tile in sizes.tiles]
        for batch, side in shapes:
            log(f"{name}: update {batch} x {side}^2")
            timing = time_update(config, batch, side, side, device, sizes.reps)
            entry["updates"].append(_update_record(config, timing, ceiling))
        for checkpointing in (False, True):
            log(f"{name}: training, checkpointing {'on' if checkpointing else 'off'}")
            t = time_training(
                config, sizes.train_batch, sizes.train_size, device, checkpointing, sizes.train_reps
            )
            entry["train"].append(_train_record(t))
        if config.is_tileable:
            tile = sizes.tiles[-1]
            rate = entry["updates"][-1]["fast"]["mpx_steps_per_s"] * 1e6
            entry["gigapixel"] = {
                "tile": tile,
                "halo_factor": halo_factor(config, tile),
                "hours": {
                    "DDIM-50": gigapixel_hours(config, rate, tile, 50),
                    f"DDPM-{config.timesteps}": gigapixel_hours(
                        config, rate, tile, config.timesteps
                    ),
                },
            }
        result["presets"][name] = entry
    result["load_average_end"] = list(os.getloadavg())
    return result


def _megabytes(n: int | None) -> str:
    return f"{'n/a':>11}" if n is None else f"{n / 2**20:>8.0f} MB"


def format_report(result: dict) -> str:
    """The run as a plain-text table."""
    c = result["ceiling"]
    by_lib = ", ".join(f"{k} {v / 1e9:,.1f}" for k, v in c["flops_by_library"].items())
    lines = [
        f"device   {result['device']}  (torch {result['torch']}, {result['date']})",
        f"load     {result['load_average_start'][0]:.2f} at start, "
        f"{result['load_average_end'][0]:.2f} at end (1-min load average)",
        f"ceiling  {c['dtype']} matmul n={c['matmul_n']}: {c['flops'] / 1e9:,.1f} GFLOP/s "
        f"({by_lib}); copy {c['copy_bytes_per_s'] / 1e9:,.1f} GB/s",
        "",
        f"{'preset':<16}{'shape':>14}{'fast Mpx-st/s':>15}{'eff':>7}"
        f"{'naive Mpx-st/s':>16}{'eff':>7}{'speedup':>9}",
    ]
    for name, entry in result["presets"].items():
        for u in entry["updates"]:
            shape = f"{u['batch']}x{u['height']}x{u['width']}"
            lines.append(
                f"{name:<16}{shape:>14}{u['fast']['mpx_steps_per_s']:>15.3f}"
                f"{u['fast']['efficiency']:>7.1%}{u['naive']['mpx_steps_per_s']:>16.3f}"
                f"{u['naive']['efficiency']:>7.1%}{u['speedup']:>8.2f}x"
            )
    lines += ["", f"{'preset':<16}{'train':>14}{'ckpt':>6}{'s/iter':>9}{'img/s':>8}{'memory':>11}"]
    for name, entry in result["presets"].items():
        for t in entry["train"]:
            shape = f"{t['batch']}x{t['size']}^2"
            lines.append(
                f"{name:<16}{shape:>14}{'on' if t['checkpointing'] else 'off':>6}"
                f"{t['seconds_per_iteration']:>9.3f}{t['images_per_s']:>8.2f}"
                f"{_megabytes(t['memory_bytes'])}  ({t['memory_kind']})"
            )
    engine = result.get("engine")
    if engine is not None:
        lines += [
            "",
            f"engine   {engine['checkpoint']}: synthesize {engine['size']}^2 in tiles of "
            f"{engine['tile']}, {engine['workers']} workers, block_steps "
            f"{engine['block_steps'] or 'default'}",
            f"         {engine['engine_mpx_steps_per_s']:.3f} useful Mpx-steps/s against the "
            f"kernel's {engine['kernel_mpx_steps_per_s']:.3f}: efficiency "
            f"{engine['efficiency']:.1%} (halo {engine['halo_share']:.1%}, plumbing "
            f"{engine['plumbing_share']:.1%}); workers inside tile tasks "
            f"{engine['workers_busy_in_tile_tasks']:.1%} of the denoise phase",
        ]
    lines += ["", "1-gigapixel slide at the fast large-tile rate (halo of S px per tile):"]
    for name, entry in result["presets"].items():
        g = entry.get("gigapixel")
        if g is None:
            lines.append(f"{name:<16} whole-image model: not tileable")
            continue
        hours = ", ".join(f"{k} {v:,.1f} h" for k, v in g["hours"].items())
        lines.append(f"{name:<16} tile {g['tile']} (x{g['halo_factor']:.3f} for the halo): {hours}")
    return "\n".join(lines)
