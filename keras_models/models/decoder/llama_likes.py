"""Llama-named families with a twist each, as specs of the one DecoderBackbone:
Qwen3 (per-head q/k RMSNorm), Qwen3-MoE and Qwen2-MoE (mixture of experts on some layers; Qwen2-MoE
adds a sigmoid-gated shared expert), OLMo (non-parametric LayerNorm, clip_qkv), OLMo 2 (norms on
the attention / MLP outputs, q/k RMSNorm over the whole projection), Granite (embedding, residual,
attention and logit multipliers), Phi-3 (fused qkv and gate/up projections), Cohere (parallel
block, bias-free LayerNorm, interleaved rope, logit scale) and SmolLM3 (NoPE layers)."""

from dataclasses import dataclass
from typing import ClassVar

import keras

from keras_models.errors import ConfigError
from keras_models.models.decoder.classifier import DecoderTextClassifier
from keras_models.models.decoder.hf_config import value
from keras_models.models.decoder.llama import NAMES, LlamaSpec, Qwen2Spec, TableBackbone
from keras_models.models.registry import register_backbone, register_task
from keras_models.spec import const, dim, hf
from keras_models.tasks.causal_lm import CausalLM

_ser = keras.saving.register_keras_serializable(package="keras_models")


# --- Qwen3 ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Qwen3Spec(Qwen2Spec):
    """Qwen2 with RMSNorm on each query / key head (before rope), an explicit head_dim, and
    ``attention_bias`` for all four projections."""

    num_kv_heads: int | None = hf("num_key_value_heads", 32)
    head_dim: int | None = hf("head_dim", 128)
    sliding_window: int | None = hf("sliding_window", 4096, doc="only with use_sliding_window")
    qkv_bias: bool = hf("attention_bias", False)
    out_bias: bool = hf("attention_bias", False)
    qk_norm: str | None = const("rms")


def _moe_layers(config, n, num_experts):
    """Qwen-MoE layer selection: MoE unless listed in mlp_only_layers, every decoder_sparse_step."""
    step = config.get("decoder_sparse_step") or 1
    dense = set(config.get("mlp_only_layers") or ())
    return tuple(i for i in range(n) if i not in dense and num_experts > 0 and (i + 1) % step == 0)


def _moe_to_hf(spec, out):
    moe = range(spec.num_layers) if spec.moe_layers is None else spec.moe_layers
    out.update(decoder_sparse_step=1, mlp_only_layers=[i for i in range(spec.num_layers) if i not in moe])
    return out


@dataclass(frozen=True, kw_only=True)
class Qwen3MoeSpec(Qwen3Spec):
    """Qwen3-MoE: top-k routed experts of width ``moe_intermediate_size`` (renormalised with
    ``norm_topk_prob``) on the layers ``decoder_sparse_step`` / ``mlp_only_layers`` select; the
    sliding window, when on, covers every layer."""

    vocab_size: int = dim("vocab_size", 151936)
    hidden_size: int = dim("hidden_size", 2048)
    intermediate_size: int = dim("intermediate_size", 6144)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 32)
    num_kv_heads: int | None = hf("num_key_value_heads", 4)
    head_dim: int | None = hf("head_dim", None, doc="None: hidden_size // num_heads")
    layer_types: tuple | None = const(None)
    num_experts: int = dim(("num_experts", "num_local_experts"), 128)
    experts_per_token: int = dim("num_experts_per_tok", 8)
    normalize_top_k: bool = hf("norm_topk_prob", False)
    moe_intermediate_size: int = dim("moe_intermediate_size", 768)
    moe_layers: tuple | None = const(None, doc="from decoder_sparse_step and mlp_only_layers")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        values["layer_types"] = None  # the sliding window (use_sliding_window) is on every layer
        values["moe_layers"] = _moe_layers(config, value(cls, values, "num_layers"),
                                           value(cls, values, "num_experts"))
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        out.pop("layer_types", None)
        return _moe_to_hf(self, out)


