"""What a synthetic dataset is: the settings every patch is a pure function of, and limits.

Patch i is generated from seed `mix_int(seed, i)` in canonical group i // batch (the
group's patches are denoised together). The settings below, with the checkpoint hash,
are the dataset's identity: a folder holds one dataset, and resuming needs the same
identity, because any of them changes the bytes of the patches.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.keyed import mix_int

MAX_COUNT = int(os.environ.get("GIGASYNTH_MAX_DATASET_COUNT", "10000000"))
MAX_PATCH_PIXELS = int(os.environ.get("GIGASYNTH_MAX_PATCH_PIXELS", str(4096 * 4096)))
MIN_PATCH_SIDE = 8
FORMATS = ("png", "tar")
DEVICE_KINDS = ("cpu", "cuda")

Format = Literal["png", "tar"]


@dataclass(frozen=True)
class DatasetSpec:
    """Identity of a synthetic dataset (everything that decides its bytes)."""

    checkpoint_sha256: str
    model_kind: str
    seed: int
    count: int
    width: int
    height: int
    sampler: str
    steps: int
    eta: float
    batch: int
    format: Format
    shard_size: int
    device: str

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 1 << 32:
            raise GigasynthError(f"seed {self.seed} must be in 0..{(1 << 32) - 1} (a 32-bit word)")
        if not 1 <= self.count <= MAX_COUNT:
            raise GigasynthError(
                f"count {self.count} must be in 1..{MAX_COUNT:,} (GIGASYNTH_MAX_DATASET_COUNT)"
            )
        if self.width < MIN_PATCH_SIDE or self.height < MIN_PATCH_SIDE:
            raise GigasynthError(
                f"patch size {self.width}x{self.height} is too small (at least {MIN_PATCH_SIDE} px)"
            )
        if self.width * self.height > MAX_PATCH_PIXELS:
            raise GigasynthError(
                f"patch size {self.width}x{self.height} exceeds the limit of "
                f"{MAX_PATCH_PIXELS:,} pixels (GIGASYNTH_MAX_PATCH_PIXELS)"
            )
        if self.format not in FORMATS:
            raise GigasynthError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.batch < 1 or self.shard_size < 1:
            raise GigasynthError("--batch and --shard-size must be at least 1")
        if self.shard_size % self.batch:
            raise GigasynthError(
                f"--shard-size {self.shard_size} must be a multiple of --batch {self.batch} "
                "(a batch never spans two shards)"
            )
        if self.device not in DEVICE_KINDS:
            raise GigasynthError(f"device must be cpu or cuda, not {self.device!r}")

    @classmethod
    def for_model(cls, config: ModelConfig, checkpoint_sha256: str, **settings: Any) -> DatasetSpec:
        """A spec checked against the model: steps within T, a size the model can sample."""
        sampler, steps = settings["sampler"], settings["steps"]
        if sampler not in ("ddpm", "ddim"):
            raise GigasynthError(f"sampler must be ddpm or ddim, not {sampler!r}")
        if sampler == "ddpm":
            steps = config.timesteps
        elif not 1 <= steps <= config.timesteps:
            raise GigasynthError(f"steps={steps} must be in 1..{config.timesteps} (the model's T)")
        spec = cls(
            checkpoint_sha256=checkpoint_sha256,
            model_kind=config.kind,
            **{**settings, "steps": steps},
        )
        if config.kind == "fourier-diff-nca":
            side = 2 * config.fourier_block - 1
            if min(spec.width, spec.height) < side:
                raise GigasynthError(
                    f"a FourierDiff-NCA needs patches of at least {side} px per side, "
                    f"not {spec.width}x{spec.height}"
                )
        return spec

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def shards(self) -> int:
        return -(-self.count // self.shard_size)

    @property
    def key_width(self) -> int:
        """Digits of a sample key (six, as webdataset loaders expect, or more if needed)."""
        return max(6, len(str(self.count - 1)))

    def shard_indices(self, shard: int) -> range:
        """The patch indices of one shard."""
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.count))

    def group_of(self, index: int) -> range:
        """The canonical batch patch `index` is denoised in (may reach past `count`)."""
        start = index - index % self.batch
        return range(start, start + self.batch)

    def patch_seed(self, index: int) -> int:
        return mix_int(self.seed, index)

    def key(self, index: int) -> str:
        return f"{index:0{self.key_width}d}"

    def shard_name(self, shard: int) -> str:
        """Final name of a shard: a folder of PNGs or a tar file."""
        return f"shard-{shard:06d}" + (".tar" if self.format == "tar" else "")

    def record(self, index: int) -> dict[str, Any]:
        """Provenance of patch `index`: what made it (no file placement)."""
        return {
            "index": index,
            "seed": self.patch_seed(index),
            "dataset_seed": self.seed,
            "checkpoint": self.checkpoint_sha256,
            "model": self.model_kind,
            "sampler": self.sampler,
            "steps": self.steps,
            "eta": self.eta,
            "size": [self.width, self.height],
            "batch": self.batch,
            "device": self.device,
            "synthetic": True,
        }

    def manifest_line(self, index: int) -> dict[str, Any]:
        """The manifest record of patch `index`: its provenance and where it lies.

        `file` is relative to the dataset folder: the PNG, or the tar shard holding
        `KEY.png` and `KEY.json` (webdataset style).
        """
        shard = index // self.shard_size
        key = self.key(index)
        name = self.shard_name(shard)
        file = name if self.format == "tar" else f"{name}/{key}.png"
        return {**self.record(index), "key": key, "file": file, "shard": shard}
