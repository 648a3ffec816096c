"""Baseline denoisers to compare the NCA models against (optional extra `baselines`)."""

from gigasynth.baselines.checkpoint import load_denoiser
from gigasynth.baselines.unet import UNET_PRESETS, UNetConfig, UNetDenoiser, build_unet

__all__ = ["UNET_PRESETS", "UNetConfig", "UNetDenoiser", "build_unet", "load_denoiser"]
