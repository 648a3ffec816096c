"""Inpainting keeps the known region; super-resolution has the requested size."""

import torch

from gigasynth.sampling import SampleRequest, inpaint, upscale


def test_inpainting_keeps_known_region(micro_model):
    torch.manual_seed(0)
    known = torch.rand(1, 3, 24, 24) * 2 - 1
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., :, :12] = 1
    out = inpaint(micro_model, known, mask, [1], SampleRequest("ddim", 8))
    kept = (out - known)[..., :, :12].abs().max().item()
    filled = (out - known)[..., :, 12:].abs().mean().item()
    assert kept < 1e-6
    assert filled > 0.05


def test_inpainting_renoises_known_region_during_the_chain(micro_model):
    known = torch.zeros(1, 3, 16, 16)
    mask = torch.ones(1, 1, 16, 16)
    states = []
    out = inpaint(
        micro_model,
        known,
        mask,
        [1],
        SampleRequest("ddim", 4),
        progress=lambda done, total: states.append(done),
    )
    assert states == [1, 2, 3, 4]
    assert torch.equal(out, known)


def test_upscale_size(micro_model):
    image = torch.rand(1, 3, 20, 30) * 2 - 1
    out = upscale(micro_model, image, 2.0, [0], request=SampleRequest("ddim", 5))
    assert out.shape == (1, 3, 40, 60)
    assert torch.isfinite(out).all()
    # Starting from a low noise level keeps the layout of the upsampled input.
    up = torch.nn.functional.interpolate(image, size=(40, 60), mode="bicubic").clamp(-1, 1)
    assert torch.corrcoef(torch.stack([out.flatten(), up.flatten()]))[0, 1] > 0.5
