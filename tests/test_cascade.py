"""Conditioned Diff-NCA (a cascade's super-resolution stage): old models unchanged, the
condition matters and is local, training resumes identically, bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from distributed import Client, LocalCluster
from PIL import Image

from gigasynth.checkpoint import load_checkpoint, save_checkpoint
from gigasynth.config import ModelConfig, preset
from gigasynth.data import open_source
from gigasynth.errors import GigasynthError
from gigasynth.geometry import Borders, Window
from gigasynth.images import to_model_space, to_uint8
from gigasynth.io import open_level, read_provenance
from gigasynth.models import build_model
from gigasynth.sampling import SampleRequest, denoise_step, generate, super_resolve, upscale
from gigasynth.sampling.condition import (
    area_downsample,
    model_condition,
    source_span,
    training_condition,
    upsample_bilinear,
)
from gigasynth.synth import SynthCancelled, SynthSpec, synthesize
from gigasynth.synth.job import check_job
from gigasynth.train import TrainConfig, train
from gigasynth.train.trainer import STATE

from .conftest import MICRO, OLD_BUNDLED_MODEL, ROOT

# The last commit before models had condition fields: old configs must behave as there.
BEFORE_CONDITIONING = "8ea7d67"
COND = replace(MICRO, condition_channels=3, condition_downsample=4, condition_noise=0.05)

_OLD_NEW_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from gigasynth.checkpoint import load_checkpoint, save_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.models import build_model
from gigasynth.sampling import SampleRequest, generate
out = Path(sys.argv[1])
ck = load_checkpoint(sys.argv[2])
np.save(out / "ddim.npy", generate(ck.model, 20, 28, [5, 6], SampleRequest("ddim", 4)).numpy())
np.save(out / "ddpm.npy", generate(ck.model, 9, 7, [2], SampleRequest("ddpm", None)).numpy())
cfg = ModelConfig.from_dict(dict(channels=12, hidden=16, steps=4, cond_hidden=16, timesteps=50))
torch.manual_seed(0)
save_checkpoint(out / "ckpt", build_model(cfg, zero_output=False), cfg, {"k": 1})
(out / "config.json").write_text(ck.config.to_json())
"""


