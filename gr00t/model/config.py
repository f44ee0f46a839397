"""Configuration of the GR00T N1.6 policy network (SPEC-N16 §1.1).

One flat `PretrainedConfig` holds every width and switch of the backbone and the action head, so
that Hydra presets (`gr00t/configs/model/*.yaml`) and command-line overrides address each field by name.
The backbone's own sub-models are described by plain dicts (`vision_config`, `text_config`,
`qwen3_vl_config`) that are passed to transformers' stock config classes.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

BACKBONE_TYPES = ("eagle", "qwen3_vl")

# Released Eagle-Block2A-2B-v2 sub-model shapes (SPEC §1.5). Used when a preset names no override.
RELEASE_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "num_channels": 3,
    "patch_size": 14,
    "num_patches": 256,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "attention_dropout": 0.0,
    "vision_use_head": False,
}

RELEASE_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 151680,
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "attention_bias": False,
    "tie_word_embeddings": True,
}


class Gr00tN16Config(PretrainedConfig):
    """All hyper-parameters of GR00T N1.6. Defaults are the reference code defaults (SPEC §1.1)."""

    model_type = "gr00t_n1_6"

    def __init__(
        self,
        # ---- backbone -------------------------------------------------------------------------
        backbone_type: str = "eagle",
        backbone_embedding_dim: int = 2048,
        select_layer: int = 16,
        vision_config: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
        qwen3_vl_config: dict[str, Any] | None = None,
        mlp1_layer_norm_eps: float = 1e-5,
        downsample_factor: int = 2,
        image_token_id: int = 151669,
        img_start_token_id: int = 151670,
        img_end_token_id: int = 151671,
        backbone_attn_implementation: str = "auto",
        # ---- partial unfreezing (SPEC §1.5) ---------------------------------------------------
        tune_llm: bool = False,
        tune_visual: bool = False,
        tune_top_llm_layers: int = 4,
        tune_projector: bool = True,
        tune_diffusion_model: bool = True,
        tune_vlln: bool = True,
        backbone_trainable_params_fp32: bool = True,
        model_dtype: str = "bfloat16",
        # ---- action head ----------------------------------------------------------------------
        hidden_size: int = 1024,
        input_embedding_dim: int = 1536,
        max_seq_len: int = 1024,
        max_num_embodiments: int = 32,
        max_state_dim: int = 29,
        max_action_dim: int = 29,
        action_horizon: int = 16,
        state_horizon: int = 1,
        # ---- DiT trunk ------------------------------------------------------------------------
        use_alternate_vl_dit: bool = True,
        dit_num_layers: int = 32,
        dit_num_attention_heads: int = 32,
        dit_attention_head_dim: int = 48,
        dit_output_dim: int = 1024,
        dit_dropout: float = 0.2,
        dit_final_dropout: bool = True,
        dit_norm_type: str = "ada_norm",
        interleave_self_attention: bool = True,
        attend_text_every_n_blocks: int = 2,
        timestep_embedding_channels: int = 256,
        use_vlln: bool = True,
        add_pos_embed: bool = True,
        # ---- flow matching --------------------------------------------------------------------
        num_inference_timesteps: int = 4,
        noise_beta_alpha: float = 1.5,
        noise_beta_beta: float = 1.0,
        noise_s: float = 0.999,
        num_timestep_buckets: int = 1000,
        state_dropout_prob: float = 0.0,
        state_additive_noise_scale: float = 0.0,
        use_relative_action: bool = False,
        apply_sincos_state_encoding: bool = False,
        # ---- training-time real-time chunking (gr00t.model.rtc) -------------------------------
        rtc_training_max_delay: int = 0,
        **kwargs: Any,
    ) -> None:
        self.backbone_type = backbone_type
        self.backbone_embedding_dim = backbone_embedding_dim
        self.select_layer = select_layer
        self.vision_config = dict(RELEASE_VISION_CONFIG if vision_config is None else vision_config)
        self.text_config = dict(RELEASE_TEXT_CONFIG if text_config is None else text_config)
        self.qwen3_vl_config = None if qwen3_vl_config is None else dict(qwen3_vl_config)
        self.mlp1_layer_norm_eps = mlp1_layer_norm_eps
        self.downsample_factor = downsample_factor
        self.image_token_id = image_token_id
        self.img_start_token_id = img_start_token_id
        self.img_end_token_id = img_end_token_id
        self.backbone_attn_implementation = backbone_attn_implementation

        self.tune_llm = tune_llm
        self.tune_visual = tune_visual
        self.tune_top_llm_layers = tune_top_llm_layers
        self.tune_projector = tune_projector
        self.tune_diffusion_model = tune_diffusion_model
        self.tune_vlln = tune_vlln
        self.backbone_trainable_params_fp32 = backbone_trainable_params_fp32
        self.model_dtype = model_dtype

        self.hidden_size = hidden_size
        self.input_embedding_dim = input_embedding_dim
        self.max_seq_len = max_seq_len
        self.max_num_embodiments = max_num_embodiments
        self.max_state_dim = max_state_dim
        self.max_action_dim = max_action_dim
        self.action_horizon = action_horizon
        self.state_horizon = state_horizon

        self.use_alternate_vl_dit = use_alternate_vl_dit
        self.dit_num_layers = dit_num_layers
        self.dit_num_attention_heads = dit_num_attention_heads
        self.dit_attention_head_dim = dit_attention_head_dim
        self.dit_output_dim = dit_output_dim
        self.dit_dropout = dit_dropout
        self.dit_final_dropout = dit_final_dropout
        self.dit_norm_type = dit_norm_type
        self.interleave_self_attention = interleave_self_attention
        self.attend_text_every_n_blocks = attend_text_every_n_blocks
        self.timestep_embedding_channels = timestep_embedding_channels
        self.use_vlln = use_vlln
        self.add_pos_embed = add_pos_embed

        self.num_inference_timesteps = num_inference_timesteps
        self.noise_beta_alpha = noise_beta_alpha
        self.noise_beta_beta = noise_beta_beta
        self.noise_s = noise_s
        self.num_timestep_buckets = num_timestep_buckets
        self.state_dropout_prob = state_dropout_prob
        self.state_additive_noise_scale = state_additive_noise_scale
        self.use_relative_action = use_relative_action
        self.apply_sincos_state_encoding = apply_sincos_state_encoding
        self.rtc_training_max_delay = rtc_training_max_delay
        super().__init__(**kwargs)
        self.validate()

    @property
    def dit_inner_dim(self) -> int:
        """Width of the DiT's attention and token stream (heads × head dim)."""
        return self.dit_num_attention_heads * self.dit_attention_head_dim

    def validate(self) -> None:
        """Reject inconsistent combinations with a message naming the offending fields."""
        if self.backbone_type not in BACKBONE_TYPES:
            raise ValueError(f"backbone_type={self.backbone_type!r}: expected one of {BACKBONE_TYPES}")
        if self.dit_inner_dim != self.input_embedding_dim:
            raise ValueError(
                "dit_num_attention_heads * dit_attention_head_dim "
                f"({self.dit_num_attention_heads} * {self.dit_attention_head_dim} = {self.dit_inner_dim}) "
                f"must equal input_embedding_dim ({self.input_embedding_dim})"
            )
        if self.action_horizon > self.max_seq_len:
            raise ValueError(
                f"action_horizon={self.action_horizon} exceeds max_seq_len={self.max_seq_len} "
                "(the learned action position table)"
            )
        if not 1 <= self.max_num_embodiments:
            raise ValueError(f"max_num_embodiments={self.max_num_embodiments}: expected >= 1")
        if self.select_layer < 1:
            raise ValueError(f"select_layer={self.select_layer}: expected >= 1")
        if self.tune_top_llm_layers < 0 or self.tune_top_llm_layers > self.select_layer:
            raise ValueError(
                f"tune_top_llm_layers={self.tune_top_llm_layers}: expected 0..select_layer ({self.select_layer})"
            )
        if not 0.0 <= self.state_dropout_prob <= 1.0:
            raise ValueError(
                f"state_dropout_prob={self.state_dropout_prob}: expected a probability in [0, 1]"
            )
        if self.num_inference_timesteps < 1:
            raise ValueError(f"num_inference_timesteps={self.num_inference_timesteps}: expected >= 1")
        k = self.rtc_training_max_delay
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.action_horizon:
            raise ValueError(
                f"rtc_training_max_delay={k!r}: expected an integer 0..action_horizon-1 "
                f"({self.action_horizon - 1}); 0 turns training-time RTC off"
            )
        if self.model_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"model_dtype={self.model_dtype!r}: expected bfloat16, float16 or float32")
