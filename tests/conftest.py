"""Shared fixtures: small models and the sample data in the repository's data/ folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gigasynth.config import ModelConfig
from gigasynth.models import build_model

ROOT = Path(__file__).resolve().parents[1]
# Shipped with the repository (data/README.md: origin and licences), so no test skips for
# want of them.
DATA = ROOT / "data"
SLIDE = DATA / "cmu_small_region.svs"
FACES = DATA / "emoji_faces_64.npz"
# The bundled builtin:tiny-pathology of 2026-11 (trained on the whole sample region), kept
# as a checkpoint written before later config fields existed.
OLD_BUNDLED_MODEL = (
    Path(__file__).resolve().parent / "fixtures" / "tiny-pathology-2026-11.safetensors"
)

torch.set_num_threads(2)

MICRO = ModelConfig(
    kind="diff-nca",
    channels=12,
    hidden=16,
    nca_steps=4,
    cond_hidden=16,
    fire_probability=0.5,
    timesteps=50,
)
MICRO_FOURIER = ModelConfig(
    kind="fourier-diff-nca",
    channels=12,
    hidden=16,
    nca_steps=3,
    cond_hidden=16,
    fourier_hidden=16,
    fourier_steps=4,
    timesteps=50,
)


@pytest.fixture
def micro_model():
    torch.manual_seed(0)
    return build_model(MICRO, zero_output=False).eval()


@pytest.fixture
def slide_path() -> Path:
    return SLIDE


@pytest.fixture
def cascade(tmp_path):
    """tests.cascade_fixtures' two-stage cascade in tmp_path/casc: (root, model 1, model 2)."""
    from tests.cascade_fixtures import write_cascade

    return write_cascade(tmp_path / "casc")
