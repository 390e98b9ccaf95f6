"""Mixture-of-experts families with their own attention, as specs of the one DecoderBackbone:
GPT-OSS (attention sinks, alternating sliding window, stacked experts with biases and a clamped
SwiGLU, biased router, yarn rope) and DeepSeek-V2 / V3 (multi-head latent attention with a
compressed-latent KV cache, group-limited routing -- softmax scores in V2, sigmoid scores with a
correction bias in V3 --, shared experts, dense first layers)."""

import math
from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import rope_to_hf, value
from keras_models.models.decoder.llama import NAMES, LlamaSpec, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


# --- GPT-OSS ---------------------------------------------------------------------------------------
GPT_OSS_DEFAULT_ROPE = {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                        "truncate": False, "original_max_position_embeddings": 4096}


@dataclass(frozen=True, kw_only=True)
class GptOssSpec(LlamaSpec):
    """GPT-OSS: a learned sink logit per head in every softmax, sliding / full layers alternating
    (or as ``layer_types`` says), experts stored as stacked tensors (gate / up columns interleaved)
    with biases and GPT-OSS's clamped SwiGLU (``swiglu_alpha``, ``swiglu_limit``), a router with a
    bias whose top-k logits are softmaxed, yarn rope by default."""

    rope_theta_default: ClassVar[float] = 150000.0
    # the released checkpoints store MXFP4 expert blocks/scales: dequantized (bf16/fp32) weights only
    unsupported: ClassVar[dict] = {"quantization_config": (None,)}

    vocab_size: int = dim("vocab_size", 201088)
    hidden_size: int = dim("hidden_size", 2880)
    intermediate_size: int = dim("intermediate_size", 2880)
    num_layers: int = dim("num_hidden_layers", 36)
    num_heads: int = dim("num_attention_heads", 64)
    num_kv_heads: int | None = hf("num_key_value_heads", 8)
    head_dim: int | None = hf("head_dim", 64)
    max_position_embeddings: int = dim("max_position_embeddings", 131072)
    norm_eps: float = hf("rms_norm_eps", 1e-5)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", None)
    qkv_bias: bool = hf("attention_bias", True)
    out_bias: bool = hf("attention_bias", True)
    mlp_bias: bool = const(True, doc="expert biases")
    sliding_window: int | None = hf("sliding_window", 128)
    layer_types: tuple | None = hf("layer_types", None, doc="None: sliding, full, sliding, ...")
    attention_sinks: bool = const(True)
    num_experts: int = dim(("num_local_experts", "num_experts"), 128)
    experts_per_token: int = dim("num_experts_per_tok", 4)
    normalize_top_k: bool = const(True)
    router_bias: bool = const(True)
    moe_stacked_experts: bool = const(True)
    expert_glu: str | None = const("clamped_swiglu")
    glu_alpha: float = hf("swiglu_alpha", 1.702)
    glu_limit: float = hf("swiglu_limit", 7.0)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        if not config.get("rope_parameters") and not config.get("rope_scaling"):
            config = {**config, "rope_parameters": {**GPT_OSS_DEFAULT_ROPE,
                                                    "rope_theta": config.get("rope_theta") or cls.rope_theta_default}}
        values = super().adjust_from_hf(config, values, source)
        if values.get("layer_types") is None:
            values["layer_types"] = tuple("sliding_attention" if (i + 1) % 2 else "full_attention"
                                          for i in range(value(cls, values, "num_layers")))
        return values


# --- DeepSeek-V2 / V3 ------------------------------------------------------------------------------
def _yarn_mscale(scale, mscale):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


