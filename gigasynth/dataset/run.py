"""Making a dataset: plan it, then generate the shards not yet whole, here or on Dask workers.

One Dask task writes one whole shard (one writer per shard, as for Zarr chunks), so
tasks are coarse and a retried task finds its shard done. Workers must see `out` at
the same path (a shared filesystem) and resolve the checkpoint reference themselves;
the checkpoint's hash is checked on every worker. GPU workers advertise the resource
`GPU` (`dask worker --resources GPU=1`); where any do, every task asks for one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gigasynth.cluster import choose_device, connect, task_resources
from gigasynth.dataset.folder import DatasetFolder, read_dataset_json
from gigasynth.dataset.patches import Patch, generate_patches, load_model
from gigasynth.dataset.shards import shard_is_whole, write_shard
from gigasynth.dataset.spec import DatasetSpec
from gigasynth.errors import GigasynthError
from gigasynth.models import Denoiser

# Always patches/s (tqdm would switch to s/patch below one per second), and the ETA.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}]"


@dataclass
class DatasetResult:
    """What a run did: the dataset, the shards it found whole and made, its speed."""

    out: Path
    spec: DatasetSpec
    reused_shards: int
    made_shards: int
    made_patches: int
    seconds: float

    @property
    def patches_per_second(self) -> float:
        return self.made_patches / self.seconds if self.seconds > 0 else 0.0


def build_shard(checkpoint: str, spec_dict: dict[str, Any], shard: int, out: str) -> int:
    """Dask task: generate and write one whole shard (nothing if it is already whole)."""
    spec = DatasetSpec.from_dict(spec_dict)
    if shard_is_whole(spec, shard, Path(out)):
        return shard
    model = load_model(checkpoint, spec.device, spec.checkpoint_sha256).model
    write_shard(spec, shard, Path(out), generate_patches(model, spec, spec.shard_indices(shard)))
    return shard


# A dataset's device is decided from the workers present: wait this long for a first one.
WAIT_FOR_WORKER_S = 60


def _run_here(
    model: Denoiser, spec: DatasetSpec, folder: DatasetFolder, pending: list[int], bar: tqdm
) -> None:
    def counted(patches: Iterator[Patch]) -> Iterator[Patch]:
        for patch in patches:
            yield patch
            bar.update(1)

    for shard in pending:
        patches = generate_patches(model, spec, spec.shard_indices(shard))
        write_shard(spec, shard, folder.out, counted(patches))
        folder.commit(shard)


def _run_on_cluster(
    client: Any,
    checkpoint: str,
    spec: DatasetSpec,
    folder: DatasetFolder,
    pending: list[int],
    bar: tqdm,
) -> None:
    from dask.distributed import as_completed

    resources = task_resources(client) if spec.device == "cuda" else None
    futures = [
        client.submit(
            build_shard,
            checkpoint,
            spec.to_dict(),
            shard,
            str(folder.out),
            key=f"gigasynth-dataset-{spec.checkpoint_sha256[:8]}-{shard}",
            pure=False,
            resources=resources,
        )
        for shard in pending
    ]
    try:
        for future in as_completed(futures, loop=client.loop):  # no default client
            shard = future.result()
            folder.commit(shard)
            bar.update(len(spec.shard_indices(shard)))
    finally:
        client.cancel(futures)


def make_dataset(
    checkpoint: str,
    out: str | Path,
    count: int,
    size: int | tuple[int, int],
    *,
    seed: int = 0,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    batch: int = 1,
    format: str = "png",
    shard_size: int = 1000,
    workers: int = 1,
    scheduler: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
    command: str | Callable[[DatasetSpec], str] | None = None,
    progress: bool = True,
) -> DatasetResult:
    """Generate (or finish) a synthetic dataset in `out`; see `gigasynth dataset --help`.

    One worker and no scheduler: here, in this process. More workers: an embedded
    Dask LocalCluster. A scheduler address: that cluster. A folder holding the same
    dataset is resumed; one holding another needs `overwrite`. `command` (text, or a
    function of the final spec) is recorded in dataset.json.
    """
    if workers < 1:
        raise GigasynthError(f"--workers must be at least 1, not {workers}")
    out = Path(out)
    width, height = (size, size) if isinstance(size, int) else size
    ckpt = load_model(checkpoint, "cpu")
    settings = dict(
        seed=seed,
        count=count,
        width=width,
        height=height,
        sampler=sampler,
        steps=steps,
        eta=eta,
        batch=batch,
        format=format,
        shard_size=shard_size,
    )
    spec = DatasetSpec.for_model(ckpt.config, ckpt.sha256, device="cpu", **settings)
    described = {"ref": checkpoint, "sha256": ckpt.sha256, "config": ckpt.config.to_dict()}
    distributed = scheduler is not None or workers > 1
    with contextlib.ExitStack() as stack:
        client = None
        if distributed:
            client = stack.enter_context(
                connect(scheduler, workers, processes=True, wait_for_worker_s=WAIT_FOR_WORKER_S)
            )
        spec = dataclasses.replace(spec, device=choose_device(device, client))
        text = command(spec) if callable(command) else command
        folder = DatasetFolder(out, spec, described, text)
        done = folder.open(overwrite)
        stack.callback(folder.close)
        pending = [k for k in range(spec.shards) if k not in done]
        reused = sum(len(spec.shard_indices(k)) for k in done)
        made = spec.count - reused
        start = time.perf_counter()
        with tqdm(
            total=spec.count,
            initial=reused,
            unit="patch",
            desc="dataset",
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.1,
            bar_format=BAR_FORMAT,
        ) as bar:
            if client is not None:
                _run_on_cluster(client, checkpoint, spec, folder, pending, bar)
            else:
                model = (
                    ckpt.model
                    if spec.device == "cpu"
                    else load_model(checkpoint, spec.device, spec.checkpoint_sha256).model
                )
                _run_here(model, spec, folder, pending, bar)
        seconds = time.perf_counter() - start
        folder.finish()
    return DatasetResult(out, spec, len(done), len(pending), made, seconds)


def regenerate(
    folder: str | Path,
    indices: int | list[int],
    checkpoint: str | None = None,
) -> Iterator[Patch]:
    """Patches of an existing dataset made again, alone: the bytes of its files.

    `checkpoint` overrides the reference recorded in dataset.json (its hash must match).
    Metadata is each patch's manifest record.
    """
    doc = read_dataset_json(Path(folder))
    spec = DatasetSpec.from_dict(doc["settings"])
    model = load_model(
        checkpoint or doc["checkpoint"]["ref"], spec.device, spec.checkpoint_sha256
    ).model
    chosen = [indices] if isinstance(indices, int) else list(indices)
    for patch in generate_patches(model, spec, chosen):
        yield Patch(patch.index, patch.image, spec.manifest_line(patch.index))
