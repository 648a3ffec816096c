"""A projection (not a measurement) of a 1 and a 10 gigapixel slide on 1, 8 and 64 GPUs.

From measured figures only: the plumbing per diffusion step per Mpx at each block size
(`experiments/pipeline_bench.py --block-steps ...` JSON, this machine's CPU, per worker:
the run's wall time times its workers), the scheduler's CPU per task (the same runs'
event-loop CPU) and the reference GPU rates (DESIGN.md section 7: 236 Mpx-steps/s for
paper-pathology under torch.compile on an H200, measured; 950, the performance goal).
The engine's own choices come from its code: the task shape for GPU workers
(`task_shape`: 2048 px regions, the default block of steps, two regions per task) and
the halo's extra pixels (`window_factor`).

Per GPU: (compute + plumbing) / G, or max of the two with the I/O beside the compute;
the scheduler: tasks x CPU per task on one event loop. The slide takes the longer.
Level 0, the pyramid and the TIFF are not included.

    python experiments/gpu_projection.py docs/bench/pipeline-blocks.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from gigasynth.checkpoint import save_checkpoint
from gigasynth.config import preset
from gigasynth.models import build_model
from gigasynth.synth import SynthSpec, check_job
from gigasynth.synth.blocks import task_shape, window_factor

RATES = {"reference 236": 236.0, "goal 950": 950.0}  # Mpx-NCA-steps/s per GPU
SLIDES = {"1 Gpx": 31_623, "10 Gpx": 100_000}  # side in px
GPUS = (1, 8, 64)
DDIM_STEPS = 50


def plumbing_s_per_mpx_step(pipeline: dict[str, Any], block_steps: int) -> tuple[float, int]:
    """Worker-seconds of plumbing per diffusion step per Mpx at the largest measured block
    not above `block_steps` (conservative), and that block."""
    runs = sorted(pipeline["runs"], key=lambda r: r["block_steps"])
    run = [r for r in runs if r["block_steps"] <= block_steps][-1]
    # The steady figure (x_T's keyed noise left out) where the run had steps after it.
    ms = run["denoise"]["steady_plumbing_ms_per_step_per_mpx"]
    ms = run["denoise"]["plumbing_ms_per_step_per_mpx"] if ms is None else ms
    return ms / 1e3 * run["workers"], run["block_steps"]


def project(pipeline: dict[str, Any]) -> list[dict[str, Any]]:
    config = preset("paper-pathology")
    scheduler_s = (
        max(
            r["denoise"]["thread_cpu_ms_per_task"].get("event_loop", 0.0)
            + r["denoise"]["thread_cpu_ms_per_task"].get("driver", 0.0)
            for r in pipeline["runs"]
        )
        / 1e3
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(save_checkpoint(Path(tmp) / "pp", build_model(config), config, {"mpp": 0.5}))
        for slide, side in SLIDES.items():
            job = check_job(SynthSpec(ckpt, side, side, steps=DDIM_STEPS, tile=512))
            shape = task_shape(job, gpu=True)
            region = shape.region // job.spec.tile * job.spec.tile
            halo = window_factor(region, config.halo, shape.block_steps)
            mpx = side * side / 1e6
            plumbing, measured_k = plumbing_s_per_mpx_step(pipeline, shape.block_steps)
            regions = math.ceil(side / region) ** 2
            tasks = math.ceil(regions / shape.per_task) * math.ceil(DDIM_STEPS / shape.block_steps)
            for rate_name, rate in RATES.items():
                compute = mpx * DDIM_STEPS * config.nca_steps * halo / rate
                io = mpx * DDIM_STEPS * plumbing
                for g in GPUS:
                    serial = (compute + io) / g
                    overlapped = max(compute, io) / g
                    central = tasks * scheduler_s
                    rows.append(
                        {
                            "slide": slide,
                            "gpus": g,
                            "rate": rate_name,
                            "block_steps": shape.block_steps,
                            "plumbing_measured_at_k": measured_k,
                            "halo_factor": round(halo, 3),
                            "tasks": tasks,
                            "hours_serial": round(max(serial, central) / 3600, 2),
                            "hours_overlapped": round(max(overlapped, central) / 3600, 2),
                            "gpu_busy_overlapped": round(compute / g / max(overlapped, central), 3),
                            "limit": "scheduler"
                            if central > overlapped
                            else ("GPU" if compute >= io else "plumbing"),
                        }
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", type=Path, help="pipeline_bench JSON of several K")
    args = parser.parse_args()
    rows = project(json.loads(args.pipeline.read_text()))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
