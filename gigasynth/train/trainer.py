"""The training loop: epsilon prediction, MSE + L1, Adam with an LR schedule, EMA.

Recipe options (docs/RESULTS.md, "Training recipe ablation (held-out)", measured them):
dihedral augmentation of the patches, min-SNR loss weighting (more weight on high noise),
an exponential or cosine LR schedule with linear warm-up, and a CPU-time budget. The
noise schedule (e.g. zero terminal SNR) belongs to the model config, since sampling
needs it too.

A conditioned model (a super-resolution stage, `ModelConfig.condition_channels`) is
trained on pairs made from each crop: the crop is the target, its condition is the crop
area-downsampled by the model's `condition_downsample`, upsampled back bilinearly and
noised (gigasynth.sampling.condition.training_condition).

Every random draw of an iteration (patches, noise, diffusion steps, fire masks, condition
noise) is keyed by (seed, iteration, sample): batches can be made ahead in worker processes,
and training N then resuming for M iterations gives the same weights as training
N + M at once.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from gigasynth.atomic import atomic_write_bytes
from gigasynth.checkpoint import is_checkpoint_folder, read_document, save_checkpoint
from gigasynth.cluster.devices import gpu_available, pick_device
from gigasynth.config import ModelConfig
from gigasynth.data import PatchBatches, PatchSource, load_batches, source_weights
from gigasynth.diffusion import NoiseSchedule
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.geometry import Window
from gigasynth.images import grid, to_model_space, to_uint8, write_png
from gigasynth.keyed import Stream, key_words, keyed_normal, mix_int
from gigasynth.models import Denoiser, build_model
from gigasynth.sampling import SampleRequest, generate
from gigasynth.sampling.condition import area_downsample, crop_tissue, training_condition

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
    region: str | None = None
    min_tissue: float = 0.5
    augment: str = "none"
    loss_weighting: str = "none"
    min_snr_gamma: float = 5.0
    lr_schedule: str = "exponential"
    warmup: int = 0
    max_cpu_seconds: float = 0.0
    max_seconds: float = 0.0


LOSS_WEIGHTINGS = ("none", "min-snr")
LR_SCHEDULES = ("exponential", "cosine")
COSINE_FLOOR = 0.05  # the cosine schedule ends at this fraction of the peak LR


def check_config(cfg: TrainConfig) -> None:
    """One-line errors for settings the loop cannot use."""
    if cfg.batch < 1 or cfg.iterations < 0 or cfg.size < 8:
        raise GigasynthError("batch must be >= 1, iterations >= 0 and size >= 8")
    if cfg.loss_weighting not in LOSS_WEIGHTINGS:
        raise GigasynthError(
            f"loss weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, "
            f"not {cfg.loss_weighting!r}"
        )
    if cfg.min_snr_gamma <= 0:
        raise GigasynthError(f"min-SNR gamma must be positive, not {cfg.min_snr_gamma}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise GigasynthError(
            f"LR schedule must be one of {', '.join(LR_SCHEDULES)}, not {cfg.lr_schedule!r}"
        )
    if cfg.warmup < 0 or cfg.max_cpu_seconds < 0 or cfg.max_seconds < 0:
        raise GigasynthError("warmup and the CPU and wall-clock budgets must be >= 0")


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """LR multiplier after `step` optimizer steps: linear warm-up, then decay.

    exponential: lr_decay ** step; cosine: from 1 at the end of warm-up to COSINE_FLOOR at
    `iterations` (a resumed run that changes --iterations changes the remaining curve).
    """
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    if cfg.lr_schedule == "exponential":
        return warm * cfg.lr_decay**step
    span = max(1, cfg.iterations - cfg.warmup)
    progress = min(1.0, max(0.0, (step - cfg.warmup) / span))
    return warm * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def loss_weights(cfg: TrainConfig, schedule: NoiseSchedule, t: list[int]) -> torch.Tensor | None:
    """Per-sample loss weights; None for plain (equal) weighting.

    min-snr (Hang et al. 2023) for epsilon prediction: min(SNR, gamma) / SNR, i.e. 1 at high
    noise (SNR < gamma) and less at low noise, where the noise is easy to see and the
    plain loss would spend most of the gradient.
    """
    if cfg.loss_weighting == "none":
        return None
    snr = schedule.snr(t)
    return (snr.clamp(max=cfg.min_snr_gamma) / snr).float()


def _batch_randomness(
    cfg: TrainConfig, it: int, batch: int, timesteps: int, rank: int
) -> tuple[list[int], list[int]]:
    """Per-sample seeds and diffusion steps, a pure function of (seed, iteration, rank)."""
    seeds = [mix_int(cfg.seed, it, rank, b) for b in range(batch)]
    t = [mix_int(s, int(Stream.TRAIN_TIME)) % timesteps for s in seeds]
    return seeds, t


def diffusion_loss(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    seeds: list[int],
    t: list[int],
    weights: torch.Tensor | None = None,
    condition: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE + L1 (1:1) between the true and the predicted noise; `weights` per sample.

    model: a `Denoiser`, or the DistributedDataParallel wrapper around one.

    condition: a conditioned model's condition on x0's grid (None for other models)."""
    b, c, h, w = x0.shape
    eps = keyed_normal(key_words(seeds, Stream.TRAIN_NOISE, t, 0), c, h, w, Window(), x0.device)
    x_t = schedule.add_noise(x0, eps, torch.tensor(t, device=x0.device))
    extra = {} if condition is None else {"condition": condition}
    eps_hat = model(x_t, t, seeds, **extra).float()
    if weights is None:
        return F.mse_loss(eps_hat, eps) + F.l1_loss(eps_hat, eps)
    err = eps_hat - eps
    per_sample = (err.square() + err.abs()).mean(dim=(1, 2, 3))
    return (weights.to(per_sample.device) * per_sample).mean()


