"""The experiment scripts of docs/RESULTS.md run end to end at a toy budget.

A GPU session reruns them at the paper's sizes; this keeps them runnable. Each script
is a real subprocess writing under EXPERIMENTS_OUT, as a user runs them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gigasynth.errors import GigasynthError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
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
