"""Synthetic datasets: reproducible bytes, patches regenerated alone, kill and resume,
1 vs 2 Dask workers, both formats read back, one-line errors on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gigasynth.checkpoint import save_checkpoint
from gigasynth.cli import main
from gigasynth.dataset import SyntheticPatches, encode_png, make_dataset, read_manifest, regenerate
from gigasynth.dataset.folder import DATASET_JSON
from gigasynth.dataset.spec import DatasetSpec
from gigasynth.errors import GigasynthError
from gigasynth.models import build_model

from .conftest import MICRO, MICRO_FOURIER

SETTINGS = dict(count=5, size=32, seed=7, steps=2, shard_size=2, progress=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "micro"
    return str(save_checkpoint(folder, build_model(MICRO, zero_output=False), MICRO))


@pytest.fixture(scope="module")
def png_dataset(checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("png") / "data"
    make_dataset(checkpoint, out, **SETTINGS)
    return out


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def shard_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree_bytes(folder).items() if k.startswith("shard-")}


def test_same_settings_twice_give_identical_files(checkpoint, png_dataset, tmp_path):
    again = tmp_path / "again"
    result = make_dataset(checkpoint, again, **SETTINGS)
    assert result.made_patches == 5 and result.spec.shards == 3
    assert tree_bytes(again) == tree_bytes(png_dataset)
    records = read_manifest(again)
    assert [r["index"] for r in records] == list(range(5))
    assert all(r["synthetic"] and r["checkpoint"] == result.spec.checkpoint_sha256 for r in records)
    assert len({r["seed"] for r in records}) == 5
    doc = json.loads((again / DATASET_JSON).read_text())
    assert doc["complete"] and doc["totals"] == {"patches": 5, "shards": 3, "patches_per_shard": 2}


def test_a_patch_regenerated_alone_has_the_same_bytes(png_dataset):
    for index in (4, 1):  # out of order, each alone
        (patch,) = regenerate(png_dataset, [index])
        record = read_manifest(png_dataset)[index]
        assert patch.metadata == record
        assert encode_png(patch.image) == (png_dataset / record["file"]).read_bytes()


def test_canonical_batches_make_the_batch_size_part_of_the_identity(checkpoint, tmp_path):
    # Measured: batching changes float rounding on CPU (the conditioning matmuls), so a
    # patch is always computed in its canonical batch, even when regenerated alone.
    out = tmp_path / "b2"
    make_dataset(checkpoint, out, **{**SETTINGS, "count": 3, "batch": 2})
    (patch,) = regenerate(out, [2])  # group [2, 3): patch 3 is computed and dropped
    assert encode_png(patch.image) == (out / "shard-000001" / "000002.png").read_bytes()
    with pytest.raises(GigasynthError, match=r"holds another dataset \(count 3 -> 5"):
        make_dataset(checkpoint, out, **{**SETTINGS, "batch": 2})
    with pytest.raises(GigasynthError, match="multiple of batch"):
        make_dataset(checkpoint, tmp_path / "x", **{**SETTINGS, "batch": 3})


def test_one_and_two_dask_workers_give_the_same_dataset(checkpoint, png_dataset, tmp_path, capsys):
    import logging

    from dask.distributed import LocalCluster

    # Two workers: the embedded LocalCluster of `--workers 2`.
    two = tmp_path / "two"
    args = [
        "dataset",
        "--quiet",
        "--checkpoint",
        checkpoint,
        "--out",
        str(two),
        "--count",
        "5",
        "--size",
        "32",
        "--seed",
        "7",
        "--steps",
        "2",
        "--shard-size",
        "2",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    assert "on cpu" in capsys.readouterr().out
    # One worker: an existing cluster reached through its scheduler address.
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        one = make_dataset(
            checkpoint, tmp_path / "one", **SETTINGS, scheduler=cluster.scheduler_address
        )
    assert one.made_shards == 3
    assert shard_files(two) == shard_files(tmp_path / "one") == shard_files(png_dataset)
    assert read_manifest(two) == read_manifest(tmp_path / "one") == read_manifest(png_dataset)


def test_reader_yields_tensors_and_metadata_for_both_formats(checkpoint, png_dataset, tmp_path):
    tar_out = tmp_path / "tar"
    make_dataset(checkpoint, tar_out, **{**SETTINGS, "format": "tar"})
    assert sorted(p.name for p in tar_out.glob("shard-*")) == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    with tarfile.open(tar_out / "shard-000001.tar") as tar:
        assert tar.getnames() == ["000002.png", "000002.json", "000003.png", "000003.json"]
        meta = json.loads(tar.extractfile("000003.json").read())
        assert meta == read_manifest(tar_out)[3]
        tar_png = tar.extractfile("000003.png").read()
    assert tar_png == (png_dataset / "shard-000001" / "000003.png").read_bytes()
    png, tar = SyntheticPatches(png_dataset), SyntheticPatches(tar_out)
    assert len(png) == len(tar) == 5
    for k in range(5):
        (a, meta_a), (b, meta_b) = png[k], tar[k]
        assert a.shape == (3, 32, 32) and a.dtype == torch.float32
        assert a.min() >= 0.0 and a.max() <= 1.0 and a.std() > 0
        assert torch.equal(a, b)
        assert meta_a["index"] == meta_b["index"] == k and meta_b["synthetic"]
    loader = torch.utils.data.DataLoader(tar, batch_size=4)
    images, meta = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and meta["index"].tolist() == [0, 1, 2, 3]


def gigasynth_args(checkpoint: str, out: Path, **overrides: str) -> list[str]:
    opts = {
        "--checkpoint": checkpoint,
        "--count": "8",
        "--size": "32",
        "--steps": "2",
        "--shard-size": "2",
        "--seed": "3",
        "--out": str(out),
        **overrides,
    }
    return ["dataset", "--quiet", *(w for kv in opts.items() for w in kv)]


def test_killed_run_resumes_to_exactly_n_patches(checkpoint, tmp_path):
    out = tmp_path / "killed"
    args = gigasynth_args(checkpoint, out)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gigasynth", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = out / "shard-000000"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    visible = sorted(p.name for p in out.glob("shard-*"))
    assert 1 <= len(visible) < 4, visible
    records = read_manifest(out)
    spec = DatasetSpec.from_dict(json.loads((out / DATASET_JSON).read_text())["settings"])
    for name in visible:  # every visible shard is whole; the manifest lists only those
        shard = int(name.removeprefix("shard-"))
        assert sorted(p.name for p in (out / name).iterdir()) == [
            f"{i:06d}.png" for i in spec.shard_indices(shard)
        ]
    assert all((out / r["file"]).is_file() for r in records)
    assert {r["shard"] for r in records} <= {int(n.removeprefix("shard-")) for n in visible}
    assert not json.loads((out / DATASET_JSON).read_text())["complete"]
    with pytest.raises(GigasynthError, match="unfinished"):
        SyntheticPatches(out)
    assert len(SyntheticPatches(out, allow_incomplete=True)) == len(records)

    assert main(args) == 0
    records = read_manifest(out)
    assert [r["index"] for r in records] == list(range(8))
    assert len(list(out.rglob("*.png"))) == 8
    assert not list(out.glob(".shard-*"))
    assert json.loads((out / DATASET_JSON).read_text())["complete"]
    (patch,) = regenerate(out, [7])
    assert encode_png(patch.image) == (out / records[7]["file"]).read_bytes()


def one_line_error(capsys, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("gigasynth: error:"), err
    return err[0]


def test_bad_input_is_one_line_and_loses_nothing(
    checkpoint, png_dataset, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    assert "count 0 must be in 1.." in one_line_error(
        capsys, gigasynth_args(checkpoint, out, **{"--count": "0"})
    )
    monkeypatch.setattr("gigasynth.dataset.spec.MAX_COUNT", 5)
    assert "count 8 must be in 1..5" in one_line_error(capsys, gigasynth_args(checkpoint, out))
    monkeypatch.undo()
    assert "--workers must be at least 1" in one_line_error(
        capsys, gigasynth_args(checkpoint, out, **{"--workers": "0"})
    )
    assert "must be positive" in one_line_error(
        capsys, gigasynth_args(checkpoint, out, **{"--size": "0"})
    )
    assert "exceeds the limit" in one_line_error(
        capsys, gigasynth_args(checkpoint, out, **{"--size": "70000"})
    )
    assert "not a preset or checkpoint" in one_line_error(
        capsys, gigasynth_args(str(tmp_path / "nothing"), out)
    )
    not_ckpt = tmp_path / "notes.txt"
    not_ckpt.write_text("hello")
    assert "not a checkpoint" in one_line_error(capsys, gigasynth_args(str(not_ckpt), out))
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"model": {"kind": "unet"}}))
    assert "is a 'unet' model" in one_line_error(capsys, gigasynth_args(str(unet), out))
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", build_model(MICRO, zero_output=False), MICRO)
    assert "is a training run" in one_line_error(capsys, gigasynth_args(str(run), out))
    assert not out.exists()
    # The folder of another dataset: refused, untouched; replaced with --overwrite.
    before = tree_bytes(png_dataset)
    line = one_line_error(capsys, gigasynth_args(checkpoint, png_dataset))
    assert "holds another dataset" in line and "--overwrite" in line
    assert tree_bytes(png_dataset) == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("keep me")
    assert "holds no gigasynth dataset" in one_line_error(
        capsys, gigasynth_args(checkpoint, stranger, **{"--count": "1"})
    )
    assert [p.name for p in stranger.iterdir()] == ["thesis.tex"]


def test_fourier_model_makes_fixed_size_patches(tmp_path):
    # A FourierDiff-NCA is a whole-image model; a patch is a whole image, so it is accepted
    # at sizes its Fourier block fits in.
    model = build_model(MICRO_FOURIER, zero_output=False)
    ckpt = str(save_checkpoint(tmp_path / "fourier", model, MICRO_FOURIER))
    with pytest.raises(GigasynthError, match="at least 31 px"):
        make_dataset(ckpt, tmp_path / "small", count=1, size=16, steps=1, progress=False)
    done = make_dataset(ckpt, tmp_path / "ok", count=1, size=32, steps=1, progress=False)
    assert done.spec.model_kind == "fourier-diff-nca"
    image, meta = SyntheticPatches(tmp_path / "ok")[0]
    assert image.shape == (3, 32, 32) and meta["model"] == "fourier-diff-nca"
    assert np.isfinite(image.numpy()).all()
