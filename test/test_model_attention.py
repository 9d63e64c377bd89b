"""Cross-scale attention: shapes, softmax over keys, permutation properties, gradients."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from openpixel_ros.model.cross_scale_attention import CrossScaleAttention  # noqa: E402


@pytest.fixture
def attention():
    torch.manual_seed(0)
    return CrossScaleAttention(query_channels=24, context_channels=40, dim=32, heads=4).eval()


def test_output_keeps_the_query_map_shape_and_attention_is_over_keys(attention):
    query = torch.randn(2, 24, 12, 10)
    context = torch.randn(2, 40, 3, 5)
    out, weights = attention(query, context, return_attention=True)
    assert out.shape == query.shape
    assert weights.shape == (2, 4, 12 * 10, 3 * 5)
    assert torch.allclose(weights.sum(dim=-1), torch.ones(2, 4, 120), atol=1e-5)
    assert (weights >= 0).all()
    # The rows differ between queries: the attention is not collapsed to one distribution.
    assert weights.std(dim=2).max() > 1e-3


def test_matches_scaled_dot_product_attention_written_out(attention):
    query = torch.randn(1, 24, 4, 4)
    context = torch.randn(1, 40, 2, 3)
    q = attention.to_query(query).flatten(2).reshape(1, 4, 8, 16).transpose(2, 3)
    k = attention.to_key(context).flatten(2).reshape(1, 4, 8, 6).transpose(2, 3)
    v = attention.to_value(context).flatten(2).reshape(1, 4, 8, 6).transpose(2, 3)
    mixed = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(QK^T/sqrt(d)) V
    expected = query + attention.proj(mixed.transpose(2, 3).reshape(1, 32, 4, 4))
    assert torch.allclose(attention(query, context), expected, atol=1e-5)


def test_permuting_query_positions_permutes_the_output(attention):
    query = torch.randn(1, 24, 6, 5)
    context = torch.randn(1, 40, 2, 2)
    perm = torch.randperm(30)
    permuted = query.flatten(2)[:, :, perm].reshape(1, 24, 6, 5)
    expected = attention(query, context).flatten(2)[:, :, perm].reshape(1, 24, 6, 5)
    assert torch.allclose(attention(permuted, context), expected, atol=1e-5)


def test_permuting_key_positions_leaves_the_output_unchanged(attention):
    query = torch.randn(1, 24, 6, 5)
    context = torch.randn(1, 40, 3, 4)
    perm = torch.randperm(12)
    shuffled = context.flatten(2)[:, :, perm].reshape(1, 40, 3, 4)
    assert torch.allclose(attention(query, shuffled), attention(query, context), atol=1e-5)


def test_the_context_changes_the_output(attention):
    query = torch.randn(1, 24, 6, 5)
    assert not torch.allclose(attention(query, torch.randn(1, 40, 2, 2)), attention(query, torch.randn(1, 40, 2, 2)))


def test_gradients(attention):
    attention.train()
    query = torch.randn(2, 24, 5, 5, requires_grad=True)
    context = torch.randn(2, 40, 2, 3, requires_grad=True)
    attention(query, context).square().mean().backward()
    assert query.grad is not None and context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is not None for p in attention.parameters())


def test_dim_must_split_into_heads():
    with pytest.raises(ValueError):
        CrossScaleAttention(8, 8, dim=30, heads=4)
