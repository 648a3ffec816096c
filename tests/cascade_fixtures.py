"""Tiny cascades for tests (shared by the engine's, the service's and the dataset's cascade
tests): a 2x stage to 2 µm/px and a 3x stage to 0.667 µm/px, seeded weights, optionally
after a mask stage (8 -> 4 µm/px), and random layout images."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gigasynth.checkpoint import save_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.models import build_model
from gigasynth.models.diffnca import DiffNCA
from tests.conftest import MICRO

MASK_STAGE = replace(
    MICRO,
    condition_channels=1,
    condition_downsample=2,
    condition_noise=0.1,
    condition_kind="mask",
)
MASK_MPP = 4.0  # the mask stage draws 4 µm/px from a mask at 8 µm/px
STAGE1 = replace(MICRO, condition_channels=3, condition_downsample=2, condition_noise=0.05)
STAGE2 = replace(MICRO, condition_channels=3, condition_downsample=3, condition_noise=0.05)
MPP1, MPP2 = 2.0, 2.0 / 3


def write_stage(folder: Path, config: ModelConfig, mpp: float | None, seed: int) -> DiffNCA:
    """A stage checkpoint with seeded weights (its mpp in the metadata unless None)."""
    torch.manual_seed(seed)
    model = build_model(config, zero_output=False).eval()
    save_checkpoint(folder, model, config, None if mpp is None else {"mpp": mpp})
    return model


def write_cascade(root: Path, layout: str = "given") -> tuple[Path, DiffNCA, DiffNCA]:
    """The two-stage cascade in `root` (cascade.json with paths relative to it, stages
    s1 and s2, 3 and 2 DDIM steps); (root, stage 1's model, stage 2's model)."""
    m1 = write_stage(root / "s1", STAGE1, MPP1, 0)
    m2 = write_stage(root / "s2", STAGE2, MPP2, 1)
    doc = {
        "layout": layout,
        "stages": [
            {"checkpoint": "s1", "sampler": "ddim", "steps": 3},
            {"checkpoint": "s2", "sampler": "ddim", "steps": 2},
        ],
    }
    (root / "cascade.json").write_text(json.dumps(doc))
    return root, m1, m2


def write_mask_cascade(root: Path, layout: str = "generated") -> Path:
    """The two-stage cascade with a mask stage before it (8 -> 4 -> 2 -> 0.667 µm/px,
    factor 12; the mask stage takes 2 DDIM steps); returns `root`."""
    write_cascade(root)
    write_stage(root / "m", MASK_STAGE, MASK_MPP, 7)
    doc = json.loads((root / "cascade.json").read_text())
    doc["layout"] = layout
    doc["stages"].insert(0, {"checkpoint": "m", "sampler": "ddim", "steps": 2})
    (root / "cascade.json").write_text(json.dumps(doc))
    return root


def write_layout(path: Path, width: int, height: int, seed: int = 3) -> Path:
    """A random RGB layout image (its format from the suffix)."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(path)
    return path
