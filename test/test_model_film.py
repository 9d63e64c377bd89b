"""FiLM conditioning: identity at initialisation, then a real per-channel scale and shift."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from openpixel_ros.model.backbone import ConvNormAct  # noqa: E402
from openpixel_ros.adaptation import CONDITIONING_SIZE  # noqa: E402
from openpixel_ros.model.film import FiLMGenerator  # noqa: E402


def test_conditioning_size_comes_from_the_adaptation_module():
    adaptation = pytest.importorskip("openpixel_ros.adaptation")
    assert CONDITIONING_SIZE == adaptation.CONDITIONING_SIZE


def test_fresh_generator_is_the_identity_for_any_conditioning():
    film = FiLMGenerator(5, {"a": 3, "b": 7})
    params = film(torch.randn(4, 5) * 10)
    assert params["a"][0].shape == (4, 3, 1, 1) and params["b"][1].shape == (4, 7, 1, 1)
    for gamma, beta in params.values():
        assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))


def test_modulation_scales_and_shifts_the_normalised_output_per_sample():
    torch.manual_seed(0)
    layer = ConvNormAct(3, 4, 3, activation=None).eval()
    film = FiLMGenerator(2, {"layer": 4})
    torch.nn.init.normal_(film.mlp[-1].weight)
    x = torch.randn(2, 3, 8, 8)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    gamma, beta = film(cond)["layer"]
    expected = layer(x) * gamma + beta
    assert torch.allclose(layer(x, (gamma, beta)), expected)
    out = layer(x, (gamma, beta))
    assert not torch.allclose(out[0], layer(x)[0])  # the two samples are modulated differently
    assert not torch.allclose(gamma[0], gamma[1])


def test_gradients_reach_the_generator():
    film = FiLMGenerator(3, {"layer": 4})
    layer = ConvNormAct(2, 4, 1)
    out = layer(torch.randn(2, 2, 5, 5), film(torch.randn(2, 3))["layer"])
    out.mean().backward()
    assert film.mlp[-1].weight.grad is not None and film.mlp[-1].weight.grad.abs().sum() > 0


def test_zero_conditioning_size_is_rejected():
    with pytest.raises(ValueError):
        FiLMGenerator(0, {"a": 1})
