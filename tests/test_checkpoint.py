"""gigasynth.checkpoint, the one owner of checkpoints: layout, bundled models, the config
reader, identity (hash), description and the process's one cache of loaded models."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gigasynth.checkpoint import (
    HashMismatch,
    builtin_names,
    cached_checkpoint,
    checkpoint_files,
    declared_kind,
    describe_checkpoint,
    is_checkpoint_folder,
    load_checkpoint,
    read_document,
    save_checkpoint,
)
from gigasynth.cluster import worker_device, worker_model
from gigasynth.errors import GigasynthError
from gigasynth.io import open_level
from gigasynth.models import build_model, count_parameters
from gigasynth.synth import SynthCancelled, SynthSpec, synthesize

from .conftest import MICRO


def micro_checkpoint(folder: Path, seed: int = 0, meta: dict | None = None) -> str:
    torch.manual_seed(seed)
    return str(save_checkpoint(folder, build_model(MICRO, zero_output=False), MICRO, meta))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layouts_resolve_to_the_same_two_files(tmp_path):
    ref = micro_checkpoint(tmp_path / "ckpt", meta={"mpp": 0.5})
    files = checkpoint_files(ref)
    assert (files.weights.name, files.config.name) == ("model.safetensors", "config.json")
    assert is_checkpoint_folder(Path(ref)) and not is_checkpoint_folder(tmp_path)
    # The pair NAME.safetensors + NAME.json side by side.
    pair = tmp_path / "pair"
    pair.mkdir()
    (pair / "m.safetensors").write_bytes(files.weights.read_bytes())
    (pair / "m.json").write_bytes(files.config.read_bytes())
    assert checkpoint_files(str(pair / "m.safetensors")).config == pair / "m.json"
    a, b = load_checkpoint(ref), load_checkpoint(str(pair / "m.safetensors"))
    assert a.sha256 == b.sha256 == sha256_of(files.weights)
    assert a.meta == b.meta == {"mpp": 0.5} == read_document(ref)["meta"]
    assert read_document(ref)["model"] == MICRO.to_dict()


def test_bundled_models_are_listed_and_load():
    names = builtin_names()
    assert "tiny-pathology" in names and names == sorted(names)
    for name in names:
        ckpt = load_checkpoint(f"builtin:{name}")
        assert declared_kind(f"builtin:{name}") == ckpt.config.kind
        assert ckpt.sha256 == sha256_of(checkpoint_files(f"builtin:{name}").weights)
    with pytest.raises(GigasynthError, match=r"unknown builtin model 'nope' \(known: .*tiny"):
        checkpoint_files("builtin:nope")


def test_refusals_are_one_line_and_name_the_problem(tmp_path):
    cases = []
    cases.append((str(tmp_path / "nowhere"), "not a preset or checkpoint"))
    note = tmp_path / "notes.txt"
    note.write_text("hello")
    cases.append((str(note), "not a checkpoint (folder or .safetensors file)"))
    run = tmp_path / "run"
    micro_checkpoint(run / "checkpoint")
    cases.append((str(run), f"is a training run; use its checkpoint: {run}/checkpoint"))
    no_config = tmp_path / "no-config"
    micro_checkpoint(no_config)
    (no_config / "config.json").unlink()
    cases.append((str(no_config), "checkpoint config not found"))
    for text, why in (
        ("{", "unreadable checkpoint config"),
        ("[]", 'no "model" object'),
        ('{"model": {}, "meta": 3}', '"meta" is not an object'),
    ):
        folder = tmp_path / f"bad{len(cases)}"
        micro_checkpoint(folder)
        (folder / "config.json").write_text(text)
        cases.append((str(folder), why))
    for ref, why in cases:
        for call in (load_checkpoint, describe_checkpoint):
            with pytest.raises(GigasynthError) as info:
                call(ref)
            assert why in str(info.value) and "\n" not in str(info.value), (ref, call)


def test_declared_kind_reads_a_config_without_loading_weights(tmp_path):
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps({"model": {"kind": "unet"}}))
    assert declared_kind(str(unet)) == "unet"
    assert declared_kind(micro_checkpoint(tmp_path / "nca")) == "diff-nca"
    (unet / "config.json").write_text("{not json")
    assert declared_kind(str(unet)) is None
    assert declared_kind(str(tmp_path / "nowhere")) is None


def test_description_follows_the_weights_file(tmp_path):
    ref = micro_checkpoint(tmp_path / "ckpt", meta={"mpp": 0.25})
    info = describe_checkpoint(ref)
    loaded = load_checkpoint(ref)
    assert info.sha256 == loaded.sha256
    assert info.parameters == count_parameters(loaded.model)
    described = info.describe()
    assert described["kind"] == MICRO.kind and described["mpp"] == 0.25
    assert described["halo_px"] == MICRO.halo and described["nca_steps"] == MICRO.nca_steps
    assert describe_checkpoint(ref) is info  # the same file: not hashed again
    micro_checkpoint(tmp_path / "ckpt", seed=1)  # new weights: a new identity
    again = describe_checkpoint(ref)
    assert again.sha256 == sha256_of(Path(ref) / "model.safetensors") != info.sha256


def test_one_cache_keyed_by_reference_hash_and_device(tmp_path):
    ref = micro_checkpoint(tmp_path / "ckpt")
    sha = load_checkpoint(ref).sha256
    first = cached_checkpoint(ref, sha, "cpu")
    assert cached_checkpoint(ref, sha, torch.device("cpu")) is first
    # The Dask worker's model is the same cache entry on the worker's device.
    if worker_device().type == "cpu":
        assert worker_model(ref, sha) is first.model
    # The dataset's memory layout is a separate copy; the shared model is left as it was.
    last = cached_checkpoint(ref, sha, "cpu", channels_last=True)
    assert last is not first
    weight = next(p for p in last.model.parameters() if p.dim() == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.is_contiguous() for p in first.model.parameters())
    # Equal weights under another reference are another model.
    other = tmp_path / "other.safetensors"
    other.write_bytes((Path(ref) / "model.safetensors").read_bytes())
    (tmp_path / "other.json").write_bytes((Path(ref) / "config.json").read_bytes())
    assert cached_checkpoint(str(other), sha) is not first


def test_changed_weights_are_refused_by_hash(tmp_path):
    ref = micro_checkpoint(tmp_path / "ckpt")
    sha = load_checkpoint(ref).sha256
    tensors = load_file(Path(ref) / "model.safetensors")
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1
    save_file(tensors, Path(ref) / "model.safetensors")
    with pytest.raises(HashMismatch, match=f"expected {sha[:16]}") as info:
        cached_checkpoint(ref, sha, "cpu")
    assert info.value.found == sha256_of(Path(ref) / "model.safetensors")
    with pytest.raises(GigasynthError, match="changed since the job started"):
        worker_model(ref, sha)
    assert cached_checkpoint(ref, info.value.found).sha256 == info.value.found


def test_either_name_of_the_nca_steps_is_the_same_checkpoint_and_job(tmp_path):
    """config.json keeps "steps" for ModelConfig.nca_steps; a config that says
    "nca_steps" instead is the same checkpoint (config, hash), so the same job: it resumes
    the other's work folder (the identity check passes) to the bytes of a whole run."""
    old = Path(micro_checkpoint(tmp_path / "old", seed=3))
    doc = json.loads((old / "config.json").read_text())
    assert doc["model"]["steps"] == MICRO.nca_steps and "nca_steps" not in doc["model"]
    new = tmp_path / "new"
    new.mkdir()
    (new / "model.safetensors").write_bytes((old / "model.safetensors").read_bytes())
    doc["model"]["nca_steps"] = doc["model"].pop("steps")
    (new / "config.json").write_text(json.dumps(doc))
    a, b = load_checkpoint(str(old)), load_checkpoint(str(new))
    assert a.config == b.config == MICRO and a.sha256 == b.sha256
    spec = SynthSpec(str(old), 40, 30, seed=1, steps=3, tile=0)
    whole = synthesize(spec, tmp_path / "whole.ome.zarr")
    out = tmp_path / "resumed.ome.zarr"
    with pytest.raises(SynthCancelled):
        synthesize(spec, out, should_stop=lambda: True)
    resumed = synthesize(replace(spec, checkpoint=str(new)), out, resume=True)
    assert np.array_equal(open_level(resumed.zarr_path, 0)[:], open_level(whole.zarr_path, 0)[:])
