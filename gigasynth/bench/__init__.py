"""Benchmarks of the NCA update against the machine's limits (`gigasynth bench`)."""

from gigasynth.bench.suite import format_report, run_bench

__all__ = ["format_report", "run_bench"]