def _serialise(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class _Run:
    """Model, EMA copy, optimizer and LR schedule of one training run."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        cfg: TrainConfig,
        device: torch.device,
        build: Callable[[Any], torch.nn.Module],
    ) -> None:
        self.model = build(model_cfg).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model.set_checkpointing(cfg.checkpointing)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.sched: torch.optim.lr_scheduler.LRScheduler
        if cfg.lr_schedule == "exponential" and not cfg.warmup:
            # The original schedule, so run states saved before LambdaLR still load.
            self.sched = torch.optim.lr_scheduler.ExponentialLR(self.opt, gamma=cfg.lr_decay)
        else:
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, lambda step: lr_factor(cfg, step)
            )
        self.step = 0

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
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
        dist.init_process_group("nccl" if gpu_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def tissue_threshold(sources: list[PatchSource]) -> float:
    """The saturation threshold that labels a mask stage's training crops: the slides'
    (their median, for several); only slides have a tissue threshold."""
    values = [getattr(s, "tissue_threshold", None) for s in sources]
    if any(v is None for v in values):
        raise FieldError(
            "a mask-conditioned stage ([condition_kind] mask) trains on slides only: "
            "the tissue mask of each crop comes from its slide's tissue threshold"
        )
    return float(np.median([float(v) for v in values if v is not None]))


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
    if world > 1 and gpu_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dev = pick_device(device)
    check_config(cfg)
    factor = getattr(model_cfg, "condition_downsample", 1)
    conditioned = getattr(model_cfg, "condition_channels", 0) > 0
    if conditioned and cfg.size % factor:
        raise GigasynthError(
            f"crop size {cfg.size} is not a multiple of the condition's downsample factor {factor}"
        )
    mask_stage = conditioned and model_cfg.condition_kind == "mask"
    if conditioned and not mask_stage and model_cfg.condition_channels != model_cfg.image_channels:
        raise GigasynthError(
            "a stage trained from slides takes the downsampled image as its "
            f"condition: condition_channels must be {model_cfg.image_channels}"
        )
    threshold = tissue_threshold(sources) if mask_stage else None
    if world > 1 and (cfg.max_cpu_seconds or cfg.max_seconds):
        raise GigasynthError("a time budget applies to single-process training only")
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    if state_path.exists() and not resume:
        raise FieldError(f"{out} holds a training run", "pass [resume] or choose another [out]")
    schedule = NoiseSchedule.for_config(model_cfg)
    weights = source_weights(sources, cfg.slide_weighting)
    run = _Run(model_cfg, cfg, dev, build)
    saved = out / "checkpoint"
    if resume and is_checkpoint_folder(saved):
        before = type(model_cfg).from_dict(read_document(str(saved))["model"])
        if before != model_cfg:
            raise FieldError(
                f"{out} was trained with another model config (preset, "
                "[zero_terminal_snr] or the condition's options)",
                "resume it with the same one",
            )
    if resume and state_path.exists():
        run.load(
            torch.load(state_path, map_location=dev, weights_only=True)
        )  # tensors and numbers only
        if rank == 0:
            _drop_metrics_after(out / METRICS, run.step)
    net: torch.nn.Module = run.model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(run.model)
    use_bf16 = cfg.bf16 and dev.type == "cuda"
    meta: dict[str, Any] = {"train": asdict(cfg), "world_size": world}
    if threshold is not None:
        meta["tissue_threshold"] = threshold
    mpps = {getattr(s, "mpp", None) for s in sources}
    mpp = mpps.pop() if len(mpps) == 1 else None
    if mpp is not None:  # the resolution a cascade stage runs at
        meta["mpp"] = round(float(mpp), 6)

    def save() -> None:
        if rank != 0:
            return
        save_checkpoint(out / "checkpoint", run.ema, model_cfg, {**meta, "step": run.step})
        atomic_write_bytes(state_path, _serialise(run.state()))

    bar = tqdm(
        total=cfg.iterations,
        initial=run.step,
        disable=not show_progress or rank != 0,
        desc="train",
        unit="it",
        dynamic_ncols=True,
    )
    metrics = open(out / METRICS, "a") if rank == 0 else None  # noqa: SIM115 (closed below)
    batches = PatchBatches(sources, weights, cfg.seed, rank, cfg.batch, cfg.size, cfg.augment)
    loader = load_batches(batches, run.step, cfg.iterations, cfg.loader_workers)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        t0 = time.perf_counter()
        for patches in loader:
            x0 = to_model_space(patches.numpy()).to(dev)
            x0 = x0.contiguous(memory_format=torch.channels_last)
            seeds, t = _batch_randomness(cfg, run.step, cfg.batch, model_cfg.timesteps, rank)
            cond = training_condition(model_cfg, x0, seeds, threshold) if conditioned else None
            if cond is not None:
                cond = cond.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = diffusion_loss(
                    net, schedule, x0, seeds, t, loss_weights(cfg, schedule, t), cond
                )
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
                record = {
                    "step": run.step,
                    "loss": loss.item(),
                    "images_per_s": ips,
                    "lr": run.sched.get_last_lr()[0],
                    "cpu_s": round(time.process_time() - cpu0, 2),
                }
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            if run.step % cfg.save_every == 0:
                save()
            if rank == 0 and cfg.sample_every and run.step % cfg.sample_every == 0:
                low = area_downsample(x0.float(), factor) if conditioned else None
                if low is not None and threshold is not None:
                    low = crop_tissue(low, threshold)
                write_sample_grid(
                    run.ema,
                    out / "samples" / f"step{run.step:07d}.png",
                    cfg.size,
                    cfg.sample_count,
                    dev,
                    low=low,
                )
            if cfg.max_cpu_seconds and time.process_time() - cpu0 >= cfg.max_cpu_seconds:
                break  # the budget is this process's CPU time (loader workers not counted)
            if cfg.max_seconds and time.perf_counter() - wall0 >= cfg.max_seconds:
                break  # wall clock of the loop, setup not counted (a device's budget)
            t0 = time.perf_counter()
        save()
    finally:
        bar.close()
        if metrics:
            metrics.close()
    return out / "checkpoint"


def write_sample_grid(
    model: Denoiser,
    path: Path,
    size: int,
    count: int,
    device: torch.device,
    steps: int = 50,
    low: torch.Tensor | None = None,
) -> Path:
    """A grid of `count` samples (DDIM) from the model, as PNG.

    A conditioned model samples for the low-resolution crops `low` (one per sample, as
    many as there are) and the grid shows each real crop's condition above its sample."""
    if low is None:
        x = generate(
            model, size, size, list(range(count)), SampleRequest("ddim", steps), device=device
        )
        return write_png(path, grid(to_uint8(x), columns=min(count, 8)))
    low = low[:count]
    n, f = low.shape[0], size // low.shape[-1]
    x = generate(
        model,
        size,
        size,
        list(range(n)),
        SampleRequest("ddim", steps),
        device=device,
        condition=low,
    )
    shown = F.interpolate(low, scale_factor=f, mode="nearest")
    if shown.shape[1] != x.shape[1]:  # a mask: grey
        shown = shown[:, :1].expand(-1, x.shape[1], -1, -1)
    return write_png(path, grid(to_uint8(torch.cat([shown, x])), columns=n))
