"""FourierDiff-NCA: a Fourier-space NCA stage for global structure, then a Diff-NCA.

The Fourier stage sees the 16 x 16 block of non-negative low frequencies of every
channel (real and imaginary parts as separate channels), runs a fixed number of
NCA updates there (zero padding, every cell fires), and writes back only the
non-frozen channels of that block. The block size is absolute, so the model runs at
any image size of at least 2 x block in each axis, but it is global: a whole-image
model, never tiled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gigasynth.config import ModelConfig
from gigasynth.errors import GigasynthError
from gigasynth.geometry import ALL_BORDERS, Borders, Window
from gigasynth.models.conditioning import Conditioning
from gigasynth.models.diffnca import DiffNCA, ImageNCA
from gigasynth.models.nca import NCAUpdate


class FourierStage(nn.Module):
    """NCA updates on the low-frequency block of the state's spectrum."""

    def __init__(self, config: ModelConfig, frozen: int) -> None:
        super().__init__()
        self.config = config
        self.frozen = frozen
        self.cond = Conditioning(config.cond_features, config.cond_hidden, config.cond_out)
        self.update = NCAUpdate(
            2 * config.channels,
            config.cond_out,
            config.fourier_hidden,
            frozen_channels=2 * frozen,
            padding_mode="constant",
        )

    def forward(self, state: torch.Tensor, t: Sequence[int]) -> torch.Tensor:
        cfg, f, n = self.config, self.frozen, self.config.fourier_block
        height, width = state.shape[-2:]
        if height // 2 + n > height or width // 2 + n > width:
            raise GigasynthError(
                f"image {width}x{height} is too small for the {n}x{n} Fourier block "
                f"(needs at least {2 * n - 1} px per side)"
            )
        with torch.autocast(state.device.type, enabled=False):
            spectrum = torch.fft.fftshift(
                torch.fft.fft2(state.float(), norm="forward"), dim=(-2, -1)
            )
            r0, c0 = height // 2, width // 2
            block = spectrum[..., r0 : r0 + n, c0 : c0 + n]
            # frozen real, frozen imaginary, then the rest: the update's frozen prefix.
            cells = torch.cat(
                [block.real[:, :f], block.imag[:, :f], block.real[:, f:], block.imag[:, f:]],
                dim=1,
            )
        t_frac = torch.tensor(t, dtype=cells.dtype, device=cells.device) / cfg.timesteps
        for s in range(cfg.fourier_steps):
            cond = self.cond(t_frac, s / cfg.fourier_steps)
            cells = self.update(cells, cond, None)
        with torch.autocast(state.device.type, enabled=False):
            rest = cfg.channels - f
            cells = cells.float()
            new_block = torch.complex(cells[:, 2 * f : 2 * f + rest], cells[:, 2 * f + rest :])
            spectrum = spectrum.clone()
            spectrum[:, f:, r0 : r0 + n, c0 : c0 + n] = new_block
            image = torch.fft.ifft2(
                torch.fft.ifftshift(spectrum, dim=(-2, -1)), norm="forward"
            ).real.to(state.dtype)
        return torch.cat([state[:, :f], image[:, f:]], dim=1)


class FourierDiffNCA(DiffNCA):
    """Fourier stage, then S image-space NCA updates with their own weights."""

    def __init__(self, config: ModelConfig) -> None:
        if config.kind != "fourier-diff-nca":
            raise ValueError(f"FourierDiffNCA needs kind fourier-diff-nca, not {config.kind}")
        nn.Module.__init__(self)
        self.config = config
        self.frozen = config.image_channels + (2 if config.canvas_coords else 0)
        self.fourier = FourierStage(config, self.frozen)
        self.nca = ImageNCA(config, self.frozen)

    def forward(
        self,
        x_t: torch.Tensor,
        t: Sequence[int],
        seeds: Sequence[int],
        window: Window | None = None,
        borders: Borders = ALL_BORDERS,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if borders != ALL_BORDERS or (window is not None and (window.y0, window.x0) != (0, 0)):
            raise GigasynthError("FourierDiff-NCA is a whole-image model: it cannot run on tiles")
        if condition is not None:
            raise GigasynthError("FourierDiff-NCA is unconditioned: it takes no condition")
        state = self.fourier(self.initial_state(x_t), t)
        state = self.nca(state, t, seeds)
        return self.readout(state)
