"""Whole-image sampling: unconditional generation, inpainting and super-resolution."""

from gigasynth.sampling.generate import SampleRequest, generate, inpaint, super_resolve, upscale
from gigasynth.sampling.step import denoise_step, initial_noise

__all__ = [
    "SampleRequest",
    "denoise_step",
    "generate",
    "initial_noise",
    "inpaint",
    "super_resolve",
    "upscale",
]
