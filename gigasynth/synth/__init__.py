"""Exact tiled synthesis of gigapixel slides on Dask (the synth contract)."""

from gigasynth.synth.engine import synthesize
from gigasynth.synth.job import Job, JobError, check_job
from gigasynth.synth.spec import (
    SynthCancelled,
    SynthDiskFull,
    SynthProgress,
    SynthResult,
    SynthSpec,
)

__all__ = [
    "Job",
    "JobError",
    "SynthCancelled",
    "SynthDiskFull",
    "SynthProgress",
    "SynthResult",
    "SynthSpec",
    "check_job",
    "synthesize",
]
