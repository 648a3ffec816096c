"""A cascade run on one patch, in memory: the stages from the layout's entry stage, coarse
to fine, each `super_resolve` on the whole image, its condition the stage before's uint8
output. These are the bytes of `synthesize_cascade`'s whole-image path (tile 0) with the
same layout, seed and eta, without the OME-Zarr or the work folder: what a dataset of
cascade patches needs (gigasynth.dataset).
"""

from __future__ import annotations

import numpy as np
import torch

from gigasynth.cascade.definition import Cascade, Stage
from gigasynth.cascade.layout import Layout
from gigasynth.cascade.synth import check_entry
from gigasynth.checkpoint import HashMismatch, cached_checkpoint
from gigasynth.errors import GigasynthError
from gigasynth.images import to_uint8
from gigasynth.models.diffnca import DiffNCA
from gigasynth.sampling import SampleRequest, super_resolve
from gigasynth.sampling.condition import image_condition


def stage_model(stage: Stage, device: str = "cpu") -> DiffNCA:
    """The stage's model from the process's model cache, its weights checked against the
    hash the cascade was loaded with (one-line error when the file changed since)."""
    try:
        ckpt = cached_checkpoint(stage.checkpoint, stage.sha256, device)
    except HashMismatch as exc:
        raise GigasynthError(
            f"stage checkpoint {stage.checkpoint} has hash {exc.found[:16]}, the cascade "
            f"was loaded with {stage.sha256[:16]}"
        ) from None
    model = ckpt.model
    if not isinstance(model, DiffNCA):
        raise GigasynthError(f"stage checkpoint {stage.checkpoint} is not a Diff-NCA")
    return model


def sample_cascade(
    cascade: Cascade, layout: Layout, seed: int, *, eta: float = 0.0, device: str = "cpu"
) -> np.ndarray:
    """The cascade's image for `layout` and `seed`: (H, W, 3) uint8, H and W the layout's
    times the factors of the stages from its entry stage (Cascade.entry)."""
    stages = cascade.stages[cascade.entry(layout.kind) :]
    check_entry(stages[0], layout)
    image = layout.condition_rgb()
    for stage in stages:
        model = stage_model(stage, device)
        low = torch.from_numpy(image_condition(image, model.config))[None].to(device)
        request = SampleRequest(stage.sampler, stage.steps, eta)
        image = to_uint8(super_resolve(model, low, [seed], request))[0]
    return image
