"""The experiment scripts of docs/RESULTS.md run end to end at a toy budget.

A GPU session reruns them at the paper's sizes; this keeps them runnable. Each script
is a real subprocess writing under EXPERIMENTS_OUT, as a user runs them.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gigasynth.errors import GigasynthError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TOOLS = EXPERIMENTS.parent / "tools"  # release and operations scripts (bundling, GPU runs)
TASK = ["--task", "pathology-10x"]
STEPS = [
    ["train_models.py", *TASK, "--iterations", "2", "--batch", "2", "--threads", "1"],
    ["quality.py", *TASK, "--n", "4", "--steps", "2"],
    ["ood_sizes.py", *TASK, "--n", "4", "--scales", "1", "2", "--steps", "2"],
    ["inpaint.py", *TASK, "--n", "2", "--hole", "8", "--steps", "2"],
    ["superres.py", *TASK, "--n", "2", "--factors", "2", "--steps", "2"],
    ["ddim_steps.py", *TASK, "--n", "4", "--steps", "2", "3"],
]


@pytest.mark.slow
def test_experiment_scripts_run_and_tabulate(tmp_path):
    pytest.importorskip("diffusers")
    from gigasynth.eval import inception_path

    try:
        inception_path()
    except GigasynthError as err:
        pytest.skip(str(err))
    env = {**os.environ, "EXPERIMENTS_OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    for script, *args in STEPS:
        done = subprocess.run(
            [sys.executable, script, *args],
            cwd=EXPERIMENTS,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (script, done.stderr[-2000:])

    results = tmp_path / "results"
    quality = json.loads((results / "quality-pathology-10x.json").read_text())
    assert quality["n"] == 4 and set(quality["models"]) == {"diff-nca", "unet"}
    assert quality["models"]["unet"]["train"]["iterations"] == 2
    # Held-out protocol: trained on the slide's train region only.
    assert quality["models"]["diff-nca"]["train"]["region"] == "train"
    ood = json.loads((results / "ood-sizes-pathology-10x.json").read_text())
    assert [row["scale"] for row in ood["models"]["diff-nca"]] == [1, 2]
    inpaint = json.loads((results / "inpaint-pathology-10x.json").read_text())
    assert set(inpaint["results"]) == {"harmonic fill", "diff-nca", "unet"}
    steps = json.loads((results / "ddim-steps-pathology-10x.json").read_text())
    assert [row["steps"] for row in steps["models"]["unet"]] == [2, 3]
    superres = json.loads((results / "superres-pathology-10x.json").read_text())
    assert list(superres["results"]) == ["x2"]
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {
        "quality-pathology-10x-real.png",
        "inpaint-pathology-10x.png",
        "superres-pathology-10x-x2.png",
        "ddim-steps-pathology-10x.png",
    } <= figures

    tables = subprocess.run(
        [sys.executable, "tables.py"],
        cwd=EXPERIMENTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for name in ("quality", "ood-sizes", "inpaint", "superres", "ddim-steps"):
        assert f"### {name}-pathology-10x" in tables, name
    # Each KID carries its bootstrap interval, which brackets it.
    row = next(line for line in tables.splitlines() if line.startswith("| diff-nca | "))
    kid, low, high = map(
        float, re.search(r"\| (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", row).groups()
    )
    assert low <= kid <= high, row


def test_denoiser_probe_reports_gain_and_reach(tmp_path):
    """The denoiser diagnostics: gain over a linear filter and the reach used, per t."""
    out = tmp_path / "probe.json"
    subprocess.run(
        [sys.executable, "denoiser_probe.py", "--checkpoint", "builtin:tiny-pathology"]
        + ["--t", "20", "200", "--n", "4", "--size", "32", "--window", "5"]
        + ["--reach-crops", "1", "--json", str(out)],
        cwd=EXPERIMENTS,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    probe = json.loads(out.read_text())
    assert [row["t"] for row in probe["rows"]] == [20, 200] and probe["reach_px"] == 12
    for row in probe["rows"]:
        assert row["gain"] == pytest.approx(1 - row["model_mse"] / row["linear_mse"])
        assert 0 < row["linear_mse"] < 2 and 0 <= row["reach_used_px"] <= 12


def _figures(fake: str, kids: dict[int, float], ratios: list[float]) -> dict:
    """A slide-mode `gigasynth eval --json` document with these KIDs and band ratios."""
    scales = [
        {"scale": s, "kid": k, "kid_low": k - 0.01, "kid_high": k + 0.01, "fid": 100.0}
        | {"n": 256, "crop": 32, "real_tiles": 2}
        for s, k in kids.items()
    ]
    bands = [{"low_px": 2**i, "high_px": 2 ** (i + 1), "ratio": r} for i, r in enumerate(ratios)]
    colour = {"background_fraction": 0.5}
    return {
        "fake": fake,
        "scales": scales,
        "bands": bands,
        "colour": {"real": colour, "fake": colour},
    }


def test_gpu_cascade_script_parses_and_its_verdict_needs_every_figure_better(tmp_path):
    subprocess.run(["bash", "-n", str(TOOLS / "gpu_cascade.sh")], check=True)
    bundled = _figures("bundled", {1: 0.2, 4: 0.3, 16: 0.4}, [1.5, 0.5, None])
    cases = {
        "REPLACE": _figures("gpu", {1: 0.3, 4: 0.2, 16: 0.3}, [1.1, 0.9, 1.0]),
        "KEEP": _figures("gpu", {1: 0.1, 4: 0.2, 16: 0.5}, [1.1, 0.9, 1.0]),
    }
    (tmp_path / "bundled.json").write_text(json.dumps(bundled))
    for word, gpu in cases.items():
        (tmp_path / "gpu.json").write_text(json.dumps(gpu))
        done = subprocess.run(
            [sys.executable, "gpu_cascade.py", "verdict", tmp_path / "gpu.json"]
            + [tmp_path / "bundled.json"],
            cwd=TOOLS,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.splitlines()[-1].startswith(f"verdict: {word}"), done.stdout
    assert "KID 16x 0.5000 vs 0.4000" in done.stdout and "4x" not in done.stdout.splitlines()[-1]
    (tmp_path / "gpu.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, "gpu_cascade.py", "verdict", tmp_path / "gpu.json"],
        cwd=TOOLS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not a slide-mode" in done.stderr


@pytest.mark.slow
def test_engine_benchmarks_run_and_the_projection_reads_them(tmp_path):
    """Issue 25's scripts at toy sizes: the plumbing at two block sizes in one run, the
    simulated cluster (sleeping model, real state I/O) and the GPU projection from the
    former's JSON; every figure present and consistent with its inputs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pipeline = tmp_path / "pipeline.json"
    args = ["--size", "256", "--tile", "64", "--steps", "4", "--block-steps", "1", "2"]
    subprocess.run(
        [sys.executable, str(EXPERIMENTS / "pipeline_bench.py"), *args, "--workers", "2",
         "--out-dir", str(tmp_path / "pb"), "--json", str(pipeline)],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    report = json.loads(pipeline.read_text())
    assert [r["block_steps"] for r in report["runs"]] == [1, 2]
    assert [r["tile_tasks"] for r in report["runs"]] == [16 * 4, 16 * 2]
    for run in report["runs"]:
        assert run["denoise"]["steady_plumbing_ms_per_step_per_mpx"] > 0
        assert {"driver", "event_loop", "tasks"} <= set(run["denoise"]["thread_cpu_ms_per_task"])
    assert report["plumbing_ms_per_step_per_mpx_vs_first"]["1"] == 1.0
    sim = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "cluster_sim.py"), "--workers", "1", "4",
         "--sleep-ms", "5", "--size", "256", "--tile", "64", "--steps", "2",
         "--block-steps", "2", "--per-task", "2"],
        env=env, check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    runs = json.loads(sim.stdout)["runs"]
    assert [(r["workers"], r["block_steps"], r["tiles_per_task"]) for r in runs] == [
        (1, 2, 2),
        (4, 2, 2),
    ]
    for r in runs:
        assert r["tasks"] == 8 and r["ideal_tile_steps_per_s"] == r["workers"] / 0.005
        # the sleeps alone take 16 tiles x 2 steps x 5 ms / workers
        assert 0 < r["efficiency"] <= 1.0 and r["seconds"] >= 0.16 / r["workers"]
    proj = subprocess.run(
        [sys.executable, str(EXPERIMENTS / "gpu_projection.py"), str(pipeline)],
        env=env, check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    rows = json.loads(proj.stdout)
    assert {(r["slide"], r["gpus"]) for r in rows} == {
        (s, g) for s in ("1 Gpx", "10 Gpx") for g in (1, 8, 64)
    }
    for r in rows:
        assert r["hours_overlapped"] <= r["hours_serial"] and r["plumbing_measured_at_k"] <= 2


def test_generated_blocks_in_results_match_their_records(tmp_path):
    """Every generated block of docs/RESULTS.md and the bundled models' cards equals what
    experiments/tables.py renders from docs/results/*.json; a figure changed by hand in a
    block is caught."""
    results = EXPERIMENTS.parent / "docs" / "RESULTS.md"
    text = results.read_text()
    assert text.count("<!-- generated: ") >= 3 and "<!-- generated: mask-calibration -->" in text

    def check(path: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "tables.py", "--check", str(path)],
            cwd=EXPERIMENTS,
            capture_output=True,
            text=True,
            timeout=120,
        )

    cards = sorted((EXPERIMENTS.parent / "gigasynth" / "builtin").glob("*.md"))
    for doc in [results, *cards]:
        ok = check(doc)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    start = text.index("<!-- generated: mask-calibration -->")
    digit = re.compile(r"\d").search(text, text.index("| skin |", start) + 8)
    assert digit is not None
    changed = text[: digit.start()] + str((int(digit[0]) + 1) % 10) + text[digit.end() :]
    edited = tmp_path / "RESULTS.md"
    edited.write_text(changed)
    stale = check(edited)
    assert stale.returncode == 1 and "mask-calibration" in stale.stdout, stale.stdout
