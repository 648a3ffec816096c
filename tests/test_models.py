"""The paper's models: sizes, frozen image channels, locality (invariants I1, I2)."""

import json

import pytest
import torch

from gigasynth.config import ModelConfig, preset
from gigasynth.errors import GigasynthError
from gigasynth.geometry import Borders, Window
from gigasynth.models import Denoiser, build_model, count_parameters

from .conftest import MICRO, MICRO_FOURIER, OLD_BUNDLED_MODEL


@pytest.mark.parametrize(
    ("name", "paper"), [("paper-pathology", 208_792), ("paper-celeba", 886_984)]
)
def test_paper_parameter_counts(name, paper):
    n = count_parameters(build_model(preset(name)))
    assert abs(n - paper) / paper < 0.01, n


def test_config_round_trips_as_json():
    for name in ("paper-pathology", "paper-celeba", "tiny"):
        cfg = preset(name)
        assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(GigasynthError, match="unknown model config fields"):
        ModelConfig.from_dict({"kind": "diff-nca", "colour": 3})


def test_nca_steps_keep_their_name_in_files():
    """ModelConfig.nca_steps (NCA steps, the halo) is "steps" in config.json, as before
    the rename: the 2026-11 bundled model's file loads to the preset it was trained from
    and writes back the same fields; the new name is read too, both at once are refused."""
    doc = json.loads(OLD_BUNDLED_MODEL.with_suffix(".json").read_text())["model"]
    config = ModelConfig.from_dict(doc)
    assert config == preset("tiny") and config.nca_steps == doc["steps"] == 12
    assert config.halo == 12
    # The same JSON (plus zero_terminal_snr, a field added after the file was written).
    assert json.loads(config.to_json()) == {**doc, "zero_terminal_snr": False}
    assert "nca_steps" not in config.to_dict() and config.to_dict()["steps"] == 12
    renamed = {("nca_steps" if k == "steps" else k): v for k, v in doc.items()}
    assert ModelConfig.from_dict(renamed) == config
    assert ModelConfig.from_dict(doc) == config and "steps" in doc  # the input is not changed
    with pytest.raises(GigasynthError) as err:
        ModelConfig.from_dict({**doc, "nca_steps": 12})
    assert "both steps and nca_steps" in str(err.value) and "\n" not in str(err.value)


def test_the_nca_models_and_the_unet_are_denoisers():
    """Samplers, trainer and dataset take a `Denoiser`: both NCAs and the UNet baseline
    satisfy the protocol (config, call, checkpointing, parameters); a bare layer does not."""
    for config in (MICRO, MICRO_FOURIER):
        assert isinstance(build_model(config), Denoiser)
    pytest.importorskip("diffusers")
    from gigasynth.baselines.unet import UNetConfig, build_unet

    unet = build_unet(UNetConfig(block_channels=(4, 8), norm_groups=4, timesteps=20))
    assert isinstance(unet, Denoiser) and not unet.config.is_tileable
    assert not isinstance(torch.nn.Conv2d(3, 3, 1), Denoiser)


@pytest.mark.parametrize(("h", "w"), [(64, 64), (96, 96), (48, 80)])
def test_fourier_model_any_size_keeps_image_channels(h, w):
    torch.manual_seed(0)
    model = build_model(MICRO_FOURIER, zero_output=False).eval()
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        state = model.initial_state(x)
        after_fourier = model.fourier(state, [10, 40])
        final = model.nca(after_fourier, [10, 40], [1, 2])
        eps = model(x, [10, 40], [1, 2])
    assert torch.equal(after_fourier[:, :3], x)
    assert torch.equal(final[:, :3], x)
    assert eps.shape == x.shape
    # The Fourier stage did write the hidden channels (global information).
    assert after_fourier[:, 3:].abs().max() > 0


@pytest.mark.parametrize("config", [MICRO, MICRO_FOURIER], ids=["diff-nca", "fourier"])
def test_fresh_models_start_from_identity_updates(config):
    """Training starts with every update at zero: the Fourier stage leaves the state as
    it is and the prediction is exactly zero (random output weights made the Fourier
    stage's first outputs huge); zero_output=False keeps updates that move the state."""
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    fresh = build_model(config).eval()
    torch.manual_seed(0)
    moving = build_model(config, zero_output=False).eval()
    with torch.no_grad():
        assert torch.equal(fresh(x, [10, 40], [1, 2]), torch.zeros_like(x))
        assert moving(x, [10, 40], [1, 2]).abs().max() > 0
        if config.kind == "fourier-diff-nca":
            state = fresh.initial_state(x)
            assert torch.equal(fresh.fourier(state, [10, 40])[:, 3:], state[:, 3:])
    # Only the output layers differ: the same draw of every other weight.
    fresh_weights, moving_weights = fresh.state_dict(), moving.state_dict()
    differing = {k for k in fresh_weights if not torch.equal(fresh_weights[k], moving_weights[k])}
    assert differing and all(".rule.fc2." in k for k in differing)


def test_fourier_model_rejects_tiles_and_tiny_images():
    model = build_model(MICRO_FOURIER, zero_output=False).eval()
    with pytest.raises(GigasynthError, match="whole-image"):
        model(torch.zeros(1, 3, 64, 64), [1], [1], Window(), Borders(top=False))
    with pytest.raises(GigasynthError, match="too small"):
        model(torch.zeros(1, 3, 20, 64), [1], [1])


def test_diffnca_is_local_with_keyed_randomness(micro_model):
    """The prediction on a crop with a halo of S equals the crop of the whole prediction."""
    halo = MICRO.halo
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        full = micro_model(x, [17], [5])
        y0, x0, h, w = 20, 33, 25, 30
        tile = x[..., y0 - halo : y0 + h + halo, x0 - halo : x0 + w + halo]
        borders = Borders(top=False, bottom=False, left=False, right=False)
        local = micro_model(tile, [17], [5], Window(y0 - halo, x0 - halo), borders)
        # A tile on the canvas corner: reflect padding on its border sides only.
        corner = x[..., : 30 + halo, : 40 + halo]
        local_corner = micro_model(
            corner, [17], [5], Window(0, 0), Borders(top=True, bottom=False, left=True, right=False)
        )
    assert local.shape == (1, 3, h, w)
    assert (local - full[..., y0 : y0 + h, x0 : x0 + w]).abs().max() < 1e-5
    assert (local_corner - full[..., :30, :40]).abs().max() < 1e-5


def test_fire_mask_is_stochastic_and_keyed(micro_model):
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = micro_model(x, [3], [1])
        b = micro_model(x, [3], [1])
        c = micro_model(x, [3], [2])
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_image_channels_never_written(micro_model):
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        state = micro_model.nca(micro_model.initial_state(x), [4, 9], [1, 2])
    assert torch.equal(state[:, :3], x)
