"""A UNet DDPM denoiser (diffusers' UNet2DModel) behind the NCA models' interface.

The wrapper maps (x_t, t, seeds) -> eps_hat like DiffNCA, so the training loop,
schedules, samplers, inpainting and super-resolution of gigasynth run it unchanged.
The UNet is a whole-image model (its receptive field and GroupNorm span the image):
it never runs on tiles. Nothing is fetched from a hub; weights start random.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from gigasynth.config import JsonConfig
from gigasynth.errors import GigasynthError
from gigasynth.geometry import ALL_BORDERS, Borders

if TYPE_CHECKING:
    from diffusers.models.unets.unet_2d import UNet2DModel


@dataclass(frozen=True)
class UNetConfig(JsonConfig):
    """A UNet2DModel's shape plus the diffusion schedule it is trained for."""

    described_as: ClassVar[str] = "UNet config"

    kind: Literal["unet"] = "unet"
    block_channels: tuple[int, ...] = (8, 12, 16)
    layers_per_block: int = 1
    norm_groups: int = 4
    timesteps: int = 300
    schedule: Literal["linear", "cosine"] = "linear"
    zero_terminal_snr: bool = False  # as ModelConfig's: the same schedule options
    image_channels: int = 3

    def __post_init__(self) -> None:
        if self.kind != "unet":
            raise GigasynthError(f"UNetConfig needs kind 'unet', not {self.kind!r}")
        object.__setattr__(self, "block_channels", tuple(int(c) for c in self.block_channels))
        if not self.block_channels or any(c % self.norm_groups for c in self.block_channels):
            raise GigasynthError(
                f"block_channels {self.block_channels} must be multiples of "
                f"norm_groups={self.norm_groups}"
            )

    @property
    def is_tileable(self) -> bool:
        return False

    @property
    def halo(self) -> int:
        """Unused: a whole-image model has no tile halo (the sampler reads it only for tiles)."""
        return 0

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (one halving per level below the top)."""
        return 2 ** (len(self.block_channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["block_channels"] = list(self.block_channels)
        return data


# Sizes used by the experiments: about 4-5x the parameters of the NCA they face.
UNET_PRESETS: dict[str, UNetConfig] = {
    # 57,571 parameters: 4.6x the `tiny` Diff-NCA (12,500).
    "unet-tiny": UNetConfig(block_channels=(8, 12, 16)),
    # 226,531 parameters: 4.9x the `tiny-fourier` FourierDiff-NCA (46,072).
    "unet-small": UNetConfig(block_channels=(16, 24, 32)),
    # 1,063,651 parameters: 5.1x `paper-pathology` (208,792).
    "unet-pathology": UNetConfig(block_channels=(32, 64, 64), norm_groups=8),
    # 3,579,523 parameters: 4.0x `paper-celeba` (885,960); the paper's UNet had 3.94M.
    "unet-celeba": UNetConfig(block_channels=(64, 96, 128), norm_groups=8),
}


def _unet_class() -> type[UNet2DModel]:
    """diffusers' UNet2DModel, imported late (a heavy import) with a clear error if absent."""
    try:
        from diffusers.models.unets.unet_2d import UNet2DModel
    except ImportError:
        raise GigasynthError(
            "the UNet baseline needs diffusers: pip install 'gigasynth[baselines]'"
        ) from None
    return UNet2DModel


class UNetDenoiser(nn.Module):
    """eps_hat = UNet(x_t, t): the DiffNCA call signature over a diffusers UNet2DModel."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        levels = len(config.block_channels)
        self.unet = _unet_class()(
            in_channels=config.image_channels,
            out_channels=config.image_channels,
            block_out_channels=config.block_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_groups,
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
        )

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward (diffusers' gradient checkpointing)."""
        if enabled:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()

    def forward(
        self,
        x_t: torch.Tensor,
        t: Sequence[int],
        seeds: Sequence[int],
        window: Any = None,
        borders: Borders = ALL_BORDERS,
    ) -> torch.Tensor:
        if borders != ALL_BORDERS or (window is not None and (window.y0, window.x0) != (0, 0)):
            raise GigasynthError("the UNet baseline is a whole-image model: it cannot run on tiles")
        m = self.config.size_multiple
        if x_t.shape[-2] % m or x_t.shape[-1] % m:
            raise GigasynthError(
                f"the UNet needs image sides that are multiples of {m}, "
                f"not {x_t.shape[-1]}x{x_t.shape[-2]}"
            )
        steps = torch.as_tensor(list(t), device=x_t.device)
        return self.unet(x_t, steps).sample


def build_unet(config: UNetConfig) -> UNetDenoiser:
    """A freshly initialised UNet denoiser (the `build` argument of gigasynth.train.train)."""
    return UNetDenoiser(config)
