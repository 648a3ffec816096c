"""What samplers, the trainer and the engine need of "a model": the Denoiser protocol.

The Diff-NCA, the FourierDiff-NCA and the UNet baseline (gigasynth.baselines.unet)
satisfy it structurally; code that takes any of them says `Denoiser`, and code that
needs an NCA's insides (its cell state, its NCA steps) says `DiffNCA`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch


class DenoiserConfig(Protocol):
    """What a denoiser's config tells its callers: the schedule it was trained for and
    where it may run (ModelConfig and UNetConfig)."""

    @property
    def kind(self) -> str: ...

    @property
    def timesteps(self) -> int: ...

    @property
    def schedule(self) -> Literal["linear", "cosine"]: ...

    @property
    def zero_terminal_snr(self) -> bool: ...

    @property
    def image_channels(self) -> int: ...

    @property
    def is_tileable(self) -> bool:
        """Local and translation invariant: may run on engine tiles (invariants I1, I2)."""
        ...

    @property
    def halo(self) -> int:
        """Pixels of context one diffusion step needs around an engine tile."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Denoiser(Protocol):
    """eps_hat = model(x_t, t, seeds, window, borders): predicted noise for a noisy image.

    x_t is (B, C, H, W) on the canvas region whose first pixel is `window`, `borders`
    saying which of its sides are canvas border; `t` and `seeds` are one per sample (the
    seeds key the model's own randomness, invariant I3). A tileable model returns the
    region's interior (less `config.halo` on non-border sides); a whole-image model
    refuses anything but the whole canvas. A conditioned stage also takes `condition=`.
    Models know nothing of schedules: samplers own the loop.
    """

    @property
    def config(self) -> DenoiserConfig: ...

    def __call__(
        self, x_t: torch.Tensor, t: Sequence[int], seeds: Sequence[int], *args: Any, **kwargs: Any
    ) -> torch.Tensor: ...

    def set_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward (training memory)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
