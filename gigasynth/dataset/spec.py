"""What a synthetic dataset is: the settings every patch is a pure function of, and limits.

Patch i is generated from seed `mix_int(seed, i)` in canonical group i // batch (the
group's patches are denoised together). The settings below, with the checkpoint hash,
are the dataset's identity: a folder holds one dataset, and resuming needs the same
identity, because any of them changes the bytes of the patches.

A cascade dataset (gigasynth.dataset.cascade) adds `cascade`: its stages' identity
(weights' sha256, sampler, steps, µm per pixel, factor) and its layouts: None for a
generated tissue mask per patch (seeded by the patch's seed), or the layout files it
cycles through (name, sha256 of the bytes, kind, the patch size each gives, its tissue
fraction). Then `checkpoint_sha256` is the sha256 of the stages' identity, `model_kind`
"cascade", `sampler` "cascade" and `steps` 0 (each stage's are in `cascade`), `batch` 1, and
`width`, `height` the largest patch's (each patch's own size is `patch_size(i)`).
Specs without a cascade are written as before (no `cascade` key).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from gigasynth.cascade.masks import generate_tissue_mask, mask_size
from gigasynth.config import ModelConfig
from gigasynth.errors import FieldError, GigasynthError
from gigasynth.keyed import mix_int
from gigasynth.settings import LIMITS

MAX_COUNT = LIMITS.max_dataset_count
MAX_PATCH_PIXELS = LIMITS.max_patch_pixels
MIN_PATCH_SIDE = 8
FORMATS = ("png", "tar")
DEVICE_KINDS = ("cpu", "cuda")

Format = Literal["png", "tar"]
MASK_SUFFIX = ".mask.png"  # a cascade patch's tissue mask beside its image


@functools.lru_cache(maxsize=1 << 16)
def generated_tissue_fraction(
    seed: int, width: int, height: int, factor: int, mpp: float, coverage: float
) -> float:
    """The tissue fraction of a `width` x `height` patch's generated tissue mask, one mask
    pixel per factor x factor patch pixels; a side that is not a multiple crops the last
    mask row or column (cached: every manifest rewrite lists every patch made so far)."""
    mask = generate_tissue_mask(seed, *mask_size((width, height), factor), mpp, coverage)
    rows = np.full(mask.shape[0], factor)
    cols = np.full(mask.shape[1], factor)
    rows[-1], cols[-1] = height - (len(rows) - 1) * factor, width - (len(cols) - 1) * factor
    covered = int(rows @ mask.astype(np.int64) @ cols)  # exact, so a multiple gives mask.mean()
    return round(covered / (width * height), 6)


def tissue_fraction(mask: Any) -> float:
    """The share of True pixels of a tissue mask, rounded to 6 digits (as recorded)."""
    return round(float(mask.mean()), 6)


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
    cascade: dict[str, Any] | None = None

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
            raise FieldError("[batch] and [shard_size] must be at least 1")
        if self.shard_size % self.batch:
            raise FieldError(
                f"[shard_size] {self.shard_size} must be a multiple of [batch] {self.batch} "
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
        data = asdict(self)
        if self.cascade is None:
            del data["cascade"]  # the identity of datasets made before cascades
        return data

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

    def layout_of(self, index: int) -> dict[str, Any] | None:
        """A cascade patch's layout file (cycling through them); None when generated."""
        layouts = None if self.cascade is None else self.cascade["layouts"]
        return None if layouts is None else layouts[index % len(layouts)]

    def patch_size(self, index: int) -> tuple[int, int]:
        """(width, height) of patch `index`: the dataset's, or its layout's."""
        layout = self.layout_of(index)
        return (self.width, self.height) if layout is None else (layout["width"], layout["height"])

    def _cascade_record(self, index: int) -> dict[str, Any]:
        assert self.cascade is not None
        seed = self.patch_seed(index)
        layout = self.layout_of(index)
        width, height = self.patch_size(index)
        if layout is None:
            fraction = generated_tissue_fraction(
                seed,
                width,
                height,
                self.cascade["factor"],
                self.cascade["mask_mpp"],
                self.cascade.get("mask_coverage", 1.0),
            )
            source = {"source": "generated", "seed": seed}
        else:
            fraction = layout["tissue_fraction"]
            source = {"source": "file", "file": layout["file"], "sha256": layout["sha256"]}
        return {
            "index": index,
            "seed": seed,
            "dataset_seed": self.seed,
            "cascade": self.checkpoint_sha256,
            "model": self.model_kind,
            "stages": [
                {k: s[k] for k in ("sha256", "sampler", "steps", "mpp")}
                for s in self.cascade["stages"]
            ],
            "layout": source,
            "tissue_fraction": fraction,
            "eta": self.eta,
            "size": [width, height],
            "device": self.device,
            "synthetic": True,
        }

    def record(self, index: int) -> dict[str, Any]:
        """Provenance of patch `index`: what made it (no file placement)."""
        if self.cascade is not None:
            return self._cascade_record(index)
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
        `KEY.png` and `KEY.json` (webdataset style). A cascade patch's tissue mask
        (`KEY.mask.png`, white = tissue, the patch's size) is `mask`: relative to the
        folder too (png), or the member of the tar shard (tar).
        """
        shard = index // self.shard_size
        key = self.key(index)
        name = self.shard_name(shard)
        file = name if self.format == "tar" else f"{name}/{key}.png"
        line = {**self.record(index), "key": key, "file": file, "shard": shard}
        if self.cascade is not None:
            mask = key + MASK_SUFFIX
            line["mask"] = mask if self.format == "tar" else f"{name}/{mask}"
        return line
