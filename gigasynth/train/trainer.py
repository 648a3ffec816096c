"""The training loop: epsilon prediction, MSE + L1, Adam with exponential decay, EMA.

Every random draw of an iteration (patches, noise, diffusion steps, fire masks) is
keyed by (seed, iteration, sample): batches can be made ahead in worker processes,
and training N then resuming for M iterations gives the same weights as training
N + M at once.
"""

from __future__ import annotations

import copy
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from gigasynth.atomic import atomic_write_bytes
from gigasynth.checkpoint import save_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.data import PatchBatches, PatchSource, load_batches, source_weights
from gigasynth.diffusion import NoiseSchedule
from gigasynth.errors import GigasynthError
from gigasynth.images import grid, to_model_space, to_uint8, write_png
from gigasynth.keyed import Stream, Window, key_words, keyed_normal, mix_int
from gigasynth.models import DiffNCA, build_model
from gigasynth.sampling import SampleRequest, generate

STATE = "train_state.pt"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Optimisation settings; the paper's defaults."""

    iterations: int = 10_000
    batch: int = 16
    size: int = 64
    lr: float = 1.6e-3
    betas: tuple[float, float] = (0.9, 0.99)
    lr_decay: float = 0.9999
    ema: float = 0.99
    seed: int = 0
    checkpointing: bool = False
    bf16: bool = True
    save_every: int = 500
    sample_every: int = 0
    sample_count: int = 8
    log_every: int = 10
    downsample: float = 1.0
    data: list[str] = field(default_factory=list)
    slide_weighting: str = "tissue"
    loader_workers: int = 0


def _batch_randomness(
    cfg: TrainConfig, it: int, batch: int, timesteps: int, rank: int
) -> tuple[list[int], list[int]]:
    """Per-sample seeds and diffusion steps, a pure function of (seed, iteration, rank)."""
    seeds = [mix_int(cfg.seed, it, rank, b) for b in range(batch)]
    t = [mix_int(s, int(Stream.TRAIN_TIME)) % timesteps for s in seeds]
    return seeds, t


def diffusion_loss(
    model: torch.nn.Module, schedule: NoiseSchedule, x0: torch.Tensor,
    seeds: list[int], t: list[int],
) -> torch.Tensor:
    """MSE + L1 (1:1) between the true and the predicted noise."""
    b, c, h, w = x0.shape
    eps = keyed_normal(key_words(seeds, Stream.TRAIN_NOISE, t, 0), c, h, w, Window(), x0.device)
    x_t = schedule.add_noise(x0, eps, torch.tensor(t, device=x0.device))
    eps_hat = model(x_t, t, seeds).float()
    return F.mse_loss(eps_hat, eps) + F.l1_loss(eps_hat, eps)


def _serialise(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Run:
    """Model, EMA copy, optimizer and LR schedule of one training run."""

    def __init__(
        self, model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
        build: Callable[[Any], torch.nn.Module],
    ) -> None:
        self.model = build(model_cfg).to(device, memory_format=torch.channels_last)
        self.model.set_checkpointing(cfg.checkpointing)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma=cfg.lr_decay)
        self.step = 0

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
            "step": self.step,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.step = int(state["step"])


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keep the log records up to the saved step: a resumed run logs the rest again."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        atomic_write_bytes(path, "".join(kept).encode())


def _ddp_rank() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    sources: list[PatchSource],
    out: Path,
    resume: bool = False,
    device: str | None = None,
    show_progress: bool = True,
    build: Callable[[Any], torch.nn.Module] = build_model,
) -> Path:
    """Train and return the checkpoint folder (out / 'checkpoint').

    `build` makes the model from `model_cfg`; any model with the NCA interface
    ((x_t, t, seeds) -> eps_hat, set_checkpointing) trains here, e.g. the UNet baseline.
    """
    rank, world = _ddp_rank()
    if world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.batch < 1 or cfg.iterations < 0 or cfg.size < 8:
        raise GigasynthError("batch must be >= 1, iterations >= 0 and size >= 8")
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    if state_path.exists() and not resume:
        raise GigasynthError(f"{out} holds a training run; pass --resume or choose another --out")
    schedule = NoiseSchedule(model_cfg.timesteps, model_cfg.schedule)
    weights = source_weights(sources, cfg.slide_weighting)
    run = _Run(model_cfg, cfg, dev, build)
    if resume and state_path.exists():
        run.load(torch.load(state_path, map_location=dev, weights_only=False))
        if rank == 0:
            _drop_metrics_after(out / METRICS, run.step)
    net: torch.nn.Module = run.model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(run.model)
    use_bf16 = cfg.bf16 and dev.type == "cuda"
    meta = {"train": asdict(cfg), "world_size": world}

    def save() -> None:
        if rank != 0:
            return
        save_checkpoint(out / "checkpoint", run.ema, model_cfg, {**meta, "step": run.step})
        atomic_write_bytes(state_path, _serialise(run.state()))

    bar = tqdm(total=cfg.iterations, initial=run.step, disable=not show_progress or rank != 0,
               desc="train", unit="it", dynamic_ncols=True)
    metrics = open(out / METRICS, "a") if rank == 0 else None  # noqa: SIM115 (closed below)
    batches = PatchBatches(sources, weights, cfg.seed, rank, cfg.batch, cfg.size)
    loader = load_batches(batches, run.step, cfg.iterations, cfg.loader_workers)
    try:
        t0 = time.perf_counter()
        for patches in loader:
            x0 = to_model_space(patches.numpy()).to(dev)
            x0 = x0.contiguous(memory_format=torch.channels_last)
            seeds, t = _batch_randomness(cfg, run.step, cfg.batch, model_cfg.timesteps, rank)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = diffusion_loss(net, schedule, x0, seeds, t)
            if not torch.isfinite(loss):
                raise GigasynthError(f"loss became {loss.item()} at iteration {run.step}")
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.sched.step()
            run.update_ema(cfg.ema)
            run.step += 1
            ips = cfg.batch * world / (time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{ips:.1f}")
            if metrics and (run.step % cfg.log_every == 0 or run.step == cfg.iterations):
                record = {"step": run.step, "loss": loss.item(), "images_per_s": ips,
                          "lr": run.sched.get_last_lr()[0]}
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if run.step % cfg.save_every == 0:
                save()
            if rank == 0 and cfg.sample_every and run.step % cfg.sample_every == 0:
                write_sample_grid(run.ema, out / "samples" / f"step{run.step:07d}.png",
                                  cfg.size, cfg.sample_count, dev)
            t0 = time.perf_counter()
        save()
    finally:
        bar.close()
        if metrics:
            metrics.close()
    return out / "checkpoint"


def write_sample_grid(
    model: DiffNCA, path: Path, size: int, count: int, device: torch.device, steps: int = 50
) -> Path:
    """A grid of `count` samples (DDIM) from the model, as PNG."""
    x = generate(model, size, size, list(range(count)), SampleRequest("ddim", steps),
                 device=device)
    return write_png(path, grid(to_uint8(x), columns=min(count, 8)))
