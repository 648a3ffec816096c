"""Job validity has one owner: gigasynth.synth.check_job.

The same invalid job gives the same message, naming the spec's fields, from the library,
from the service's 422 (word for word: the service adds nothing to the engine's check)
and from `gigasynth synth` (the engine's message with its fields as the CLI's flags).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from gigasynth.cli import main
from gigasynth.cli.common import flag
from gigasynth.synth import JobError, SynthSpec, check_job
from gigasynth_service.app import create_app
from tests.service_fixtures import MICRO_MODEL, add_token, service_config, write_micro_model

# request changes -> (fragment of the library's message, the same in the CLI's words)
CASES = {
    "halo": ({"tile": 6}, "use tile 8 or more", "use --tile 8 or more"),
    "small": ({"width": 1}, "size 1x80 is too small (at least 2x2)", None),
    "steps": ({"steps": 60}, "give steps 50 or fewer", "give --steps 50 or fewer"),
    "mpp": ({"mpp": 1.0}, "leave mpp out or give 0.5", "leave --mpp out or give 0.5"),
    "whole": (
        {"tile": 0, "width": 9000, "height": 9000},
        "exceeds the whole-image (tile 0) limit",
        "whole-image (--tile 0) limit",
    ),
}
JOB = {"width": 96, "height": 80, "steps": 3, "tile": 64, "mpp": None}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, token, the micro model's checkpoint folder, the service's save_every)."""
    data_dir = tmp_path_factory.mktemp("validity") / "data"
    folder = write_micro_model(data_dir)
    token = add_token(data_dir, "alice", max_megapixels=100.0, max_concurrent=5)
    config = service_config(data_dir, max_megapixels=100.0, max_side=20_000, max_steps=100)
    with TestClient(create_app(config, run_jobs=False)) as client:
        yield client, token, str(folder), config.save_every


@pytest.mark.parametrize("case", CASES)
def test_one_message_from_library_service_and_cli(case, served, tmp_path, capfd):
    client, token, folder, save_every = served
    changes, fragment, cli_fragment = CASES[case]
    job = {**JOB, **changes}
    spec = SynthSpec(
        folder,
        job["width"],
        job["height"],
        steps=job["steps"],
        tile=job["tile"],
        mpp=job["mpp"],
        save_every=save_every,
    )
    with pytest.raises(JobError) as err:
        check_job(spec)
    library = str(err.value)
    assert fragment in library and "--" not in library, library  # fields, not flags

    response = client.post(
        "/v1/jobs", headers={"Authorization": f"Bearer {token}"}, json={"model": MICRO_MODEL, **job}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == library

    argv = [
        "synth",
        "--checkpoint",
        folder,
        "--size",
        f"{job['width']}x{job['height']}",
        "--steps",
        str(job["steps"]),
        "--tile",
        str(job["tile"]),
        "--save-every",
        str(save_every),
        "--out",
        str(tmp_path / "s.ome.zarr"),
    ]
    if job["mpp"] is not None:
        argv += ["--mpp", str(job["mpp"])]
    assert main(argv) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert lines == [f"gigasynth: error: {err.value.render(flag)}"], lines
    assert (cli_fragment or fragment) in lines[0]
    assert not (tmp_path / "s.ome.zarr").exists()


def test_the_engine_imports_no_front_end():
    """The limits live in the engine: importing it loads neither the CLI nor the service."""
    code = (
        "import sys, gigasynth.synth; "
        "bad = sorted(m for m in sys.modules "
        "if m.startswith(('gigasynth.cli', 'gigasynth_service'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
