"""The installed package works: the wheel built from this tree, installed into a fresh venv
and run from outside the tree, serves; it holds no top-level `service` package; its viewer
files come with it; and OpenSeadragon is served from GIGASYNTH_OPENSEADRAGON_DIR or
refused with a 503 saying how to provide it.

Offline and quick: the wheel is built without build isolation (setuptools of this venv),
and the fresh venv (no pip) gets the dependencies through a .pth line naming this venv's
site-packages, after the wheel is installed into it with `pip --python`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.service_fixtures import Server, free_port

OSD_BUILD = ROOT / "node_modules/openseadragon/build/openseadragon"
SOURCES = ("pyproject.toml", "setup.py", "README.md", "gigasynth", "service")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the tree's sources (a build in the tree would leave build/)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, src / name)
    out = base / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-q",
            str(src),
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("gigasynth-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the installed wheel; dependencies from this venv's site-packages."""
    env_dir = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    )
    # A plain path line: this venv's own .pth files (its editable finder of the source
    # tree) are not run, so nothing of the tree can be imported in the fresh venv.
    deps = sysconfig.get_paths()["purelib"]
    assert deps in site.getsitepackages()
    (purelib / "zz_dependencies.pth").write_text(deps + "\n")
    return env_dir


def _fresh_env() -> dict[str, str]:
    """This process's environment without anything naming the tree or the service's settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIGASYNTH_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


@contextlib.contextmanager
def installed_server(
    venv: Path, tmp_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`gigasynth serve` of the fresh venv (its console script), run from a folder outside
    the tree, on a free loopback port; yields once /healthz answers 200."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(venv / "bin" / "gigasynth"),
                "serve",
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--log-level",
                "info",
            ],
            cwd=tmp_path,
            env={**_fresh_env(), **(extra_env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no /healthz in 120 s:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                    break
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def test_wheel_holds_the_service_under_its_own_name(wheel):
    """Top-level packages gigasynth and gigasynth_service only, every module of the tree's
    service/ folder and its static files under gigasynth_service/."""
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert whl.read(top_level).decode().split() == ["gigasynth", "gigasynth_service"]
    assert not any(n.startswith("service/") for n in names)
    for folder, package in (("service", "gigasynth_service"), ("gigasynth", "gigasynth")):
        expected = {
            f"{package}/{p.relative_to(ROOT / folder).as_posix()}"
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
            and "__pycache__" not in p.parts
            and (p.suffix == ".py" or "static" in p.parts)
        }
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert "gigasynth_service/static/viewer.js" in names


def test_installed_copy_imports_from_the_venv(venv, tmp_path):
    """Outside the tree, the fresh venv imports gigasynth and gigasynth_service from its
    own site-packages, and `import service` finds nothing."""
    code = (
        "import importlib.util, gigasynth, gigasynth_service.app as app; "
        "print(gigasynth.__file__); print(app.__file__); print(app.STATIC.is_dir()); "
        "print(importlib.util.find_spec('service'))"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=tmp_path,
        env=_fresh_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lib, service_app, static, service = proc.stdout.split()
    for path in (lib, service_app):
        assert Path(path).is_relative_to(venv), path
        assert not Path(path).is_relative_to(ROOT), path
    assert static == "True"
    assert service == "None"


def test_installed_serve_without_openseadragon(venv, tmp_path):
    """The installed server answers /healthz and serves its packaged viewer files; with no
    OpenSeadragon (none beside an installed package, no GIGASYNTH_OPENSEADRAGON_DIR) its
    static route is 503 JSON saying how to provide it, and the start-up log says so."""
    with installed_server(venv, tmp_path) as server:
        assert httpx.get(f"{server.url}/static/viewer/viewer.js").status_code == 200
        reply = httpx.get(f"{server.url}/static/openseadragon/openseadragon.min.js")
        assert reply.status_code == 503
        message = reply.json()["error"]
        assert "OpenSeadragon is not installed" in message
        assert "GIGASYNTH_OPENSEADRAGON_DIR" in message
    log = server.log.read_text()
    assert "viewer: OpenSeadragon is missing (not installed)" in log, log


def test_installed_serve_with_openseadragon_dir(venv, tmp_path):
    """GIGASYNTH_OPENSEADRAGON_DIR pointing at `npm ci`'s build folder: served, and logged."""
    if not (OSD_BUILD / "openseadragon.min.js").is_file():
        pytest.skip("OpenSeadragon is not installed: run `npm ci` in the repository root")
    with installed_server(
        venv, tmp_path, {"GIGASYNTH_OPENSEADRAGON_DIR": str(OSD_BUILD)}
    ) as server:
        reply = httpx.get(f"{server.url}/static/openseadragon/openseadragon.min.js")
        assert reply.status_code == 200
        assert reply.content == (OSD_BUILD / "openseadragon.min.js").read_bytes()
    log = server.log.read_text()
    assert f"viewer: serving OpenSeadragon from {OSD_BUILD}" in log, log
