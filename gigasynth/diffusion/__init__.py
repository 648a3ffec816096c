"""Noise schedules and samplers, separate from the models (a model maps x_t, t -> eps)."""

from gigasynth.diffusion.samplers import DDIMSampler, DDPMSampler, Sampler, make_sampler
from gigasynth.diffusion.schedule import NoiseSchedule

__all__ = ["DDIMSampler", "DDPMSampler", "NoiseSchedule", "Sampler", "make_sampler"]
