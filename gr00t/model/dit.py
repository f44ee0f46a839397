"""Diffusion transformer trunk of the action head (SPEC-N16 §1.3).

`DiT` interleaves cross-attention to the backbone tokens (even blocks) with self-attention among
the state+action tokens (odd blocks). `AlternateVLDiT` (the N1.6 default) splits the cross blocks
between non-image ("text") tokens and image tokens. Module and parameter names match the released
checkpoint (`timestep_encoder.timestep_embedder.linear_1`, `transformer_blocks.{i}.attn1.to_q`, ...).

Cross-attention keys/values depend only on the backbone tokens, not on the flow step, so they can be
projected once per `get_action` call with `DiT.precompute_cross_kv` and passed to every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gr00t.model.config import Gr00tN16Config

# Block kinds: what each transformer block attends to.
SELF = "self"
CROSS_ALL = "cross_all"  # every real backbone token (plain DiT)
CROSS_TEXT = "cross_text"  # real non-image backbone tokens
CROSS_IMAGE = "cross_image"  # real image tokens


def timestep_sinusoid(timesteps: torch.Tensor, channels: int = 256, freq_shift: float = 1.0) -> torch.Tensor:
    """`[cos, sin]` code of integer timesteps `[B]` → float32 `[B, channels]`.

    Frequencies `exp(-ln(10000)·i/(channels/2 − freq_shift))`, i = 0…channels/2−1.
    """
    if channels % 2:
        raise ValueError(f"timestep sinusoid channels must be even, got {channels}")
    half = channels // 2
    # Rounding order matters at τ≈1000 (a folded constant drifts by ~6e-5): scale the float32
    # indices by −ln(10000) first, then divide by (half − shift), as the reference does.
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    exponent = exponent / (half - freq_shift)
    angles = timesteps.to(torch.float32)[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    """`linear_2(silu(linear_1(x)))`."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class TimestepEncoder(nn.Module):
    """Discretised flow time τ `[B]` → conditioning vector `temb [B, dim]` in the parameter dtype."""

    def __init__(self, dim: int, channels: int = 256) -> None:
        super().__init__()
        self.channels = channels
        self.timestep_embedder = TimestepEmbedding(channels, dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        code = timestep_sinusoid(timesteps, self.channels).to(self.timestep_embedder.linear_1.weight.dtype)
        return self.timestep_embedder(code)


class AdaLayerNorm(nn.Module):
    """No-affine LayerNorm (eps 1e-5) modulated by temb: `(1 + scale)·LN(x) + shift`.

    `scale, shift = linear(silu(temb)).chunk(2)` — scale comes first.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


def _safe_key_mask(key_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA mask `[B, 1, 1, S]` and `has_key [B]`.

    Rows without any valid key are opened up fully (so no SDPA backend can produce NaN); the caller
    zeroes their whole attention update with `has_key`, so such a sample attends to nothing and its
    residual stream passes the block's attention unchanged (SPEC §1.3: "attend to nothing -> zero
    update"). The reference has no guard here; depending on the kernel it yields NaN or the `to_out`
    bias for such a sample.
    """
    has_key = key_mask.any(dim=-1)
    safe = key_mask | ~has_key[:, None]
    return safe[:, None, None, :], has_key


class Attention(nn.Module):
    """Multi-head attention with biased q/k/v/out projections (`to_out.0`, dropout `to_out.1`)."""

    def __init__(
        self, dim: int, heads: int, head_dim: int, kv_dim: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(kv_dim or dim, inner)
        self.to_v = nn.Linear(kv_dim or dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `[B, heads, S, head_dim]` of `context [B, S, kv_dim]`."""
        return self._split(self.to_k(context)), self._split(self.to_v(context))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from `x [B, T, dim]` to `context` (self-attention if None) or precomputed `kv`.

        `key_mask bool [B, S]` (True = may be attended). A sample with no True key gets a zero
        update (its output is exactly 0).
        """
        if kv is None:
            kv = self.project_kv(x if context is None else context)
        k, v = kv
        q = self._split(self.to_q(x))
        has_key = None
        attn_mask = None
        if key_mask is not None:
            attn_mask, has_key = _safe_key_mask(key_mask)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        b, _, t, _ = out.shape
        out = out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        out = self.to_out[1](self.to_out[0](out))
        if has_key is not None:
            out = out * has_key[:, None, None].to(out.dtype)
        return out


class GELUTanhProjection(nn.Module):
    """`gelu_tanh(proj(x))` (the feed-forward's first layer, stored as `ff.net.0.proj`)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """`dim → 4·dim → dim` with GELU(tanh) and dropout (`net.0.proj`, `net.2`)."""

    def __init__(self, dim: int, dropout: float, final_dropout: bool, mult: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            GELUTanhProjection(dim, mult * dim),
            nn.Dropout(dropout),
            nn.Linear(mult * dim, dim),
        ]
        if final_dropout:
            layers.append(nn.Dropout(dropout))
        self.net = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """AdaLN → attention → residual → LN → feed-forward → residual."""

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        kind: str,
        cross_attention_dim: int,
        dropout: float,
        final_dropout: bool,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.norm1 = AdaLayerNorm(dim)
        kv_dim = None if kind == SELF else cross_attention_dim
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=kv_dim, dropout=dropout)
        self.final_dropout = nn.Dropout(dropout) if final_dropout else None
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)
        self.ff = FeedForward(dim, dropout, final_dropout)

    def forward(
        self,
        x: torch.Tensor,
        temb: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm1(x, temb)
        if self.kind == SELF:
            attn = self.attn1(h)
        else:
            if kv is None:
                raise ValueError(f"{self.kind} block needs cross-attention keys/values")
            attn = self.attn1(h, kv=kv, key_mask=key_mask)
        if self.final_dropout is not None:
            attn = self.final_dropout(attn)
        x = x + attn
        return x + self.ff(self.norm3(x))


@dataclass
class CrossAttentionCache:
    """Per-block cross-attention keys/values and key masks (None entries for self-attention blocks)."""

    kv: list[tuple[torch.Tensor, torch.Tensor] | None]
    key_masks: list[torch.Tensor | None]


class DiT(nn.Module):
    """Plain DiT: even blocks cross-attend to every real backbone token, odd blocks self-attend.

    With `interleave_self_attention=False` every block cross-attends.
    """

    def __init__(
        self,
        num_layers: int,
        num_attention_heads: int,
        attention_head_dim: int,
        output_dim: int,
        cross_attention_dim: int,
        dropout: float = 0.0,
        final_dropout: bool = True,
        interleave_self_attention: bool = True,
        timestep_channels: int = 256,
        attend_text_every_n_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.inner_dim = num_attention_heads * attention_head_dim
        self.interleave_self_attention = interleave_self_attention
        self.attend_text_every_n_blocks = attend_text_every_n_blocks
        self.timestep_encoder = TimestepEncoder(self.inner_dim, timestep_channels)
        self.transformer_blocks = nn.ModuleList(
            [
                TransformerBlock(
                    self.inner_dim,
                    num_attention_heads,
                    attention_head_dim,
                    kind,
                    cross_attention_dim,
                    dropout,
                    final_dropout,
                )
                for kind in self.block_kinds(num_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(self.inner_dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(self.inner_dim, 2 * self.inner_dim)
        self.proj_out_2 = nn.Linear(self.inner_dim, output_dim)

    def block_kinds(self, num_layers: int) -> list[str]:
        """What block i attends to (SELF / CROSS_ALL / CROSS_TEXT / CROSS_IMAGE)."""
        if not self.interleave_self_attention:
            return [CROSS_ALL] * num_layers
        return [CROSS_ALL if i % 2 == 0 else SELF for i in range(num_layers)]

    @staticmethod
    def key_mask_for(
        kind: str, encoder_attention_mask: torch.Tensor, image_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Boolean key mask `[B, S]` of a cross block of `kind`."""
        valid = encoder_attention_mask.to(torch.bool)
        if kind == CROSS_ALL:
            return valid
        if image_mask is None:
            raise ValueError(f"{kind} blocks need image_mask [B, S]")
        image = image_mask.to(torch.bool)
        if kind == CROSS_TEXT:
            return valid & ~image
        if kind == CROSS_IMAGE:
            return valid & image
        raise ValueError(f"no key mask for block kind {kind!r}")

    def precompute_cross_kv(
        self,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> CrossAttentionCache:
        """Project the backbone tokens `[B, S, cross_dim]` to every cross block's keys/values once."""
        b, s, _ = encoder_hidden_states.shape
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(b, s, dtype=torch.bool, device=encoder_hidden_states.device)
        for name, m in (("encoder_attention_mask", encoder_attention_mask), ("image_mask", image_mask)):
            if m is not None and m.shape != (b, s):
                raise ValueError(f"{name} must have shape [B, S]=[{b}, {s}], got {tuple(m.shape)}")
        kv: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        masks: list[torch.Tensor | None] = []
        mask_by_kind: dict[str, torch.Tensor] = {}
        for block in self.transformer_blocks:
            if block.kind == SELF:
                kv.append(None)
                masks.append(None)
                continue
            if block.kind not in mask_by_kind:
                mask_by_kind[block.kind] = self.key_mask_for(block.kind, encoder_attention_mask, image_mask)
            kv.append(block.attn1.project_kv(encoder_hidden_states))
            masks.append(mask_by_kind[block.kind])
        return CrossAttentionCache(kv=kv, key_masks=masks)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        cross_cache: CrossAttentionCache | None = None,
    ) -> torch.Tensor:
        """`hidden_states [B, T, inner]`, `timestep long [B]` → `[B, T, output_dim]`.

        Give either the backbone tokens (`encoder_hidden_states` + masks) or a `cross_cache` from
        `precompute_cross_kv`.
        """
        if cross_cache is None:
            if encoder_hidden_states is None:
                raise ValueError("DiT.forward needs encoder_hidden_states or cross_cache")
            cross_cache = self.precompute_cross_kv(encoder_hidden_states, encoder_attention_mask, image_mask)
        temb = self.timestep_encoder(timestep)
        x = hidden_states
        for block, kv, key_mask in zip(self.transformer_blocks, cross_cache.kv, cross_cache.key_masks):
            x = block(x, temb, kv=kv, key_mask=key_mask)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        x = self.norm_out(x) * (1 + scale[:, None]) + shift[:, None]
        return self.proj_out_2(x)


class AlternateVLDiT(DiT):
    """N1.6 trunk: odd blocks self-attend; even block i cross-attends to non-image tokens when
    `i % (2·attend_text_every_n_blocks) == 0`, else to image tokens."""

    def block_kinds(self, num_layers: int) -> list[str]:
        if not self.interleave_self_attention:
            raise ValueError("AlternateVLDiT requires interleave_self_attention=True")
        period = 2 * self.attend_text_every_n_blocks
        kinds = []
        for i in range(num_layers):
            if i % 2 == 1:
                kinds.append(SELF)
            elif i % period == 0:
                kinds.append(CROSS_TEXT)
            else:
                kinds.append(CROSS_IMAGE)
        return kinds


def build_dit(config: Gr00tN16Config) -> DiT:
    """The trunk named by `config.use_alternate_vl_dit`, sized from the config."""
    if config.dit_norm_type != "ada_norm":
        raise ValueError(f"dit_norm_type={config.dit_norm_type!r}: only 'ada_norm' is supported")
    if config.attend_text_every_n_blocks < 1:
        raise ValueError(f"attend_text_every_n_blocks={config.attend_text_every_n_blocks}: expected >= 1")
    cls = AlternateVLDiT if config.use_alternate_vl_dit else DiT
    return cls(
        num_layers=config.dit_num_layers,
        num_attention_heads=config.dit_num_attention_heads,
        attention_head_dim=config.dit_attention_head_dim,
        output_dim=config.dit_output_dim,
        cross_attention_dim=config.backbone_embedding_dim,
        dropout=config.dit_dropout,
        final_dropout=config.dit_final_dropout,
        interleave_self_attention=config.interleave_self_attention,
        timestep_channels=config.timestep_embedding_channels,
        attend_text_every_n_blocks=config.attend_text_every_n_blocks,
    )
