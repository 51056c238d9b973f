"""Layers against naive references and hand-computed values; masking, broadcasting and all-padding rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.layers import (
    MLP,
    CoActionUnit,
    MultiHeadTargetAttention,
    TargetAttention,
    TimeBuckets,
    masked_softmax,
)


def test_masked_softmax_zero_on_padding_and_all_padding_rows_without_nan() -> None:
    scores = torch.randn(3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    w = masked_softmax(scores, mask)
    assert torch.all(w[0, 2:] == 0) and torch.allclose(w[0].sum(), torch.tensor(1.0))
    assert torch.all(w[1] == 0)
    assert torch.allclose(w[2], torch.softmax(scores[2], -1))
    (w * torch.randn(3, 4)).sum().backward()  # type: ignore[no-untyped-call]
    assert scores.grad is not None and torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[1] == 0)


def test_mlp_shapes_and_output_layer() -> None:
    mlp = MLP(5, (7, 3), out_dim=1)
    assert mlp(torch.randn(4, 5)).shape == (4, 1)
    assert MLP(5, (7,), out_dim=None)(torch.randn(2, 5)).shape == (2, 7)


def naive_din(layer: TargetAttention, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DIN literally: MLP over the concatenation [q, k, q-k, q*k], per candidate and position."""
    c, t, d = keys.shape
    qq = q[:, None, :].expand(c, t, d)
    x = torch.cat([qq, keys, qq - keys, qq * keys], dim=-1)
    scores = layer.rest(torch.sigmoid(layer.first(x))).squeeze(-1)
    if layer.norm == "softmax":
        w = torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1) * mask
    else:
        w = scores * mask
    return (w[..., None] * keys).sum(1)


@pytest.mark.parametrize("norm", ["softmax", "sum"])
def test_target_attention_equals_din_concatenation(norm: str) -> None:
    torch.manual_seed(0)
    layer = TargetAttention(6, (5, 3), norm=norm)
    users, c, t = 3, 5, 4
    keys = torch.randn(users, t, 6)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False], [True] * 4])
    user_of = torch.tensor([0, 0, 1, 2, 2])
    q = torch.randn(c, 6)
    got = layer(q, keys, mask, user_of)
    want = naive_din(layer, q, keys[user_of], mask[user_of])
    assert got.shape == (c, 6)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(q, keys, mask, user_of, chunk=2), got)


def test_target_attention_padding_is_ignored_and_all_padding_gives_zeros() -> None:
    torch.manual_seed(1)
    layer = TargetAttention(4, (6,))
    keys = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    user_of = torch.tensor([0, 1, 1])
    q = torch.randn(3, 4)
    out = layer(q, keys, mask, user_of)
    changed = keys.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 4) * 100
    torch.testing.assert_close(layer(q, changed, mask, user_of), out)
    assert torch.all(out[1:] == 0)


def test_target_attention_broadcast_of_one_user_equals_repeated_rows() -> None:
    torch.manual_seed(2)
    layer = TargetAttention(4, (6, 2))
    keys, mask = torch.randn(1, 5, 4), torch.tensor([[True, True, True, False, True]])
    q = torch.randn(6, 4)
    one = layer(q, keys, mask, torch.zeros(6, dtype=torch.long))
    rep = layer(q, keys.expand(6, 5, 4).clone(), mask.expand(6, 5).clone(), torch.arange(6))
    torch.testing.assert_close(one, rep)


def test_esu_matches_per_head_reference_and_masks() -> None:
    torch.manual_seed(3)
    heads, a, da, dz, c, k = 2, 3, 4, 5, 3, 4
    layer = MultiHeadTargetAttention(da, dz, heads, a)
    q, z = torch.randn(c, da), torch.randn(c, k, dz)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    out = layer(q, z, mask)
    assert out.shape == (c, heads * dz)
    wa = layer.w_a.weight.view(heads, a, da)
    wb = layer.w_b.weight.view(heads, a, dz)
    for i in (0, 2):
        valid = z[i][mask[i]]  # [n, dz]
        for h in range(heads):
            s = (valid @ wb[h].T) @ (wa[h] @ q[i]) / math.sqrt(a)
            want = torch.softmax(s, 0) @ valid
            torch.testing.assert_close(out[i, h * dz : (h + 1) * dz], want, rtol=1e-5, atol=1e-6)
    assert torch.all(out[1] == 0)
    changed = z.clone()
    changed[~mask] = 1e3
    torch.testing.assert_close(layer(q, changed, mask), out)


def test_time_buckets_are_log2_and_clipped() -> None:
    got = TimeBuckets.bucketize(np.array([-5, 0, 1, 2, 3, 7, 8, 86_400, 10**12]), 12)
    assert got.tolist() == [1, 1, 2, 2, 3, 4, 4, 11, 11]  # 1 + floor(log2(1 + dt))
    emb = TimeBuckets(12, 3)
    assert torch.all(emb(torch.tensor([0])) == 0)  # padding bucket embeds to zeros
    assert emb(torch.from_numpy(got)).shape == (9, 3)


def test_coaction_unit_matches_hand_computed_example() -> None:
    # micro-MLP 2 -> 2 -> 1, orders 1..2, one candidate, behaviours x = [0.5, -1.0] and a padded one.
    unit = CoActionUnit((2, 2, 1), orders=2)
    assert unit.param_size == 2 * 2 + 2 * 1 and unit.out_dim == 2 * (2 + 1)
    w1 = [[0.1, -0.2], [0.3, 0.4]]
    w2 = [[0.5], [-0.6]]
    params = torch.tensor([[0.1, -0.2, 0.3, 0.4, 0.5, -0.6]])
    feed = torch.tensor([[[0.5, -1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, False]])
    out = unit(params, feed, mask, torch.tensor([0]))

    expected = []
    for x in ([0.5, -1.0], [0.25, 1.0]):  # the feed, then its element-wise square
        h1 = [math.tanh(x[0] * w1[0][j] + x[1] * w1[1][j]) for j in range(2)]
        h2 = math.tanh(h1[0] * w2[0][0] + h1[1] * w2[1][0])
        expected += [*h1, h2]
    # order 1 by hand: x @ W1 = [0.05 - 0.3, -0.1 - 0.4] = [-0.25, -0.5]
    assert expected[0] == pytest.approx(math.tanh(-0.25)) and expected[1] == pytest.approx(math.tanh(-0.5))
    torch.testing.assert_close(out, torch.tensor([expected]), rtol=1e-6, atol=1e-7)

    # a second real behaviour adds its own outputs (sum pooling); the broadcast and gathered paths agree
    mask2 = torch.tensor([[True, True]])
    two = unit(params, feed, mask2, torch.tensor([0]))
    nine = unit(params, torch.tensor([[[9.0, 9.0]]]), torch.tensor([[True]]), torch.tensor([0]))
    torch.testing.assert_close(two, out + nine)
    gathered = unit(params.repeat(2, 1), feed.repeat(2, 1, 1), mask2.repeat(2, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(gathered, two.repeat(2, 1))


def test_coaction_all_padding_gives_zeros() -> None:
    unit = CoActionUnit((4, 3, 2), orders=3)
    out = unit(torch.randn(2, unit.param_size), torch.randn(1, 5, 4), torch.zeros(1, 5, dtype=torch.bool),
               torch.zeros(2, dtype=torch.long))  # fmt: skip
    assert out.shape == (2, 3 * 5) and torch.all(out == 0)