@dataclass(frozen=True, kw_only=True)
class Qwen2MoeSpec(Qwen2Spec):
    """Qwen2-MoE: Qwen3-MoE's routing (no q/k norm, ``qkv_bias``) plus a shared expert of width
    ``shared_expert_intermediate_size`` gated by sigmoid(shared_expert_gate(x)); with
    use_sliding_window, the even layers below ``max_window_layers`` slide."""

    hidden_size: int = dim("hidden_size", 2048)
    intermediate_size: int = dim("intermediate_size", 5632)
    num_layers: int = dim("num_hidden_layers", 24)
    num_heads: int = dim("num_attention_heads", 16)
    sliding_window: int | None = hf("sliding_window", 4096, doc="only with use_sliding_window")
    qkv_bias: bool = hf("qkv_bias", True)
    num_experts: int = dim("num_experts", 60)
    experts_per_token: int = dim("num_experts_per_tok", 4)
    normalize_top_k: bool = hf("norm_topk_prob", False)
    moe_intermediate_size: int = dim("moe_intermediate_size", 1408)
    shared_expert_size: int = dim("shared_expert_intermediate_size", 5632)
    shared_expert_gate: bool = const(True)
    moe_layers: tuple | None = const(None, doc="from decoder_sparse_step and mlp_only_layers")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        sliding = config.get("use_sliding_window") and config.get("layer_types") is None
        values = super().adjust_from_hf(config, values, source)
        n = value(cls, values, "num_layers")
        if sliding:
            mwl = config.get("max_window_layers", 28)
            values["layer_types"] = tuple("sliding_attention" if (i + 1) % 2 and i < mwl else "full_attention"
                                          for i in range(n))
        values["moe_layers"] = _moe_layers(config, n, value(cls, values, "num_experts"))
        return values

    def adjust_to_hf(self, out):
        return _moe_to_hf(self, super().adjust_to_hf(out))


# --- OLMo / OLMo 2 ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class OlmoSpec(LlamaSpec):
    """OLMo: LayerNorms without weight or bias (eps 1e-5), q/k/v clamped to ``clip_qkv``."""

    vocab_size: int = dim("vocab_size", 50304)
    pad_token_id: int | tuple | None = hf("pad_token_id", 1)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50279)
    clip_qkv: float | None = hf("clip_qkv", None)
    norm_type: str = const("layer")
    norm_eps: float = const(1e-5)
    norm_bias: bool = const(False)
    norm_scale: bool = const(False)
    mlp_bias: bool = const(False)


@dataclass(frozen=True, kw_only=True)
class Olmo2Spec(LlamaSpec):
    """OLMo 2: RMSNorms on the attention and MLP outputs (none on their inputs), q/k RMSNorm over
    the whole projection width."""

    vocab_size: int = dim("vocab_size", 50304)
    pad_token_id: int | tuple | None = hf("pad_token_id", 1)
    bos_token_id: int | tuple | None = hf("bos_token_id", None)
    eos_token_id: int | tuple | None = hf("eos_token_id", 50279)
    norm_eps: float = hf("rms_norm_eps", 1e-5)
    norm_position: str = const("output")
    qk_norm: str | None = const("rms")
    qk_norm_scope: str = const("full")
    mlp_bias: bool = const(False)


# --- Granite ---------------------------------------------------------------------------------------
def _inverse(x):
    return 1.0 / float(x)


@dataclass(frozen=True, kw_only=True)
class GraniteSpec(LlamaSpec):
    """Granite: embeddings x ``embedding_multiplier``, attention scores x ``attention_multiplier``
    (instead of 1/sqrt(head_dim)), branch outputs x ``residual_multiplier``, logits / ``logits_scaling``."""

    eos_token_id: int | tuple | None = hf("eos_token_id", 2)
    embedding_scale: float | None = hf("embedding_multiplier", 1.0)
    residual_scale: float | None = hf("residual_multiplier", 1.0)
    attn_scale: float | None = hf("attention_multiplier", 1.0)
    logit_scale: float | None = hf("logits_scaling", 1.0, read=_inverse, write=_inverse)


# --- Phi-3 -----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Phi3Spec(LlamaSpec):
    """Phi-3: fused qkv_proj ([q | k | v]) and gate_up_proj ([gate | up]), no biases, optional
    sliding window, longrope (``original_max_position_embeddings`` may sit at the top level)."""

    vocab_size: int = dim("vocab_size", 32064)
    hidden_size: int = dim("hidden_size", 3072)
    intermediate_size: int = dim("intermediate_size", 8192)
    max_position_embeddings: int = dim("max_position_embeddings", 4096)
    norm_eps: float = hf("rms_norm_eps", 1e-5)
    eos_token_id: int | tuple | None = hf("eos_token_id", 32000)
    pad_token_id: int | tuple | None = hf("pad_token_id", 32000)
    sliding_window: int | None = hf("sliding_window", None)
    fused_qkv: bool = const(True)
    mlp_fused_gate_up: bool = const(True)
    qkv_bias: bool = const(False)
    out_bias: bool = const(False)
    mlp_bias: bool = const(False)

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        scaling = values.get("rope_scaling")
        original = config.get("original_max_position_embeddings")
        if scaling and original and "original_max_position_embeddings" not in scaling:
            values["rope_scaling"] = {**scaling, "original_max_position_embeddings": original}
        return values

    def adjust_to_hf(self, out):
        out = super().adjust_to_hf(out)
        original = (self.rope_scaling or {}).get("original_max_position_embeddings")
        out["original_max_position_embeddings"] = original or self.max_position_embeddings
        return out


