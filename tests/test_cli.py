"""The command line: real subprocess runs, one-line errors and non-zero exits on bad input."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from gigasynth.checkpoint import load_checkpoint, save_checkpoint
from gigasynth.config import preset
from gigasynth.errors import GigasynthError
from gigasynth.models import build_model

from .conftest import MICRO


def gigasynth(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gigasynth", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert fragment in lines[-1], proc.stderr
    assert len(lines) == 1, proc.stderr


@pytest.fixture
def micro_checkpoint(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "ckpt", build_model(MICRO, zero_output=False), MICRO)


def test_info_preset_json():
    proc = gigasynth("info", "paper-pathology", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["parameters"] == 208_792
    assert report["macs_per_pixel_per_step"] > 190_000
    assert report["halo_px"] == 48


def test_sample_writes_png(tmp_path, micro_checkpoint):
    out = tmp_path / "s.png"
    proc = gigasynth(
        "sample",
        "--checkpoint",
        str(micro_checkpoint),
        "--size",
        "40x24",
        "--seed",
        "1",
        "--steps",
        "4",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    assert Image.open(out).size == (40, 24)


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        ("0x10", "must be positive"),
        ("-5x10", "must be positive"),
        ("abc", "not WIDTHxHEIGHT"),
        ("100000x100000", "exceeds the limit"),
    ],
)
def test_sample_bad_sizes(tmp_path, micro_checkpoint, size, fragment):
    proc = gigasynth(
        "sample",
        "--checkpoint",
        str(micro_checkpoint),
        f"--size={size}",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "x.png").exists()


def test_sample_bad_sampler_and_steps(tmp_path, micro_checkpoint):
    out = str(tmp_path / "x.png")
    proc = gigasynth(
        "sample",
        "--checkpoint",
        str(micro_checkpoint),
        "--size",
        "8x8",
        "--sampler",
        "euler",
        "--out",
        out,
    )
    assert_one_line_error(proc, "invalid choice: 'euler'")
    proc = gigasynth(
        "sample",
        "--checkpoint",
        str(micro_checkpoint),
        "--size",
        "8x8",
        "--steps",
        "51",
        "--out",
        out,
    )
    assert_one_line_error(proc, "exceeds the model's 50 diffusion timesteps")


def test_bad_checkpoints(tmp_path, micro_checkpoint):
    # Weights from another preset under this config.
    other = tmp_path / "other"
    save_checkpoint(other, build_model(preset("tiny"), zero_output=False), preset("tiny"))
    (other / "config.json").write_text((micro_checkpoint / "config.json").read_text())
    with pytest.raises(GigasynthError, match="does not match its config"):
        load_checkpoint(str(other))
    # Non-finite weights.
    tensors = load_file(micro_checkpoint / "model.safetensors")
    name = next(iter(tensors))
    tensors[name][..., 0] = float("nan")
    save_file(tensors, micro_checkpoint / "model.safetensors")
    proc = gigasynth("info", str(micro_checkpoint))
    assert_one_line_error(proc, "non-finite weights")
    proc = gigasynth("info", str(tmp_path / "nowhere"))
    assert_one_line_error(proc, "not a preset or checkpoint")
    proc = gigasynth(
        "sample", "--checkpoint", "builtin:nope", "--size", "8", "--out", str(tmp_path / "x.png")
    )
    assert_one_line_error(proc, "unknown builtin model 'nope'")


def test_train_missing_slide(tmp_path):
    proc = gigasynth(
        "train",
        "--data",
        str(tmp_path / "missing.svs"),
        "--out",
        str(tmp_path / "run"),
        "--iterations",
        "1",
    )
    assert_one_line_error(proc, "data not found")


def test_builtin_model_ships_and_samples(tmp_path):
    ckpt = load_checkpoint("builtin:tiny-pathology")
    assert ckpt.config.is_tileable
    assert ckpt.meta["mpp"] == pytest.approx(0.998)
    out = tmp_path / "b.png"
    proc = gigasynth(
        "sample",
        "--checkpoint",
        "builtin:tiny-pathology",
        "--size",
        "48x40",
        "--steps",
        "3",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(out))
    assert rgb.shape == (40, 48, 3)
    # H&E-like: red and blue above green on average (pink/purple), not grey noise.
    mean = rgb.reshape(-1, 3).mean(axis=0)
    assert mean[0] > mean[1] and mean[2] > mean[1], mean
