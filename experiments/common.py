"""What the experiments share: the two tasks (data, models), training and sampling runs.

Heavy outputs (checkpoints, sample sets) go under runs/experiments/ (not committed);
figures go to docs/figures/ and measured numbers to docs/results/*.json, which
docs/RESULTS.md quotes. Every budget (iterations, batch, sample count, steps) is an
argument of the scripts, so a session with a GPU reruns them at the paper's sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gigasynth.baselines import UNET_PRESETS, build_unet, load_denoiser
from gigasynth.checkpoint import read_document
from gigasynth.config import preset
from gigasynth.data import open_source
from gigasynth.eval import load_images
from gigasynth.images import grid, to_uint8, write_png
from gigasynth.models import build_model, count_parameters
from gigasynth.sampling import SampleRequest, generate
from gigasynth.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"  # the sample data shipped with the repository (data/README.md)
SLIDE = DATA / "cmu_small_region.svs"
FACES = DATA / "emoji_faces_64.npz"
# EXPERIMENTS_OUT=DIR puts runs, figures and results under DIR (smoke tests, other budgets).
_OUT = Path(os.environ["EXPERIMENTS_OUT"]) if os.environ.get("EXPERIMENTS_OUT") else None
RUNS = _OUT / "runs" if _OUT else ROOT / "runs" / "experiments"
FIGURES = _OUT / "figures" if _OUT else ROOT / "docs" / "figures"
RESULTS = _OUT / "results" if _OUT else ROOT / "docs" / "results"


@dataclass(frozen=True)
class Task:
    """Training data, the held-out reference for metrics, and the models per scale."""

    name: str
    data: str
    reference: str
    models: dict[str, dict[str, str]]  # scale -> {model label: preset}
    downsample: float = 1.0  # slides: read crops at this downsample of level 0
    size: int = 64  # training crop and sample size in px
    # Slides: training crops come from train_region, reference crops from test_region
    # (gigasynth.data.regions, the held-out protocol); None for data with its own split.
    train_region: str | None = None
    test_region: str | None = None


TASKS = {
    "pathology": Task(
        "pathology",
        str(SLIDE),
        str(SLIDE),
        {
            "tiny": {"diff-nca": "tiny", "unet": "unet-tiny"},
            "paper": {"diff-nca": "paper-pathology", "unet": "unet-pathology"},
        },
        train_region="train",
        test_region="test",
    ),
    # The same slide at half the magnification (about 10x), 32 px crops: the setting of
    # the bundled tiny-pathology model (4000 iterations x 8), so that longer Diff-NCA run
    # can face a UNet trained alike.
    "pathology-10x": Task(
        "pathology-10x",
        str(SLIDE),
        str(SLIDE),
        {
            "tiny": {"diff-nca": "tiny", "unet": "unet-tiny"},
            "paper": {"diff-nca": "paper-pathology", "unet": "unet-pathology"},
        },
        downsample=2.0,
        size=32,
        train_region="train",
        test_region="test",
    ),
    "faces": Task(
        "faces",
        f"{FACES}",
        f"{FACES}:test",
        {
            "tiny": {"fourier-diff-nca": "tiny-fourier", "diff-nca": "tiny", "unet": "unet-small"},
            "paper": {
                "fourier-diff-nca": "paper-celeba",
                "diff-nca": "paper-pathology",
                "unet": "unet-celeba",
            },
        },
    ),
}


# Crop positions of held-out slide crops: a generator the training sampler never uses.
REFERENCE_SEED = 20_240_113


def _slide_crops(task: Task, region: str | None, count: int, seed: int) -> np.ndarray:
    """`count` tissue crops of the task's slide, inside `region`, at the task's size."""
    source = open_source(task.reference, task.downsample, region=region)
    return source.sample(np.random.default_rng(seed), count, task.size)


def reference_images(task: Task, count: int) -> np.ndarray:
    """Held-out real images of the task's size: the faces test split, or tissue crops of
    the slide's test region (the training crops never touch it)."""
    if task.test_region:
        return _slide_crops(task, task.test_region, count, REFERENCE_SEED)
    return load_images(
        task.reference, count, task.size, np.random.default_rng(REFERENCE_SEED), task.downsample
    )


def second_real_set(task: Task, count: int) -> np.ndarray:
    """Another real set of the same distribution (other crop positions; for slides, in
    the test region too): the metric's floor at this n."""
    if task.test_region:
        return _slide_crops(task, task.test_region, count, REFERENCE_SEED + 1)
    return load_images(
        task.data, count, task.size, np.random.default_rng(REFERENCE_SEED + 1), task.downsample
    )


def validation_images(task: Task, count: int) -> np.ndarray:
    """Real images to choose training settings on (a learning rate), never the test
    region: tissue crops of the train region, or the faces' training split."""
    if task.train_region:
        return _slide_crops(task, task.train_region, count, REFERENCE_SEED + 2)
    return load_images(
        task.data, count, task.size, np.random.default_rng(REFERENCE_SEED + 2), task.downsample
    )