# --- Cohere ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CohereSpec(LlamaSpec):
    """Cohere (Command-R): parallel attention + MLP on one bias-free LayerNorm, interleaved rope,
    tied embeddings, logits x ``logit_scale``."""

    rope_theta_default: ClassVar[float] = 500000.0
    unsupported: ClassVar[dict] = {"use_qk_norm": (False, None)}  # per-head LayerNorm weights: not implemented

    vocab_size: int = dim("vocab_size", 256000)
    hidden_size: int = dim("hidden_size", 8192)
    intermediate_size: int = dim("intermediate_size", 22528)
    num_layers: int = dim("num_hidden_layers", 40)
    num_heads: int = dim("num_attention_heads", 64)
    max_position_embeddings: int = dim("max_position_embeddings", 8192)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    pad_token_id: int | tuple | None = hf("pad_token_id", 0)
    bos_token_id: int | tuple | None = hf("bos_token_id", 5)
    eos_token_id: int | tuple | None = hf("eos_token_id", 255001)
    logit_scale: float | None = hf("logit_scale", 0.0625)
    norm_type: str = const("layer")
    norm_eps: float = hf("layer_norm_eps", 1e-5)
    norm_bias: bool = const(False)
    residual: str = const("parallel")
    parallel_norms: int = const(1)
    rotary_interleaved: bool = const(True)
    mlp_bias: bool = const(False)


# --- SmolLM3 ---------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SmolLM3Spec(LlamaSpec):
    """SmolLM3: no rotary positions on the layers ``no_rope_layers`` marks 0 (default: every
    ``no_rope_layer_interval``-th); with use_sliding_window, those NoPE layers slide."""

    rope_theta_default: ClassVar[float] = 2000000.0

    vocab_size: int = dim("vocab_size", 128256)
    hidden_size: int = dim("hidden_size", 2048)
    num_layers: int = dim("num_hidden_layers", 36)
    num_heads: int = dim("num_attention_heads", 16)
    num_kv_heads: int | None = hf("num_key_value_heads", 4)
    max_position_embeddings: int = dim("max_position_embeddings", 32768)
    tie_word_embeddings: bool = hf("tie_word_embeddings", True)
    pad_token_id: int | tuple | None = hf("pad_token_id", 128004)
    bos_token_id: int | tuple | None = hf("bos_token_id", 128000)
    eos_token_id: int | tuple | None = hf("eos_token_id", 128001)
    sliding_window: int | None = hf("sliding_window", None)
    layer_types: tuple | None = hf("layer_types", None)
    nope_layers: tuple | None = const(None, doc="the layers no_rope_layers marks 0")

    @classmethod
    def adjust_from_hf(cls, config, values, source):
        values = super().adjust_from_hf(config, values, source)
        n = value(cls, values, "num_layers")
        flags = config.get("no_rope_layers")
        if flags is None:
            interval = config.get("no_rope_layer_interval") or 4
            flags = [int((i + 1) % interval != 0) for i in range(n)]
        if len(flags) != n:
            raise ConfigError(f"{source}: no_rope_layers has {len(flags)} entries for {n} layers")
        values["nope_layers"] = tuple(i for i, f in enumerate(flags) if not f)
        if not config.get("use_sliding_window") or values.get("sliding_window") is None:
            values["sliding_window"] = None
        elif values.get("layer_types") is None:
            values["layer_types"] = tuple("sliding_attention" if i in values["nope_layers"] else "full_attention"
                                          for i in range(n))
        return values

    def adjust_to_hf(self, out):
        nope = set(self.nope_layers or ())
        out["no_rope_layers"] = [0 if i in nope else 1 for i in range(self.num_layers)]
        out["use_sliding_window"] = self.sliding_window is not None
        out["layer_types"] = list(self.layer_types or ["full_attention"] * self.num_layers)
        return super().adjust_to_hf(out)


# --- backbones and tasks ---------------------------------------------------------------------------
QWEN_MOE_NAMES = {**NAMES, "moe": "mlp.", "e_gate": "gate_proj", "e_up": "up_proj", "e_down": "down_proj"}


@_ser
@register_backbone("qwen3")
class Qwen3Backbone(TableBackbone):
    spec_cls = Qwen3Spec
    hf_architecture = "Qwen3Model"


@_ser
@register_task(Qwen3Backbone, "CausalLM", ("Qwen3ForCausalLM",))
class Qwen3CausalLM(CausalLM):
    pass


