"""The tiled engine: tiled == whole image (I1-I4), kill/cancel/full disk + resume (I5), CLI.

Real components only: Dask LocalClusters (threads, to keep start-up cheap), Zarr state
stores and OME-Zarr/OME-TIFF outputs on disk, the CLI as a subprocess where a real
process matters (SIGKILL, stderr of Dask's connection code, environment limits).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from distributed import Client, LocalCluster

from gigasynth.checkpoint import load_checkpoint, save_checkpoint
from gigasynth.cli import main
from gigasynth.cluster import connect, steady_allocator, task_resources
from gigasynth.errors import GigasynthError
from gigasynth.images import to_uint8
from gigasynth.io import level_shapes, open_level, read_provenance
from gigasynth.io.omexml import OME_NS
from gigasynth.models import build_model
from gigasynth.sampling import SampleRequest, generate
from gigasynth.synth import SynthCancelled, SynthProgress, SynthSpec, preflight, synthesize
from gigasynth.synth import tasks as synth_tasks
from gigasynth.synth.denoise import RateMeter, denoise
from gigasynth.synth.job import (
    DEFAULT_MPP,
    check_block_steps,
    check_job,
    max_block_steps,
    slide_resolution,
)
from gigasynth.synth.state import (
    WorkDir,
    allocated_bytes,
    read_region,
    state_path,
    work_path,
)

from .conftest import MICRO, MICRO_FOURIER

# DDPM runs all T steps: a MICRO variant with T = 12 keeps it short (same sampler code).
MICRO_T12 = replace(MICRO, timesteps=12)
WIDTH, HEIGHT = 333, 270  # not a multiple of any tile size used here


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small tiles run fastest on one intra-op thread on this shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, cfg in (("micro", MICRO), ("t12", MICRO_T12), ("fourier", MICRO_FOURIER)):
        torch.manual_seed(0)
        out[name] = str(save_checkpoint(root / name, build_model(cfg, zero_output=False), cfg))
    return out


@pytest.fixture(scope="module")
def client1():
    """The embedded cluster with one worker; OMP_NUM_THREADS keeps its tasks on one thread."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        with connect(None, workers=1) as client:
            yield client


@pytest.fixture(scope="module")
def client2():
    """Two thread workers that advertise a GPU: tile tasks must ask for it and still run."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",
            resources={"GPU": 1},
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def run_denoise(
    spec: SynthSpec,
    client: Client,
    root: Path,
    block_steps: int = 1,
    region: int = 0,
    per_task: int = 1,
) -> np.ndarray:
    """The engine's diffusion loop alone: the final float32 state (3, H, W)."""
    job = check_job(spec, load_checkpoint(spec.checkpoint))
    work = WorkDir(root)
    root.mkdir(parents=True)
    work.save(job.identity(), spec.to_dict(), 0)
    final, rate = denoise(
        job,
        work,
        client,
        0,
        block_steps=block_steps,
        region=region,
        per_task=per_task,
        resources=task_resources(client),
    )
    assert rate > 0
    return zarr_read(final)


