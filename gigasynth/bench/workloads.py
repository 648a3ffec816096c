"""What the benchmark runs: one NCA update (fused and plain), a training iteration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gigasynth.bench.memory import PeakMemory
from gigasynth.bench.timing import Timing, time_interleaved
from gigasynth.config import ModelConfig
from gigasynth.diffusion import NoiseSchedule
from gigasynth.geometry import Window
from gigasynth.models import build_model
from gigasynth.models.nca import fire_mask
from gigasynth.train.trainer import diffusion_loss

MID_T = 150  # a diffusion step for the conditioning; the cost does not depend on it


def state_dtype(device: torch.device) -> torch.dtype:
    """bf16 cell state on a GPU, float32 on CPU (no fast bf16 products there)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class UpdateTiming:
    """One NCA update over batch x height x width pixels, fused and plain."""

    batch: int
    height: int
    width: int
    fast: Timing
    naive: Timing

    @property
    def pixels(self) -> int:
        return self.batch * self.height * self.width


def time_update(
    config: ModelConfig, batch: int, height: int, width: int, device: torch.device, reps: int
) -> UpdateTiming:
    """Time the image-space update of `config` on a whole image (reflect borders)."""
    torch.manual_seed(0)
    dtype = state_dtype(device)
    model = build_model(config, zero_output=False).to(device, dtype).eval()
    update = model.nca.update
    state = torch.randn(batch, config.channels, height, width, device=device, dtype=dtype)
    state = state.contiguous(memory_format=torch.channels_last)
    seeds, t = list(range(batch)), [MID_T] * batch
    with torch.no_grad():
        t_frac = torch.full((batch,), MID_T / config.timesteps, device=device, dtype=dtype)
        cond = model.nca.cond(t_frac, 0.0)
        mask = fire_mask(seeds, t, 0, config.fire_probability, height, width, Window(), device)
        mask = None if mask is None else mask.to(dtype)

        def run(fast: bool) -> Callable[[], torch.Tensor]:
            def call() -> torch.Tensor:
                update.fast_path = fast
                return update(state, cond, mask)

            return call

        timings = time_interleaved({"fast": run(True), "naive": run(False)}, device, reps)
    return UpdateTiming(batch, height, width, timings["fast"], timings["naive"])


@dataclass(frozen=True)
class TrainTiming:
    """One training iteration (forward, backward, Adam) at batch x size^2."""

    batch: int
    size: int
    checkpointing: bool
    timing: Timing
    memory_bytes: int | None  # see memory_kind; None where it cannot be measured
    memory_kind: str


def time_training(
    config: ModelConfig,
    batch: int,
    size: int,
    device: torch.device,
    checkpointing: bool,
    reps: int,
) -> TrainTiming:
    """Time training iterations as gigasynth.train runs them (bf16 autocast on a GPU)."""
    torch.manual_seed(0)
    model = build_model(config, zero_output=False).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.set_checkpointing(checkpointing)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    schedule = NoiseSchedule.for_config(config)
    x0 = torch.rand(batch, 3, size, size, device=device).mul_(2).sub_(1)
    x0 = x0.contiguous(memory_format=torch.channels_last)
    seeds = list(range(batch))
    t = [(37 * i + MID_T) % config.timesteps for i in range(batch)]

    def iteration() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = diffusion_loss(model, schedule, x0, seeds, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with PeakMemory(device) as peak:
        timing = time_interleaved({"train": iteration}, device, reps)["train"]
    return TrainTiming(batch, size, checkpointing, timing, peak.bytes, peak.kind)