def _run_script(tree: Path, out: Path, checkpoint: Path) -> None:
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _OLD_NEW_SCRIPT, str(out), str(checkpoint)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_unconditioned_models_unchanged_against_the_old_code(tmp_path):
    """The 2026-11 bundled model samples the same bits (DDIM and DDPM) and a saved
    checkpoint has the same bytes here as at the commit before conditioning existed."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_CONDITIONING, "gigasynth"],
        capture_output=True,
        timeout=60,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE_CONDITIONING} not in this checkout")
    old = tmp_path / "old"
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(old, filter="data")
    # A checkpoint folder, the layout both trees read.
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "model.safetensors").write_bytes(OLD_BUNDLED_MODEL.read_bytes())
    (bundled / "config.json").write_bytes(OLD_BUNDLED_MODEL.with_suffix(".json").read_bytes())
    _run_script(old, tmp_path / "a", bundled)
    _run_script(ROOT, tmp_path / "b", bundled)
    for name in (
        "ddim.npy",
        "ddpm.npy",
        "config.json",
        "ckpt/config.json",
        "ckpt/model.safetensors",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert "condition" not in (tmp_path / "b" / "ckpt/config.json").read_text()


def test_config_round_trip_and_checks():
    assert "condition_channels" not in preset("tiny").to_dict()
    assert ModelConfig.from_json(COND.to_json()) == COND
    assert json.loads(COND.to_json())["condition_downsample"] == 4
    bad = [
        dict(condition_downsample=2),  # factor without a condition
        dict(condition_channels=3, condition_downsample=0),
        dict(condition_channels=3, condition_noise=-0.1),
        dict(condition_channels=-1),
        dict(condition_channels=6),  # 12 channels: image 3 + condition 6 + read-out 3
    ]
    for fields in bad:
        with pytest.raises(GigasynthError) as err:
            replace(MICRO, **fields)
        assert "\n" not in str(err.value)
    with pytest.raises(GigasynthError, match="must be a diff-nca"):
        replace(preset("tiny-fourier"), condition_channels=3)


def test_bilinear_upsampling_is_torchs_and_local():
    low = torch.rand(2, 3, 7, 5) * 2 - 1
    up = upsample_bilinear(low, 4, 28, 20)
    ref = F.interpolate(low, scale_factor=4, mode="bilinear", align_corners=False)
    assert (up - ref).abs().max() < 1e-6
    assert torch.allclose(area_downsample(up, 4), F.avg_pool2d(up, 4))
    # Any window, from the low-resolution crop it reads: the same bits.
    for y0, x0, h, w in [(0, 0, 5, 3), (9, 6, 13, 11), (17, 1, 11, 19)]:
        ly, lx = source_span(y0, h, 4, 7), source_span(x0, w, 4, 5)
        part = upsample_bilinear(
            low[:, :, ly[0] : ly[1], lx[0] : lx[1]],
            4,
            h,
            w,
            Window(y0, x0),
            Window(ly[0], lx[0]),
            (7, 5),
        )
        assert torch.equal(part, up[:, :, y0 : y0 + h, x0 : x0 + w])


@pytest.fixture
def cond_model():
    torch.manual_seed(0)
    return build_model(COND, zero_output=False).eval()


def test_condition_is_read_with_the_halo(cond_model):
    """A tile with its halo, given its window of the condition, equals the whole image's
    step on that tile (the basis of tiled == whole for conditioned stages)."""
    low = torch.rand(1, 3, 9, 8) * 2 - 1
    height, width, seeds = 36, 32, [4]
    sampler = SampleRequest("ddim", 5, eta=1.0).build(cond_model)
    t = sampler.timesteps[1]
    x = torch.randn(1, 3, height, width)
    whole = denoise_step(
        cond_model, sampler, x, t, seeds, condition=model_condition(COND, low, seeds, height, width)
    )
    halo = COND.halo
    y0, y1, x0 = 11, 27, 9  # a tile on the right canvas edge, the others interior
    wy, wx, wy1, wx1 = y0 - halo, x0 - halo, y1 + halo, width
    cond = model_condition(COND, low, seeds, wy1 - wy, wx1 - wx, Window(wy, wx))
    tile = denoise_step(
        cond_model,
        sampler,
        x[:, :, wy:wy1, wx:wx1],
        t,
        seeds,
        Window(wy, wx),
        Borders(top=False, bottom=False, left=False, right=True),
        condition=cond,
    )
    assert torch.equal(tile, whole[:, :, y0:y1, x0:])


def test_output_depends_on_the_condition_and_is_deterministic(cond_model):
    low = torch.rand(1, 3, 6, 5) * 2 - 1
    request = SampleRequest("ddim", 4)
    a = super_resolve(cond_model, low, [1], request)
    assert a.shape == (1, 3, 24, 20)
    assert torch.equal(a, super_resolve(cond_model, low, [1], request))
    other = super_resolve(cond_model, low.flip(-1), [1], request)
    assert (a - other).abs().mean() > 0.05
    clean = super_resolve(cond_model, low, [1], request, condition_noise=0.0)
    assert not torch.equal(a, clean)
    assert not torch.equal(a, super_resolve(cond_model, low, [2], request))


def test_bad_conditions_are_one_line_errors(cond_model, micro_model):
    low = torch.zeros(1, 3, 6, 5)
    cases = [
        lambda: generate(cond_model, 24, 20, [0]),  # no condition
        lambda: generate(cond_model, 24, 24, [0], condition=low),  # wrong size
        lambda: generate(cond_model, 22, 20, [0], condition=torch.zeros(1, 3, 5, 5)),
        lambda: super_resolve(cond_model, torch.zeros(1, 1, 6, 5), [0]),  # channels
        lambda: super_resolve(cond_model, torch.zeros(3, 3, 6, 5), [0, 1]),  # batch
        lambda: generate(micro_model, 24, 20, [0], condition=low),  # unconditioned model
        lambda: super_resolve(micro_model, low, [0]),
        lambda: upscale(cond_model, low, 4, [0]),
        lambda: cond_model(torch.zeros(1, 3, 8, 8), [3], [0]),
    ]
    for case in cases:
        with pytest.raises(GigasynthError) as err:
            case()
        assert "\n" not in str(err.value)


def test_training_pairs_and_resume(tmp_path, slide_path):
    """The condition of a crop is its downsampled copy plus keyed noise of the configured
    std; a conditioned stage trained 6 + 6 iterations equals 12 at once."""
    x0 = torch.rand(2, 3, 24, 24) * 2 - 1
    cond = training_condition(COND, x0, [7, 8])
    clean = upsample_bilinear(area_downsample(x0, 4), 4, 24, 24)
    noise = cond - clean
    assert 0.04 < noise.std() < 0.06
    assert not torch.equal(noise[0], noise[1])
    assert torch.equal(cond, training_condition(COND, x0, [7, 8]))

    source = open_source(slide_path, downsample=4)
    base = dict(batch=2, size=24, save_every=6, seed=3)
    torch.manual_seed(0)  # the initial weights (as in test_train)
    train(COND, TrainConfig(iterations=6, **base), [source], tmp_path / "r", show_progress=False)
    torch.manual_seed(1)  # resume must not depend on the global RNG
    train(
        COND,
        TrainConfig(iterations=12, **base),
        [source],
        tmp_path / "r",
        resume=True,
        show_progress=False,
    )
    torch.manual_seed(0)
    train(
        COND, TrainConfig(iterations=12, **base), [source], tmp_path / "once", show_progress=False
    )
    a = torch.load(tmp_path / "r" / STATE, weights_only=False)
    b = torch.load(tmp_path / "once" / STATE, weights_only=False)
    assert a["step"] == b["step"] == 12
    for key, value in b["ema"].items():
        assert torch.equal(a["ema"][key], value), key
    assert load_checkpoint(str(tmp_path / "r" / "checkpoint")).config == COND
    with pytest.raises(GigasynthError, match="another model config"):
        train(
            replace(COND, condition_downsample=2),
            TrainConfig(iterations=13, **base),
            [source],
            tmp_path / "r",
            resume=True,
            show_progress=False,
        )
    with pytest.raises(GigasynthError, match="multiple of"):
        train(
            COND,
            TrainConfig(iterations=1, batch=2, size=22),
            [source],
            tmp_path / "odd",
            show_progress=False,
        )


def _gigasynth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gigasynth", *args], capture_output=True, text=True, timeout=300
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


@pytest.mark.slow
def test_cli_samples_from_a_low_resolution_png(tmp_path, cond_model):
    ckpt = save_checkpoint(tmp_path / "stage", cond_model, COND)
    low = tmp_path / "low.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 8, 3), np.uint8)).save(low)
    out = tmp_path / "up.png"
    proc = _gigasynth(
        "sample",
        "--checkpoint",
        str(ckpt),
        "--condition",
        str(low),
        "--steps",
        "3",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (32, 24)
    _assert_one_line_error(
        _gigasynth("sample", "--checkpoint", str(ckpt), "--size", "32", "--out", str(out)),
        "--condition IMAGE",
    )
    _assert_one_line_error(
        _gigasynth(
            "sample",
            "--checkpoint",
            "builtin:tiny-pathology",
            "--condition",
            str(low),
            "--out",
            str(out),
        ),
        "takes no condition",
    )
    slide = tmp_path / "s.ome.zarr"
    _assert_one_line_error(
        _gigasynth("synth", "--checkpoint", str(ckpt), "--size", "64x48", "--out", str(slide)),
        "conditioned stage",
    )
    _assert_one_line_error(
        _gigasynth(
            "synth",
            "--checkpoint",
            str(ckpt),
            "--size",
            "64x48",
            "--condition",
            str(low),
            "--out",
            str(slide),
        ),
        "needs it at 16x12 px",
    )
    assert not slide.exists() and not (tmp_path / "s.ome.zarr.work").exists()


def test_tiled_conditioned_slide_equals_the_whole_image(tmp_path, cond_model):
    """The engine reads the condition with the tile's halo: tiled (2 workers, whole NCA
    steps or halo exchanges every 2 NCA steps) == whole image == the library sampler."""
    ckpt = str(save_checkpoint(tmp_path / "stage", cond_model, COND))
    rng = np.random.default_rng(1)
    low = tmp_path / "low.png"
    Image.fromarray(rng.integers(0, 256, (11, 13, 3), np.uint8)).save(low)
    base = SynthSpec(ckpt, 52, 44, seed=5, steps=3, eta=0.5, condition=str(low))
    levels = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        for name, spec in {
            "whole": replace(base, tile=0),
            "tiles": replace(base, tile=24),
            "halo2": replace(base, tile=20, halo_every=2),
        }.items():
            result = synthesize(spec, tmp_path / f"{name}.ome.zarr", client=client)
            levels[name] = np.asarray(open_level(result.zarr_path, 0, mode="r")[:])
            assert read_provenance(result.zarr_path)["condition_sha256"]
        # Stopped in the second diffusion step (one step per task), resumed with the
        # default block of steps: the condition comes from the work folder.
        tiles_seen = []
        out = tmp_path / "resumed.ome.zarr"
        with pytest.raises(SynthCancelled):
            synthesize(
                replace(base, tile=24),
                out,
                client=client,
                should_stop=lambda: tiles_seen.append(1) or len(tiles_seen) > 8,
                block_steps=1,
            )
        assert (tmp_path / "resumed.ome.zarr.work").is_dir()
        result = synthesize(replace(base, tile=24), out, client=client, resume=True)
        levels["resumed"] = np.asarray(open_level(result.zarr_path, 0, mode="r")[:])
    library = super_resolve(
        cond_model, to_model_space(np.array(Image.open(low))), [5], SampleRequest("ddim", 3, 0.5)
    )
    expected = to_uint8(library)[0].transpose(2, 0, 1)
    for name, level in levels.items():
        assert np.array_equal(level, expected), name
    # Another condition is another job: a saved state of one does not resume the other.
    checkpoint = load_checkpoint(ckpt)
    other = tmp_path / "other.png"
    Image.fromarray(rng.integers(0, 256, (11, 13, 3), np.uint8)).save(other)
    assert (
        check_job(base, checkpoint).identity()
        != check_job(replace(base, condition=str(other)), checkpoint).identity()
    )
    plain = check_job(
        replace(base, checkpoint="builtin:tiny-pathology", width=52, condition=None),
        load_checkpoint("builtin:tiny-pathology"),
    )
    assert "condition_sha256" not in plain.identity()
    assert "condition" not in plain.spec.to_dict()
