"""Making a dataset: plan it, then generate the shards not yet whole, here or on Dask workers.

One Dask task writes one whole shard (one writer per shard, as for Zarr chunks), so
tasks are coarse and a retried task finds its shard done. Workers must see `out` at
the same path (a shared filesystem) and resolve the checkpoint reference themselves;
the checkpoint's hash is checked on every worker. GPU workers advertise the resource
`GPU` (`dask worker --resources GPU=1`); where any do, every task asks for one. A cascade
dataset (gigasynth.dataset.cascade) runs the same way: a worker loads the cascade and
reads the layout files from the same paths, checked against the dataset's hashes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gigasynth.cascade import is_cascade, load_cascade
from gigasynth.cluster import choose_device, connect, task_resources
from gigasynth.dataset.cascade import (
    cascade_sha256,
    generate_cascade_patches,
    open_cascade,
    plan_cascade,
)
from gigasynth.dataset.folder import DatasetFolder, read_dataset_json
from gigasynth.dataset.patches import Patch, generate_patches, load_model, prepare_device
from gigasynth.dataset.shards import shard_is_whole, write_shard
from gigasynth.dataset.spec import DatasetSpec
from gigasynth.errors import FieldError

# Makes the patches of the given indices, in that order.
PatchMaker = Callable[[Iterable[int]], Iterator[Patch]]

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


def patch_maker(checkpoint: str, spec: DatasetSpec, layouts: str | None) -> PatchMaker:
    """What makes the dataset's patches where it runs: the checkpoint's model (from the
    process's cache, hash checked), or the cascade with its layout folder."""
    if spec.cascade is not None:
        prepare_device(spec.device)
        cascade = open_cascade(checkpoint, spec)
        folder = None if layouts is None else Path(layouts)
        return lambda indices: generate_cascade_patches(cascade, spec, folder, indices)
    model = load_model(checkpoint, spec.device, spec.checkpoint_sha256).model
    return lambda indices: generate_patches(model, spec, indices)


def build_shard(
    checkpoint: str, spec_dict: dict[str, Any], shard: int, out: str, layouts: str | None = None
) -> int:
    """Dask task: generate and write one whole shard (nothing if it is already whole)."""
    spec = DatasetSpec.from_dict(spec_dict)
    if shard_is_whole(spec, shard, Path(out)):
        return shard
    make = patch_maker(checkpoint, spec, layouts)
    write_shard(spec, shard, Path(out), make(spec.shard_indices(shard)))
    return shard


# A dataset's device is decided from the workers present: wait this long for a first one.
WAIT_FOR_WORKER_S = 60


def _run_here(
    make: PatchMaker, spec: DatasetSpec, folder: DatasetFolder, pending: list[int], bar: tqdm
) -> None:
    def counted(patches: Iterator[Patch]) -> Iterator[Patch]:
        for patch in patches:
            yield patch
            bar.update(1)

    for shard in pending:
        patches = make(spec.shard_indices(shard))
        write_shard(spec, shard, folder.out, counted(patches))
        folder.commit(shard)


def _run_on_cluster(
    client: Any,
    checkpoint: str,
    spec: DatasetSpec,
    folder: DatasetFolder,
    pending: list[int],
    bar: tqdm,
    layouts: str | None,
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
            layouts,
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


def _cascade_spec(
    checkpoint: str,
    size: tuple[int, int] | None,
    layouts: Path | None,
    sampler: str | None,
    steps: int | None,
    settings: dict[str, Any],
) -> tuple[DatasetSpec, dict[str, Any]]:
    """A cascade dataset's spec and its dataset.json description of the cascade."""
    if sampler is not None or steps is not None:
        raise FieldError(
            "a cascade's stages carry their own sampler and steps (its cascade.json)",
            "leave [sampler] and [steps] out",
        )
    if settings["batch"] != 1:
        raise FieldError("a cascade dataset makes its patches one at a time: [batch] 1")
    cascade = load_cascade(checkpoint)
    plan, width, height = plan_cascade(cascade, size, layouts)
    spec = DatasetSpec(
        checkpoint_sha256=cascade_sha256(plan),
        model_kind="cascade",
        width=width,
        height=height,
        sampler="cascade",
        steps=0,
        device="cpu",
        cascade=plan,
        **settings,
    )
    described = {
        "ref": checkpoint,
        "sha256": spec.checkpoint_sha256,
        "cascade": cascade.describe(),
        "layouts": None if layouts is None else str(layouts),
    }
    return spec, described


def make_dataset(
    checkpoint: str,
    out: str | Path,
    count: int,
    size: int | tuple[int, int] | None,
    *,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    batch: int = 1,
    format: str = "png",
    shard_size: int = 1000,
    layouts: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    device: str | None = None,
    overwrite: bool = False,
    command: str | Callable[[DatasetSpec], str] | None = None,
    progress: bool = True,
) -> DatasetResult:
    """Generate (or finish) a synthetic dataset in `out`; see `gigasynth dataset --help`.

    `checkpoint` is a Diff-NCA checkpoint (sampler default ddim, steps 50) or a cascade
    (its stages' samplers; a patch per generated tissue mask of `size`, or per layout of
    the folder `layouts`, see gigasynth.dataset.cascade). One worker and no scheduler:
    here, in this process. More workers: an embedded Dask LocalCluster. A scheduler
    address: that cluster. A folder holding the same dataset is resumed; one holding
    another needs `overwrite`. `command` (text, or a function of the final spec) is
    recorded in dataset.json.
    """
    if workers < 1:
        raise FieldError(f"[workers] must be at least 1, not {workers}")
    out = Path(out)
    sides = (size, size) if isinstance(size, int) else size
    settings: dict[str, Any] = dict(
        seed=seed, count=count, eta=eta, batch=batch, format=format, shard_size=shard_size
    )
    ckpt = None
    layouts_text = None if layouts is None else str(Path(layouts).absolute())
    if is_cascade(checkpoint):
        where = None if layouts_text is None else Path(layouts_text)
        spec, described = _cascade_spec(checkpoint, sides, where, sampler, steps, settings)
    else:
        if layouts is not None:
            raise FieldError(
                f"[layouts] needs a cascade for [checkpoint]; {checkpoint} is a checkpoint"
            )
        if sides is None:
            raise FieldError("give the patch [size] (a side, or width x height)")
        ckpt = load_model(checkpoint, "cpu")
        spec = DatasetSpec.for_model(
            ckpt.config,
            ckpt.sha256,
            device="cpu",
            width=sides[0],
            height=sides[1],
            sampler=sampler or "ddim",
            steps=50 if steps is None else steps,
            **settings,
        )
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
                _run_on_cluster(client, checkpoint, spec, folder, pending, bar, layouts_text)
            elif ckpt is not None and spec.device == "cpu":
                model = ckpt.model
                _run_here(
                    lambda indices: generate_patches(model, spec, indices),
                    spec,
                    folder,
                    pending,
                    bar,
                )
            else:
                _run_here(patch_maker(checkpoint, spec, layouts_text), spec, folder, pending, bar)
        seconds = time.perf_counter() - start
        folder.finish()
    return DatasetResult(out, spec, len(done), len(pending), made, seconds)


def regenerate(
    folder: str | Path,
    indices: int | list[int],
    checkpoint: str | None = None,
    layouts: str | Path | None = None,
) -> Iterator[Patch]:
    """Patches of an existing dataset made again, alone: the bytes of its files.

    `checkpoint` overrides the reference recorded in dataset.json (its hash must match),
    `layouts` the folder of a cascade dataset's layout files (theirs must match).
    Metadata is each patch's manifest record.
    """
    doc = read_dataset_json(Path(folder))
    spec = DatasetSpec.from_dict(doc["settings"])
    recorded = doc["checkpoint"]
    where = layouts or recorded.get("layouts")
    make = patch_maker(checkpoint or recorded["ref"], spec, None if where is None else str(where))
    chosen = [indices] if isinstance(indices, int) else list(indices)
    for patch in make(chosen):
        yield Patch(patch.index, patch.image, spec.manifest_line(patch.index), patch.tissue)
