"""`gigasynth bench`: a smoke run of every stage at toy sizes (no timed assertions)."""

import json

import pytest
import torch

from gigasynth.bench import format_report
from gigasynth.bench.suite import halo_factor
from gigasynth.cli import main
from gigasynth.config import ModelConfig

from .test_cli import gigasynth


@pytest.mark.slow
def test_bench_quick_json_runs_every_stage():
    proc = gigasynth(
        "bench", "--device", "cpu", "--preset", "tiny", "--quick", "--json", "--threads", "1"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ceiling = result["ceiling"]
    assert ceiling["dtype"] == "float32" and ceiling["flops"] > 0
    assert ceiling["flops"] == max(ceiling["flops_by_library"].values())
    assert ceiling["copy_bytes_per_s"] > 0
    tiny = result["presets"]["tiny"]
    assert tiny["macs_per_pixel"] == 9 * 24 * 24 + 3 * 24 * 64
    assert [(u["batch"], u["height"]) for u in tiny["updates"]] == [(2, 16), (1, 32)]
    for u in tiny["updates"]:
        for path in ("fast", "naive"):
            rate = u[path]["mpx_steps_per_s"] * 1e6
            # efficiency is defined from the other two figures of the same run
            expected = 2 * tiny["macs_per_pixel"] * rate / ceiling["flops"]
            assert u[path]["efficiency"] == pytest.approx(expected)
        assert u["speedup"] > 0
    assert [t["checkpointing"] for t in tiny["train"]] == [False, True]
    assert all(t["seconds_per_iteration"] > 0 for t in tiny["train"])
    hours = tiny["gigapixel"]["hours"]
    assert set(hours) == {"DDIM-50", "DDPM-300"}
    assert hours["DDPM-300"] == pytest.approx(6 * hours["DDIM-50"])
    table = format_report(result)
    assert "ceiling" in table and "DDIM-50" in table and "tiny" in table


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--threads", "0"], "--threads must be at least 1"),
        (["--device", "cuda"], "no CUDA device"),
    ],
)
def test_bench_bad_input_is_one_line(capsys, args, fragment):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["bench", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def test_bench_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--preset", "huge"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_halo_factor_counts_the_shrinking_halo():
    one_step = ModelConfig(channels=12, hidden=16, nca_steps=1)
    two_steps = ModelConfig(channels=12, hidden=16, nca_steps=2)
    assert halo_factor(one_step, 100) == 1.0
    assert halo_factor(two_steps, 100) == pytest.approx((100**2 + 102**2) / (2 * 100**2))


@pytest.mark.slow
def test_bench_engine_measures_synthesize_against_the_kernel():
    """`--engine`: a real tiled synthesize of a conditioned bundled stage and the model's
    own rate in the same run; efficiency and shares are derived from those figures."""
    proc = gigasynth(
        "bench", "--device", "cpu", "--quick", "--json", "--engine", "builtin:skin-sr4",
        "--workers", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["presets"] == {}  # --engine alone skips the presets
    e = result["engine"]
    assert (e["size"], e["tile"], e["workers"]) == (96, 48, 2)
    assert e["kernel_mpx_steps_per_s"] == pytest.approx(sum(e["kernel_before_after"]) / 2)
    assert min(e["kernel_before_after"]) > 0
    assert e["efficiency"] == pytest.approx(
        e["engine_mpx_steps_per_s"] / e["kernel_mpx_steps_per_s"]
    )
    assert e["halo_factor"] == pytest.approx(halo_factor(ModelConfig(nca_steps=12), 48))
    assert 0 < e["efficiency"] < 1.5 and e["plumbing_share"] >= 0
    text = format_report(result)
    assert "useful Mpx-steps/s against the kernel's" in text
