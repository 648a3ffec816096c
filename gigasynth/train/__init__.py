"""Diffusion training of NCA denoisers."""

from gigasynth.train.trainer import TrainConfig, train

__all__ = ["TrainConfig", "train"]