@dataclass(frozen=True, kw_only=True)
class DeepseekV2Spec(LlamaSpec):
    """DeepSeek-V2: multi-head latent attention (``q_lora_rank`` null: one query projection),
    interleaved rope on the rope part of each head, attention scale (qk_nope + qk_rope)^-0.5 times
    yarn's mscale(mscale_all_dim)^2; MoE from layer ``first_k_dense_replace`` on: softmax
    scores, top-k (``topk_method`` "greedy") or group-limited top-k ("group_limited_greedy":
    ``n_group`` groups scored by their best expert, ``topk_group`` of them kept), weights x
    ``routed_scaling_factor`` (not renormalised), plus ``n_shared_experts`` always-on experts."""

    unsupported: ClassVar[dict] = {"topk_method": ("greedy", "group_limited_greedy", None),
                                   "mlp_bias": (False, None)}
    shared_experts_default: ClassVar[int] = 2
    groups_from_topk_method: ClassVar[bool] = True

    vocab_size: int = dim("vocab_size", 102400)
    hidden_size: int = dim("hidden_size", 4096)
    intermediate_size: int = dim("intermediate_size", 11008)
    num_layers: int = dim("num_hidden_layers", 32)
    num_heads: int = dim("num_attention_heads", 32)
    num_kv_heads: int | None = const(None, doc="latent attention: one latent per token")
    head_dim: int | None = const(None, doc="latent attention: qk_*_head_dim / v_head_dim")
    mlp_bias: bool = const(False)
    attention_type: str = const("latent")
    q_lora_rank: int | None = hf("q_lora_rank", 1536)
    kv_lora_rank: int = dim("kv_lora_rank", 512)
    qk_nope_head_dim: int = dim("qk_nope_head_dim", 128)
    qk_rope_head_dim: int = dim("qk_rope_head_dim", 64)
    v_head_dim: int = dim("v_head_dim", 128)
    rotary_interleaved: bool = const(True)
    attn_scale: float | None = const(None, doc="(qk_nope + qk_rope)^-0.5 x yarn mscale(mscale_all_dim)^2")
    num_experts: int = dim("n_routed_experts", 64)
    experts_per_token: int = dim("num_experts_per_tok", 6)
    moe_intermediate_size: int = dim("moe_intermediate_size", 1407)
    shared_expert_size: int | None = const(None, doc="moe_intermediate_size * n_shared_experts")
    moe_layers: tuple | None = const(None, doc="from first_k_dense_replace")
    normalize_top_k: bool = const(False)
    routed_scaling: float | None = hf("routed_scaling_factor", 1.0)
    router_groups: int | None = const(None, doc="n_group, with topk_method group_limited_greedy")
    router_topk_groups: int | None = hf("topk_group", None)
    router_group_score: str = const("max")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        n = value(cls, values, "num_layers")
        values["moe_layers"] = tuple(range(min(config.get("first_k_dense_replace") or 0, n), n))
        shared = config.get("n_shared_experts", cls.shared_experts_default)
        values["shared_expert_size"] = value(cls, values, "moe_intermediate_size") * shared if shared else None
        rope = value(cls, values, "qk_rope_head_dim")
        values["rotary_dim"] = rope
        scale = (value(cls, values, "qk_nope_head_dim") + rope) ** -0.5
        scaling = values.get("rope_scaling") or {}
        if scaling.get("mscale_all_dim"):
            scale *= _yarn_mscale(scaling["factor"], scaling["mscale_all_dim"]) ** 2
        values["attn_scale"] = scale
        if cls.groups_from_topk_method:
            grouped = config.get("topk_method") == "group_limited_greedy"
            values["router_groups"] = config.get("n_group") if grouped else None
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        out.update(rope_to_hf(self.rope_theta, self.rope_scaling))
        out["head_dim"] = self.qk_rope_head_dim
        out["num_key_value_heads"] = self.num_heads
        moe = self.moe_layers if self.moe_layers is not None else range(self.num_layers)
        out["first_k_dense_replace"] = min(moe) if len(moe) else self.num_layers
        out["n_shared_experts"] = (self.shared_expert_size or 0) // self.moe_intermediate_size
        if self.groups_from_topk_method:
            out["topk_method"] = "group_limited_greedy" if self.router_groups else "greedy"
            out["n_group"] = self.router_groups or 1
            out["topk_group"] = self.router_topk_groups or 1
        return out

    def validate(self, source="config.json"):
        from keras_models.errors import ConfigError

        moe = self.moe_layers if self.moe_layers is not None else tuple(range(self.num_layers))
        if tuple(moe) != tuple(range(self.num_layers - len(moe), self.num_layers)):
            raise ConfigError(f"{source}: DeepSeek MoE layers must be the last ones (first_k_dense_replace)")
        if self.router_groups and self.num_experts % self.router_groups:
            raise ConfigError(f"{source}: n_routed_experts={self.num_experts} is not divisible by "
                              f"n_group={self.router_groups}")
        if self.router_groups and self.router_group_score == "top2_sum" and self.num_experts // self.router_groups < 2:
            raise ConfigError(f"{source}: n_group={self.router_groups} leaves fewer than 2 experts per group "
                              f"(n_routed_experts={self.num_experts}); groups are scored by their best two")