def training_budget(task: Task, label: str) -> dict[str, Any]:
    """What a model's training run recorded (preset, parameters, iterations, batch, loss)."""
    folder = run_folder(task.name, label)
    record = json.loads((folder / "experiment.json").read_text())
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines[-5:]]
    record["final_loss_mean_last_logs"] = float(np.mean(losses))
    return record


def model_config(preset_name: str) -> tuple[Any, Callable[[Any], torch.nn.Module]]:
    """(config, builder) of an NCA preset or a UNet baseline preset."""
    if preset_name in UNET_PRESETS:
        return UNET_PRESETS[preset_name], build_unet
    return preset(preset_name), build_model


def experiment_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every evaluation script shares: task, scale, models, threads, device."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument(
        "--scale",
        choices=["tiny", "paper"],
        default="tiny",
        help="tiny presets (CPU budget) or the paper's sizes (GPU)",
    )
    parser.add_argument("--models", nargs="*", help="labels (default: all of the task)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    return parser


def parse_experiment(parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, Task, list[str]]:
    """The arguments, the task and the model labels to run; sets torch's thread count."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    return args, task, args.models or list(task.models[args.scale])


def run_folder(task: str, label: str) -> Path:
    return RUNS / task / label


def train_model(
    task: Task,
    label: str,
    preset_name: str,
    iterations: int,
    batch: int,
    seed: int,
    device: str | None = None,
    lr: float = TrainConfig.lr,
    max_cpu_seconds: float = 0.0,
) -> Path:
    """Train (or resume) one model of a task on its training data (a slide's train region);
    identical data, schedule and seed for all. `max_cpu_seconds` stops it at that much CPU
    time instead (equal compute); the record states the iterations it reached."""
    config, build = model_config(preset_name)
    out = run_folder(task.name, label)
    cfg = TrainConfig(
        iterations=iterations,
        batch=batch,
        size=task.size,
        lr=lr,
        seed=seed,
        save_every=500 if max_cpu_seconds else max(50, iterations // 4),
        data=[task.data],
        downsample=task.downsample,
        region=task.train_region,
        max_cpu_seconds=max_cpu_seconds,
    )
    sources = [open_source(task.data, task.downsample, region=task.train_region)]
    started, cpu_started = time.perf_counter(), time.process_time()
    folder = train(
        config, cfg, sources, out, resume=True, device=device, show_progress=False, build=build
    )
    record = {
        "task": task.name,
        "model": label,
        "preset": preset_name,
        "parameters": count_parameters(build(config)),
        "iterations": int(read_document(str(folder))["meta"]["step"]),
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "region": task.train_region,
        "max_cpu_seconds": max_cpu_seconds,
        "seconds_this_call": time.perf_counter() - started,
        "cpu_seconds_this_call": time.process_time() - cpu_started,
    }
    (out / "experiment.json").write_text(json.dumps(record, indent=2))
    return folder


def checkpoint_step(task: str, label: str) -> int:
    """The training iteration a run's checkpoint was saved at."""
    return int(read_document(str(run_folder(task, label) / "checkpoint"))["meta"]["step"])


def load_model(task: str, label: str, device: str = "cpu") -> torch.nn.Module:
    return load_denoiser(str(run_folder(task, label) / "checkpoint"), device)


def sample_images(
    model: torch.nn.Module,
    count: int,
    size: int,
    request: SampleRequest,
    batch: int = 16,
    first_seed: int = 1_000_000,
    device: str = "cpu",
) -> np.ndarray:
    """`count` samples (N, size, size, 3) uint8, seeds first_seed.. in batches."""
    parts = []
    for start in range(0, count, batch):
        seeds = list(range(first_seed + start, first_seed + min(count, start + batch)))
        parts.append(to_uint8(generate(model, size, size, seeds, request, device=device)))
    return np.concatenate(parts)


def cached_samples(
    task: str, label: str, tag: str, make: Callable[[], np.ndarray]
) -> tuple[np.ndarray, float]:
    """(samples, seconds it took to make them), stored once per checkpoint step.

    The file is runs/.../LABEL/samples-TAG-stepS.npz: a resumed, longer training run
    never reuses the samples of its earlier checkpoint.
    """
    path = run_folder(task, label) / f"samples-{tag}-step{checkpoint_step(task, label)}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["images"], float(data["seconds"])
    started = time.perf_counter()
    images = make()
    seconds = time.perf_counter() - started
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, seconds=seconds)
    tmp.replace(path)
    return images, seconds


def save_grid(images: np.ndarray, name: str, columns: int = 8) -> Path:
    """A PNG grid; images under 64 px are enlarged (nearest neighbour) to 64 px for viewing."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    zoom = max(1, 64 // images.shape[1])
    images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return write_png(FIGURES / name, grid(images, columns=min(columns, len(images))))


def save_results(name: str, record: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
