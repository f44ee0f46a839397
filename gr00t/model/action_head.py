"""Flow-matching action head of GR00T N1.6 (SPEC-N16 §1.2–1.4).

Convention: `x_t = (1 − t)·ε + t·a`, target velocity `v = a − ε`; t = 0 is noise, t = 1 the action.
The head is built from a `Gr00tN16Config` alone and consumes the backbone's output tensors, so it can
be trained and tested without a backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gr00t.model.config import Gr00tN16Config
from gr00t.model.dit import CrossAttentionCache, build_dit
from gr00t.model.embodiment_layers import CategorySpecificMLP, MultiEmbodimentActionEncoder
from gr00t.model.rtc import RealTimeChunking, prefix_mask, sample_delays


@dataclass
class HeadContext:
    """Everything the velocity field needs that does not change across denoising steps."""

    state_features: torch.Tensor  # [B, T_state, input_embedding_dim]
    cross_cache: CrossAttentionCache
    embodiment_id: torch.Tensor  # long [B]


class FlowMatchingActionHead(nn.Module):
    """State/action encoders, the (Alternate-VL) DiT and the action decoder, with the flow loss and
    Euler sampling. State-dict keys match the released checkpoint's `action_head.*`."""

    def __init__(self, config: Gr00tN16Config) -> None:
        super().__init__()
        self.config = config
        self.action_horizon = config.action_horizon
        self.max_action_dim = config.max_action_dim
        self.max_state_dim = config.max_state_dim
        self.input_embedding_dim = config.input_embedding_dim
        self.num_timestep_buckets = config.num_timestep_buckets
        self.model = build_dit(config)
        e = config.max_num_embodiments
        self.state_encoder = CategorySpecificMLP(
            e, config.max_state_dim, config.hidden_size, config.input_embedding_dim
        )
        self.action_encoder = MultiEmbodimentActionEncoder(
            config.max_action_dim, config.input_embedding_dim, e
        )
        self.action_decoder = CategorySpecificMLP(
            e, config.dit_output_dim, config.hidden_size, config.max_action_dim
        )
        self.vlln = nn.LayerNorm(config.backbone_embedding_dim) if config.use_vlln else nn.Identity()
        if config.add_pos_embed:
            self.position_embedding = nn.Embedding(config.max_seq_len, config.input_embedding_dim)
            nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)
        else:
            self.position_embedding = None
        if config.state_dropout_prob > 0:
            self.mask_token = nn.Parameter(0.02 * torch.randn(1, 1, config.input_embedding_dim))
        else:
            self.mask_token = None

    # ------------------------------------------------------------------ helpers
    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the head's parameters (the compute dtype of its layers)."""
        return self.state_encoder.layer1.W.dtype

    def projector_modules(self) -> list[nn.Module]:
        """Modules covered by `tune_projector` (the mask token is a bare parameter, see `projector_parameters`)."""
        mods: list[nn.Module] = [self.state_encoder, self.action_encoder, self.action_decoder]
        if self.position_embedding is not None:
            mods.append(self.position_embedding)
        return mods

    def projector_parameters(self) -> list[nn.Parameter]:
        """Parameters covered by `tune_projector`."""
        params = [p for m in self.projector_modules() for p in m.parameters()]
        if self.mask_token is not None:
            params.append(self.mask_token)
        return params

    def _check_inputs(
        self,
        backbone_features: torch.Tensor,
        backbone_attention_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
    ) -> None:
        cfg = self.config
        if backbone_features.dim() != 3 or backbone_features.shape[-1] != cfg.backbone_embedding_dim:
            raise ValueError(
                f"backbone_features: expected [B, S, {cfg.backbone_embedding_dim}], got {tuple(backbone_features.shape)}"
            )
        b, s, _ = backbone_features.shape
        for name, m in (("backbone_attention_mask", backbone_attention_mask), ("image_mask", image_mask)):
            if m is not None and tuple(m.shape) != (b, s):
                raise ValueError(f"{name}: expected [B, S]=[{b}, {s}], got {tuple(m.shape)}")
        if state.dim() != 3 or state.shape[0] != b or state.shape[-1] != self.max_state_dim:
            raise ValueError(
                f"state: expected [B={b}, T_state, max_state_dim={self.max_state_dim}], got {tuple(state.shape)}"
            )
        if tuple(embodiment_id.shape) != (b,):
            raise ValueError(f"embodiment_id: expected long [B]=[{b}], got {tuple(embodiment_id.shape)}")
        if embodiment_id.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool):
            raise ValueError(f"embodiment_id: expected an integer tensor, got {embodiment_id.dtype}")

    def _check_actions(self, name: str, x: torch.Tensor, batch: int) -> None:
        expected = (batch, self.action_horizon, self.max_action_dim)
        if tuple(x.shape) != expected:
            raise ValueError(
                f"{name}: expected [B, action_horizon, max_action_dim]={list(expected)}, got {tuple(x.shape)}"
            )

    def encode_state(
        self, state: torch.Tensor, embodiment_id: torch.Tensor, train_augment: bool = False
    ) -> torch.Tensor:
        """State tokens `[B, T_state, input_embedding_dim]`.

        With `train_augment` (training forward only): per-sample state dropout to `mask_token` with
        probability `state_dropout_prob`, then additive Gaussian noise of scale `state_additive_noise_scale`.
        """
        features = self.state_encoder(state.to(self.dtype), embodiment_id)
        if train_augment and self.mask_token is not None:
            drop = torch.rand(features.shape[0], device=features.device) < self.config.state_dropout_prob
            features = torch.where(drop[:, None, None], self.mask_token.to(features.dtype), features)
        if train_augment and self.config.state_additive_noise_scale > 0:
            features = features + torch.randn_like(features) * self.config.state_additive_noise_scale
        return features

    def prepare_context(
        self,
        backbone_features: torch.Tensor,
        backbone_attention_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        train_augment: bool = False,
    ) -> HeadContext:
        """vlln + cross-attention keys/values + state tokens: the step-independent part of the head."""
        self._check_inputs(backbone_features, backbone_attention_mask, image_mask, state, embodiment_id)
        vl = self.vlln(backbone_features.to(self.dtype))
        cache = self.model.precompute_cross_kv(vl, backbone_attention_mask, image_mask)
        state_features = self.encode_state(state, embodiment_id, train_augment=train_augment)
        return HeadContext(state_features=state_features, cross_cache=cache, embodiment_id=embodiment_id)

    def timestep_buckets(self, t: torch.Tensor) -> torch.Tensor:
        """Discretised flow time `τ = (t·num_timestep_buckets).long()`, computed in float32."""
        return (t.to(torch.float32) * self.num_timestep_buckets).long()

    def velocity(
        self,
        ctx: HeadContext,
        x: torch.Tensor,
        timestep: torch.Tensor,
        action_timestep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted velocity `[B, H, A]` (head dtype) at noisy actions `x [B, H, A]`, `timestep long [B]`
        (the DiT's AdaLN). `action_timestep long [B, H]` gives the action encoder one bucket per step
        (RTC: the executed prefix at t = 1); by default every step gets `timestep`."""
        per_step = timestep if action_timestep is None else action_timestep
        action_features = self.action_encoder(x.to(self.dtype), per_step, ctx.embodiment_id)
        horizon = action_features.shape[1]
        if self.position_embedding is not None:
            positions = torch.arange(horizon, device=action_features.device)
            action_features = action_features + self.position_embedding(positions).unsqueeze(0)
        tokens = torch.cat([ctx.state_features, action_features], dim=1)
        out = self.model(tokens, timestep, cross_cache=ctx.cross_cache)
        # Decode every token, then keep the action ones (as the reference; state outputs are unused).
        return self.action_decoder(out, ctx.embodiment_id)[:, -horizon:]

    def sample_time(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """Training flow time `t = (1 − s)·noise_s`, `s ~ Beta(α, β)`; float32 `[B]`."""
        cfg = self.config
        beta = torch.distributions.Beta(
            torch.tensor(cfg.noise_beta_alpha, dtype=torch.float32, device=device),
            torch.tensor(cfg.noise_beta_beta, dtype=torch.float32, device=device),
        )
        s = beta.sample((batch_size,))
        return (1.0 - s) * cfg.noise_s

    # ------------------------------------------------------------------ training
    def forward(
        self,
        backbone_features: torch.Tensor,
        backbone_attention_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        state: torch.Tensor,
        action: torch.Tensor,
        embodiment_id: torch.Tensor,
        action_mask: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        rtc_delay: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Flow-matching loss `Σ((pred − v)²·mask) / (Σmask + 1e-6)`.

        `noise [B, H, A]` and `t [B]` are drawn (N(0, I), Beta time) when not given. Training-time
        RTC (`rtc_delay long [B]`, drawn from U{0 … rtc_training_max_delay} when that is > 0 and no
        delay is given): the first d steps of a sample's chunk are its executed prefix, given as clean
        actions at t = 1 (`gr00t.model.rtc`) and left out of the loss (mask 0); the other steps are
        the usual flow-matching path. With d = 0 everywhere the loss is the plain one, bit for bit.
        Returns `loss`, `pred_velocity`, `target_velocity`, `t`, `timestep`, `rtc_delay` (None
        without RTC).
        """
        b = backbone_features.shape[0]
        self._check_actions("action", action, b)
        if action_mask is None:
            action_mask = torch.ones_like(action, dtype=torch.float32)
        self._check_actions("action_mask", action_mask, b)
        action = action.to(torch.float32)
        if noise is None:
            noise = torch.randn_like(action)
        self._check_actions("noise", noise, b)
        if t is None:
            t = self.sample_time(b, action.device)
        if tuple(t.shape) != (b,):
            raise ValueError(f"t: expected [B]=[{b}], got {tuple(t.shape)}")
        t = t.to(device=action.device, dtype=torch.float32)
        noise = noise.to(torch.float32)
        ctx = self.prepare_context(
            backbone_features,
            backbone_attention_mask,
            image_mask,
            state,
            embodiment_id,
            train_augment=self.training,
        )
        tt = t[:, None, None]
        x_t = (1.0 - tt) * noise + tt * action
        target = action - noise
        timestep = self.timestep_buckets(t)
        mask = action_mask.to(torch.float32)
        action_timestep = None
        # Drawn after the flow draw and the state augmentation, so those stay what they are without RTC.
        rtc_delay = self._training_delays(rtc_delay, b, action.device)
        if rtc_delay is not None:
            prefix = prefix_mask(rtc_delay, self.action_horizon)
            x_t = torch.where(prefix[:, :, None], action, x_t)
            action_timestep = torch.where(prefix, self.num_timestep_buckets, timestep[:, None])
            mask = mask * (~prefix)[:, :, None].to(mask.dtype)
        pred = self.velocity(ctx, x_t, timestep, action_timestep).to(torch.float32)
        loss = ((pred - target) ** 2 * mask).sum() / (mask.sum() + 1e-6)
        return {
            "loss": loss,
            "pred_velocity": pred,
            "target_velocity": target,
            "t": t,
            "timestep": timestep,
            "rtc_delay": rtc_delay,
        }

    def _training_delays(
        self, rtc_delay: torch.Tensor | None, batch: int, device: torch.device
    ) -> torch.Tensor | None:
        """The executed-prefix length per sample: the given one (checked), a draw when
        `rtc_training_max_delay > 0`, else None (no RTC)."""
        if rtc_delay is None:
            k = int(self.config.rtc_training_max_delay)
            return sample_delays(batch, k, device) if k > 0 else None
        if tuple(rtc_delay.shape) != (batch,) or rtc_delay.dtype.is_floating_point:
            raise ValueError(f"rtc_delay: expected an integer tensor [B]=[{batch}], got {rtc_delay!r:.80}")
        if not torch.compiler.is_compiling() and rtc_delay.device.type == "cpu":
            lo, hi = int(rtc_delay.min()), int(rtc_delay.max())
            if lo < 0 or hi >= self.action_horizon:
                raise ValueError(
                    f"rtc_delay: expected values in 0..{self.action_horizon - 1}, got {lo}..{hi}"
                )
        return rtc_delay.to(device=device, dtype=torch.long)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def get_action(
        self,
        backbone_features: torch.Tensor,
        backbone_attention_mask: torch.Tensor | None,
        image_mask: torch.Tensor | None,
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: RealTimeChunking | Mapping[str, Any] | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """`prepare_context` then `sample`: an action chunk from the backbone's output."""
        ctx = self.prepare_context(
            backbone_features, backbone_attention_mask, image_mask, state, embodiment_id
        )
        return self.sample(ctx, noise=noise, generator=generator, rtc=rtc, num_steps=num_steps)

    @torch.no_grad()
    def sample(
        self,
        ctx: HeadContext,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        rtc: RealTimeChunking | Mapping[str, Any] | None = None,
        num_steps: int | None = None,
    ) -> torch.Tensor:
        """Euler integration from noise to an action chunk, float32 `[B, H, max_action_dim]`.

        For k = 0…N−1: `t = k/N`, `τ = int(t·buckets)`, `x ← x + (1/N)·v(x, τ)`; N = `num_steps` or
        the config's `num_inference_timesteps`. The context (backbone keys/values, state tokens) is
        computed once by `prepare_context`. `noise` (or `generator`) fixes the start. Dropout
        follows the module's mode: call `.eval()` for deterministic sampling. `rtc` continues a
        previous chunk, in guidance or prefix mode (`gr00t.model.rtc`).
        """
        n = self.config.num_inference_timesteps if num_steps is None else int(num_steps)
        if n < 1:
            raise ValueError(f"num_steps={n}: expected >= 1")
        b = ctx.state_features.shape[0]
        device = ctx.state_features.device
        if noise is None:
            shape = (b, self.action_horizon, self.max_action_dim)
            noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
        self._check_actions("noise", noise, b)
        guide = prefix = None
        if rtc is not None:
            rtc = RealTimeChunking.from_any(rtc)
            prev = self._rtc_previous(rtc, b, device)
            if rtc.resolved_mode(self.config.rtc_training_max_delay) == "prefix":
                rtc.check_prefix(self.action_horizon, self.config.rtc_training_max_delay)
                steps = torch.full((b,), rtc.frozen_steps, dtype=torch.long, device=device)
                prefix = (prev, prefix_mask(steps, self.action_horizon))
            else:
                guide = (prev, rtc.weights(self.action_horizon, device)[None, :, None])
        x = noise.to(device=device, dtype=torch.float32)
        dt = 1.0 / n
        for k in range(n):
            t = k / n
            timestep = torch.full((b,), int(t * self.num_timestep_buckets), dtype=torch.long, device=device)
            action_timestep = None
            if prefix is not None:
                prev, given = prefix
                x = torch.where(given[:, :, None], prev, x)
                action_timestep = torch.where(given, self.num_timestep_buckets, timestep[:, None])
            v = self.velocity(ctx, x, timestep, action_timestep).to(torch.float32)
            if guide is not None:
                prev, w = guide
                v = (1.0 - w) * v + w * (prev - x) / (1.0 - t)
            x = x + dt * v
        if prefix is not None:
            x = torch.where(prefix[1][:, :, None], prefix[0], x)
        return x

    def _rtc_previous(self, rtc: RealTimeChunking, b: int, device: torch.device) -> torch.Tensor:
        """The previous chunk, checked and zero-padded to the horizon `[B, H, A]`."""
        prev = rtc.prev_actions.to(device=device, dtype=torch.float32)
        if (
            prev.dim() != 3
            or prev.shape[0] != b
            or prev.shape[1] > self.action_horizon
            or prev.shape[2] != self.max_action_dim
        ):
            raise ValueError(
                f"rtc prev_actions: expected [B={b}, <= {self.action_horizon}, {self.max_action_dim}], "
                f"got {tuple(prev.shape)}"
            )
        padded = torch.zeros(b, self.action_horizon, self.max_action_dim, device=device)
        padded[:, : prev.shape[1]] = prev
        return padded


__all__ = ["FlowMatchingActionHead", "HeadContext", "RealTimeChunking"]
