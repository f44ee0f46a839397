"""Embodiment-conditioned layers of the action head (SPEC-N16 §1.2).

Every layer here keeps one weight matrix per embodiment ("category") and picks the rows of the
batch's embodiments with an index, so one network serves robots with different state/action
layouts. Parameter names (`W`, `b`, `layer1`, `W1`, ...) match the released checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CategorySpecificLinear(nn.Module):
    """Linear map with separate weights per embodiment.

    `W [E, in, out]` (init 0.02·N(0,1)), `b [E, out]` (zeros);
    `y = bmm(x, W[ids]) + b[ids].unsqueeze(1)` for `x [B, T, in]`, `ids [B]`.
    """

    def __init__(self, num_categories: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.num_categories = num_categories
        self.in_features = in_features
        self.out_features = out_features
        self.W = nn.Parameter(0.02 * torch.randn(num_categories, in_features, out_features))
        self.b = nn.Parameter(torch.zeros(num_categories, out_features))

    def forward(self, x: torch.Tensor, category_ids: torch.Tensor) -> torch.Tensor:
        """`x [B, T, in]`, `category_ids long [B]` → `[B, T, out]`."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"CategorySpecificLinear expected x of shape [B, T, {self.in_features}], got {tuple(x.shape)}"
            )
        if category_ids.shape != (x.shape[0],):
            raise ValueError(
                f"category_ids must have shape [B]=[{x.shape[0]}], got {tuple(category_ids.shape)}"
            )
        if not torch.compiler.is_compiling() and category_ids.device.type == "cpu":
            # Out-of-range ids would otherwise surface as an opaque indexing error.
            lo, hi = int(category_ids.min()), int(category_ids.max())
            if lo < 0 or hi >= self.num_categories:
                raise ValueError(
                    f"embodiment id out of range [0, {self.num_categories}): got min {lo}, max {hi}"
                )
        weight = self.W[category_ids]
        bias = self.b[category_ids]
        return torch.bmm(x, weight) + bias.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"categories={self.num_categories}, in={self.in_features}, out={self.out_features}"


class CategorySpecificMLP(nn.Module):
    """`layer2(relu(layer1(x)))` with per-embodiment weights."""

    def __init__(
        self, num_categories: int, in_features: int, hidden_features: int, out_features: int
    ) -> None:
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_features, hidden_features)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_features, out_features)

    def forward(self, x: torch.Tensor, category_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, category_ids)), category_ids)


def action_timestep_sinusoid(timesteps: torch.Tensor, width: int) -> torch.Tensor:
    """Sinusoidal code of integer timesteps, `[sin, cos]` order.

    Frequencies are `exp(-ln(10000)·i/(width/2))` for i = 0…width/2−1. `timesteps [...]` → `[..., width]`
    in float32.
    """
    if width % 2:
        raise ValueError(f"sinusoid width must be even, got {width}")
    half = width // 2
    # Same float32 rounding order as the reference: ln(10000) as a float32 tensor, divided by half,
    # times the negated indices.
    step = torch.log(torch.tensor(10000.0, dtype=torch.float32, device=timesteps.device)) / half
    exponent = -torch.arange(half, dtype=torch.float32, device=timesteps.device) * step
    angles = timesteps.to(torch.float32).unsqueeze(-1) * torch.exp(exponent)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def swish(x: torch.Tensor) -> torch.Tensor:
    """`x·sigmoid(x)`, written out (F.silu rounds differently by up to ~1e-6)."""
    return x * torch.sigmoid(x)


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy action chunk + discretised flow time τ → action tokens.

    `a = W1(x)`, `e = sinusoid(τ)`, `h = swish(W2([a, e]))`, `out = W3(h)`.
    """

    def __init__(self, action_dim: int, hidden_size: int, num_embodiments: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.W1 = CategorySpecificLinear(num_embodiments, action_dim, hidden_size)
        self.W2 = CategorySpecificLinear(num_embodiments, 2 * hidden_size, hidden_size)
        self.W3 = CategorySpecificLinear(num_embodiments, hidden_size, hidden_size)

    def forward(
        self, actions: torch.Tensor, timesteps: torch.Tensor, category_ids: torch.Tensor
    ) -> torch.Tensor:
        """`actions [B, H, A]`, `timesteps long [B]` (or `[B, H]`, one per step), `category_ids [B]`
        → `[B, H, hidden]`."""
        batch, horizon, _ = actions.shape
        if timesteps.shape == (batch, horizon):
            tau = timesteps
        elif timesteps.shape == (batch,):
            tau = timesteps.unsqueeze(1).expand(batch, horizon)
        else:
            raise ValueError(
                f"timesteps must have shape [B]=[{batch}] or [B, H]=[{batch}, {horizon}], got {tuple(timesteps.shape)}"
            )
        a = self.W1(actions, category_ids)
        e = action_timestep_sinusoid(tau, self.hidden_size).to(a.dtype)
        h = swish(self.W2(torch.cat([a, e], dim=-1), category_ids))
        return self.W3(h, category_ids)
