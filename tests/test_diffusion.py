"""Schedules and samplers: DDIM generalises DDPM; DDIM with eta 0 is deterministic."""

import pytest
import torch

from gigasynth.diffusion import DDIMSampler, DDPMSampler, NoiseSchedule, make_sampler
from gigasynth.errors import GigasynthError
from gigasynth.sampling import SampleRequest, generate


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
    x = generate(micro_model, 16, 16, [0], SampleRequest("ddpm", None),
                 progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (50, 50)
    assert torch.isfinite(x).all()
