"""How a job request maps to the engine's SynthSpec (one place, for admission and the runner)."""

from __future__ import annotations

from typing import Any

from gigasynth.synth import SynthSpec


def synth_spec(request: dict[str, Any], checkpoint_ref: str, save_every: int) -> SynthSpec:
    """The engine's spec for a stored job request and the checkpoint its model names."""
    return SynthSpec(checkpoint=checkpoint_ref, width=request["width"], height=request["height"],
                     seed=request["seed"], sampler=request["sampler"], steps=request["steps"],
                     eta=request["eta"], tile=request["tile"], mpp=request["mpp"],
                     save_every=save_every)
