"""Harmonic (Fourier) positional embedding of points and directions, NeRF-style."""
from __future__ import annotations

import torch
from torch import nn


class HarmonicEmbedding(nn.Module):
    """``x -> [x, sin(2^0 x), ..., sin(2^{L-1} x), cos(2^0 x), ..., cos(2^{L-1} x)]``.

    Frequencies are ``omega0 * 2**k`` for ``k = 0..n_harmonic-1`` (NeRF, pytorch3d's
    ``HarmonicEmbedding``). ViewSeg uses 10 frequencies for points and 4 for directions;
    points are in metres, so the finest period is ``2 pi / 2^9`` m ~= 1.2 cm.
    """

    def __init__(self, n_harmonic: int, omega0: float = 1.0, include_input: bool = True) -> None:
        super().__init__()
        if n_harmonic < 0:
            raise ValueError(f"n_harmonic must be >= 0, got {n_harmonic}")
        self.n_harmonic = int(n_harmonic)
        self.include_input = bool(include_input)
        freqs = omega0 * 2.0 ** torch.arange(self.n_harmonic, dtype=torch.float32)
        # Not persistent: derived from the config, so it never appears in checkpoints.
        self.register_buffer("frequencies", freqs, persistent=False)

    def output_dim(self, input_dim: int = 3) -> int:
        """Width of the embedding of an ``input_dim``-vector."""
        return input_dim * (2 * self.n_harmonic + int(self.include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x [..., D]. Returns: [..., D * (2 * n_harmonic + include_input)]."""
        parts = [x] if self.include_input else []
        if self.n_harmonic:
            scaled = (x[..., None] * self.frequencies.to(x.dtype)).flatten(-2)  # [..., D*L]
            parts += [torch.sin(scaled), torch.cos(scaled)]
        return torch.cat(parts, dim=-1)