@_ser
@register_task(Qwen3Backbone, "TextClassifier", ("Qwen3ForSequenceClassification",))
class Qwen3TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("qwen3_moe")
class Qwen3MoeBackbone(TableBackbone):
    spec_cls = Qwen3MoeSpec
    hf_architecture = "Qwen3MoeModel"
    names = QWEN_MOE_NAMES


@_ser
@register_task(Qwen3MoeBackbone, "CausalLM", ("Qwen3MoeForCausalLM",))
class Qwen3MoeCausalLM(CausalLM):
    pass


@_ser
@register_task(Qwen3MoeBackbone, "TextClassifier", ("Qwen3MoeForSequenceClassification",))
class Qwen3MoeTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("qwen2_moe")
class Qwen2MoeBackbone(TableBackbone):
    spec_cls = Qwen2MoeSpec
    hf_architecture = "Qwen2MoeModel"
    names = QWEN_MOE_NAMES


@_ser
@register_task(Qwen2MoeBackbone, "CausalLM", ("Qwen2MoeForCausalLM",))
class Qwen2MoeCausalLM(CausalLM):
    pass


@_ser
@register_task(Qwen2MoeBackbone, "TextClassifier", ("Qwen2MoeForSequenceClassification",))
class Qwen2MoeTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("olmo")
class OlmoBackbone(TableBackbone):
    spec_cls = OlmoSpec
    hf_architecture = "OlmoModel"


@_ser
@register_task(OlmoBackbone, "CausalLM", ("OlmoForCausalLM",))
class OlmoCausalLM(CausalLM):
    pass


@_ser
@register_task(OlmoBackbone, "TextClassifier", ("OlmoForSequenceClassification",))
class OlmoTextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("olmo2")
class Olmo2Backbone(TableBackbone):
    spec_cls = Olmo2Spec
    hf_architecture = "Olmo2Model"
    names = {**NAMES, "attn_norm": "post_attention_layernorm", "mlp_norm": "post_feedforward_layernorm"}


@_ser
@register_task(Olmo2Backbone, "CausalLM", ("Olmo2ForCausalLM",))
class Olmo2CausalLM(CausalLM):
    pass


@_ser
@register_task(Olmo2Backbone, "TextClassifier", ("Olmo2ForSequenceClassification",))
class Olmo2TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("granite")
class GraniteBackbone(TableBackbone):
    spec_cls = GraniteSpec
    hf_architecture = "GraniteModel"


@_ser
@register_task(GraniteBackbone, "CausalLM", ("GraniteForCausalLM",))
class GraniteCausalLM(CausalLM):
    pass


@_ser
@register_backbone("phi3")
class Phi3Backbone(TableBackbone):
    spec_cls = Phi3Spec
    hf_architecture = "Phi3Model"
    names = {**NAMES, "qkv": "qkv_proj", "up": "gate_up_proj"}


@_ser
@register_task(Phi3Backbone, "CausalLM", ("Phi3ForCausalLM",))
class Phi3CausalLM(CausalLM):
    pass


@_ser
@register_task(Phi3Backbone, "TextClassifier", ("Phi3ForSequenceClassification",))
class Phi3TextClassifier(DecoderTextClassifier):
    pass


@_ser
@register_backbone("cohere")
class CohereBackbone(TableBackbone):
    spec_cls = CohereSpec
    hf_architecture = "CohereModel"


@_ser
@register_task(CohereBackbone, "CausalLM", ("CohereForCausalLM",))
class CohereCausalLM(CausalLM):
    pass


@_ser
@register_backbone("smollm3")
class SmolLM3Backbone(TableBackbone):
    spec_cls = SmolLM3Spec
    hf_architecture = "SmolLM3Model"


@_ser
@register_task(SmolLM3Backbone, "CausalLM", ("SmolLM3ForCausalLM",))
class SmolLM3CausalLM(CausalLM):
    pass


@_ser
@register_task(SmolLM3Backbone, "TextClassifier", ("SmolLM3ForSequenceClassification",))
class SmolLM3TextClassifier(DecoderTextClassifier):
    pass


__all__ = [
    "Qwen3Backbone", "Qwen3CausalLM", "Qwen3MoeBackbone", "Qwen3MoeCausalLM", "Qwen2MoeBackbone",
    "Qwen2MoeCausalLM", "OlmoBackbone", "OlmoCausalLM", "Olmo2Backbone", "Olmo2CausalLM",
    "GraniteBackbone", "GraniteCausalLM", "Phi3Backbone", "Phi3CausalLM", "CohereBackbone",
    "CohereCausalLM", "SmolLM3Backbone", "SmolLM3CausalLM",
]