def zarr_read(path: Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[:]


def uint8(x: np.ndarray) -> np.ndarray:
    return to_uint8(torch.from_numpy(x)[None])[0]


CASES = {
    # name: (checkpoint, width, height, sampler, steps, tile, halo_every, workers)
    "ddim-64-w1": ("micro", WIDTH, HEIGHT, "ddim", 3, 64, None, 1),
    "ddim-100-w2": ("micro", WIDTH, HEIGHT, "ddim", 3, 100, None, 2),
    "ddim-64-halo2-w2": ("micro", WIDTH, HEIGHT, "ddim", 3, 64, 2, 2),
    "ddpm-64-w1": ("t12", 150, 110, "ddpm", None, 64, None, 1),
    "ddpm-100-halo3-w2": ("t12", 150, 110, "ddpm", None, 100, 3, 2),
}


@pytest.fixture(scope="module")
def whole_states(checkpoints, client1, tmp_path_factory) -> dict:
    """Reference runs with --tile 0, computed once per (checkpoint, size, sampler)."""
    cache: dict = {}

    def get(ckpt: str, width: int, height: int, sampler: str, steps: int | None):
        key = (ckpt, width, height, sampler, steps)
        if key not in cache:
            spec = SynthSpec(
                checkpoints[ckpt], width, height, seed=7, sampler=sampler, steps=steps, tile=0
            )
            cache[key] = run_denoise(spec, client1, tmp_path_factory.mktemp("whole") / "w")
        return cache[key]

    return get


@pytest.mark.parametrize("case", list(CASES))
def test_tiled_state_equals_whole_image(
    case, checkpoints, client1, client2, whole_states, tmp_path
):
    ckpt, width, height, sampler, steps, tile, halo_every, workers = CASES[case]
    spec = SynthSpec(
        checkpoints[ckpt],
        width,
        height,
        seed=7,
        sampler=sampler,
        steps=steps,
        tile=tile,
        halo_every=halo_every,
    )
    tiled = run_denoise(spec, client1 if workers == 1 else client2, tmp_path / "work")
    whole = whole_states(ckpt, width, height, sampler, steps)
    assert tiled.shape == whole.shape == (3, height, width)
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.array_equal(uint8(tiled), uint8(whole))


BLOCK_CASES = {
    # name: (checkpoint, sampler, steps, tile, block_steps); 2 workers, awkward sizes
    "ddim-64-k1": ("micro", "ddim", 6, 64, 1),
    "ddim-64-k2": ("micro", "ddim", 6, 64, 2),
    "ddim-64-k5": ("micro", "ddim", 6, 64, 5),  # a block of 5, then one of 1
    "ddpm-40-k5": ("t12", "ddpm", None, 40, 5),  # 5 + 5 + 2, halo 20 = half the tile
}


@pytest.mark.parametrize("case", list(BLOCK_CASES))
def test_blocks_of_steps_equal_whole_image_and_single_steps(
    case, checkpoints, client2, whole_states, tmp_path
):
    """Temporal blocking (I6): K diffusion steps per tile task, the halo K reaches wide,
    give the whole image's state bit for bit, and so the K = 1 run's and its uint8."""
    ckpt, sampler, steps, tile, k = BLOCK_CASES[case]
    width, height = (WIDTH, HEIGHT) if ckpt == "micro" else (150, 110)
    spec = SynthSpec(
        checkpoints[ckpt], width, height, seed=7, sampler=sampler, steps=steps, tile=tile
    )
    tiled = run_denoise(spec, client2, tmp_path / "work", block_steps=k)
    whole = whole_states(ckpt, width, height, sampler, steps)
    assert tiled.shape == whole.shape == (3, height, width)
    assert np.array_equal(tiled, whole)
    assert np.array_equal(uint8(tiled), uint8(whole))


@pytest.mark.parametrize(("halo_every", "k"), [(None, 3), (2, 1)])
def test_device_sized_regions_read_ahead_equal_whole_image(
    halo_every, k, checkpoints, client2, whole_states, tmp_path
):
    """A GPU worker's task shape: regions of 2 x 2 tiles (clipped at the canvas edge)
    computed as one window each, 3 regions per task read ahead and written behind
    (tasks.denoise_tiles); the state is the whole image's bit for bit."""
    spec = SynthSpec(
        checkpoints["micro"], WIDTH, HEIGHT, seed=7, steps=6, tile=64, halo_every=halo_every
    )
    job = check_job(spec)
    regions = list(job.plan.regions(128))
    assert len(regions) == 3 * 3 and sum(job.plan.tiles_in(r) for r in regions) == len(job.plan)
    assert (regions[-1].height, regions[-1].width) == (270 - 256, 333 - 256)
    tiled = run_denoise(spec, client2, tmp_path / "work", block_steps=k, region=128, per_task=3)
    assert np.array_equal(tiled, whole_states("micro", WIDTH, HEIGHT, "ddim", 6))


def test_block_steps_the_tile_cannot_hold_are_refused(checkpoints):
    job = check_job(SynthSpec(checkpoints["micro"], 100, 80, steps=6, tile=40))
    assert max_block_steps(job) == 5  # halo 5 x 4 px = half of 40
    check_block_steps(job, 5)
    with pytest.raises(GigasynthError, match="block_steps 6 needs a halo of 24 px, more than half"):
        check_block_steps(job, 6)
    with pytest.raises(GigasynthError, match="at least 1, not 0"):
        check_block_steps(job, 0)
    halo = check_job(SynthSpec(checkpoints["micro"], 100, 80, steps=6, tile=40, halo_every=2))
    with pytest.raises(GigasynthError, match="needs one exchange per diffusion step"):
        check_block_steps(halo, 2)
    whole = check_job(SynthSpec(checkpoints["micro"], 100, 80, steps=6, tile=0))
    check_block_steps(whole, 50)  # one task has no halo to hold: any K


def test_tile_tasks_ask_for_a_gpu_only_where_workers_have_one(client1, client2):
    assert task_resources(client2) == {"GPU": 1}
    # The embedded cluster advertises a GPU exactly when this machine has one.
    assert (task_resources(client1) is not None) == torch.cuda.is_available()


def test_whole_image_engine_is_the_library_sampler(checkpoints, whole_states):
    """--tile 0 runs exactly gigasynth.sampling.generate (bitwise): the reference is sound."""
    ckpt = load_checkpoint(checkpoints["micro"])
    with torch.no_grad():
        x = generate(ckpt.model, HEIGHT, WIDTH, [7], SampleRequest("ddim", 3))[0].numpy()
    assert np.array_equal(whole_states("micro", WIDTH, HEIGHT, "ddim", 3), x)


RESUME_SPEC = dict(width=200, height=150, seed=11, sampler="ddim", steps=8, tile=64, save_every=2)


def resume_spec_argv(checkpoint: str, out: Path) -> list[str]:
    """`gigasynth synth` of RESUME_SPEC with `checkpoint` into `out`, as a subprocess argv."""
    s = RESUME_SPEC
    return [
        sys.executable,
        "-m",
        "gigasynth",
        "synth",
        "--checkpoint",
        checkpoint,
        "--size",
        f"{s['width']}x{s['height']}",
        "--seed",
        str(s["seed"]),
        "--steps",
        str(s["steps"]),
        "--tile",
        str(s["tile"]),
        "--save-every",
        str(s["save_every"]),
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def uninterrupted(checkpoints, client2, tmp_path_factory) -> dict:
    """One uninterrupted synth with every output and its progress reports."""
    root = tmp_path_factory.mktemp("full")
    reports = []
    spec = SynthSpec(checkpoints["micro"], **RESUME_SPEC, tiff_compression="zlib", mpp=0.25)
    result = synthesize(
        spec,
        root / "s.ome.zarr",
        ome_tiff=root / "s.ome.tif",
        preview=root / "s.png",
        client=client2,
        progress=reports.append,
    )
    return {
        "result": result,
        "reports": reports,
        "spec": spec,
        "level0": open_level(result.zarr_path, 0)[:],
    }


def test_synthesize_writes_the_slide_formats(uninterrupted, checkpoints):
    result, reports = uninterrupted["result"], uninterrupted["reports"]
    spec = uninterrupted["spec"]
    assert result.zarr_path.is_dir() and not work_path(result.zarr_path).exists()
    ckpt = load_checkpoint(checkpoints["micro"])
    with torch.no_grad():
        x = generate(ckpt.model, spec.height, spec.width, [spec.seed], SampleRequest("ddim", 8))
    # Level 0 is the whole-image sample, byte for byte (channels first).
    assert np.array_equal(uninterrupted["level0"], to_uint8(x)[0].transpose(2, 0, 1))
    assert level_shapes(result.zarr_path)[0] == (150, 200)
    provenance = read_provenance(result.zarr_path)
    assert provenance["checkpoint_sha256"] == ckpt.sha256 and provenance["seed"] == 11
    with tifffile.TiffFile(result.ome_tiff_path) as tif:
        assert np.array_equal(tif.series[0].levels[0].asarray(), to_uint8(x)[0])
    assert result.preview_path.stat().st_size > 0
    assert result.checkpoint_sha256 == ckpt.sha256 and result.mpx_steps_per_s > 0
    denoising = [r for r in reports if r.phase == "denoise"]
    assert (
        denoising[-1].steps_done == 8
        and denoising[-1].tiles_done == denoising[-1].tiles_total == 12
    )
    assert all(r.total_steps == 8 for r in reports)
    assert [r.phase for r in reports if r.phase != "denoise"] == [
        "level0",
        "pyramid",
        "tiff",
        "done",
    ]


def test_killed_run_resumes_to_the_same_bytes(uninterrupted, checkpoints, tmp_path, capfd):
    """A real CLI process killed with SIGKILL after a saved step, then --resume."""
    out = tmp_path / "k.ome.zarr"
    progress = work_path(out) / "progress.json"
    argv = [
        *resume_spec_argv(checkpoints["micro"], out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    saved = 0
    deadline = time.monotonic() + 120
    while saved < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if progress.exists():
            saved = json.loads(progress.read_text())["step"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= saved < 8, proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    # Without --resume the saved state is not silently discarded.
    assert main(argv[3:]) == 2
    assert "pass --resume to continue it" in capfd.readouterr().err
    assert main([*argv[3:], "--resume"]) == 0
    assert np.array_equal(open_level(out, 0)[:], uninterrupted["level0"])
    assert not work_path(out).exists()


# A CLI process whose tile tasks hang once they wrote a chunk of x after step 6: the
# block of steps 3-6 (--block-steps 3) is under way, its target partly written.
HANG_IN_BLOCK = """
import sys, time
from gigasynth.cli import main
from gigasynth.synth import tasks
write = tasks.write_region
def write_then_hang(path, rows, cols, values):
    write(path, rows, cols, values)
    if path.name == "x-000006.zarr":
        time.sleep(600)
tasks.write_region = write_then_hang
sys.exit(main(sys.argv[1:]))
"""


def test_run_killed_inside_a_block_resumes_to_the_same_bytes(uninterrupted, checkpoints, tmp_path):
    """SIGKILL while a block of 3 steps (3 -> 6) has written part of its target: the
    resume starts the block again from step 3, with another K (it is no part of the
    job's identity), and gives the uninterrupted run's bytes."""
    out = tmp_path / "b.ome.zarr"
    argv = [*resume_spec_argv(checkpoints["micro"], out), "--block-steps", "3"]
    argv[1:3] = ["-c", HANG_IN_BLOCK]
    work = WorkDir(work_path(out))
    proc = subprocess.Popen(argv, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.is_file() for p in work.x_buffer(6).rglob("c/*/*/*")):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((work.root / "progress.json").read_text())["step"] == 3
    assert any(p.is_file() for p in work.x_buffer(6).rglob("c/*/*/*"))  # partly written
    assert main([*argv[3:-2], "--block-steps", "2", "--resume"]) == 0
    assert np.array_equal(open_level(out, 0)[:], uninterrupted["level0"])
    assert not work_path(out).exists()


def test_cancel_and_full_disk_keep_the_saved_state_resumable(
    uninterrupted, checkpoints, client1, tmp_path, monkeypatch
):
    spec = replace(uninterrupted["spec"], tiff_compression="jpeg")
    out = tmp_path / "c.ome.zarr"
    reports = []

    def stop_in_step_4() -> bool:
        return any(r.step == 3 and r.tiles_done == 5 for r in reports)

    with pytest.raises(SynthCancelled, match="state saved at step 2"):
        synthesize(
            spec,
            out,
            client=client1,
            progress=reports.append,
            should_stop=stop_in_step_4,
            block_steps=1,  # one step per task: the saves fall on the steps named here
        )
    assert json.loads((work_path(out) / "progress.json").read_text())["step"] == 2
    assert not out.exists()

    write = synth_tasks.write_region

    def disk_full_at_step_7(path, rows, cols, values):
        if path.name == "x-000007.zarr":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write(path, rows, cols, values)

    monkeypatch.setattr(synth_tasks, "write_region", disk_full_at_step_7)
    with pytest.raises(GigasynthError, match="disk full .* saved at step 6/8 is kept"):
        synthesize(spec, out, client=client1, resume=True, block_steps=1)
    monkeypatch.setattr(synth_tasks, "write_region", write)
    x6 = read_region(WorkDir(work_path(out)).x_buffer(6), slice(0, 150), slice(0, 200))
    assert x6.shape == (3, 150, 200)
    result = synthesize(spec, out, client=client1, resume=True)
    assert np.array_equal(open_level(result.zarr_path, 0)[:], uninterrupted["level0"])


def test_resume_refuses_another_job(checkpoints, client1, tmp_path):
    spec = SynthSpec(checkpoints["micro"], 40, 30, seed=1, steps=2, tile=0)
    out = tmp_path / "r.ome.zarr"
    with pytest.raises(SynthCancelled):
        synthesize(spec, out, client=client1, should_stop=lambda: True)
    with pytest.raises(GigasynthError, match="another job \\(seed 1 there, 2 now\\)"):
        synthesize(replace(spec, seed=2), out, client=client1, resume=True)
    synthesize(spec, out, client=client1, resume=True)
    with pytest.raises(GigasynthError, match="exists; pass overwrite to replace it"):
        synthesize(spec, out, client=client1)


def gigasynth_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gigasynth", *args], capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_cli_unreachable_scheduler(checkpoints, tmp_path):
    """A real process: Dask's connection retries must not reach stderr."""
    out = tmp_path / "s.ome.zarr"
    proc = gigasynth_cli(
        "synth",
        "--checkpoint",
        checkpoints["micro"],
        "--out",
        str(out),
        "--size",
        "64x64",
        "--scheduler",
        "tcp://127.0.0.1:9",
    )
    assert_one_line_error(proc, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert not out.exists() and not work_path(out).exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--tile", "6"], "tile 6 px is smaller than twice the halo (2 x 4 px)"),
        (["--tile", "32", "--halo-every", "5"], "halo_every 5 exceeds the model's 4 NCA steps"),
        (["--tile", "32", "--block-steps", "5"], "more than half the --tile of 32 px"),
        (["--steps", "51"], "--steps 51 exceeds the model's 50 diffusion timesteps"),
        (["--sampler", "euler"], "invalid choice: 'euler'"),
        (["--size", "0x10"], "must be positive"),
        (["--size", "300000x300000"], "exceeds the limit of 68,719,476,736 pixels"),
        (["--tile", "0", "--size", "9000x9000"], "exceeds the whole-image (--tile 0) limit"),
        (["--workers", "2", "--scheduler", "tcp://h:1"], "not allowed with argument"),
        (["--checkpoint", "FOURIER", "--tile", "32"], "whole-image model (FourierDiff-NCA)"),
        (["--out", "EXISTING"], "exists; pass --overwrite to replace it"),
        (["--ome-tiff", "OLD_TIFF"], "old.ome.tif exists; pass --overwrite"),
        (["--preview", "x.jpg"], "the preview must be a .png file"),
    ],
)
def test_cli_bad_input_is_one_line(args, fragment, checkpoints, tmp_path, capfd):
    existing = tmp_path / "old.ome.zarr"
    existing.mkdir()
    (tmp_path / "old.ome.tif").write_bytes(b"an earlier slide")
    argv = [
        "synth",
        "--checkpoint",
        checkpoints["micro"],
        "--size",
        "40x30",
        "--out",
        str(tmp_path / "s.ome.zarr"),
    ]
    for flag, value in zip(args[::2], args[1::2], strict=True):
        value = {
            "FOURIER": checkpoints["fourier"],
            "EXISTING": str(existing),
            "OLD_TIFF": str(tmp_path / "old.ome.tif"),
        }.get(value, value)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    parse_error = args[0] in ("--sampler", "--workers")
    with pytest.raises(SystemExit) if parse_error else contextlib.nullcontext():
        assert main(argv) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "s.ome.zarr").exists()
    assert not work_path(tmp_path / "s.ome.zarr").exists()


def test_demo_writes_the_slide_formats(checkpoints, tmp_path, capfd):
    out = tmp_path / "demo"
    argv = [
        "demo",
        "--checkpoint",
        checkpoints["micro"],
        "--size",
        "72",
        "--steps",
        "2",
        "--tile",
        "32",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert main(argv) == 0  # a second demo replaces the first one's files
    printed = capfd.readouterr().out
    assert "QuPath: File > Open" in printed and str((out / "demo.ome.tif").resolve()) in printed
    assert level_shapes(out / "demo.ome.zarr") == [(72, 72)]
    with tifffile.TiffFile(out / "demo.ome.tif") as tif:
        assert tif.is_ome and tif.series[0].shape == (72, 72, 3)
    assert (out / "demo.png").stat().st_size > 0


# --- compact state, preflight, work dir, allocator --------------------------------------


def test_state_is_float16_rounded_alike_in_whole_image_sampling(checkpoints, client2, tmp_path):
    """x is stored in float16 between steps; the library sampler rounds at the same point,
    so the stored tiled state is exactly the whole-image sample (no rounding left to do)."""
    spec = SynthSpec(checkpoints["micro"], 150, 110, seed=3, steps=3, tile=64, halo_every=2)
    tiled = run_denoise(spec, client2, tmp_path / "work")
    assert (
        zarr.open_array(str(WorkDir(tmp_path / "work").x_buffer(3)), mode="r").dtype == np.float16
    )
    ckpt = load_checkpoint(checkpoints["micro"])
    with torch.no_grad():
        whole = generate(ckpt.model, 110, 150, [3], SampleRequest("ddim", 3))[0].numpy()
    assert np.array_equal(whole, whole.astype(np.float16).astype(np.float32))
    assert np.array_equal(tiled, whole)


def test_work_folder_peaks_at_12_bytes_per_pixel(checkpoints, client2, tmp_path):
    """Measured at every progress report (after each tile task, each phase): the state
    and the slide being assembled stay within 12 B/px; float32 with three buffers was 36."""
    width, height = 384, 256  # whole 64 px chunks: no padding in the figure
    spec = SynthSpec(checkpoints["micro"], width, height, seed=2, steps=4, tile=64)
    out = tmp_path / "p.ome.zarr"
    peak, phases, estimates = [0], set(), []

    def measure(report: SynthProgress) -> None:
        phases.add(report.phase)
        peak[0] = max(peak[0], allocated_bytes(work_path(out)))

    # One step per task: two x buffers at once (a block of all 4 steps never holds two).
    synthesize(
        spec, out, client=client2, progress=measure, on_needs=estimates.append, block_steps=1
    )
    pixels = width * height
    assert phases >= {"denoise", "level0", "pyramid", "tiff"}
    metadata = 64 << 10  # zarr.json, progress.json, OME-XML: 4 KiB blocks
    assert 10 * pixels < peak[0] <= 12 * pixels + metadata, peak[0] / pixels
    (needs,) = estimates
    assert needs.state_peak == 12 * pixels and needs.state_peak + metadata >= peak[0]


def test_old_state_format_is_refused_not_misread(checkpoints, client1, tmp_path):
    spec = SynthSpec(checkpoints["micro"], 40, 30, seed=1, steps=2, tile=0)
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(SynthCancelled):
        synthesize(spec, out, client=client1, should_stop=lambda: True)
    progress = work_path(out) / "progress.json"
    record = json.loads(progress.read_text())
    record["version"] = 1  # what a float32 state of an older version records
    progress.write_text(json.dumps(record))
    with pytest.raises(GigasynthError, match="state format 1 .*float32.*start over with overwrite"):
        synthesize(spec, out, client=client1, resume=True)
    synthesize(spec, out, client=client1, overwrite=True)
    assert out.is_dir() and not work_path(out).exists()


def test_preflight_refuses_what_the_disk_cannot_hold(checkpoints, client1, tmp_path, monkeypatch):
    """An injected free-space figure: refused before any work, one line naming the need
    and the free space; preflight=False runs it anyway."""
    spec = SynthSpec(checkpoints["micro"], 64, 48, seed=1, steps=2, tile=32)
    out = tmp_path / "f.ome.zarr"
    monkeypatch.setattr(preflight, "disk_free", lambda path: 1 << 20)
    with pytest.raises(
        preflight.DiskShortage, match=r"the state and the slide need 0\.1 GB on .*, 0\.0 GB free"
    ) as info:
        synthesize(spec, out, client=client1)
    assert "\n" not in str(info.value) and info.value.free == 1 << 20
    assert not work_path(out).exists() and not out.exists()
    synthesize(spec, out, client=client1, preflight=False)
    assert out.is_dir()


def test_cli_preflight_refuses_a_slide_larger_than_the_real_disk(checkpoints, tmp_path):
    """The real free space of the test's filesystem, a slide that needs more (12 B/px)."""
    free = shutil.disk_usage(tmp_path).free
    side = math.isqrt(free // 8) + 1
    if side * side > 68_719_476_736:
        pytest.skip(f"{free / 1e9:.0f} GB free: no allowed slide size exceeds it")
    out = tmp_path / "big.ome.zarr"
    proc = gigasynth_cli(
        "synth",
        "--checkpoint",
        checkpoints["micro"],
        "--out",
        str(out),
        "--size",
        f"{side}x{side}",
        "--steps",
        "2",
    )
    assert_one_line_error(proc, "not enough disk space")
    assert re.search(r"need [\d,.]+ GB on \S+, [\d,.]+ GB free", proc.stderr), proc.stderr
    assert "--no-preflight" in proc.stderr
    assert not out.exists() and not work_path(out).exists()


def test_work_dir_holds_the_state_and_a_resume_finds_it(uninterrupted, checkpoints, tmp_path):
    """CLI end to end: --work-dir puts every state buffer there (nothing beside --out), a
    killed run resumes from it without being told where, and the result is unchanged."""
    out, scratch = tmp_path / "out" / "w.ome.zarr", tmp_path / "scratch"
    argv = [
        *resume_spec_argv(checkpoints["micro"], out),
        "--work-dir",
        str(scratch),
    ]
    progress = work_path(out) / "progress.json"
    proc = subprocess.Popen(
        argv,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    saved, deadline = 0, time.monotonic() + 120
    while saved < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
        if progress.exists():
            saved = json.loads(progress.read_text())["step"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= saved < 8, proc.stderr.read()
    (state,) = scratch.iterdir()
    assert state.name.startswith("w.ome.zarr-") and any(state.glob("x-*.zarr"))
    assert not list(work_path(out).glob("*.zarr"))
    assert main(argv[3:-2] + ["--resume"]) == 0
    assert np.array_equal(open_level(out, 0)[:], uninterrupted["level0"])
    assert not work_path(out).exists() and not any(scratch.iterdir())


def test_service_refuses_at_admission_what_the_disk_cannot_hold(tmp_path):
    """POST /v1/jobs answers 507 naming the need and the free space of GIGASYNTH_WORK_DIR's
    disk; a deleted job's state goes from the work dir too."""
    from fastapi.testclient import TestClient

    from gigasynth_service.app import create_app
    from gigasynth_service.config import load_config
    from gigasynth_service.paths import JobPaths
    from tests.service_fixtures import MICRO_MODEL, add_token, write_micro_model

    data_dir, scratch = tmp_path / "data", tmp_path / "scratch"
    write_micro_model(data_dir)
    free = shutil.disk_usage(tmp_path).free
    side = math.isqrt(free // 8) + 1
    if side > 262_144:
        pytest.skip(f"{free / 1e9:.0f} GB free: no allowed slide size exceeds it")
    token = add_token(data_dir, "big", max_megapixels=side * side / 1e6 + 1)
    config = load_config(
        {
            "GIGASYNTH_DATA_DIR": str(data_dir),
            "GIGASYNTH_WORK_DIR": str(scratch),
            "GIGASYNTH_MAX_MEGAPIXELS": str(side * side / 1e6 + 1),
        }
    )
    assert config.work_dir == scratch and config.save_every == 1
    with TestClient(create_app(config, run_jobs=False)) as client:
        response = client.post(
            "/v1/jobs",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": MICRO_MODEL, "width": side, "height": side, "steps": 2},
        )
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error.startswith(f"not enough disk space on the server for a {side}x{side} slide")
    assert re.fullmatch(r".*: it needs [\d,.]+ GB, [\d,.]+ GB free", error), error
    assert str(tmp_path) not in error
    paths = JobPaths.of(data_dir, "a" * 32)
    work = WorkDir(work_path(paths.zarr), state_path(paths.zarr, scratch))
    work.create()
    work.save({}, {}, 0)
    paths.remove()
    assert not work.state.exists() and not paths.root.exists()


def test_workers_keep_task_memory_between_tasks(monkeypatch):
    """glibc takes the settings (on this Linux); GIGASYNTH_STEADY_MALLOC=0 opts out."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert steady_allocator()
    monkeypatch.setenv("GIGASYNTH_STEADY_MALLOC", "0")
    assert not steady_allocator()


# ---- resolution: a property of the model, not a label ----


def test_the_models_resolution_wins_and_another_is_refused():
    meta = {"mpp": 0.998}
    assert slide_resolution(None, meta).mpp == 0.998
    assert slide_resolution(1.0, meta).mpp == 0.998  # within 1 %: the model's value
    assert slide_resolution(1.0, meta).magnification == 10.0
    assert slide_resolution(0.5, {"mpp": 0.5}).magnification == 20.0
    assert slide_resolution(0.25, {"mpp": 0.25}).magnification == 40.0
    with pytest.raises(GigasynthError, match=r"makes 0\.998 µm/px \(about 10x\)"):
        slide_resolution(0.25, meta)
    with pytest.raises(GigasynthError, match="not the model's resolution"):
        slide_resolution(1.02, meta)  # 2.2 % off
    # A model that records no resolution takes the request's, else the default.
    assert (slide_resolution(0.25, {}).mpp, slide_resolution(0.25, {}).source) == (0.25, "request")
    assert slide_resolution(None, {"mpp": "?"}).mpp == DEFAULT_MPP
    assert slide_resolution(None, {"mpp": True}).source == "default"


@pytest.fixture(scope="module")
def one_micron_model(tmp_path_factory) -> str:
    """MICRO recording 1 µm/px, as a model trained on 10x slides would."""
    torch.manual_seed(0)
    return str(
        save_checkpoint(
            tmp_path_factory.mktemp("mpp") / "micro-1um",
            build_model(MICRO, zero_output=False),
            MICRO,
            {"mpp": 1.0},
        )
    )


def test_slide_takes_the_models_resolution(one_micron_model, client1, tmp_path):
    """Asked for nothing, the slide is written at the model's 1 µm/px (10x), not 0.5."""
    spec = SynthSpec(
        one_micron_model, width=48, height=40, seed=1, sampler="ddim", steps=1, tile=32
    )
    assert check_job(spec, load_checkpoint(one_micron_model)).resolution.mpp == 1.0
    result = synthesize(spec, tmp_path / "s.ome.zarr", client=client1)
    root = ET.fromstring((result.zarr_path / "OME" / "METADATA.ome.xml").read_text())
    assert float(root.find(f".//{{{OME_NS}}}Pixels").get("PhysicalSizeX")) == 1.0
    assert float(root.find(f".//{{{OME_NS}}}Objective").get("NominalMagnification")) == 10.0
    assert read_provenance(result.zarr_path)["mpp_source"] == "model"


def test_cli_refuses_a_resolution_the_model_does_not_make(one_micron_model, tmp_path):
    out = tmp_path / "s.ome.zarr"
    proc = gigasynth_cli(
        "synth",
        "--checkpoint",
        one_micron_model,
        "--size",
        "48x40",
        "--steps",
        "1",
        "--mpp",
        "0.25",
        "--workers",
        "1",
        "--out",
        str(out),
    )
    assert_one_line_error(
        proc, "mpp 0.25 µm/px is not the model's resolution: it makes 1 µm/px (about 10x)"
    )
    assert proc.returncode == 2
    assert not out.exists() and not work_path(out).exists()


def test_eta_comes_from_the_steady_rate_not_the_start_up():
    """The first step pays for start-up (workers loading the model): an ETA that counts it
    came out about 4x too long. None until two steps have ended; then the rate
    between step ends."""
    meter = RateMeter(total_work=10e6, done_before=0.0)
    time.sleep(0.5)  # start-up
    meter.add(1e6)
    meter.step_ended()
    assert meter.eta_s is None and meter.steady_rate is None and meter.rate > 0
    first = time.perf_counter()
    time.sleep(0.05)
    meter.add(1e6)
    meter.step_ended()
    step_s = time.perf_counter() - first
    # 8 Mpx-steps left at 1 per step_s, not at the average since the start (which
    # counts the 0.5 s start-up and would say about 4x as long).
    assert meter.eta_s == pytest.approx(8 * step_s, rel=0.2)
    assert meter.eta_s < 0.5 * 8e6 / (meter.rate * 1e6)
