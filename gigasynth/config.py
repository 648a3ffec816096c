"""Model configurations and named presets; configs round-trip through JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from gigasynth.errors import GigasynthError

ModelKind = Literal["diff-nca", "fourier-diff-nca"]
# What a conditioned stage's condition is: a lower-resolution image (a super-resolution
# stage) or a tissue mask (+1 tissue, -1 background; a cascade's layout stage).
ConditionKind = Literal["image", "mask"]
CONDITION_KINDS: tuple[ConditionKind, ...] = ("image", "mask")


class JsonConfig:
    """A frozen dataclass config that round-trips through JSON; unknown fields are errors.

    `json_names` maps an attribute to the name its JSON (and `to_dict`) uses where the
    two differ: a field renamed in Python keeps its name in files, so files written
    before and after the rename are the same bytes, and `from_dict` reads either name.
    """

    described_as: ClassVar[str] = "config"
    json_names: ClassVar[dict[str, str]] = {}
    if TYPE_CHECKING:  # every subclass is a dataclass (asdict and fields need one)
        __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {self.json_names.get(k, k): v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        data = dict(data)
        for attribute, json_name in cls.json_names.items():
            if json_name in data:
                if attribute in data:
                    raise GigasynthError(
                        f"{cls.described_as} gives both {json_name} and "
                        f"{attribute} (one name for the same field)"
                    )
                data[attribute] = data.pop(json_name)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GigasynthError(f"unknown {cls.described_as} fields: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Everything needed to rebuild a model and its diffusion schedule."""

    described_as: ClassVar[str] = "model config"
    # NCA steps per diffusion step are "steps" in config.json, as before the attribute
    # was renamed (SynthSpec.steps are diffusion steps): checkpoints keep their bytes.
    json_names: ClassVar[dict[str, str]] = {"nca_steps": "steps"}

    kind: ModelKind = "diff-nca"
    channels: int = 96
    hidden: int = 396
    # NCA updates per diffusion step (S): the model's reach, so the halo a tile needs.
    nca_steps: int = 48
    fire_probability: float = 0.5
    cond_features: int = 16
    cond_hidden: int = 256
    cond_out: int = 4
    fourier_hidden: int = 0
    fourier_steps: int = 32
    fourier_block: int = 16
    canvas_coords: bool = False
    timesteps: int = 300
    schedule: Literal["linear", "cosine"] = "linear"
    # Rescale the schedule to zero SNR at t = T - 1 (gigasynth.diffusion.schedule); False,
    # the default of configs written before the field existed, keeps their schedule.
    zero_terminal_snr: bool = False
    image_channels: int = 3
    # A conditioned Diff-NCA (a super-resolution stage of a cascade): its cells also
    # perceive `condition_channels` channels of a conditioning image, held fixed in the
    # cell state after the image (and coordinates) and never written, so they take part
    # in the 3x3 perception like the image does and the model stays local. The condition
    # is given at 1/condition_downsample of the model's grid and upsampled bilinearly to
    # it (gigasynth.sampling.condition); condition_noise is the std (in [-1, 1] units) of
    # the keyed Gaussian noise added to it in training and, by default, in sampling.
    # 0 channels (the default) is the unconditioned model, written and loaded exactly as
    # before these fields existed (`to_dict` leaves them out).
    condition_channels: int = 0
    condition_downsample: int = 1
    condition_noise: float = 0.0
    # "image": the condition is the image at 1/condition_downsample (condition_channels =
    # image_channels); "mask": it is the tissue mask there (1 channel). Left out of the
    # JSON when "image", so stages written before the field existed keep their bytes.
    condition_kind: ConditionKind = "image"

    def __post_init__(self) -> None:
        if self.kind not in ("diff-nca", "fourier-diff-nca"):
            raise GigasynthError(f"unknown model kind {self.kind!r}")
        if self.channels < 2 * self.image_channels + 1:
            raise GigasynthError(
                f"channels={self.channels} leaves no hidden channels "
                f"(need more than {2 * self.image_channels})"
            )
        if not 0.0 < self.fire_probability <= 1.0:
            raise GigasynthError(f"fire_probability={self.fire_probability} must be in (0, 1]")
        if self.schedule not in ("linear", "cosine"):
            raise GigasynthError(f"unknown schedule {self.schedule!r}")
        if self.kind == "fourier-diff-nca" and self.fourier_hidden < 1:
            raise GigasynthError("a fourier-diff-nca config needs fourier_hidden >= 1")
        self._check_condition()

    def _check_condition(self) -> None:
        if self.condition_channels < 0:
            raise GigasynthError(f"condition_channels={self.condition_channels} must be >= 0")
        if self.condition_kind not in CONDITION_KINDS:
            raise GigasynthError(f"unknown condition_kind {self.condition_kind!r} (image or mask)")
        if not self.is_conditioned:
            if (
                self.condition_downsample != 1
                or self.condition_noise != 0.0
                or self.condition_kind != "image"
            ):
                raise GigasynthError(
                    "condition_downsample, condition_noise and condition_kind apply to "
                    "conditioned models only (condition_channels > 0)"
                )
            return
        if self.condition_kind == "mask" and self.condition_channels != 1:
            raise GigasynthError(
                f"a mask-conditioned stage takes 1 condition channel, not {self.condition_channels}"
            )
        if self.kind != "diff-nca":
            raise GigasynthError(f"a conditioned model must be a diff-nca, not {self.kind}")
        if (
            isinstance(self.condition_downsample, bool)
            or not isinstance(self.condition_downsample, int)
            or self.condition_downsample < 1
        ):
            raise GigasynthError(
                f"condition_downsample={self.condition_downsample!r} must be an integer >= 1"
            )
        if not self.condition_noise >= 0.0:
            raise GigasynthError(f"condition_noise={self.condition_noise} must be >= 0")
        frozen = self.image_channels + self.condition_channels + 2 * self.canvas_coords
        if self.channels < frozen + self.image_channels + 1:
            raise GigasynthError(
                f"channels={self.channels} leaves no hidden channels beside the image, "
                f"{self.condition_channels} condition channels and the read-out "
                f"(need more than {frozen + self.image_channels})"
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields; an unconditioned config leaves the condition fields out, so its
        JSON (checkpoints, provenance) is byte for byte what it was before they existed."""
        data = super().to_dict()
        if not self.is_conditioned:
            for name in ("condition_channels", "condition_downsample", "condition_noise"):
                del data[name]
        if self.condition_kind == "image":
            del data["condition_kind"]
        return data

    @property
    def is_conditioned(self) -> bool:
        """A model whose cells perceive a conditioning image (a super-resolution stage)."""
        return self.condition_channels > 0

    @property
    def is_tileable(self) -> bool:
        """A model whose update is local and translation invariant (invariants I1, I2)."""
        return self.kind == "diff-nca" and not self.canvas_coords

    @property
    def halo(self) -> int:
        """Pixels of context one diffusion step needs around an engine tile (S * r, r = 1)."""
        return self.nca_steps


PRESETS: dict[str, ModelConfig] = {
    # Paper pathology Diff-NCA: 208,792 parameters.
    "paper-pathology": ModelConfig(kind="diff-nca", channels=96, hidden=396, nca_steps=48),
    # Paper CelebA FourierDiff-NCA: 886,984 parameters in the paper.
    "paper-celeba": ModelConfig(
        kind="fourier-diff-nca", channels=96, hidden=512, nca_steps=20, fourier_hidden=512
    ),
    # Small enough to train and sample on two CPU cores (the bundled model).
    "tiny": ModelConfig(
        kind="diff-nca",
        channels=24,
        hidden=64,
        nca_steps=12,
        cond_hidden=64,
        fire_probability=0.9,
    ),
    # Between tiny and paper-pathology: 2.5x tiny's MACs, 16 px reach; trainable on a CPU.
    "small": ModelConfig(
        kind="diff-nca",
        channels=32,
        hidden=96,
        nca_steps=16,
        cond_hidden=64,
        fire_probability=0.9,
    ),
    "tiny-fourier": ModelConfig(
        kind="fourier-diff-nca",
        channels=24,
        hidden=64,
        nca_steps=12,
        cond_hidden=64,
        fourier_hidden=64,
        fire_probability=0.9,
    ),
}


def preset(name: str) -> ModelConfig:
    """Look up a named preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise GigasynthError(
            f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})"
        ) from None