@dataclass(frozen=True, kw_only=True)
class DeepseekV3Spec(DeepseekV2Spec):
    """DeepSeek-V3: V2's latent attention (rope pairs interleaved unless ``rope_interleave`` is
    false); sigmoid expert scores, chosen with ``e_score_correction_bias`` added, within the
    ``topk_group`` best of ``n_group`` groups (a group's score: the sum of its best two);
    weights renormalised (``norm_topk_prob``) then x ``routed_scaling_factor``."""

    unsupported: ClassVar[dict] = {}
    shared_experts_default: ClassVar[int] = 1
    groups_from_topk_method: ClassVar[bool] = False

    vocab_size: int = dim("vocab_size", 129280)
    hidden_size: int = dim("hidden_size", 7168)
    intermediate_size: int = dim("intermediate_size", 18432)
    num_layers: int = dim("num_hidden_layers", 61)
    num_heads: int = dim("num_attention_heads", 128)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    bos_token_id: int | tuple | None = hf("bos_token_id", 0)
    eos_token_id: int | tuple | None = hf("eos_token_id", 1)
    rotary_interleaved: bool = hf("rope_interleave", True)
    num_experts: int = dim("n_routed_experts", 256)
    experts_per_token: int = dim("num_experts_per_tok", 8)
    moe_intermediate_size: int = dim("moe_intermediate_size", 2048)
    normalize_top_k: bool = hf("norm_topk_prob", True)
    routed_scaling: float | None = hf("routed_scaling_factor", 2.5)
    router_score: str = const("sigmoid")
    router_groups: int | None = hf("n_group", 8)
    router_topk_groups: int | None = hf("topk_group", 4)
    router_group_score: str = const("top2_sum")
    router_correction_bias: bool = const(True)


# --- backbones and tasks ---------------------------------------------------------------------------
@_ser
@register_backbone("gpt_oss")
class GptOssBackbone(TableBackbone):
    spec_cls = GptOssSpec
    hf_architecture = "GptOssModel"
    names = {**NAMES, "moe": "mlp.", "router": "router"}
    experts_interleaved = True
    checkpoint_stacked_experts = True


@_ser
@register_task(GptOssBackbone, "CausalLM", ("GptOssForCausalLM",))
class GptOssCausalLM(CausalLM):
    pass


@_ser
@register_task(GptOssBackbone, "TextClassifier", ("GptOssForSequenceClassification",))
class GptOssTextClassifier(DecoderTextClassifier):
    pass


DEEPSEEK_NAMES = {**NAMES, "moe": "mlp.", "e_gate": "gate_proj", "e_up": "up_proj", "e_down": "down_proj",
                  "shared_expert": "shared_experts"}


@_ser
@register_backbone("deepseek_v2")
class DeepseekV2Backbone(TableBackbone):
    spec_cls = DeepseekV2Spec
    hf_architecture = "DeepseekV2Model"
    names = DEEPSEEK_NAMES


@_ser
@register_task(DeepseekV2Backbone, "CausalLM", ("DeepseekV2ForCausalLM",))
class DeepseekV2CausalLM(CausalLM):
    pass


@_ser
@register_task(DeepseekV2Backbone, "TextClassifier", ("DeepseekV2ForSequenceClassification",))
class DeepseekV2TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("deepseek_v3")
class DeepseekV3Backbone(TableBackbone):
    spec_cls = DeepseekV3Spec
    hf_architecture = "DeepseekV3Model"
    names = DEEPSEEK_NAMES


@_ser
@register_task(DeepseekV3Backbone, "CausalLM", ("DeepseekV3ForCausalLM",))
class DeepseekV3CausalLM(CausalLM):
    pass


@_ser
@register_task(DeepseekV3Backbone, "TextClassifier", ("DeepseekV3ForSequenceClassification",))
class DeepseekV3TextClassifier(DecoderTextClassifier):
    pass


__all__ = [
    "GptOssBackbone", "GptOssCausalLM", "DeepseekV2Backbone", "DeepseekV2CausalLM", "DeepseekV3Backbone",
    "DeepseekV3CausalLM",
]
