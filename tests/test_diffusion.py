"""Schedules and samplers: DDIM generalises DDPM; DDIM with eta 0 is deterministic."""

from dataclasses import replace

import pytest
import torch

from gigasynth.checkpoint import load_checkpoint
from gigasynth.config import ModelConfig
from gigasynth.diffusion import DDIMSampler, DDPMSampler, NoiseSchedule, make_sampler
from gigasynth.diffusion.schedule import TERMINAL_ALPHA_BAR
from gigasynth.errors import GigasynthError
from gigasynth.models import build_model
from gigasynth.sampling import SampleRequest, generate

from .conftest import MICRO, OLD_BUNDLED_MODEL


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_ddim_eta1_full_steps_is_ddpm_posterior(kind):
    schedule = NoiseSchedule(300, kind)
    ddpm, ddim = DDPMSampler(schedule), DDIMSampler(schedule, eta=1.0)
    ddpm.set_timesteps()
    assert ddim.set_timesteps(300) == ddpm.timesteps
    for t in ddpm.timesteps:
        a = ddpm.coefficients(t, ddpm.next_timestep(t))
        b = ddim.coefficients(t, ddim.next_timestep(t))
        # Posterior variance: beta_t (1 - abar_{t-1}) / (1 - abar_t).
        ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
        beta = float(schedule.betas[t])
        assert a.sigma**2 == pytest.approx(beta * (1 - ab_prev) / (1 - ab_t), rel=1e-9, abs=1e-15)
        assert b.sigma == pytest.approx(a.sigma, rel=1e-9, abs=1e-12)
        assert b.c_x0 == pytest.approx(a.c_x0, rel=1e-9)
        assert b.c_eps == pytest.approx(a.c_eps, rel=1e-7, abs=1e-9)


def test_linear_schedule_matches_paper():
    s = NoiseSchedule(300, "linear")
    assert float(s.betas[0]) == pytest.approx(1e-4)
    assert float(s.betas[-1]) == pytest.approx(0.02)
    assert s.alpha_bar(299) ** 0.5 == pytest.approx(0.22, abs=0.01)


def test_ddim_timesteps_and_errors():
    s = NoiseSchedule(300)
    d = DDIMSampler(s)
    steps = d.set_timesteps(50)
    assert steps[0] == 299 and steps[-1] == 0 and len(steps) == 50
    assert steps == sorted(steps, reverse=True)
    with pytest.raises(GigasynthError, match="steps must be between"):
        d.set_timesteps(301)
    with pytest.raises(GigasynthError, match="unknown sampler"):
        make_sampler("euler", s)


def test_ddim_eta0_deterministic_per_seed(micro_model):
    req = SampleRequest("ddim", 5)
    a = generate(micro_model, 20, 24, [3], req)
    b = generate(micro_model, 20, 24, [3], req)
    c = generate(micro_model, 20, 24, [4], req)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (1, 3, 20, 24)


def test_ddpm_runs_every_step(micro_model):
    seen = []
    x = generate(
        micro_model,
        16,
        16,
        [0],
        SampleRequest("ddpm", None),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (50, 50)
    assert torch.isfinite(x).all()


def test_zero_terminal_snr_schedule_ends_in_pure_noise():
    old = NoiseSchedule(300, "linear")
    z = NoiseSchedule(300, "linear", zero_terminal_snr=True)
    assert z.alpha_bar(299) == TERMINAL_ALPHA_BAR < 1e-7
    assert z.alpha_bar(0) == pytest.approx(old.alpha_bar(0), rel=1e-12)
    assert bool((z.alpha_bars[1:] < z.alpha_bars[:-1]).all())
    assert bool(((z.betas > 0) & (z.betas <= 1)).all())
    # alpha_bar is the product of the alphas, as the DDPM sampler's betas assume.
    assert torch.allclose(torch.cumprod(z.alphas, 0), z.alpha_bars, rtol=1e-9, atol=0)
    # The default leaves the schedule exactly as before the option existed.
    linear = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 300, dtype=torch.float64), 0)
    assert torch.equal(old.alpha_bars, linear)


def test_samplers_use_the_config_schedule():
    old = ModelConfig.from_dict(
        {k: v for k, v in MICRO.to_dict().items() if k != "zero_terminal_snr"}
    )
    assert old == MICRO and not old.zero_terminal_snr
    model = build_model(replace(MICRO, zero_terminal_snr=True))
    sampler = SampleRequest("ddim", 5).build(model)
    assert sampler.schedule.alpha_bar(MICRO.timesteps - 1) == TERMINAL_ALPHA_BAR
    assert SampleRequest("ddim", 5).build(build_model(MICRO)).schedule.alpha_bar(49) > 0.5
    x = generate(model, 16, 16, [0], SampleRequest("ddpm", None))
    assert torch.isfinite(x).all()


def test_a_checkpoint_older_than_the_schedule_field_samples_as_before():
    """The bundled model of 2026-11 (tests/fixtures; written before zero_terminal_snr
    existed) gives the output it gave then (figures from commit 152da4f)."""
    model = load_checkpoint(str(OLD_BUNDLED_MODEL)).model
    expected = {
        SampleRequest("ddim", 4): [0.31679201, -0.09511966, 0.19811580],
        SampleRequest("ddim", 3, eta=1.0): [0.37994873, -0.14015850, 0.16121924],
    }
    for request, means in expected.items():
        x = generate(model, 16, 16, [7], request)
        # 1e-4: thread counts change float summation order; a changed schedule moves
        # these means by more than 1e-2.
        assert x.mean((0, 2, 3)).tolist() == pytest.approx(means, abs=1e-4)
