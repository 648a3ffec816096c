"""Training: the loss falls on the sample slide; resume gives identical weights."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gigasynth.checkpoint import load_checkpoint
from gigasynth.data import open_source
from gigasynth.data.loader import PatchBatches, dihedral
from gigasynth.data.sources import ArraySource
from gigasynth.diffusion import NoiseSchedule
from gigasynth.errors import GigasynthError
from gigasynth.images import to_model_space
from gigasynth.train import TrainConfig, train
from gigasynth.train.trainer import (
    COSINE_FLOOR,
    METRICS,
    STATE,
    diffusion_loss,
    loss_weights,
    lr_factor,
)

from .conftest import MICRO


def _fixed_batch_loss(model, source) -> float:
    batch = to_model_space(source.sample(np.random.default_rng(123), 16, 32))
    schedule = NoiseSchedule(MICRO.timesteps, MICRO.schedule)
    t = [int(v) for v in np.linspace(2, MICRO.timesteps - 1, 16)]
    with torch.no_grad():
        return diffusion_loss(model, schedule, batch, list(range(16)), t).item()


def test_training_lowers_the_loss(tmp_path, slide_path):
    """200 iterations take the EMA model well below the untrained one, which predicts
    zero noise (loss E[eps^2] + E|eps|, about 1.8)."""
    source = open_source(slide_path, downsample=2)
    cfg = TrainConfig(iterations=200, batch=4, size=32, save_every=1000, seed=1)
    torch.manual_seed(0)
    untrained = train(
        MICRO, TrainConfig(iterations=0, size=32), [source], tmp_path / "a", show_progress=False
    )
    before = _fixed_batch_loss(load_checkpoint(str(untrained)).model, source)
    torch.manual_seed(0)
    folder = train(MICRO, cfg, [source], tmp_path / "b", show_progress=False)
    after = _fixed_batch_loss(load_checkpoint(str(folder)).model, source)
    assert after < 0.7 * before, (before, after)


def test_resume_gives_the_same_weights(tmp_path, slide_path):
    source = open_source(slide_path, downsample=4)
    base = dict(batch=2, size=24, save_every=5, seed=3)
    torch.manual_seed(0)
    train(MICRO, TrainConfig(iterations=10, **base), [source], tmp_path / "r", show_progress=False)
    torch.manual_seed(1)  # resume must not depend on the global RNG
    train(
        MICRO,
        TrainConfig(iterations=20, **base),
        [source],
        tmp_path / "r",
        resume=True,
        show_progress=False,
    )
    torch.manual_seed(0)
    train(
        MICRO, TrainConfig(iterations=20, **base), [source], tmp_path / "once", show_progress=False
    )
    a = torch.load(tmp_path / "r" / STATE, weights_only=False)
    b = torch.load(tmp_path / "once" / STATE, weights_only=False)
    assert a["step"] == b["step"] == 20
    for key, value in b["model"].items():
        assert torch.equal(a["model"][key], value), key
    for key, value in b["ema"].items():
        assert torch.equal(a["ema"][key], value), key


class _FailingSource(ArraySource):
    """Random images that stop being readable after `calls` samples (a crash mid-run)."""

    def __init__(self, calls: int) -> None:
        rng = np.random.default_rng(0)
        super().__init__(rng.integers(0, 256, (4, 24, 24, 3), dtype=np.uint8), "failing")
        self.calls = calls

    def sample(self, rng, count, size):
        self.calls -= 1
        if self.calls < 0:
            raise OSError("disk went away")
        return super().sample(rng, count, size)


def test_resume_after_a_crash_logs_each_step_once(tmp_path):
    cfg = TrainConfig(iterations=12, batch=1, size=16, save_every=5, log_every=1)
    with pytest.raises(OSError, match="disk went away"):
        train(MICRO, cfg, [_FailingSource(calls=8)], tmp_path, show_progress=False)
    logged = [json.loads(line)["step"] for line in (tmp_path / METRICS).read_text().splitlines()]
    assert logged == list(range(1, 9))  # steps 6-8 ran after the last save
    train(MICRO, cfg, [_FailingSource(calls=100)], tmp_path, resume=True, show_progress=False)
    logged = [json.loads(line)["step"] for line in (tmp_path / METRICS).read_text().splitlines()]
    assert logged == list(range(1, 13))


def test_existing_run_needs_resume(tmp_path, slide_path):
    source = open_source(slide_path, downsample=4)
    cfg = TrainConfig(iterations=1, batch=1, size=16)
    train(MICRO, cfg, [source], tmp_path, show_progress=False)
    with pytest.raises(GigasynthError, match="pass resume or choose another out"):
        train(MICRO, cfg, [source], tmp_path, show_progress=False)


def test_loader_worker_processes_do_not_change_the_weights(tmp_path, slide_path):
    source = open_source(slide_path, downsample=4)
    base = dict(iterations=2, batch=2, size=16, save_every=100, seed=5)
    for workers in (0, 2):
        torch.manual_seed(0)  # the initial weights
        train(
            MICRO,
            TrainConfig(**base, loader_workers=workers),
            [source],
            tmp_path / f"w{workers}",
            show_progress=False,
        )
    a = torch.load(tmp_path / "w0" / STATE, weights_only=False)
    b = torch.load(tmp_path / "w2" / STATE, weights_only=False)
    for key, value in a["model"].items():
        assert torch.equal(b["model"][key], value), key


def test_train_cli_skips_an_unreadable_slide_or_stops_with_strict(tmp_path, capsys):
    from gigasynth.cli import main

    from .test_data import write_slide

    slides = tmp_path / "slides"
    slides.mkdir()
    write_slide(slides / "a.tif", 512)
    (slides / "broken.svs").write_bytes(b"garbage")
    args = [
        "train",
        "--data",
        str(slides),
        "--preset",
        "tiny",
        "--iterations",
        "1",
        "--batch",
        "1",
        "--size",
        "16",
        "--quiet",
        "--loader-workers",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read slide" in err[0] and "broken.svs" in err[0]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gigasynth: warning:") and "broken.svs" in err[0]
    assert len(list((tmp_path / "run" / "tissue").glob("*.npz"))) == 1
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()
    assert main([*args, "--out", str(tmp_path / "none"), "--data", str(slides / "*.ndpi")]) == 2
    assert "no data matches" in capsys.readouterr().err


def test_dihedral_augmentation_turns_and_flips_each_patch():
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(1, 16, 16, 3)
    source = ArraySource(image, "one")
    plain = PatchBatches([source], np.ones(1), seed=2, rank=0, batch=32, size=16)
    turned = PatchBatches(
        [source], np.ones(1), seed=2, rank=0, batch=32, size=16, augment="dihedral"
    )
    assert all(torch.equal(p, torch.from_numpy(image[0])) for p in plain[5])
    group = [dihedral(image[0], k) for k in range(8)]
    assert len({g.tobytes() for g in group}) == 8
    seen = {[g.tobytes() for g in group].index(p.numpy().tobytes()) for p in turned[5]}
    assert len(seen) >= 5  # 32 draws from 8 elements
    assert torch.equal(turned[5], turned[5])  # keyed by (seed, rank, iteration)
    with pytest.raises(GigasynthError, match="augmentation"):
        PatchBatches([source], np.ones(1), 0, 0, 1, 16, augment="mirror")


def test_min_snr_weights_favour_high_noise():
    schedule = NoiseSchedule(300, "linear")
    cfg = TrainConfig(loss_weighting="min-snr", min_snr_gamma=5.0)
    t = [0, 50, 150, 299]
    w = loss_weights(cfg, schedule, t)
    snr = schedule.snr(t)
    expected = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr
    assert torch.allclose(w, expected.float())
    assert w[0] < 0.01 and w[-1] == 1.0 and bool((w[1:] >= w[:-1]).all())
    assert loss_weights(TrainConfig(), schedule, t) is None


def test_lr_schedules_warm_up_and_decay():
    cos = TrainConfig(iterations=110, lr_schedule="cosine", warmup=10)
    assert lr_factor(cos, 0) == pytest.approx(0.1)
    assert lr_factor(cos, 9) == pytest.approx(1.0)
    assert lr_factor(cos, 60) == pytest.approx(0.5 * (1 + COSINE_FLOOR))
    assert lr_factor(cos, 110) == pytest.approx(COSINE_FLOOR)
    exp = TrainConfig(lr_decay=0.99)
    assert lr_factor(exp, 7) == pytest.approx(0.99**7)


def test_resume_is_exact_with_the_new_recipe(tmp_path, slide_path):
    source = open_source(slide_path, downsample=4, min_tissue=0.0)
    cfg = replace(MICRO, zero_terminal_snr=True)
    base = dict(
        batch=2,
        size=24,
        save_every=4,
        seed=3,
        augment="dihedral",
        loss_weighting="min-snr",
        lr_schedule="cosine",
        warmup=3,
    )
    torch.manual_seed(0)
    train(cfg, TrainConfig(iterations=12, **base), [source], tmp_path / "r", show_progress=False)
    # the CPU budget stops early and saves; resuming continues exactly
    torch.manual_seed(0)
    train(cfg, TrainConfig(iterations=12, **base), [source], tmp_path / "b", show_progress=False)
    a = torch.load(tmp_path / "r" / STATE, weights_only=False)
    b = torch.load(tmp_path / "b" / STATE, weights_only=False)
    assert all(torch.equal(a["model"][k], v) for k, v in b["model"].items())
    torch.manual_seed(0)
    train(
        cfg,
        TrainConfig(iterations=12, max_cpu_seconds=1e-9, **base),
        [source],
        tmp_path / "s",
        show_progress=False,
    )
    assert torch.load(tmp_path / "s" / STATE, weights_only=False)["step"] == 1
    torch.manual_seed(1)
    train(
        cfg,
        TrainConfig(iterations=12, **base),
        [source],
        tmp_path / "s",
        resume=True,
        show_progress=False,
    )
    s = torch.load(tmp_path / "s" / STATE, weights_only=False)
    assert s["step"] == 12
    for key, value in a["model"].items():
        assert torch.equal(s["model"][key], value), key
    with pytest.raises(GigasynthError, match="another model config"):
        train(
            MICRO,
            TrainConfig(iterations=13, **base),
            [source],
            tmp_path / "s",
            resume=True,
            show_progress=False,
        )


def test_train_cli_passes_region_min_tissue_and_schedule(tmp_path, slide_path, capsys):
    from gigasynth.cli import main

    args = [
        "train",
        "--data",
        str(slide_path),
        "--iterations",
        "1",
        "--batch",
        "1",
        "--size",
        "16",
        "--downsample",
        "4",
        "--quiet",
        "--loader-workers",
        "0",
    ]
    assert main([*args, "--out", str(tmp_path / "bad"), "--region", "0,0,99999,10"]) == 2
    assert "lies outside" in capsys.readouterr().err
    assert (
        main(
            [
                *args,
                "--out",
                str(tmp_path / "ok"),
                "--region",
                "test",
                "--min-tissue",
                "0",
                "--augment",
                "dihedral",
                "--zero-terminal-snr",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "ok" / "checkpoint" / "config.json").read_text())
    assert doc["model"]["zero_terminal_snr"] is True
    assert doc["meta"]["train"]["region"] == "test"
    assert doc["meta"]["train"]["min_tissue"] == 0.0
    assert doc["meta"]["train"]["augment"] == "dihedral"


def test_min_tissue_zero_allows_background_patches(slide_path):
    tissue = open_source(slide_path, downsample=4)
    uniform = open_source(slide_path, downsample=4, min_tissue=0.0)
    assert len(uniform._candidates(64)) > len(tissue._candidates(64))
    with pytest.raises(GigasynthError, match="min_tissue"):
        open_source(slide_path, downsample=4, min_tissue=1.5)


def test_wall_clock_budget_stops_early_and_saves(tmp_path, slide_path):
    from gigasynth.cli import main

    args = ["train", "--data", str(slide_path), "--iterations", "50", "--batch", "1"]
    args += ["--size", "16", "--downsample", "4", "--quiet", "--loader-workers", "0"]
    assert main([*args, "--out", str(tmp_path / "r"), "--max-seconds", "1e-9"]) == 0
    assert torch.load(tmp_path / "r" / STATE, weights_only=False)["step"] == 1
    doc = json.loads((tmp_path / "r" / "checkpoint" / "config.json").read_text())
    assert doc["meta"]["step"] == 1 and doc["meta"]["train"]["max_seconds"] == 1e-9
    with pytest.raises(GigasynthError, match="wall-clock budgets must be >= 0"):
        train(MICRO, TrainConfig(max_seconds=-1), [], tmp_path / "n", show_progress=False)
