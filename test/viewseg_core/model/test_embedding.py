"""Harmonic embedding: hand-computed values and widths."""
from __future__ import annotations

import math

import torch

from viewseg_core.model.embedding import HarmonicEmbedding


def test_values_by_hand():
    emb = HarmonicEmbedding(2)
    x = torch.tensor([[0.5, -1.0, 2.0]])
    out = emb(x)
    assert out.shape == (1, 3 * (2 * 2 + 1)) and emb.output_dim(3) == 15
    # layout: [x, sin(x f) for (x dim, f) row-major, cos(...)]
    expected = [0.5, -1.0, 2.0]
    args = [0.5, 1.0, -1.0, -2.0, 2.0, 4.0]
    expected += [math.sin(a) for a in args] + [math.cos(a) for a in args]
    torch.testing.assert_close(out[0], torch.tensor(expected), rtol=0, atol=1e-6)


def test_no_input_and_zero_frequencies():
    assert HarmonicEmbedding(10, include_input=False).output_dim(3) == 60
    x = torch.randn(4, 5, 3)
    torch.testing.assert_close(HarmonicEmbedding(0)(x), x)
    assert HarmonicEmbedding(10)(x).shape == (4, 5, 63)
    assert HarmonicEmbedding(4)(x.double()).dtype == torch.float64
    assert "frequencies" not in HarmonicEmbedding(3).state_dict()
