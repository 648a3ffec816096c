"""Keyed randomness (invariant I3): pure functions of key and canvas coordinates."""

import torch

from gigasynth.geometry import Window
from gigasynth.keyed import Stream, key_words, keyed_bits, keyed_normal, keyed_uniform


def test_crop_of_canvas_equals_window():
    keys = key_words([7, 8], Stream.STEP_NOISE, 5, 0)
    full = keyed_normal(keys, 3, 40, 50)
    crop = keyed_normal(keys, 3, 10, 12, Window(y0=17, x0=31))
    assert torch.equal(full[..., 17:27, 31:43], crop)


def test_streams_steps_and_seeds_differ():
    base = keyed_bits(key_words([1], Stream.FIRE, 3, 2), 1, 8, 8)
    for other in (
        key_words([2], Stream.FIRE, 3, 2),
        key_words([1], Stream.FIRE, 4, 2),
        key_words([1], Stream.FIRE, 3, 1),
        key_words([1], Stream.STEP_NOISE, 3, 2),
    ):
        assert (keyed_bits(other, 1, 8, 8) != base).float().mean() > 0.99


def test_distributions():
    keys = key_words([3], Stream.INIT_NOISE, 0, 0)
    z = keyed_normal(keys, 4, 256, 256)
    assert abs(z.mean().item()) < 0.01
    assert abs(z.std().item() - 1.0) < 0.01
    u = keyed_uniform(keys, 1, 256, 256)
    assert u.min().item() > 0.0 and u.max().item() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01
    # Neighbouring pixels are uncorrelated.
    corr = torch.corrcoef(torch.stack([z[0, 0, :, :-1].flatten(), z[0, 0, :, 1:].flatten()]))
    assert abs(corr[0, 1].item()) < 0.02
